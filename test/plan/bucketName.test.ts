import assert from "node:assert/strict";
import { derivedBucketNameProblems } from "../../plan/bucketName";
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
