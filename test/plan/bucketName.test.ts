import assert from "node:assert/strict";
import { defaultBucketName } from "../../config/buckets";
import { parseStackConfig } from "../../config/config";
import { bucketNameProblems, derivedBucketNameProblems } from "../../plan/bucketName";
import { minimalRaw } from "../support/fixtures";
import { runProgram } from "../support/mockProgram";

describe("the backup bucket name derived from the stack name", () => {
  it("is fine for the usual stack names, and not checked when the stack sets its own", () => {
    for (const stack of ["prod", "staging", "eu-prod-2"]) {
      assert.deepEqual(derivedBucketNameProblems(stack, "backup", { created: true }), []);
    }
    assert.deepEqual(derivedBucketNameProblems("Prod.EU", "backup", { name: "my-backups", created: true }), []);
  });

  it("is refused, naming the key to set, when the stack name makes no bucket name", () => {
    assert.deepEqual(derivedBucketNameProblems("Prod.EU", "backup", { created: false }), [
      'saas-vps:backupBucketName: not set, and the name derived from stack "Prod.EU" ("saas-vps-Prod.EU-backups") is not a bucket name: ' +
        "3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break TLS for virtual-host-style S3 requests); " +
        "set saas-vps:backupBucketName",
    ]);
    // 63 characters at most: the suffix of a created Spaces bucket counts.
    const long = "a".repeat(40);
    assert.deepEqual(derivedBucketNameProblems(long, "backup", { created: false }), []);
    assert.equal(derivedBucketNameProblems(long, "backup", { created: true }).length, 1);
  });

  it("the program refuses such a stack with that line (checked before the stack is built)", async () => {
    await assert.rejects(runProgram(minimalRaw("digitalocean"), [], "Team_Prod"), /saas-vps:backupBucketName: not set, and the name derived from stack "Team_Prod"/);
  });
});

describe("the uploads bucket's name, and never the backup bucket's", () => {
  const uploadsOnHetzner = { ...minimalRaw("hetzner"), uploadsStorage: "bucket", uploadsAccessKeyId: "UPLOADSKEYID", uploadsSecretAccessKey: "uploads-secret-key" };
  const configOf = (raw: Record<string, string>) => parseStackConfig(raw);

  it("derives saas-vps-<stack>-uploads, refused like the backup bucket's when the stack name makes no bucket name", () => {
    assert.equal(defaultBucketName("prod", "uploads"), "saas-vps-prod-uploads");
    assert.deepEqual(bucketNameProblems("prod", configOf(uploadsOnHetzner)), []);
    assert.deepEqual(bucketNameProblems("Prod.EU", configOf({ ...uploadsOnHetzner, backupBucketName: "acme-backups" })), [
      'saas-vps:uploadsBucketName: not set, and the name derived from stack "Prod.EU" ("saas-vps-Prod.EU-uploads") is not a bucket name: ' +
        "3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break TLS for virtual-host-style S3 requests); " +
        "set saas-vps:uploadsBucketName",
    ]);
  });

  it("refuses an uploads bucket that is the backup bucket: the same store and name, given or derived", () => {
    const sameGiven = { ...uploadsOnHetzner, backupBucketName: "acme-data", uploadsBucketName: "acme-data" };
    assert.deepEqual(bucketNameProblems("prod", configOf(sameGiven)), [
      'saas-vps:uploadsBucketName: the uploads bucket would be the backup bucket ("acme-data" at https://fsn1.your-objectstorage.com); ' +
        "the app holds the uploads bucket's key and deletes files in it, so the backups need a bucket of their own: set a different name",
    ]);
    // The backup bucket's derived name, given to the uploads bucket.
    assert.match(bucketNameProblems("prod", configOf({ ...uploadsOnHetzner, uploadsBucketName: "saas-vps-prod-backups" }))[0], /^saas-vps:uploadsBucketName: the uploads bucket would be the backup bucket \("saas-vps-prod-backups"/);
    // The uploads bucket's derived name, given to the backup bucket: that key is the one to change.
    assert.match(bucketNameProblems("prod", configOf({ ...uploadsOnHetzner, backupBucketName: "saas-vps-prod-uploads" }))[0], /^saas-vps:backupBucketName: the uploads bucket would be the backup bucket/);
  });

  it("accepts the same name at another store or location, and created Spaces buckets (their derived names differ)", () => {
    assert.deepEqual(bucketNameProblems("prod", configOf({ ...uploadsOnHetzner, backupBucketName: "acme-data", uploadsBucketName: "acme-data", uploadsBucketRegion: "nbg1" })), []);
    assert.deepEqual(bucketNameProblems("prod", configOf({ ...minimalRaw("digitalocean"), stage: "separated" })), []);
  });

  it("the program refuses such a stack with that line", async () => {
    await assert.rejects(
      runProgram({ ...uploadsOnHetzner, backupBucketName: "acme-data", uploadsBucketName: "acme-data" }, ["backupSecretAccessKey", "uploadsSecretAccessKey"]),
      /^ConfigError: saas-vps:uploadsBucketName: the uploads bucket would be the backup bucket/,
    );
  });
});
