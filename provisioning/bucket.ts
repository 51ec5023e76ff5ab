/** An S3-compatible bucket as a server uses it (Spaces, Hetzner Object Storage, any S3): the backups', the uploads'. */
export interface S3Bucket {
  /** S3 API endpoint, scheme and host only: `https://fsn1.your-objectstorage.com` (http only for a local test server). */
  endpoint: string;
  /** Bucket name; the rule is config/validators.ts's BUCKET_NAME_RULE. */
  name: string;
  /** Region the S3 API expects for signing, e.g. `fsn1`, `fra1`, `us-east-1`. */
  region: string;
  /** S3 access key id (secret). */
  accessKeyId: string;
  /** S3 secret access key (secret). */
  secretAccessKey: string;
}
