/**
 * provisioning/release.ts: the files it renders and their validation (shellcheck of the script
 * is in test/provisioning/shellcheck.test.ts, with every other script).
 */
import assert from "node:assert/strict";
import { RenderError } from "../../provisioning/errors";
import { type ReleaseOptions, RELEASE_PATHS, renderMigrateUnit, renderReleaseFiles } from "../../provisioning/release";
import { APP_SANDBOX } from "../../provisioning/unit";
import { runsMigrations } from "../../plan/database";

const VALID: ReleaseOptions = { webPorts: [3001, 3002], workerUnits: ["worker@1.service"], migrate: true };

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
  it("migrations run in migrate@<id>.service: as the app user, in the app processes' sandbox, with the env files systemd reads", () => {
    const unit = renderMigrateUnit({ ...VALID, migrateEnvFile: "/etc/saas-vps/migrate.env", migrateTimeoutSeconds: 900 });
    for (const line of [
      "Type=oneshot", "User=app", "Group=app", "WorkingDirectory=/srv/app/releases/%i", "ExecStart=/srv/app/releases/%i/bin/migrate",
      "EnvironmentFile=/etc/saas-vps/app.env\nEnvironmentFile=/etc/saas-vps/migrate.env", "TimeoutStartSec=900",
    ]) assert.ok(unit.includes(`\n${line}\n`), `missing ${line}`);
    for (const [key, value] of APP_SANDBOX) assert.ok(unit.includes(`\n${key}=${value}\n`), `missing ${key}=${value} of the app sandbox`);
    assert.doesNotMatch(unit, /^Condition/m, "a release without bin/migrate must fail, not skip its migrations");
    assert.equal(renderReleaseFiles({ ...VALID, migrate: false }).some((f) => f.path === RELEASE_PATHS.migrateUnit), false, "a server that never migrates gets no migrate unit");
  });

  // The script's bytes are in the goldens (test/golden/*/files/usr/local/sbin/release); here, what
  // makes it the shipped form, and release.conf's defaults.
  it("renders the script in its shipped form and release.conf with the defaults", () => {
    const files = renderReleaseFiles(VALID);
    assert.deepEqual(files.map((f) => [f.path, f.mode, f.owner]), [
      [RELEASE_PATHS.command, "0755", "root:root"],
      [RELEASE_PATHS.config, "0644", "root:root"],
      [RELEASE_PATHS.migrateUnit, "0644", undefined],
    ]);
    const lines = files[0].content.split("\n");
    // Not through env: the script runs as root and takes nothing from PATH, not even its shell.
    assert.equal(lines[0], "#!/bin/bash");
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
        'MIGRATE="yes"',
        'MIGRATE_ENV_FILE=""',
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
      migrate: true,
      migrateEnvFile: "/etc/saas-vps/migrate.env",
      keepReleases: 3,
      healthTimeoutSeconds: 20,
      settleSeconds: 4,
      surgePort: 3099,
      sharedDirs: ["uploads", "exports"],
    })[1].content;
    for (const line of ['WEB_PORTS="3001"', 'WORKER_UNITS=""', 'MIGRATE="yes"', 'MIGRATE_ENV_FILE="/etc/saas-vps/migrate.env"', 'KEEP_RELEASES="3"', 'HEALTH_TIMEOUT="20"', 'SETTLE_SECONDS="4"', 'SURGE_PORT="3099"', 'SHARED_DIRS="uploads exports"']) {
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
        migrate: true,
      }),
      [
        "release: webPorts: 3001 is listed twice; each instance needs its own port",
        "release: webPorts: 80 must be an integer port from 1024 to 65535",
        "release: webPorts: 5432 is reserved (22, 25, 53, 80, 443, 5432, 6379, 8081, 8082)",
        'release: workerUnits: "worker 1" must be a template instance name like "worker@1.service"',
        "release: keepReleases must be an integer from 2 to 100; got 1",
        "release: healthTimeoutSeconds must be an integer from 1 to 3600; got 0",
        "release: settleSeconds must be an integer from 3 to 60 (longer than nginx's fail_timeout of 2s, or nginx may see every instance failed); got 2",
        'release: sharedDirs: "../etc" must be a plain directory name (letters, digits, ".", "_", "-")',
        "release: surgePort 3001 is also one of webPorts; pick a port no instance uses",
      ],
    );
    assert.deepEqual(problemsOf({ webPorts: [], workerUnits: [], migrate: false }), [
      "release: webPorts and workerUnits are both empty; a server that runs the app needs a web instance or a worker",
    ]);
    assert.deepEqual(problemsOf(VALID), []);
  });

  it("a worker-only server: no web ports, never migrates; a surge port or a migration credential there is an error", () => {
    const workerOnly: ReleaseOptions = { webPorts: [], workerUnits: ["worker@1.service", "worker@2.service"], migrate: false };
    assert.deepEqual(problemsOf(workerOnly), []);
    const conf = renderReleaseFiles(workerOnly)[1].content;
    for (const line of ['WEB_PORTS=""', 'WORKER_UNITS="worker@1.service worker@2.service"', 'MIGRATE="no"', 'MIGRATE_ENV_FILE=""', 'SURGE_PORT=""']) {
      assert.ok(conf.includes(`\n${line}\n`), `missing ${line} in:\n${conf}`);
    }
    assert.deepEqual(problemsOf({ ...workerOnly, surgePort: 3100, migrateEnvFile: "/etc/saas-vps/migrate.env" }), [
      "release: migrateEnvFile is set (/etc/saas-vps/migrate.env) on a server that does not migrate; only the server that runs migrations reads it",
      "release: surgePort 3100 is set on a server without web instances; it stands in for a web instance",
    ]);
    assert.deepEqual(problemsOf({ ...VALID, migrateEnvFile: "etc/migrate.env" }), [
      'release: migrateEnvFile must be an absolute path (letters, digits, "_", ".", "-", "/"); got "etc/migrate.env"',
    ]);
    // 16 worker@ and 8 worker-critical@ are the most a server has.
    const most = [...Array.from({ length: 16 }, (_, i) => `worker@${i + 1}.service`), ...Array.from({ length: 8 }, (_, i) => `worker-critical@${101 + i}.service`)];
    assert.deepEqual(problemsOf({ ...VALID, workerUnits: most }), []);
    assert.deepEqual(problemsOf({ ...VALID, workerUnits: [...most, "worker@17.service"] }), [
      "release: workerUnits may list at most 24 units; got 25",
    ]);
  });

  it("migrations run on the server with web instances and on no other", () => {
    assert.equal(runsMigrations({ roles: ["web"] }), true);
    assert.equal(runsMigrations({ roles: ["web", "worker", "db"] }), true);
    assert.equal(runsMigrations({ roles: ["worker"] }), false);
  });
});
