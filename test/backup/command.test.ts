/**
 * The shipped `backup` command's own interface, without PostgreSQL or a bucket: its help (the
 * shipped copy has no comments, so help must not live in them). A failed job's alert is the
 * watchdog's (test/provisioning/watchdogRun.test.ts), no longer a subcommand here.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { BACKUP_PATHS } from "../../provisioning/backup";
import { VALID } from "./fixtures";
import { install, runInstalled, type Installed } from "./helpers";

const COMMANDS = ["now", "list", "restore", "restore-app", "tables", "drill", "help"];

describe("backup command: help", function () {
  this.timeout(30_000);
  const cleanup: string[] = [];

  after(() => {
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  const installed = (): Installed => {
    const inst = install(VALID, {});
    cleanup.push(inst.root);
    return inst;
  };

  it("--help, -h and help print every subcommand on stdout and exit 0, without the env file", async () => {
    const inst = installed();
    rmSync(inst.env.BACKUP_ENV_FILE);
    for (const arg of ["--help", "-h", "help"]) {
      const r = await runInstalled(inst, BACKUP_PATHS.command, [arg]);
      assert.equal(r.code, 0, `${arg}: ${r.stderr}`);
      for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^\\s*(usage: )?backup ${c}\\b`, "m"), `${arg}: ${c} missing from\n${r.stdout}`);
      assert.doesNotMatch(r.stdout, /\b(set -euo|local |cmd_\w+\(\))/, "help must be text, not code");
    }
  });

  it("no or an unknown subcommand: the same text on stderr, exit 2", async () => {
    const inst = installed();
    for (const args of [[], ["bogus"], ["alert", "backup.service"]]) {
      const r = await runInstalled(inst, BACKUP_PATHS.command, args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /^usage: backup now/m);
      assert.equal(r.stdout, "");
    }
  });
});
