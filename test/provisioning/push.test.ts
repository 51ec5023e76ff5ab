/**
 * The day-2 push command, run for real by sh against a temp folder. `sudo` and `cloud-init`
 * are stand-ins on PATH here (the host is not a cloud-init machine, and tests run as root);
 * everything else — mktemp, cmp, stat, chown, chmod, mv — is the real thing.
 */
import assert from "node:assert/strict";
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashFile, planPushes, type PushAction, renderPushCommand } from "../../provisioning/push";
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

  it("fails when any command of an `a && b` action fails, not only the last (set -e alone lets the first pass)", () => {
    const dir = tempDir("push");
    const target = join(dir, "site.conf");
    const reloads = join(dir, "reloads");
    // As `nginx -t -q && systemctl reload nginx` with a config nginx refuses.
    const onChange = `false && echo reload >> ${reloads}`;
    const r = push(target, "broken\n", "0644", onChange);
    assert.notEqual(r.status, 0, "a refused config must fail the push");
    assert.equal(statSync(reloads, { throwIfNoEntry: false }), undefined);
    const retry = push(target, "broken\n", "0644", onChange);
    assert.match(retry.stdout, /did not take effect, so its action runs again/, "the action stays owed");
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

  describe("a group of files behind one action (the env files and units behind one rolling restart)", () => {
    /**
     * Three files share an action that records, each time it runs, what every file of the group
     * holds at that moment: the action must run once per change, after the whole change landed.
     */
    function group() {
      const dir = tempDir("push-group");
      const paths = ["app.env", "web.env", "web@.service"].map((n) => join(dir, n));
      const log = join(dir, "restarts");
      const gate = join(dir, "restart-works");
      writeFileSync(gate, "");
      const onChange = `test -e ${gate} && echo $(cat ${paths.join(" ")}) >> ${log}`;
      const plan = planPushes(paths.map((path) => ({ path, onChange, secret: path.endsWith(".env") })));
      const pushAll = (contents: Record<string, string>) =>
        plan.map(({ path, action }) => {
          const r = pushWith(path, contents[path], action, onChange);
          assert.equal(r.status, 0, `${path}: ${r.stdout}${r.stderr}`);
          return r.stdout;
        });
      const restarts = () => (statSafe(log) ? readFileSync(log, "utf8").trim().split("\n") : []);
      return { paths, plan, pushAll, restarts, gate, onChange };
    }
    const pushWith = (path: string, content: string, action: PushAction, onChange: string) =>
      run("sh", ["-c", renderPushCommand({ path, content, mode: "0600", onChange }, action)], { input: content, env });
    const statSafe = (p: string) => { try { return statSync(p); } catch { return undefined; } };
    const contentsOf = (paths: string[], values: string[]) => Object.fromEntries(paths.map((p, i) => [p, `${values[i]}\n`]));

    it("plans the last file without secrets as the runner, started after the rest of its group", () => {
      const { paths, plan } = group();
      assert.deepEqual(plan.map((p) => p.path), paths, "the runner is already last here");
      assert.deepEqual(plan.map((p) => p.action.kind), ["deferred", "deferred", "runs"]);
      assert.deepEqual(plan[2].after, paths.slice(0, 2));
      assert.deepEqual(plan[2].keyedBy, paths);
    });

    it("runs the action once, after every changed file of the group is in place", () => {
      const { paths, pushAll, restarts } = group();
      pushAll(contentsOf(paths, ["A1", "W1", "U1"]));
      assert.deepEqual(restarts(), ["A1 W1 U1"]);
      // A change to two files of the group, the runner's own file unchanged: one restart, on both.
      const out = pushAll(contentsOf(paths, ["A2", "W2", "U1"]));
      assert.deepEqual(restarts(), ["A1 W1 U1", "A2 W2 U1"]);
      assert.match(out[0], /^updated: .*app\.env; its action runs once with the push of .*web@\.service$/m);
      assert.match(out[2], /^unchanged: .*web@\.service$/m);
      assert.match(out[2], /running once for/);
      // Nothing changed: no restart.
      pushAll(contentsOf(paths, ["A2", "W2", "U1"]));
      assert.equal(restarts().length, 2);
    });

    it("keeps the group's action owed when it fails, and the runner's next push runs it", () => {
      const { paths, plan, pushAll, restarts, gate, onChange } = group();
      pushAll(contentsOf(paths, ["A1", "W1", "U1"]));
      rmSync(gate);
      const changed = contentsOf(paths, ["A2", "W1", "U1"]);
      for (const { path, action } of plan.slice(0, 2)) assert.equal(pushWith(path, changed[path], action, onChange).status, 0);
      const failed = pushWith(paths[2], changed[paths[2]], plan[2].action, onChange);
      assert.notEqual(failed.status, 0, "the action failed, so the runner's push must fail");
      writeFileSync(gate, "");
      // `pulumi up` again: the members are unchanged and say so; the runner runs the owed action.
      const out = pushAll(changed);
      assert.match(out[0], /^unchanged: /m);
      assert.deepEqual(restarts(), ["A1 W1 U1", "A2 W1 U1"]);
      pushAll(changed);
      assert.equal(restarts().length, 2, "the owed action was settled");
    });
  });
});
