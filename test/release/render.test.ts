/**
 * provisioning/release.ts: the files it renders and their validation (shellcheck of the script
 * is in test/provisioning/shellcheck.test.ts, with every other script).
 */
import assert from "node:assert/strict";
import { RenderError } from "../../provisioning/errors";
import { type ReleaseOptions, RELEASE_PATHS, renderReleaseFiles } from "../../provisioning/release";

const VALID: ReleaseOptions = { webPorts: [3001, 3002], workerUnits: ["worker@1.service"] };

function problemsOf(opts: ReleaseOptions): string[] {
  try {
    renderReleaseFiles(opts);
  } catch (e) {
    assert.ok(e instanceof RenderError, `expected a RenderError, got ${e}`);
    return e.problems;
  }
  return [];
}

describe("release files (provisioning/release.ts)", function () {
  this.timeout(20_000);
  // The script's bytes are in the goldens (test/golden/*/files/usr/local/sbin/release); here, what
  // makes it the shipped form, and release.conf's defaults.
  it("renders the script in its shipped form and release.conf with the defaults", () => {
    const files = renderReleaseFiles(VALID);
    assert.deepEqual(files.map((f) => [f.path, f.mode, f.owner]), [
      [RELEASE_PATHS.command, "0755", "root:root"],
      [RELEASE_PATHS.config, "0644", "root:root"],
    ]);
    const lines = files[0].content.split("\n");
    assert.equal(lines[0], "#!/usr/bin/env bash");
    assert.match(lines[1], /^# Shipped without comments .*provisioning\/assets\/release\/release/);
    const comments = lines.slice(2).filter((l) => /^\s*#/.test(l) && !/^\s*# shellcheck /.test(l));
    assert.deepEqual(comments, [], "only the provenance header and shellcheck directives stay");
    assert.equal(
      files[1].content,
      [
        "# Rendered by saas-vps (provisioning/release.ts); read by /usr/local/sbin/release on every run.",
        '# KEY="value" lines; the keys are documented at the top of provisioning/release.ts.',
        'WEB_PORTS="3001 3002"',
        'WORKER_UNITS="worker@1.service"',
        'KEEP_RELEASES="5"',
        'HEALTH_TIMEOUT="60"',
        'SETTLE_SECONDS="3"',
        'MIGRATE_TIMEOUT="600"',
        'WORKER_CHECK_SECONDS="2"',
        'APP_USER="app"',
        'SHARED_DIRS="uploads"',
        'SURGE_PORT=""',
        "",
      ].join("\n"),
    );
  });

  it("writes the options it is given", () => {
    const conf = renderReleaseFiles({
      webPorts: [3001],
      workerUnits: [],
      keepReleases: 3,
      healthTimeoutSeconds: 20,
      settleSeconds: 4,
      surgePort: 3099,
      sharedDirs: ["uploads", "exports"],
    })[1].content;
    for (const line of ['WEB_PORTS="3001"', 'WORKER_UNITS=""', 'KEEP_RELEASES="3"', 'HEALTH_TIMEOUT="20"', 'SETTLE_SECONDS="4"', 'SURGE_PORT="3099"', 'SHARED_DIRS="uploads exports"']) {
      assert.ok(conf.includes(`\n${line}\n`), `missing ${line} in:\n${conf}`);
    }
  });

  it("names every bad field, what is allowed and what was given, in one error", () => {
    assert.deepEqual(
      problemsOf({
        webPorts: [3001, 3001, 80, 5432],
        workerUnits: ["worker 1"],
        keepReleases: 1,
        healthTimeoutSeconds: 0,
        settleSeconds: 2,
        surgePort: 3001,
        sharedDirs: ["../etc"],
      }),
      [
        "release: webPorts: 3001 is listed twice; each instance needs its own port",
        "release: webPorts: 80 must be an integer port from 1024 to 65535",
        "release: webPorts: 5432 is reserved (22, 25, 53, 80, 443, 5432, 6379)",
        'release: workerUnits: "worker 1" must be a template instance name like "worker@1.service"',
        "release: keepReleases must be an integer from 2 to 100; got 1",
        "release: healthTimeoutSeconds must be an integer from 1 to 3600; got 0",
        "release: settleSeconds must be an integer from 3 to 60 (longer than nginx's fail_timeout of 2s, or nginx may see every instance failed); got 2",
        'release: sharedDirs: "../etc" must be a plain directory name (letters, digits, ".", "_", "-")',
        "release: surgePort 3001 is also one of webPorts; pick a port no instance uses",
      ],
    );
    assert.deepEqual(problemsOf({ webPorts: [], workerUnits: [] }), ["release: webPorts must list at least one port (1–16); got none"]);
    assert.deepEqual(problemsOf(VALID), []);
  });
});
