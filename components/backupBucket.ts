/**
 * The off-server backup bucket. DigitalOcean Spaces is created here (versioned, lifecycle
 * rules, a key that can reach only this bucket); Hetzner Object Storage and other S3 stores
 * are used as given, since Hetzner's API can neither create buckets nor mint S3 keys.
 * The bucket may be at another provider than the server: that is the point of off-site.
 */
import { CREATED_BUCKET_SUFFIX_LENGTH, defaultBackupBucketName } from "../plan/backupBucketName";
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { backupRepositoryUrl, type BackupBucket as ResolvedBucket } from "../provisioning/backup";
import type { BackupBucketConfig } from "../config/config";
import { PROTECTED } from "./machine";

export interface BackupBucketArgs {
  /** Parsed `backupBucket*` keys: provider, region, endpoint, optional name and keys. */
  bucket: BackupBucketConfig;
  /** Stack name, part of the default bucket name and the repository prefix. */
  stackName: string;
  /** Backups kept this many days (restic forget); old object versions expire a week after. */
  retentionDays: number;
}

export class BackupBucket extends pulumi.ComponentResource {
  readonly endpoint: pulumi.Output<string>;
  readonly bucketName: pulumi.Output<string>;
  readonly region: pulumi.Output<string>;
  /** Secret. */
  readonly accessKeyId: pulumi.Output<string>;
  /** Secret. */
  readonly secretAccessKey: pulumi.Output<string>;
  /** Everything the server's backup renderer needs (secret: it holds the keys). */
  readonly resolved: pulumi.Output<ResolvedBucket>;
  /** restic repository URL, for restoring by hand on another machine. */
  readonly repository: pulumi.Output<string>;

  constructor(name: string, args: BackupBucketArgs, opts?: pulumi.ComponentResourceOptions) {
    super("saas-vps:backup:BackupBucket", name, {}, opts);
    const { bucket } = args;
    this.endpoint = pulumi.output(bucket.endpoint);
    this.region = pulumi.output(bucket.region);
    if (bucket.provider === "digitalocean") {
      const suffix = new random.RandomString(`${name}-suffix`, { length: CREATED_BUCKET_SUFFIX_LENGTH, special: false, upper: false }, { parent: this });
      const bucketName = bucket.name ? pulumi.output(bucket.name) : pulumi.interpolate`${defaultBackupBucketName(args.stackName)}-${suffix.result}`;
      const spaces = new digitalocean.SpacesBucket(
        `${name}-bucket`,
        {
          name: bucketName,
          region: bucket.region,
          acl: "private",
          versioning: { enabled: true },
          lifecycleRules: [
            { enabled: true, abortIncompleteMultipartUploadDays: 7, noncurrentVersionExpiration: { days: args.retentionDays + 7 } },
          ],
        },
        { parent: this, ...PROTECTED },
      );
      const key = new digitalocean.SpacesKey(
        `${name}-key`,
        // readwrite covers deletes, which restic's prune needs; the key reaches no other bucket.
        { name: pulumi.interpolate`${bucketName}-backup`, grants: [{ bucket: spaces.name, permission: "readwrite" }] },
        { parent: this, additionalSecretOutputs: ["secretKey", "accessKey"] },
      );
      this.bucketName = spaces.name;
      // Mocks and some engines ignore additionalSecretOutputs: wrap explicitly.
      this.accessKeyId = pulumi.secret(key.accessKey);
      this.secretAccessKey = pulumi.secret(key.secretKey);
    } else {
      this.bucketName = pulumi.output(bucket.name ?? defaultBackupBucketName(args.stackName));
      this.accessKeyId = pulumi.secret(bucket.accessKeyId ?? "");
      this.secretAccessKey = pulumi.secret(bucket.secretAccessKey ?? "");
    }
    this.resolved = pulumi.secret(
      pulumi.all([this.endpoint, this.bucketName, this.region, this.accessKeyId, this.secretAccessKey]).apply(
        ([endpoint, name, region, accessKeyId, secretAccessKey]) => ({ endpoint, name, region, accessKeyId, secretAccessKey }),
      ),
    );
    this.repository = pulumi.all([this.endpoint, this.bucketName]).apply(([endpoint, name]) => backupRepositoryUrl({ endpoint, name }));
    this.registerOutputs({ endpoint: this.endpoint, bucketName: this.bucketName, repository: this.repository });
  }
}
