/**
 * The backup bucket's resources, as an existing stack has them in its state: URN (the type chain
 * of its parents and its name) and inputs, for each way a backup bucket is configured. The JSON
 * beside this file was recorded from the program before the bucket component was shared with
 * the uploads bucket; a stack deployed then must see no diff now (`UPDATE_GOLDEN=1` rewrites it:
 * only for a change meant to touch existing stacks, and then read the diff).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { minimalRaw } from "../support/fixtures";
import { runProgram } from "../support/mockProgram";

const FIXTURE = join(__dirname, "fixtures", "backup-bucket-resources.json");

const CASES: Record<string, { raw: Record<string, string>; secretKeys: string[]; stack: string }> = {
  "spaces, derived name": { raw: minimalRaw("digitalocean"), secretKeys: [], stack: "staging" },
  "spaces, given name, other region": { raw: { ...minimalRaw("digitalocean"), backupBucketName: "acme-backups", backupBucketRegion: "ams3" }, secretKeys: [], stack: "prod" },
  "spaces from a hetzner stack (off-provider)": {
    raw: { provider: "hetzner", plainHttp: "true", sshPublicKeys: minimalRaw("hetzner").sshPublicKeys, sshAllowedCidrs: minimalRaw("hetzner").sshAllowedCidrs, alertEmails: minimalRaw("hetzner").alertEmails, backupBucketProvider: "digitalocean" },
    secretKeys: [],
    stack: "prod",
  },
  "hetzner object storage, given keys": { raw: minimalRaw("hetzner"), secretKeys: ["backupSecretAccessKey"], stack: "prod" },
  "s3, given bucket": {
    raw: { ...minimalRaw("hetzner"), backupBucketProvider: "s3", backupBucketEndpoint: "https://s3.eu-central-1.amazonaws.com", backupBucketName: "acme-backups", backupBucketRegion: "eu-central-1" },
    secretKeys: ["backupSecretAccessKey"],
    stack: "prod",
  },
};

interface BucketRecord {
  resources: Array<{ urn: string; inputs: unknown }>;
  outputs: Record<string, unknown>;
}

/** The backup bucket component and everything under it (URN order), and the stack outputs it feeds. */
async function backupBucketRecord(c: (typeof CASES)[string]): Promise<BucketRecord> {
  const run = await runProgram(c.raw, c.secretKeys, c.stack);
  const resources = run.mocks.resources
    .map((r) => ({ urn: run.urns.get(r.name)!, inputs: r.inputs }))
    .filter((r) => r.urn.includes("saas-vps:backup:BackupBucket"))
    .sort((a, b) => a.urn.localeCompare(b.urn));
  const o = run.outputs;
  const outputs: Record<string, unknown> = {};
  for (const [key, output] of Object.entries({ backupBucket: o.backupBucket, backupEndpoint: o.backupEndpoint, backupRepository: o.backupRepository, backupAccessKeyId: o.backupAccessKeyId, backupSecretAccessKey: o.backupSecretAccessKey })) {
    outputs[key] = unwrapSecrets(await valueOf(output));
  }
  return { resources, outputs };
}

describe("the backup bucket keeps its identity in existing stacks (recorded resources)", function () {
  this.timeout(120_000);
  const recorded: Record<string, BucketRecord> = process.env.UPDATE_GOLDEN ? {} : JSON.parse(readFileSync(FIXTURE, "utf8"));

  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: the same URNs, inputs and stack outputs`, async () => {
      const record = await backupBucketRecord(c);
      assert.ok(record.resources.length > 0, "no backup bucket resources found");
      if (process.env.UPDATE_GOLDEN) {
        recorded[name] = record;
        return;
      }
      assert.deepEqual(record, recorded[name]);
    });
  }

  it("an uploads bucket beside it changes none of them", async function () {
    if (process.env.UPDATE_GOLDEN) this.skip();
    const c = CASES["spaces, derived name"];
    const record = await backupBucketRecord({ ...c, raw: { ...c.raw, uploadsStorage: "bucket" } });
    assert.deepEqual(record, recorded["spaces, derived name"]);
  });

  after(() => {
    if (process.env.UPDATE_GOLDEN) writeFileSync(FIXTURE, JSON.stringify(recorded, null, 2) + "\n");
  });
});
