/** The key table: the README written from it, and the rule for keys of another stage. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { README_BEGIN, README_END, renderReadmeTable } from "../../config/keyDocs";
import { DEFAULTS, KEYS, KNOWN_KEYS, SECRET_KEYS, keysOutsideStage, type KeySpec } from "../../config/keys";
import { STAGES } from "../../config/stages";

describe("config key table", () => {
  it("the README's Stack config table is the one config/writeKeyDocs.ts writes", () => {
    const readme = readFileSync(join(__dirname, "..", "..", "README.md"), "utf8");
    const from = readme.indexOf(README_BEGIN);
    const to = readme.indexOf(README_END);
    assert.ok(from >= 0 && to > from, "README.md has no stack-config-table markers");
    assert.equal(readme.slice(from, to + README_END.length), renderReadmeTable(), "README table is stale: run npx tsx config/writeKeyDocs.ts");
  });

  it("the README table lists every key once, with the table's default and secret flag", () => {
    const rows = renderReadmeTable().split("\n").filter((line) => line.startsWith("| `"));
    assert.deepEqual(rows.map((row) => /^\| `(\w+)`/.exec(row)![1]), [...KNOWN_KEYS]);
    for (const row of rows) {
      const key = /^\| `(\w+)`/.exec(row)![1];
      assert.equal(row.includes("(secret)"), SECRET_KEYS.has(key), `${key}: secret flag`);
      const fallback = (DEFAULTS as Record<string, unknown>)[key];
      if (fallback !== undefined) assert.ok(row.includes(` ${typeof fallback === "number" ? fallback : `\`${fallback}\``} |`), `${key}: default ${fallback}`);
    }
  });

  it("derives the secret keys and defaults that the stack files and docs rely on", () => {
    assert.deepEqual([...SECRET_KEYS].sort(), ["alertWebhookUrl", "backupHeartbeatUrl", "backupSecretAccessKey", "sentryDsn", "smtpUrl", "sshPrivateKey", "stripeSecretKey", "stripeWebhookSecret", "uploadsSecretAccessKey", "watchdogHeartbeatUrl"]);
    assert.deepEqual(DEFAULTS, {
      stage: "mvp",
      plainHttp: false,
      appServers: 2,
      readReplica: false,
      webInstances: 2,
      workerInstances: 1,
      backupSchedule: "*-*-* 03:00:00 UTC",
      metricsPortOffset: 10000,
      backupRetentionDays: 14,
      restoreDrillSchedule: "Sun *-*-* 04:30:00 UTC",
      privateNetworkCidr: "10.20.0.0/16",
      watchdogDiskPercent: 85,
      watchdogMemoryPercent: 10,
      watchdogLoadPercent: 200,
      watchdogCertificateDays: 14,
      watchdogBackupMaxAgeHours: 26,
      watchdogDrillMaxAgeDays: 8,
      monitoring: "digitalocean",
      alertSlackChannel: "#alerts",
      alertCpuPercent: 90,
      alertMemoryPercent: 90,
      alertDiskPercent: 85,
      alertCertificateDays: 14,
      appDir: "app",
      appBuildCommand: "npm run --silent build",
    });
  });

  it("every default passes its own key's parser", () => {
    for (const key of KNOWN_KEYS) {
      const spec = KEYS[key] as KeySpec<unknown>;
      if (spec.default === undefined) continue;
      assert.deepEqual(spec.parse(undefined), { ok: true, value: spec.default }, key);
    }
  });

  it("every key applies to every stage but the split stages' own (servers per role, network, database), scaled's own (app servers, the site's address, replica) and the move from mvp's", () => {
    const splitOnly = ["webServerType", "workerServerType", "dbServerType", "privateNetworkCidr", "privateNetworkZone", "databaseMode", "managedDatabaseSize"];
    const only: Record<string, readonly string[]> = { mvpDatabase: ["separated"], appServers: ["scaled"], siteAddress: ["scaled"], readReplica: ["scaled"], replicaServerType: ["scaled"], managedReplicaSize: ["scaled"], cacheServerType: ["scaled"] };
    for (const key of KNOWN_KEYS) {
      assert.deepEqual((KEYS[key] as KeySpec<unknown>).stages, only[key] ?? (splitOnly.includes(key) ? ["separated", "scaled"] : STAGES), key);
    }
  });

  it("refuses a key set in a stage it does not apply to, naming the stages that take it", () => {
    const table = { dbServerType: { stages: ["separated", "scaled"] as const }, replicaCount: { stages: ["scaled"] as const }, webInstances: { stages: STAGES } };
    const raw = { dbServerType: "cx33", replicaCount: "2", webInstances: "2", unknownKey: "x" };
    assert.deepEqual(keysOutsideStage(raw, "mvp", table), [
      ["dbServerType", "is for stages separated, scaled only; this stack's stage is mvp (remove the key or change saas-vps:stage)"],
      ["replicaCount", "is for stage scaled only; this stack's stage is mvp (remove the key or change saas-vps:stage)"],
    ]);
    assert.deepEqual(keysOutsideStage(raw, "scaled", table), []);
  });
});
