/**
 * One S3 bucket of the stack: the off-server backup bucket or the app's uploads bucket.
 * DigitalOcean Spaces is created here (private, with a key that can reach only this bucket);
 * Hetzner Object Storage and other S3 stores are used as given, since Hetzner's API can neither
 * create buckets nor mint S3 keys. A bucket may be at another provider than the servers: for
 * backups that is the point of off-site.
 */
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { defaultBucketName, type BucketPrefix } from "../config/buckets";
import type { BucketConfig } from "../config/config";
import { CREATED_BUCKET_SUFFIX_LENGTH, isCreatedBucket } from "../plan/bucketName";
import type { S3Bucket } from "../provisioning/bucket";

/** Per purpose: the component's type token and the last part of its Spaces key's name. */
const PURPOSES: Readonly<Record<BucketPrefix, { type: string; keyNameSuffix: string }>> = {
  // Part of the URN of the component and everything under it: changing it would replace them in existing stacks.
  backup: { type: "saas-vps:backup:BackupBucket", keyNameSuffix: "backup" },
  uploads: { type: "saas-vps:uploads:UploadsBucket", keyNameSuffix: "app" },
};

/** A created Spaces bucket's settings beyond its name, region and private ACL. */
export type SpacesSettings = Pick<digitalocean.SpacesBucketArgs, "versioning" | "lifecycleRules">;

export interface ObjectBucketArgs<Extra> {
  /** Which of the stack's buckets: names its keys, its default name and its component type. */
  purpose: BucketPrefix;
  /** Parsed bucket keys: provider, region, endpoint, optional name and keys. */
  bucket: BucketConfig;
  /** Stack name, part of the default bucket name. */
  stackName: string;
  spaces: SpacesSettings;
  /** Further component outputs computed from the bucket's endpoint and name. */
  extraOutputs?: (bucket: { endpoint: pulumi.Output<string>; bucketName: pulumi.Output<string> }) => Extra;
}

export class ObjectBucket<Extra extends Record<string, pulumi.Output<string>> = Record<string, never>> extends pulumi.ComponentResource {
  readonly endpoint: pulumi.Output<string>;
  readonly bucketName: pulumi.Output<string>;
  readonly region: pulumi.Output<string>;
  /** Secret. */
  readonly accessKeyId: pulumi.Output<string>;
  /** Secret. */
  readonly secretAccessKey: pulumi.Output<string>;
  /** Everything a server needs to use the bucket (secret: it holds the keys). */
  readonly resolved: pulumi.Output<S3Bucket>;
  readonly extra: Extra;

  constructor(name: string, args: ObjectBucketArgs<Extra>, opts?: pulumi.ComponentResourceOptions) {
    const purpose = PURPOSES[args.purpose];
    super(purpose.type, name, {}, opts);
    const { bucket } = args;
    this.endpoint = pulumi.output(bucket.endpoint);
    this.region = pulumi.output(bucket.region);
    const derivedName = defaultBucketName(args.stackName, args.purpose);
    if (isCreatedBucket(bucket)) {
      const suffix = new random.RandomString(`${name}-suffix`, { length: CREATED_BUCKET_SUFFIX_LENGTH, special: false, upper: false }, { parent: this });
      const bucketName = bucket.name ? pulumi.output(bucket.name) : pulumi.interpolate`${derivedName}-${suffix.result}`;
      const spaces = new digitalocean.SpacesBucket(
        `${name}-bucket`,
        // Private: no public reads, no public listing; objects reach the world only through the app.
        { name: bucketName, region: bucket.region, acl: "private", ...args.spaces },
        { parent: this },
      );
      const key = new digitalocean.SpacesKey(
        `${name}-key`,
        // readwrite covers deletes (restic's prune, the app's file deletes); the key reaches no other bucket.
        { name: pulumi.interpolate`${bucketName}-${purpose.keyNameSuffix}`, grants: [{ bucket: spaces.name, permission: "readwrite" }] },
        { parent: this, additionalSecretOutputs: ["secretKey", "accessKey"] },
      );
      this.bucketName = spaces.name;
      // Mocks and some engines ignore additionalSecretOutputs: wrap explicitly.
      this.accessKeyId = pulumi.secret(key.accessKey);
      this.secretAccessKey = pulumi.secret(key.secretKey);
    } else {
      this.bucketName = pulumi.output(bucket.name ?? derivedName);
      this.accessKeyId = pulumi.secret(bucket.accessKeyId ?? "");
      this.secretAccessKey = pulumi.secret(bucket.secretAccessKey ?? "");
    }
    this.resolved = pulumi.secret(
      pulumi.all([this.endpoint, this.bucketName, this.region, this.accessKeyId, this.secretAccessKey]).apply(
        ([endpoint, name, region, accessKeyId, secretAccessKey]) => ({ endpoint, name, region, accessKeyId, secretAccessKey }),
      ),
    );
    this.extra = args.extraOutputs?.({ endpoint: this.endpoint, bucketName: this.bucketName }) ?? ({} as Extra);
    this.registerOutputs({ endpoint: this.endpoint, bucketName: this.bucketName, ...this.extra });
  }
}

/** The backup bucket's Spaces settings: versioned, and old versions expire a week after restic forgets them. */
export function backupSpacesSettings(retentionDays: number): SpacesSettings {
  return {
    versioning: { enabled: true },
    lifecycleRules: [{ enabled: true, abortIncompleteMultipartUploadDays: 7, noncurrentVersionExpiration: { days: retentionDays + 7 } }],
  };
}

/**
 * The uploads bucket's Spaces settings: not versioned (a file the app deletes is gone, as users
 * expect; the backups hold the database, not the files), abandoned multipart uploads cleared.
 */
export const UPLOADS_SPACES_SETTINGS: SpacesSettings = {
  lifecycleRules: [{ enabled: true, abortIncompleteMultipartUploadDays: 7 }],
};
