/**
 * The names of the stack's buckets (backup, uploads) when the stack sets none: derived from the
 * project and the Pulumi stack name (config/buckets.ts). Spaces names are global, so a bucket the
 * program creates there gets a random suffix too. Pulumi allows stack names (uppercase, `_`, `.`,
 * long) that no S3 store accepts in a bucket name, and only the stack name tells whether a derived
 * name meets a given one: the program checks both before it declares anything.
 */
import { bucketKeyNames, defaultBucketName, type BucketPrefix } from "../config/buckets";
import type { BucketConfig, StackConfig } from "../config/config";
import { BUCKET_NAME_RULE, isBucketName } from "../config/validators";

/** Length of the random suffix a created Spaces bucket gets (`-` + these characters). */
export const CREATED_BUCKET_SUFFIX_LENGTH = 6;

/** Spaces buckets are created by the program (with a suffix when derived); the others are given. */
export function isCreatedBucket(bucket: Pick<BucketConfig, "provider">): boolean {
  return bucket.provider === "digitalocean";
}

/**
 * The problem lines (ConfigError form) of a derived bucket name; none when the stack sets its
 * own name or the derived one is valid. `created`: the program creates it (Spaces), suffix added.
 */
export function derivedBucketNameProblems(stackName: string, prefix: BucketPrefix, opts: { name?: string; created: boolean }): string[] {
  if (opts.name !== undefined) return [];
  const derived = defaultBucketName(stackName, prefix);
  const longest = derived + (opts.created ? `-${"x".repeat(CREATED_BUCKET_SUFFIX_LENGTH)}` : "");
  if (isBucketName(longest)) return [];
  const key = bucketKeyNames(prefix).name;
  return [
    `saas-vps:${key}: not set, and the name derived from stack "${stackName}" (${JSON.stringify(derived)}` +
      `${opts.created ? ` plus a ${CREATED_BUCKET_SUFFIX_LENGTH}-character suffix` : ""}) is not a bucket name: ${BUCKET_NAME_RULE}; set saas-vps:${key}`,
  ];
}

/**
 * Every problem of the stack's bucket names: derived names no store accepts, and an uploads
 * bucket that is the backup bucket (same store, same name). The app holds the uploads bucket's
 * key and deletes files there; the backups must stay out of its reach.
 */
export function bucketNameProblems(stackName: string, config: Pick<StackConfig, "backupBucket" | "uploads">): string[] {
  const buckets: Array<[BucketPrefix, BucketConfig]> = [["backup", config.backupBucket]];
  if (config.uploads.storage === "bucket") buckets.push(["uploads", config.uploads.bucket]);
  const problems = buckets.flatMap(([prefix, bucket]) => derivedBucketNameProblems(stackName, prefix, { name: bucket.name, created: isCreatedBucket(bucket) }));
  if (config.uploads.storage === "bucket" && problems.length === 0) {
    const backup = config.backupBucket;
    const uploads = config.uploads.bucket;
    // A created bucket with a derived name has a random suffix: it cannot be the other one.
    const nameOf = (prefix: BucketPrefix, b: BucketConfig) => b.name ?? (isCreatedBucket(b) ? undefined : defaultBucketName(stackName, prefix));
    const name = nameOf("uploads", uploads);
    if (name !== undefined && uploads.provider === backup.provider && uploads.endpoint === backup.endpoint && name === nameOf("backup", backup)) {
      const key = uploads.name !== undefined ? "uploadsBucketName" : "backupBucketName";
      problems.push(
        `saas-vps:${key}: the uploads bucket would be the backup bucket (${JSON.stringify(name)} at ${uploads.endpoint}); ` +
          `the app holds the uploads bucket's key and deletes files in it, so the backups need a bucket of their own: set a different name`,
      );
    }
  }
  return problems;
}
