/**
 * The S3 buckets a stack uses and how their config keys are named: the backup bucket
 * (`backup*` keys) and the uploads bucket (`uploads*` keys). Both take the same six keys, so
 * one parser (config.ts) and one set of key specs (keys.ts) serve both, told the prefix.
 */
export const BUCKET_PREFIXES = ["backup", "uploads"] as const;
export type BucketPrefix = (typeof BUCKET_PREFIXES)[number];

/** The six keys of one bucket, by field. */
export interface BucketKeyNames<P extends BucketPrefix = BucketPrefix> {
  provider: `${P}BucketProvider`;
  region: `${P}BucketRegion`;
  endpoint: `${P}BucketEndpoint`;
  name: `${P}BucketName`;
  accessKeyId: `${P}AccessKeyId`;
  secretAccessKey: `${P}SecretAccessKey`;
}
export type BucketField = keyof BucketKeyNames;

export function bucketKeyNames<P extends BucketPrefix>(prefix: P): BucketKeyNames<P> {
  return {
    provider: `${prefix}BucketProvider`,
    region: `${prefix}BucketRegion`,
    endpoint: `${prefix}BucketEndpoint`,
    name: `${prefix}BucketName`,
    accessKeyId: `${prefix}AccessKeyId`,
    secretAccessKey: `${prefix}SecretAccessKey`,
  };
}

/** What each bucket holds: its word in messages and the last part of its derived name. */
export const BUCKET_PURPOSES: Readonly<Record<BucketPrefix, { noun: string; nameSuffix: string }>> = {
  backup: { noun: "backup", nameSuffix: "backups" },
  uploads: { noun: "uploads", nameSuffix: "uploads" },
};

/** A bucket's name when the stack sets none: from the project and the Pulumi stack name. */
export function defaultBucketName(stackName: string, prefix: BucketPrefix): string {
  return `saas-vps-${stackName}-${BUCKET_PURPOSES[prefix].nameSuffix}`;
}

/** Where the app keeps uploaded files: on the data volume of its one server, or in the uploads bucket. */
export const UPLOADS_STORAGES = ["volume", "bucket"] as const;
export type UploadsStorage = (typeof UPLOADS_STORAGES)[number];
