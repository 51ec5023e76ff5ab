/**
 * The shipped watchdog script run for real on this machine (as root), in a temporary server root:
 * the rendered watchdog.env with the mounts and state paths of the test on top, real tmpfs mounts
 * filled past the threshold, real certificates from openssl, real curl and jq, and a local HTTP
 * listener as the webhook. Not here: systemd itself (this machine has no systemd as PID 1, so
 * `systemctl list-units --state=failed` cannot run: the failed-unit tests put a systemctl that
 * prints a fixed list first on PATH, and say so), and the timer (the VM proof runs the units).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_WATCHDOG_THRESHOLDS } from "../../config/watchdog";
import { renderWatchdogFiles, WATCHDOG_PATHS, type WatchdogRenderOptions } from "../../provisioning/watchdog";
import { run, startWebhook, type Received, type Webhook } from "../backup/helpers";
import { tempDir } from "../support/tools";

interface Server {
  root: string;
  stateDir: string;
  data: string;
  backupState: string;
  env: Record<string, string>;
  bin: string;
}

/** An event the watchdog posted, parsed. */
interface Posted {
  text: string;
  event: "alert" | "resolved";
  stack: string;
  server: string;
  check: string;
  value: string;
  threshold: string;
  action: string;
  time: string;
  log?: string;
}

const TMPFS_BYTES = 4 * 1024 * 1024;

describe("watchdog script, run for real (root, tmpfs mounts, openssl, curl, a local webhook)", function () {
  this.timeout(60_000);
  let hook: Webhook;
  const mounts: string[] = [];

  before(async function () {
    if (process.getuid?.() !== 0) {
      if (process.env.CI) throw new Error("the watchdog run tests mount tmpfs: they need root, and CI runs as root");
      console.log("      SKIPPED LOUDLY: mounting tmpfs needs root");
      this.skip();
    }
    hook = await startWebhook();
  });
  after(async () => {
    for (const m of mounts) execFileSync("umount", [m]);
    await hook?.close();
  });

  const mountTmpfs = (dir: string) => {
    mkdirSync(dir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_BYTES}`, "tmpfs", dir]);
    mounts.push(dir);
  };

  /**
   * A server root with the rendered files, its root and data filesystems as two small tmpfs
   * mounts, and a backup state directory. `url` is the webhook (path per test).
   */
  const install = (url: string | undefined, extra: Partial<WatchdogRenderOptions> = {}, overrides: Record<string, string> = {}): Server => {
    const root = tempDir("watchdog-root");
    const files = renderWatchdogFiles({
      stack: "prod",
      server: "app",
      // Memory and load are this machine's, shared with other work: thresholds it cannot cross.
      thresholds: { ...DEFAULT_WATCHDOG_THRESHOLDS, memoryAvailablePercent: 1, loadPercent: 2000 },
      alertWebhookUrl: url,
      dataMount: "/srv/data",
      backupStateDir: "/var/lib/saas-vps/backup",
      ...extra,
    });
    for (const f of files) {
      mkdirSync(join(root, f.path, ".."), { recursive: true });
      writeFileSync(join(root, f.path), f.content, { mode: parseInt(f.mode, 8) });
    }
    const rootFs = join(root, "rootfs");
    const data = join(root, "srv/data");
    mountTmpfs(rootFs);
    mountTmpfs(data);
    const backupState = join(root, "var/lib/saas-vps/backup");
    mkdirSync(backupState, { recursive: true });
    const envFile = join(root, WATCHDOG_PATHS.envFile);
    // The rendered env file, then this test's paths (a sourced file: later lines win).
    const paths: Record<string, string> = { ROOT_MOUNT: rootFs, DATA_MOUNT: data, BACKUP_STATE_DIR: backupState, ...overrides };
    if (extra.dataMount === undefined && "dataMount" in extra) delete paths.DATA_MOUNT;
    writeFileSync(envFile, Object.entries(paths).map(([k, v]) => `${k}='${v}'\n`).join(""), { flag: "a" });
    const bin = join(root, "test-bin");
    mkdirSync(bin);
    const stateDir = join(root, "var/lib/saas-vps/watchdog");
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const server = {
      root,
      stateDir,
      data,
      backupState,
      bin,
      env: { PATH: `${bin}:${process.env.PATH}`, LANG: "C.UTF-8", WATCHDOG_ENV_FILE: envFile, WATCHDOG_STATE_DIR: stateDir },
    };
    // Fresh backups and drill, so only what a test changes fires.
    writeFileSync(join(backupState, "last-success"), "snapshot=1\n");
    writeFileSync(join(backupState, "last-drill"), "snapshot=1\n");
    failedUnits(server, []);
    return server;
  };

  /** This machine has no systemd as PID 1: a systemctl that lists these failed units. */
  const failedUnits = (server: Server, units: string[]) => {
    const list = join(server.bin, "failed-units");
    writeFileSync(list, units.map((u) => `${u} loaded failed failed A unit\n`).join(""));
    writeFileSync(join(server.bin, "systemctl"), `#!/bin/sh\n[ "$1 $2" = "list-units --state=failed" ] || exit 90\ncat '${list}'\n`);
    chmodSync(join(server.bin, "systemctl"), 0o755);
  };

  const watchdog = (server: Server, ...args: string[]) => run(join(server.root, WATCHDOG_PATHS.command), args.length ? args : ["check"], { env: server.env });

  const posted = (path: string): Posted[] => hook.received.filter((r: Received) => r.path === path).map((r) => JSON.parse(r.body) as Posted);

  const fill = (dir: string, percent: number) => {
    writeFileSync(join(dir, "fill"), Buffer.alloc(Math.ceil((TMPFS_BYTES * percent) / 100)));
  };

  const ageFile = (path: string, hours: number) => {
    const t = Date.now() / 1000 - hours * 3600;
    utimesSync(path, t, t);
  };

  it("a data filesystem past the threshold alerts once, not on the next run, and sends resolved once freed", async () => {
    const path = "/disk";
    const server = install(`${hook.url}${path}`);
    fill(server.data, 92);

    const first = await watchdog(server);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /ALERT prod\/app: disk-data is 9\d% used \(threshold 85%\)/);
    let events = posted(path);
    assert.equal(events.length, 1, JSON.stringify(events));
    const alert = events[0];
    assert.deepEqual(Object.keys(alert), ["text", "event", "stack", "server", "check", "value", "threshold", "action", "time"]);
    assert.equal(alert.event, "alert");
    assert.equal(alert.stack, "prod");
    assert.equal(alert.server, "app");
    assert.equal(alert.check, "disk-data");
    assert.match(alert.value, /^9\d% used$/);
    assert.equal(alert.threshold, "85%");
    assert.match(alert.action, /du -xh --max-depth=2/);
    assert.match(alert.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(alert.text.startsWith(`ALERT prod/app: disk-data is ${alert.value}`), alert.text);

    const second = await watchdog(server);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(posted(path).length, 1, "a condition that persists does not alert again");
    assert.doesNotMatch(second.stderr, /ALERT/);

    rmSync(join(server.data, "fill"));
    const third = await watchdog(server);
    assert.equal(third.code, 0, third.stderr);
    events = posted(path);
    assert.equal(events.length, 2);
    assert.equal(events[1].event, "resolved");
    assert.equal(events[1].check, "disk-data");
    assert.equal(events[1].value, "0% used");
    assert.match(third.stdout, /RESOLVED prod\/app: disk-data is 0% used/);
    assert.deepEqual(readdirSync(join(server.stateDir, "firing")), []);
  });

  it("the root filesystem is checked as well, and a server without a data volume checks only it", async () => {
    const path = "/root-only";
    const server = install(`${hook.url}${path}`, { dataMount: undefined });
    fill(server.data, 95); // not this server's data volume: not checked
    fill(join(server.root, "rootfs"), 90);
    const r = await watchdog(server);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(posted(path).map((e) => e.check), ["disk-root"]);
  });

  it("a stale backup marker alerts, and so does a backup that never ran once the watchdog has waited as long", async () => {
    const path = "/backup";
    const server = install(`${hook.url}${path}`);
    ageFile(join(server.backupState, "last-success"), 30);
    ageFile(join(server.backupState, "last-drill"), 9 * 24 + 1);
    const r = await watchdog(server);
    assert.equal(r.code, 0, r.stderr);
    const events = posted(path);
    assert.deepEqual(events.map((e) => [e.check, e.value, e.threshold]), [
      ["backup", "30h since the last good backup", "26h"],
      ["restore-drill", "9 days since the last good restore drill", "8 days"],
    ]);
    assert.match(events[0].action, /sudo backup now/);

    // No backup ever: counted from the watchdog's first run on the server.
    const never = install(`${hook.url}${path}/never`);
    rmSync(join(never.backupState, "last-success"));
    const young = await watchdog(never);
    assert.equal(young.code, 0, young.stderr);
    assert.deepEqual(posted(`${path}/never`), [], "a new server is not stale yet");
    ageFile(join(never.stateDir, "since"), 27);
    await watchdog(never);
    assert.deepEqual(posted(`${path}/never`).map((e) => [e.check, e.value]), [["backup", "no good backup recorded in 27h"]]);
  });

  it("a server whose backups are not its job (no backup state given) never checks them", async () => {
    const path = "/no-backup";
    const server = install(`${hook.url}${path}`, { backupStateDir: undefined }, { BACKUP_STATE_DIR: "" });
    ageFile(join(server.backupState, "last-success"), 100);
    const r = await watchdog(server);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(posted(path), []);
  });

  it("a webhook that is down: exit 0, an error line, nothing recorded; the next run delivers the alert", async () => {
    const path = "/down";
    const server = install("http://127.0.0.1:9/down");
    fill(server.data, 92);
    // Under systemd, stderr is the journal and JOURNAL_STREAM names it: the same here, for the pipe.
    const asUnderSystemd = 'export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"; exec "$0" check';
    const down = await run("bash", ["-c", asUnderSystemd, join(server.root, WATCHDOG_PATHS.command)], { env: server.env });
    assert.equal(down.code, 0, down.stderr);
    // "<3>" makes journald store the line at priority err (sd-daemon(3)).
    assert.match(down.stderr, /^<3>watchdog: could not deliver the alert of disk-data to the alert webhook; the next run tries again$/m);
    assert.deepEqual(readdirSync(join(server.stateDir, "firing")), []);

    writeFileSync(join(server.root, WATCHDOG_PATHS.envFile), `ALERT_WEBHOOK_URL='${hook.url}${path}'\n`, { flag: "a" });
    const up = await watchdog(server);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(posted(path).map((e) => [e.event, e.check]), [["alert", "disk-data"]]);
  });

  it("without a webhook the journal line is the alert, once", async () => {
    const server = install(undefined);
    fill(server.data, 92);
    const first = await watchdog(server);
    assert.match(first.stderr, /ALERT prod\/app: disk-data/);
    const second = await watchdog(server);
    assert.doesNotMatch(second.stderr, /ALERT/);
  });

  it("a certificate with fewer days left than the threshold alerts; a renewed one resolves it", async () => {
    const path = "/certificate";
    const certificate = "/etc/saas-vps/tls/fullchain.pem";
    const server = install(`${hook.url}${path}`, { certificate }, {});
    const make = (days: number) => {
      const dir = join(server.root, "etc/saas-vps/tls");
      mkdirSync(dir, { recursive: true });
      execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", String(days), "-subj", "/CN=shop.example.org", "-keyout", join(dir, "privkey.pem"), "-out", join(dir, "fullchain.pem")], { stdio: "ignore" });
    };
    writeFileSync(join(server.root, WATCHDOG_PATHS.envFile), `CERTIFICATE='${join(server.root, certificate)}'\n`, { flag: "a" });
    make(5);
    await watchdog(server);
    make(90);
    await watchdog(server);
    const events = posted(path);
    assert.deepEqual(events.map((e) => [e.event, e.check, e.threshold]), [
      ["alert", "certificate", "14 days left"],
      ["resolved", "certificate", "14 days left"],
    ]);
    // Whole days left, rounded down: a run in the certificate's first second still sees the full count.
    assert.match(events[0].value, /^[45] days left$/);
    assert.match(events[1].value, /^(89|90) days left$/);
  });

  it("each failed unit alerts once and resolves when it is no longer failed (systemctl stand-in: no systemd here)", async () => {
    const path = "/units";
    const server = install(`${hook.url}${path}`);
    failedUnits(server, ["web@3001.service", "nginx.service"]);
    await watchdog(server);
    await watchdog(server);
    failedUnits(server, ["nginx.service"]);
    await watchdog(server);
    assert.deepEqual(posted(path).map((e) => [e.event, e.check]), [
      ["alert", "failed-unit:web@3001.service"],
      ["alert", "failed-unit:nginx.service"],
      ["resolved", "failed-unit:web@3001.service"],
    ]);
    assert.match(posted(path)[0].action, /release status/);
  });

  it("without systemctl the other checks still run, and a unit alerted before is kept, not resolved", async () => {
    const path = "/no-systemd";
    const server = install(`${hook.url}${path}`);
    failedUnits(server, ["worker@1.service"]);
    await watchdog(server);
    writeFileSync(join(server.bin, "systemctl"), "#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\nexit 1\n");
    fill(server.data, 92);
    const r = await watchdog(server);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /cannot list failed units: System has not been booted/);
    assert.deepEqual(posted(path).map((e) => [e.event, e.check]), [["alert", "failed-unit:worker@1.service"], ["alert", "disk-data"]]);
  });

  it("alert <unit> (OnFailure=) posts once with the unit's journal; the timer's check then neither repeats it nor forgets to resolve it", async () => {
    const path = "/onfailure";
    const server = install(`${hook.url}${path}`);
    const log = 'line one\n"quoted" \\back\\slash\ttab\n{"json":"in a log"}';
    writeFileSync(join(server.bin, "journal"), log);
    writeFileSync(join(server.bin, "journalctl"), `#!/bin/sh\ncat '${join(server.bin, "journal")}'\n`);
    chmodSync(join(server.bin, "journalctl"), 0o755);
    const r = await watchdog(server, "alert", "web@3001.service");
    assert.equal(r.code, 0, r.stderr);
    failedUnits(server, ["web@3001.service"]);
    await watchdog(server);
    failedUnits(server, []);
    await watchdog(server);
    const events = posted(path);
    assert.deepEqual(events.map((e) => [e.event, e.check]), [["alert", "failed-unit:web@3001.service"], ["resolved", "failed-unit:web@3001.service"]]);
    assert.equal(events[0].log, log);
    assert.equal(events[0].value, "failed (systemd gave up restarting it)");
  });

  it("the site's /health: alerts when it is not 200 (a status, or no answer in time), once; resolved once it is; asked for with the site's Host", async () => {
    // The site's stand-in on 127.0.0.1: the script sends the URL's host name to 127.0.0.1 whatever it resolves to.
    let answer: "ok" | "503" | "hang" = "ok";
    const hosts: string[] = [];
    const site = createServer((req, res) => {
      hosts.push(req.headers.host ?? "");
      if (answer === "hang") return; // never answers: the script's timeout
      if (req.url !== "/health") return void res.writeHead(404).end();
      res.writeHead(answer === "ok" ? 200 : 503, { "content-type": "application/json" }).end(answer === "ok" ? '{"status":"ok"}' : '{"status":"unavailable"}');
    });
    site.listen(0, "127.0.0.1");
    await once(site, "listening");
    const port = (site.address() as AddressInfo).port;
    try {
      const path = "/health-check";
      const releaseBin = join(tempDir("watchdog-release"), "bin");
      const server = install(`${hook.url}${path}`, { healthUrl: `http://shop.invalid:${port}/health`, healthReleasePath: releaseBin });
      const checks = () => posted(path).map((e) => [e.event, e.check, e.value, e.threshold]);
      // No release in place: no site to ask yet, even while it does not answer.
      answer = "503";
      assert.equal((await watchdog(server)).code, 0);
      assert.deepEqual(checks(), []);
      assert.deepEqual(hosts, [], "asked for /health before any release");
      mkdirSync(releaseBin);
      answer = "ok";
      assert.equal((await watchdog(server)).code, 0);
      assert.deepEqual(checks(), [], "200: nothing to say");
      assert.deepEqual([...new Set(hosts)], [`shop.invalid:${port}`], "not asked with the site's Host");

      answer = "503";
      const red = await watchdog(server);
      assert.equal(red.code, 0, red.stderr);
      await watchdog(server);
      assert.deepEqual(checks(), [["alert", "health", "HTTP 503", "none"]], "one alert while it stays down");
      const alert = posted(path)[0];
      assert.match(alert.text, /^ALERT prod\/app: health is HTTP 503 \(threshold none\)\. First: systemctl list-units 'web@\*' nginx\.service; journalctl -u 'web@\*'/);

      answer = "ok";
      await watchdog(server);
      assert.deepEqual(checks().slice(1), [["resolved", "health", "HTTP 200", "none"]]);

      answer = "hang";
      await watchdog(server);
      assert.deepEqual(checks().slice(2), [["alert", "health", "no answer within 5s", "none"]]);
      answer = "ok";
      await watchdog(server);
      site.close();
      site.closeAllConnections();
      await watchdog(server);
      assert.deepEqual(checks().slice(3), [["resolved", "health", "HTTP 200", "none"], ["alert", "health", "no answer within 5s", "none"]], "nothing listening is no answer too");
    } finally {
      site.close();
      site.closeAllConnections();
    }
  });

  it("while the release tool holds its lock, /health is left to the release: no alert, no resolved, and a firing one still counts", async () => {
    let answer = 503;
    const site = createServer((req, res) => void res.writeHead(answer).end());
    site.listen(0, "127.0.0.1");
    await once(site, "listening");
    const port = (site.address() as AddressInfo).port;
    const dir = tempDir("watchdog-release-lock");
    const lock = join(dir, ".release.lock");
    // The release tool's own way: `exec 9>"$APP_ROOT/.release.lock"; flock -n 9` (provisioning/assets/release/release).
    const hold = () => spawn("bash", ["-c", `exec 9>"$1"; flock -n 9 && echo held && exec sleep 60`, "_", lock], { stdio: ["ignore", "pipe", "ignore"] });
    const holding = async (holder: ReturnType<typeof hold>) => assert.equal(String((await once(holder.stdout!, "data"))[0]).trim(), "held");
    let holder = hold();
    try {
      const path = "/release-lock";
      const server = install(`${hook.url}${path}`, { healthUrl: `http://127.0.0.1:${port}/health`, healthReleasePath: dir, healthReleaseLock: lock, heartbeatUrl: `${hook.url}/beat` });
      const checks = () => posted(path).map((e) => [e.event, e.check, e.value]);
      await holding(holder);
      const during = await watchdog(server);
      assert.equal(during.code, 0, during.stderr);
      assert.match(during.stdout, /health: a release is running \(it holds .*\.release\.lock\): left to it/);
      assert.deepEqual(checks(), [], "a first release's start alerted");
      holder.kill("SIGKILL");
      await once(holder, "exit");
      // Released (the lock file stays, unlocked): the site is asked again.
      await watchdog(server);
      assert.deepEqual(checks(), [["alert", "health", "HTTP 503"]]);
      // Down, and a release starts: the condition neither resolves nor is forgotten (no heartbeat).
      answer = 200;
      holder = hold();
      await holding(holder);
      const firing = await watchdog(server);
      assert.match(firing.stdout, /1 condition\(s\) firing: no all-green heartbeat/);
      assert.deepEqual(checks(), [["alert", "health", "HTTP 503"]]);
      holder.kill("SIGKILL");
      await once(holder, "exit");
      await watchdog(server);
      assert.deepEqual(checks(), [["alert", "health", "HTTP 503"], ["resolved", "health", "HTTP 200"]]);
      // Taking the lock to look would make a release starting then refuse to run: the watchdog only reads /proc/locks.
      assert.doesNotMatch(readFileSync(join(server.root, WATCHDOG_PATHS.command), "utf8"), /\bflock\b/);
    } finally {
      holder.kill("SIGKILL");
      site.close();
      site.closeAllConnections();
    }
  });

  it("the all-green heartbeat goes out once a day, and not while a condition fires", async () => {
    const path = "/heartbeat";
    const server = install(`${hook.url}/alerts`, { heartbeatUrl: `${hook.url}${path}?token=x` });
    const beats = () => hook.received.filter((r) => r.path === `${path}?token=x`).length;
    await watchdog(server);
    await watchdog(server);
    assert.equal(beats(), 1, "one heartbeat per day");
    ageFile(join(server.stateDir, "heartbeat-sent"), 24);
    fill(server.data, 92);
    const red = await watchdog(server);
    assert.match(red.stdout, /1 condition\(s\) firing: no all-green heartbeat/);
    assert.equal(beats(), 1);
    rmSync(join(server.data, "fill"));
    await watchdog(server);
    assert.equal(beats(), 2);
  });

  it("status lists what is alerted; no env file is an error naming it (exit 1); a bad subcommand exits 2", async () => {
    const server = install(undefined);
    fill(server.data, 92);
    await watchdog(server);
    const status = await watchdog(server, "status");
    assert.match(status.stdout, /^disk-data: 9\d% used \(alerted \d{4}-/m);
    assert.equal((await watchdog(server, "bogus")).code, 2);
    rmSync(join(server.root, WATCHDOG_PATHS.envFile));
    const r = await watchdog(server);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read .*watchdog\.env/);
  });
});
