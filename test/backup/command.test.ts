/**
 * The shipped `backup` command's own interface, without PostgreSQL or a bucket: its help (the
 * shipped copy has no comments, so help must not live in them) and `backup alert <unit>`, the
 * OnFailure= notifier, whose JSON must stay valid whatever the unit name and the journal hold.
 */
import assert from "node:assert/strict";
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BACKUP_PATHS } from "../../provisioning/backup";
import { tempDir } from "../support/tools";
import { VALID } from "./fixtures";
import { install, runInstalled, startWebhook, type Installed, type Webhook } from "./helpers";

const COMMANDS = ["now", "list", "restore", "restore-app", "tables", "drill", "alert", "help"];

describe("backup command: help and alert", function () {
  this.timeout(30_000);
  let hook: Webhook;
  const cleanup: string[] = [];

  before(async () => {
    hook = await startWebhook();
  });
  after(async () => {
    await hook?.close();
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  const installed = (alertWebhookUrl?: string, env: Record<string, string> = {}): Installed => {
    const inst = install({ ...VALID, alertWebhookUrl }, env);
    cleanup.push(inst.root);
    return inst;
  };

  /**
   * A journalctl that prints `lines` (there is no journal of the failed unit on this machine),
   * ahead of the real tools on PATH.
   */
  const journalWith = (lines: string): Record<string, string> => {
    const bin = tempDir("backup-journal");
    cleanup.push(bin);
    writeFileSync(join(bin, "lines"), lines);
    writeFileSync(join(bin, "journalctl"), `#!/bin/sh\ncat '${join(bin, "lines")}'\n`);
    chmodSync(join(bin, "journalctl"), 0o755);
    return { PATH: `${bin}:${process.env.PATH}` };
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
    for (const args of [[], ["bogus"], ["alert"]]) {
      const r = await runInstalled(inst, BACKUP_PATHS.command, args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /^usage: backup now/m);
      assert.equal(r.stdout, "");
    }
  });

  it("alert posts valid JSON whatever the unit name and its log lines hold", async () => {
    const inst = installed(`${hook.url}/alert?token=abc`);
    const unit = 'we"ird\\unit\nname\t{"x":1}';
    const log = 'line one\n"quoted" \\back\\slash\ttab \u0001 control\nüñí €\n{"json":"in a log"}';
    const r = await runInstalled(inst, BACKUP_PATHS.command, ["alert", unit], journalWith(log));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stderr.includes(`backup: ALERT: ${unit} failed on `), r.stderr);
    const posted = hook.received.filter((h) => h.path === "/alert?token=abc");
    assert.equal(posted.length, 1);
    assert.equal(posted[0].method, "POST");
    assert.equal(posted[0].headers["content-type"], "application/json");
    const body = JSON.parse(posted[0].body);
    assert.deepEqual(Object.keys(body), ["text", "event", "unit", "host", "time", "log"]);
    assert.equal(body.unit, unit);
    assert.equal(body.log, log.replace(/\n$/, ""));
    assert.equal(body.event, "backup_failure");
    assert.ok(body.text.startsWith(`ALERT: ${unit} failed on ${body.host} at ${body.time};`), body.text);
    assert.match(body.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it("alert without a webhook: the journal line is the only alert, exit 0; an unreachable webhook exits 1", async () => {
    const none = await runInstalled(installed(), BACKUP_PATHS.command, ["alert", "backup.service"], journalWith(""));
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stderr, /ALERT: backup\.service failed/);
    assert.match(none.stderr, /no alert webhook configured: this journal line is the only alert/);

    const dead = installed("http://127.0.0.1:9/alert");
    const r = await runInstalled(dead, BACKUP_PATHS.command, ["alert", "backup.service"], journalWith(""));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /could not deliver the alert to the webhook/);
  });

  it("alert without a readable env file says so and exits 1", async () => {
    const inst = installed();
    rmSync(inst.env.BACKUP_ENV_FILE);
    const r = await runInstalled(inst, BACKUP_PATHS.command, ["alert", "backup.service"], journalWith(""));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ALERT: backup\.service failed/);
    assert.match(r.stderr, /cannot read .*backup\.env: no webhook alert sent/);
  });
});
