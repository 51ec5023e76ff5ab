/**
 * The day-2 push command, run for real by sh against a temp folder. `sudo` and `cloud-init`
 * are stand-ins on PATH here (the host is not a cloud-init machine, and tests run as root);
 * everything else — mktemp, cmp, stat, chown, chmod, mv — is the real thing.
 */
import assert from "node:assert/strict";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashFile, renderPushCommand } from "../../provisioning/push";
import { run, tempDir } from "../support/tools";

function shims(): string {
  const dir = tempDir("shims");
  writeFileSync(join(dir, "sudo"), '#!/bin/sh\nexec "$@"\n');
  writeFileSync(join(dir, "cloud-init"), "#!/bin/sh\nexit 0\n");
  for (const f of ["sudo", "cloud-init"]) chmodSync(join(dir, f), 0o755);
  return dir;
}

describe("day-2 push command", () => {
  const bin = shims();
  const pendingDir = tempDir("push-pending");
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, SAAS_VPS_PUSH_PENDING: pendingDir };
  const push = (path: string, content: string, mode: string, onChange?: string) =>
    run("sh", ["-c", renderPushCommand({ path, content, mode, onChange })], { input: content, env });

  it("writes the file atomically with its mode, and runs onChange only when the content changed", () => {
    const dir = tempDir("push");
    const target = join(dir, "etc", "app.env");
    const marker = join(dir, "reloads");
    const onChange = `echo reload >> ${marker}`;
    const first = push(target, "A=1\n", "0600", onChange);
    assert.equal(first.status, 0, first.stderr);
    assert.equal(readFileSync(target, "utf8"), "A=1\n");
    assert.equal(statSync(target).mode & 0o777, 0o600);
    const again = push(target, "A=1\n", "0600", onChange);
    assert.match(again.stdout, /unchanged/);
    const changed = push(target, "A=2\n", "0640", onChange);
    assert.equal(changed.status, 0, changed.stderr);
    assert.equal(readFileSync(target, "utf8"), "A=2\n");
    assert.equal(statSync(target).mode & 0o777, 0o640);
    assert.equal(readFileSync(marker, "utf8"), "reload\nreload\n");
  });

  it("runs a change's action again on the next push of the same file when it failed (a failed restart is not forgotten)", () => {
    const dir = tempDir("push");
    const target = join(dir, "app.env");
    const log = join(dir, "actions");
    const gate = join(dir, "restart-works");
    // The action fails until `gate` exists, as a restart fails until the config is fixed on the box.
    const onChange = `echo try >> ${log}; test -e ${gate}`;
    const first = push(target, "A=1\n", "0600", onChange);
    assert.notEqual(first.status, 0, "the action failed, so the push must fail");
    assert.equal(readFileSync(target, "utf8"), "A=1\n", "the file itself is in place");
    writeFileSync(gate, "");
    const retry = push(target, "A=1\n", "0600", onChange);
    assert.equal(retry.status, 0, retry.stderr);
    assert.match(retry.stdout, /did not take effect, so its action runs again/);
    const settled = push(target, "A=1\n", "0600", onChange);
    assert.match(settled.stdout, /^unchanged: /m);
    assert.equal(readFileSync(log, "utf8"), "try\ntry\n", "the action ran for the failed push and its retry, not after");
  });

  it("leaves the old file in place when the push fails midway", () => {
    const dir = tempDir("push");
    const target = join(dir, "site.conf");
    writeFileSync(target, "old\n");
    const failing = run("sh", ["-c", renderPushCommand({ path: target, content: "new\n", mode: "0644", owner: "no-such-user:root" })], { input: "new\n", env });
    assert.notEqual(failing.status, 0);
    assert.equal(readFileSync(target, "utf8"), "old\n");
    assert.deepEqual(run("sh", ["-c", `ls ${dir}`]).stdout.trim().split("\n"), ["site.conf"], "a temp file was left behind");
  });

  it("passes content on stdin only: the command line carries no content", () => {
    const secret = "SECRET_KEY=do-not-print-me";
    const command = renderPushCommand({ path: "/etc/saas-vps/app.env", content: secret, mode: "0600", secret: true });
    assert.ok(!command.includes("do-not-print-me"));
  });

  it("hashes path, mode, owner and content, so any of them changing re-pushes", () => {
    const base = { path: "/etc/x", content: "a", mode: "0644" };
    const hashes = new Set([
      hashFile(base),
      hashFile({ ...base, content: "b" }),
      hashFile({ ...base, mode: "0600" }),
      hashFile({ ...base, owner: "app:app" }),
      hashFile({ ...base, path: "/etc/y" }),
    ]);
    assert.equal(hashes.size, 5);
  });

  // Every deployed file is keyed by this hash: a change of its format re-pushes every file on
  // every stack at the next `pulumi up`. Expected value from coreutils:
  // printf '/etc/x\0000644\000root:root\000a' | sha256sum
  it("keeps the hash format stable: sha256 of path, mode, owner and content, NUL-separated", () => {
    assert.equal(hashFile({ path: "/etc/x", content: "a", mode: "0644" }), "cc48dc2527e02b5a333845df13a4610e544231c862637255906747165c6b2723");
  });
});
