/**
 * Where the app keeps uploaded files on a server, and what each choice puts there: on the data
 * volume, a directory the app may write (UPLOAD_DIR); in a bucket, the app's S3 settings and no
 * directory at all, so a server without the volume does not need it (docs/ARCHITECTURE.md,
 * decision 12). The app reads both from its environment (app/src/core/config.ts).
 */
import type { S3Bucket } from "./bucket";
import { UPLOAD_DIR } from "./layout";

export type UploadsInput = { storage: "volume" } | { storage: "bucket"; bucket: S3Bucket };

/** The directory the app writes uploads to on this server; none when they go to the bucket. */
export function uploadDirOf(uploads: UploadsInput): string | undefined {
  return uploads.storage === "volume" ? UPLOAD_DIR : undefined;
}

/** The app's environment for its uploads; with a bucket it holds the app's keys (app.env is 0600). */
export function uploadsEnvironment(uploads: UploadsInput): Array<[string, string]> {
  if (uploads.storage === "volume") return [["UPLOAD_DIR", UPLOAD_DIR]];
  const { bucket } = uploads;
  return [
    ["S3_ENDPOINT", bucket.endpoint],
    ["S3_BUCKET", bucket.name],
    ["S3_REGION", bucket.region],
    ["S3_ACCESS_KEY_ID", bucket.accessKeyId],
    ["S3_SECRET_ACCESS_KEY", bucket.secretAccessKey],
  ];
}
