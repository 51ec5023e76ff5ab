import type { BackupRenderOptions } from "../../provisioning/backup";

/** Options as a production stack would give them (fake secrets). */
export const VALID: BackupRenderOptions = {
  schedule: "*-*-* 03:00:00 UTC",
  retentionDays: 14,
  databaseName: "app",
  bucket: {
    endpoint: "https://fsn1.your-objectstorage.com",
    name: "acme-prod-backups",
    region: "fsn1",
    accessKeyId: "AKIAEXAMPLE",
    secretAccessKey: "s3-secret-value",
  },
  encryptionPassword: "generated-password-0123456789",
};
