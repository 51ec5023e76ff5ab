/**
 * The watchdog as rendered: what each server's roles make it check, its thresholds from the stack
 * keys (and the errors for bad ones), the OnFailure= wiring of the app's units, the units'
 * sandbox against the backup jobs' (systemd-analyze security), and what it adds to user-data.
 * The script itself runs for real in watchdogRun.test.ts.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseStackConfig, type StackConfig } from "../../config/config";
import { DEFAULT_WATCHDOG_THRESHOLDS, WATCHDOG_THRESHOLDS } from "../../config/watchdog";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { renderBackupFiles } from "../../provisioning/backup";
import { RenderError } from "../../provisioning/errors";
import { renderServer, type RenderedServer } from "../../provisioning/server";
import { renderWatchdogFiles, WATCHDOG_PATHS } from "../../provisioning/watchdog";
import { VALID } from "../backup/fixtures";
import { minimalRaw, separatedRaw, withDomain } from "../support/fixtures";
import { run, tempDir } from "../support/tools";
import { configProblems } from "../support/configProblems";

function renderAll(raw: Record<string, string>): Map<string, RenderedServer> {
  const config = parseStackConfig(raw);
  const plan = planStack(config);
  return new Map(plan.servers.map((s) => [s.name, renderServer(buildServerInput(config, s, { machine: config.provider, ...PLACEHOLDER_CONTEXT, stack: "shop" }, plan))]));
}

/** watchdog.env as a map (values single-quoted, no quotes inside in these cases). */
function watchdogEnv(server: RenderedServer): Map<string, string> {
  const env = server.files.find((f) => f.path === WATCHDOG_PATHS.envFile);
  assert.ok(env, "no watchdog.env");
  return new Map(env.content.split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 2, -1)]));
}


describe("watchdog: rendered per server", () => {
  it("checks the data volume and the backups where the database is, the certificate and /health where the site is, and only disk, memory, load and units elsewhere", () => {
    const mvp = watchdogEnv(renderAll(withDomain(minimalRaw("hetzner"))).get("app")!);
    assert.equal(mvp.get("STACK"), "shop");
    assert.equal(mvp.get("SERVER"), "app");
    assert.equal(mvp.get("ROOT_MOUNT"), "/");
    assert.equal(mvp.get("DATA_MOUNT"), "/srv/data");
    assert.equal(mvp.get("CERTIFICATE"), "/etc/saas-vps/tls/fullchain.pem");
    assert.equal(mvp.get("BACKUP_STATE_DIR"), "/var/lib/saas-vps/backup");
    // With a domain the site is the TLS one (plain HTTP only redirects), asked for by its name.
    assert.equal(mvp.get("HEALTH_URL"), `https://${withDomain(minimalRaw("hetzner")).domain}/health`);
    // Health waits for a release in place, and leaves a running release to watch it: the lock the
    // release tool takes, by its own default ("$APP_ROOT/.release.lock", APP_ROOT /srv/app).
    assert.equal(mvp.get("HEALTH_RELEASE_PATH"), "/srv/app/current/bin");
    assert.equal(mvp.get("HEALTH_RELEASE_LOCK"), "/srv/app/.release.lock");
    const releaseTool = readFileSync(join(__dirname, "../../provisioning/assets/release/release"), "utf8");
    assert.match(releaseTool, /^readonly APP_ROOT=\$\{APP_ROOT:-\/srv\/app\}$/m);
    assert.match(releaseTool, /^ {2}exec 9>"\$APP_ROOT\/\.release\.lock"$/m);

    const split = renderAll({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner") });
    const has = (name: string) => {
      const env = watchdogEnv(split.get(name)!);
      return ["DATA_MOUNT", "CERTIFICATE", "BACKUP_STATE_DIR", "HEALTH_URL", "HEALTH_RELEASE_LOCK"].filter((k) => env.has(k));
    };
    assert.deepEqual(has("app"), ["HEALTH_URL", "HEALTH_RELEASE_LOCK"]);
    assert.equal(watchdogEnv(split.get("app")!).get("HEALTH_URL"), "http://127.0.0.1/health", "no domain: the plain HTTP site");
    assert.deepEqual(has("worker"), []);
    assert.deepEqual(has("db"), ["DATA_MOUNT", "BACKUP_STATE_DIR"]);

    // A managed database is backed up from the app server, which has no data volume.
    const managed = renderAll({ ...minimalRaw("digitalocean"), ...separatedRaw("digitalocean"), databaseMode: "managed" });
    assert.deepEqual([...managed.keys()], ["app", "worker"]);
    const app = watchdogEnv(managed.get("app")!);
    assert.ok(app.has("BACKUP_STATE_DIR") && !app.has("DATA_MOUNT"));

    // While moving from mvp, the new db server's backups are on standby: their age is not its concern.
    const moving = renderAll({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner"), mvpDatabase: "live" });
    assert.ok(!watchdogEnv(moving.get("db")!).has("BACKUP_STATE_DIR"));
    assert.ok(watchdogEnv(moving.get("app")!).has("BACKUP_STATE_DIR"));
  });

  it("the thresholds are the stack keys' (defaults when unset); the webhook and heartbeat URLs only in the root-only env file", () => {
    const defaults = watchdogEnv(renderAll(minimalRaw("hetzner")).get("app")!);
    assert.equal(defaults.get("DISK_PERCENT"), "85");
    assert.equal(defaults.get("MEMORY_AVAILABLE_PERCENT"), "10");
    assert.equal(defaults.get("LOAD_PERCENT"), "200");
    assert.equal(defaults.get("CERTIFICATE_DAYS"), "14");
    assert.equal(defaults.get("BACKUP_MAX_AGE_HOURS"), "26");
    assert.equal(defaults.get("DRILL_MAX_AGE_DAYS"), "8");
    assert.equal(defaults.get("ALERT_WEBHOOK_URL"), "");

    const raw = {
      ...minimalRaw("hetzner"),
      watchdogDiskPercent: "70",
      watchdogMemoryPercent: "5",
      watchdogLoadPercent: "400",
      watchdogCertificateDays: "7",
      watchdogBackupMaxAgeHours: "170",
      watchdogDrillMaxAgeDays: "15",
      alertWebhookUrl: "https://hooks.example.org/T0/secret-token",
      watchdogHeartbeatUrl: "https://hc.example.org/ping/watchdog-token",
    };
    const server = renderAll(raw).get("app")!;
    const env = watchdogEnv(server);
    assert.deepEqual(
      ["DISK_PERCENT", "MEMORY_AVAILABLE_PERCENT", "LOAD_PERCENT", "CERTIFICATE_DAYS", "BACKUP_MAX_AGE_HOURS", "DRILL_MAX_AGE_DAYS"].map((k) => env.get(k)),
      ["70", "5", "400", "7", "170", "15"],
    );
    const file = server.files.find((f) => f.path === WATCHDOG_PATHS.envFile)!;
    assert.equal(file.mode, "0600");
    assert.equal(file.secret, true);
    for (const secret of ["secret-token", "watchdog-token"]) {
      assert.deepEqual(server.files.filter((f) => f.content.includes(secret)).map((f) => f.path), [WATCHDOG_PATHS.envFile]);
      assert.ok(!server.userData.includes(secret), "a secret URL in the user-data");
    }
  });

  it("a threshold out of range is refused naming the key, the range and the value; so is a heartbeat URL that is not one or is the backup's", () => {
    const problems = configProblems({
      ...minimalRaw("hetzner"),
      watchdogDiskPercent: "100",
      watchdogMemoryPercent: "0",
      watchdogLoadPercent: "1.5",
      watchdogCertificateDays: "30",
      watchdogBackupMaxAgeHours: "1",
      watchdogDrillMaxAgeDays: "ninety",
      watchdogHeartbeatUrl: "hc.example.org/ping",
    });
    assert.deepEqual(problems, [
      'saas-vps:watchdogHeartbeatUrl: must be an http(s) URL to ping once a day while every watchdog check is green; got a value that is not one',
      'saas-vps:watchdogDiskPercent: must be a whole number from 50 to 99; got "100"',
      'saas-vps:watchdogMemoryPercent: must be a whole number from 1 to 50; got "0"',
      'saas-vps:watchdogLoadPercent: must be a whole number from 50 to 2000; got "1.5"',
      'saas-vps:watchdogCertificateDays: must be a whole number from 1 to 28; got "30"',
      'saas-vps:watchdogBackupMaxAgeHours: must be a whole number from 2 to 744; got "1"',
      'saas-vps:watchdogDrillMaxAgeDays: must be a whole number from 1 to 90; got "ninety"',
    ]);
    const same = "https://hc.example.org/ping/one";
    assert.deepEqual(configProblems({ ...minimalRaw("hetzner"), backupHeartbeatUrl: same, watchdogHeartbeatUrl: same }), [
      "saas-vps:watchdogHeartbeatUrl: is the same URL as saas-vps:backupHeartbeatUrl; each nightly backup would then report the watchdog's checks green: give each its own dead-man's check",
    ]);
  });

  it("the renderer refuses what the parser would: every bad threshold at once, with its key and range", () => {
    const opts = { stack: "shop", server: "app", thresholds: { ...DEFAULT_WATCHDOG_THRESHOLDS, diskPercent: 100, drillMaxAgeDays: 0.5 } };
    assert.throws(() => renderWatchdogFiles(opts), (e: unknown) => {
      assert.ok(e instanceof RenderError);
      assert.deepEqual(e.problems, [
        "saas-vps:watchdogDiskPercent: must be a whole number from 50 to 99 (%); got 100",
        "saas-vps:watchdogDrillMaxAgeDays: must be a whole number from 1 to 90 (days); got 0.5",
      ]);
      return true;
    });
    // Every key's own bounds are accepted by both.
    for (const [name, spec] of Object.entries(WATCHDOG_THRESHOLDS)) {
      for (const value of [spec.min, spec.max]) {
        const config: StackConfig = parseStackConfig({ ...minimalRaw("hetzner"), [spec.key]: String(value) });
        assert.equal((config as unknown as Record<string, number>)[spec.key], value);
        assert.doesNotThrow(() => renderWatchdogFiles({ stack: "shop", server: "app", thresholds: { ...DEFAULT_WATCHDOG_THRESHOLDS, [name]: value } }));
      }
    }
  });

  it("the app's processes alert through alert@ once systemd gives up restarting them (start limit, then failed)", () => {
    const server = renderAll(minimalRaw("hetzner")).get("app")!;
    for (const unit of ["web@.service", "worker@.service"]) {
      const content = server.files.find((f) => f.path === `/etc/systemd/system/${unit}`)!.content;
      assert.match(content, /^Restart=always$/m, unit);
      // Without it, systemd 254+ passes through "failed" (and fires OnFailure=) before every restart.
      assert.match(content, /^RestartMode=direct$/m, unit);
      assert.match(content, /^StartLimitBurst=\d+$/m, unit);
      assert.match(content, /^OnFailure=alert@%n\.service$/m, unit);
    }
    assert.match(server.files.find((f) => f.path === "/etc/systemd/system/alert@.service")!.content, /^ExecStart=\/usr\/local\/sbin\/watchdog alert %i$/m);
  });

  it("its services are sandboxed at least as tightly as the backup jobs (systemd-analyze security)", () => {
    const dir = tempDir("watchdog-security");
    const exposure = (name: string, content: string) => {
      writeFileSync(join(dir, name), content);
      const result = run("systemd-analyze", ["security", "--offline=true", join(dir, name)]);
      const match = /Overall exposure level for \S+: ([\d.]+)/.exec(result.stdout);
      assert.ok(match, `${name}: ${result.stdout}${result.stderr}`);
      return Number(match[1]);
    };
    const backup = exposure("backup.service", renderBackupFiles(VALID).find((f) => f.path.endsWith("/backup.service"))!.content);
    const files = renderWatchdogFiles({ stack: "shop", server: "app", thresholds: DEFAULT_WATCHDOG_THRESHOLDS });
    for (const [unit, instance] of [["watchdog.service", "watchdog.service"], ["alert@.service", "alert@web@3001.service.service"]]) {
      const score = exposure(instance, files.find((f) => f.path.endsWith(`/${unit}`))!.content);
      console.log(`      ${instance}: exposure ${score} (backup.service: ${backup})`);
      assert.ok(score <= backup, `${instance}: exposure ${score} > backup.service's ${backup}`);
    }
  });
});
