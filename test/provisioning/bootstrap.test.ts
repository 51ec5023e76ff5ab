/**
 * The first-boot driver as shipped (provisioning/assets/server/bootstrap), run by bash here
 * against a bootstrap.env and step scripts of the test's own: it runs exactly the listed
 * steps in order, stamps their output as the timeline and stops at the first that fails.
 * The real steps run on a real Debian 13 box in the VM end-to-end test (test/vm/e2e.test.ts).
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadScript } from "../../provisioning/scripts";
import { run, tempDir } from "../support/tools";

interface Box {
  dir: string;
  stepDir: string;
  stateDir: string;
  env: string;
}

function box(steps: Record<string, string>, settings: Record<string, string>): Box {
  const dir = tempDir("bootstrap");
  const stepDir = join(dir, "bootstrap.d");
  const stateDir = join(dir, "state");
  mkdirSync(stepDir);
  for (const [name, body] of Object.entries(steps)) {
    writeFileSync(join(stepDir, name), `#!/usr/bin/env bash\nset -euo pipefail\n${body}\n`);
    chmodSync(join(stepDir, name), 0o755);
  }
  const env = join(dir, "bootstrap.env");
  writeFileSync(env, Object.entries({ STEP_DIR: stepDir, STATE_DIR: stateDir, ...settings }).map(([k, v]) => `${k}="${v}"`).join("\n") + "\n");
  writeFileSync(join(dir, "bootstrap"), loadScript("server/bootstrap"));
  return { dir, stepDir, stateDir, env };
}

function runBootstrap(b: Box, path = process.env.PATH) {
  return run("bash", [join(b.dir, "bootstrap")], { env: { ...process.env, PATH: path, BOOTSTRAP_ENV: b.env } });
}

describe("bootstrap: the first-boot driver", () => {
  it("runs exactly the steps bootstrap.env lists, in that order, and stamps their output as the timeline", () => {
    const b = box(
      {
        "10-first": 'echo "first says hello"',
        // Steps read their settings from the file bootstrap read (exported to them as BOOTSTRAP_ENV).
        "20-second": '. "$BOOTSTRAP_ENV"; echo "second reads ${MARK:?}"; echo "two lines"',
        "30-unlisted": 'echo "must not run"; exit 1',
      },
      { STEPS: "10-first 20-second", MARK: "from bootstrap.env" },
    );
    const r = runBootstrap(b);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => l.replace(/\[\d+s\]/, "[Ns]")), [
      "bootstrap: [Ns] first says hello",
      "bootstrap: [Ns] second reads from bootstrap.env",
      "bootstrap: [Ns] two lines",
      "bootstrap: [Ns] done",
    ]);
    assert.match(readFileSync(join(b.stateDir, "bootstrap.done"), "utf8"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/);
  });

  it("stops at the first failing step with its exit status, runs no later step and records no success", () => {
    const b = box(
      {
        "10-ok": 'echo "ok"',
        "20-broken": 'echo "about to fail"; echo "the reason" >&2; exit 3',
        "30-later": 'echo "must not run"',
      },
      { STEPS: "10-ok 20-broken 30-later" },
    );
    const r = runBootstrap(b);
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^bootstrap: \[\d+s\] about to fail$/m);
    assert.match(r.stdout, /^bootstrap: \[\d+s\] step 20-broken failed \(exit 3\)$/m);
    assert.doesNotMatch(r.stdout, /must not run|\] done$/m);
    assert.match(r.stderr, /the reason/);
    assert.ok(!existsSync(join(b.stateDir, "bootstrap.done")));
  });

  it("hands steps one list of units to enable: a later step reads what an earlier one added", () => {
    const b = box(
      {
        "10-adds": 'echo "postgresql@17-main" >> "$ENABLE_UNITS_FILE"',
        "90-reads": 'echo "to enable: $(tr "\\n" " " < "$ENABLE_UNITS_FILE")"',
      },
      { STEPS: "10-adds 90-reads" },
    );
    const r = runBootstrap(b);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^bootstrap: \[\d+s\] to enable: postgresql@17-main $/m);
  });

  // systemd is not PID 1 here, so systemctl is a recording stand-in; the real one runs this step
  // in the VM end-to-end test (bootstrap's timeline, units active after reboot, re-run enables nothing).
  it("90-enable-units: one enable for the units not enabled yet, one start, and never starts the units a push starts", () => {
    const b = box({}, {
      STEPS: "10-cluster 90-enable-units",
      ENABLE_UNITS: "fail2ban nginx saas-app.target",
      ENABLE_ONLY_UNITS: "backup.timer restore-drill.timer",
    });
    writeFileSync(join(b.stepDir, "10-cluster"), '#!/usr/bin/env bash\necho "postgresql@17-main" >> "$ENABLE_UNITS_FILE"\n');
    writeFileSync(join(b.stepDir, "90-enable-units"), loadScript("server/90-enable-units"));
    for (const step of ["10-cluster", "90-enable-units"]) chmodSync(join(b.stepDir, step), 0o755);
    const bin = join(b.dir, "bin");
    mkdirSync(bin);
    const calls = join(b.dir, "systemctl.calls");
    const enabled = join(b.dir, "enabled");
    writeFileSync(enabled, "nginx\nfail2ban\n");
    // is-enabled answers from the `enabled` list; enable adds to it; every other call is recorded.
    writeFileSync(join(bin, "systemctl"), [
      "#!/usr/bin/env bash",
      `if [ "$1" = is-enabled ]; then grep -qx "$3" ${enabled}; exit; fi`,
      `echo "$*" >> ${calls}`,
      `if [ "$1" = enable ]; then shift; printf '%s\\n' "$@" >> ${enabled}; fi`,
      "",
    ].join("\n"));
    chmodSync(join(bin, "systemctl"), 0o755);

    const first = runBootstrap(b, `${bin}:${process.env.PATH}`);
    assert.equal(first.status, 0, first.stderr + first.stdout);
    assert.deepEqual(readFileSync(calls, "utf8").trim().split("\n"), [
      "enable saas-app.target postgresql@17-main backup.timer restore-drill.timer",
      "start fail2ban nginx saas-app.target postgresql@17-main",
    ]);
    assert.match(first.stdout, /^bootstrap: \[\d+s\] enabled saas-app.target postgresql@17-main backup.timer restore-drill.timer$/m);

    // A re-run (a day-2 push of a step) enables nothing: everything is enabled by now.
    writeFileSync(calls, "");
    const again = runBootstrap(b, `${bin}:${process.env.PATH}`);
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(readFileSync(calls, "utf8").trim().split("\n"), ["start fail2ban nginx saas-app.target postgresql@17-main"]);
    assert.doesNotMatch(again.stdout, /enabled /);
  });
});
