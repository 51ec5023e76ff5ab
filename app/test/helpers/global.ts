// Mocha global fixture: one real PostgreSQL for the whole run (cli/pg-scratch.sh: a
// throwaway cluster with its own data dir and port), migrated once with the real migrate code.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { migrateUp } from "../../src/db/migrate.js";

const pgScratch = fileURLToPath(new URL("../../../cli/pg-scratch.sh", import.meta.url));
let dir: string | undefined;
let scratch: string | undefined;

export async function mochaGlobalSetup(): Promise<void> {
  // One temp root per run for uploads, S3 data etc.; removed at the end (see tmpDir()).
  scratch = mkdtempSync(path.join(os.tmpdir(), "saas-app-test-"));
  process.env.SAAS_APP_TEST_TMP = scratch;
  if (process.env.TEST_DATABASE_URL) return; // reuse a given database (must be migratable)
  dir = mkdtempSync(path.join(os.tmpdir(), "saas-app-test-pg-"));
  const url = execFileSync("bash", [pgScratch, "start", dir], { encoding: "utf8" }).trim().split("\n").pop()!;
  process.env.TEST_DATABASE_URL = url;
  await migrateUp(url, pino({ level: "silent" }));
}

export async function mochaGlobalTeardown(): Promise<void> {
  if (dir) execFileSync("bash", [pgScratch, "stop", dir]);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}
