/**
 * cli/ops/status.sh, the script `npm run ops -- status` sends to a server, run here exactly as
 * the server runs it (`bash -s`, the script on stdin, as root) against this machine's real
 * services: a scratch PostgreSQL (scram login for the app's role), Debian's nginx serving the
 * rendered site in front of a stand-in app instance, Debian's node exporter, and the server's
 * settings files as the stack renders them, in a temp folder. First all green, then each thing
 * broken for real (instance down, nginx config broken, wrong password, PostgreSQL and the
 * exporter on every address, a stale drill, a firing alert, no release, an unmounted volume):
 * every one must turn into its FAIL line.
 *
 * This machine does not run systemd as PID 1, so every unit line is FAIL here with systemctl's
 * own words (asserted below, loudly); the VM e2e test runs the script on Debian 13 and asserts
 * every line OK, and a FAIL for a stopped worker.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderNginxSite } from "../../provisioning/nginx";
import { parseStatusLines, type StatusLine } from "../../cli/lib/opsStatus";
import { startPg, type ScratchPg, runOk } from "../backup/helpers";
import { freePort, tempDir } from "../support/tools";

const SCRIPT = join(__dirname, "..", "..", "cli", "ops", "status.sh");
const EXPORTER = "/usr/bin/prometheus-node-exporter";
const RELEASE_ID = "0123456789abcdef";
const PASSWORD = "p@ss:word/1";

function runScript(env: Record<string, string>): Promise<{ code: number; lines: StatusLine[]; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Async: the stand-in instance answers nginx from this very process while the script runs.
    const child = spawn("bash", ["-s"], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, lines: parseStatusLines(stdout), stdout, stderr }));
    child.stdin.end(readFileSync(SCRIPT, "utf8"));
  });
}

function lineOf(lines: StatusLine[], check: string): StatusLine {
  const found = lines.find((l) => l.check === check);
  assert.ok(found, `no line for ${check} in:\n${lines.map((l) => `${l.level} ${l.check} ${l.detail}`).join("\n")}`);
  return found;
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await fetch(url).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers ${url}`);
}

function startExporter(address: string): ChildProcess {
  return spawn(EXPORTER, [`--web.listen-address=${address}`, "--collector.disable-defaults", "--collector.loadavg"], { stdio: "ignore" });
}

describe("ops status script on this machine's real PostgreSQL, nginx and node exporter", function () {
  this.timeout(120_000);
  let dir: string;
  let pg: ScratchPg;
  let app: Server;
  let appPort: number;
  let nginx: ChildProcess;
  let httpPort: number;
  let exporterPort: number;
  const exporters: ChildProcess[] = [];
  let env: Record<string, string>;

  before(async function () {
    if (!existsSync(EXPORTER)) {
      console.log(`      SKIPPED: ${EXPORTER} is not installed here (npm run setup installs it)`);
      this.skip();
    }
    dir = tempDir("ops-status");
    const config = join(dir, "etc");
    mkdirSync(config);

    pg = await startPg();
    await pg.psql("postgres", `create role app_web login password '${PASSWORD}'; create database app;`);
    // The app's login by password (scram), as on a server; the rest of the scratch cluster stays trust.
    const hba = join(pg.dir, "data", "pg_hba.conf");
    writeFileSync(hba, `host all app_web 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, "utf8")}`);
    await pg.psql("postgres", "select pg_reload_conf();");

    appPort = await freePort();
    app = createServer((req, res) => {
      res.setHeader("x-app-release", RELEASE_ID);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ status: "ok" }));
    });
    await new Promise<void>((r) => app.listen(appPort, "127.0.0.1", r));
    httpPort = await freePort();
    writeFileSync(join(dir, "site.conf"), renderNginxSite({ webPorts: [appPort], httpPort, listenAddress: "127.0.0.1", accessLog: join(dir, "access.log"), maxBodyMiB: 1 }));
    writeFileSync(join(dir, "nginx.conf"),
      `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log; events {} http { include /etc/nginx/mime.types; client_body_temp_path ${dir}; proxy_temp_path ${dir}; include ${dir}/site.conf; }\n`);
    nginx = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "inherit" });
    await waitFor(`http://127.0.0.1:${httpPort}/health`);

    exporterPort = await freePort();
    exporters.push(startExporter(`127.0.0.1:${exporterPort}`));
    await waitFor(`http://127.0.0.1:${exporterPort}/metrics`);

    // The server's settings as the stack renders them (keys from provisioning/: bootstrap.env,
    // release.conf, watchdog.env, web.env), pointing at this machine's services.
    writeFileSync(join(config, "bootstrap.env"), 'ENABLE_UNITS="nginx saas-app.target"\nENABLE_ONLY_UNITS=""\nPOSTGRES_CONF="/etc/saas-vps/postgresql.conf"\n');
    writeFileSync(join(config, "release.conf"), `WEB_PORTS="${appPort}"\nWORKER_UNITS="worker@1.service"\n`);
    mkdirSync(join(dir, "backup"));
    writeFileSync(join(config, "watchdog.env"),
      `STACK='test'\nSERVER='app'\nROOT_MOUNT='/'\nDATA_MOUNT='/'\nBACKUP_STATE_DIR='${dir}/backup'\nDISK_PERCENT='99'\nMEMORY_AVAILABLE_PERCENT='1'\nBACKUP_MAX_AGE_HOURS='26'\nDRILL_MAX_AGE_DAYS='8'\n`);
    writeFileSync(join(config, "web.env"),
      `DATABASE_URL=postgres://app_web:${encodeURIComponent(PASSWORD)}@127.0.0.1:${pg.port}/app?sslmode=disable&uselibpqcompat=true\n`);
    writeFileSync(join(dir, "backup", "last-success"), "");
    writeFileSync(join(dir, "backup", "last-drill"), "");
    mkdirSync(join(dir, "watchdog", "firing"), { recursive: true });
    mkdirSync(join(dir, "app", "releases", RELEASE_ID), { recursive: true });
    writeFileSync(join(dir, "app", "releases", RELEASE_ID, "manifest.json"), JSON.stringify({ id: RELEASE_ID }));
    symlinkSync(join(dir, "app", "releases", RELEASE_ID), join(dir, "app", "current"));
    env = {
      OPS_CONFIG_DIR: config, OPS_APP_ROOT: join(dir, "app"), OPS_WATCHDOG_STATE_DIR: join(dir, "watchdog"),
      OPS_PRIVATE_IPV4_FILE: join(dir, "private-ipv4"), OPS_HEALTH_URL: `http://127.0.0.1:${httpPort}/health`,
      OPS_NGINX_CONF: join(dir, "nginx.conf"), ...pg.env,
    };
  });

  after(async () => {
    for (const e of exporters) e.kill("SIGTERM");
    nginx?.kill("SIGQUIT");
    app?.close();
    await pg?.stop();
  });

  it("a healthy server: every check that runs here is OK, each saying what it saw", async () => {
    const { lines, stderr } = await runScript(env);
    assert.equal(stderr, "");
    assert.equal(lineOf(lines, "nginx -t").level, "OK");
    assert.deepEqual(lineOf(lines, "health via nginx"), { level: "OK", check: "health via nginx", detail: `http://127.0.0.1:${httpPort}/health: 200, release ${RELEASE_ID}` });
    assert.deepEqual(lineOf(lines, `listen 127.0.0.1:${httpPort}`), { level: "OK", check: `listen 127.0.0.1:${httpPort}`, detail: "nginx" });
    assert.deepEqual(lineOf(lines, `listen 127.0.0.1:${appPort}`), { level: "OK", check: `listen 127.0.0.1:${appPort}`, detail: "node: app instance" });
    assert.deepEqual(lineOf(lines, `listen 127.0.0.1:${pg.port}`), { level: "OK", check: `listen 127.0.0.1:${pg.port}`, detail: "postgres: PostgreSQL" });
    assert.deepEqual(lineOf(lines, `listen 127.0.0.1:${exporterPort}`), { level: "OK", check: `listen 127.0.0.1:${exporterPort}`, detail: "prometheus-node: metrics (node exporter)" });
    assert.match(lineOf(lines, "database as web").detail, new RegExp(`^app_web@127\\.0\\.0\\.1:${pg.port}/app: connected \\(PostgreSQL \\d+\\.\\d+`));
    assert.equal(lineOf(lines, "database as web").level, "OK");
    assert.equal(lineOf(lines, "database local").level, "OK", lineOf(lines, "database local").detail);
    assert.deepEqual(lineOf(lines, "replication"), { level: "OK", check: "replication", detail: "n/a: primary with no replica" });
    assert.deepEqual(lineOf(lines, "backup"), { level: "OK", check: "backup", detail: "last good backup 0 min ago" });
    assert.deepEqual(lineOf(lines, "restore-drill"), { level: "OK", check: "restore-drill", detail: "last good restore drill 0 min ago" });
    assert.match(lineOf(lines, "release").detail, new RegExp(`^${RELEASE_ID} \\(since \\d{4}-\\d\\d-\\d\\dT`));
    assert.deepEqual(lineOf(lines, "alerts"), { level: "OK", check: "alerts", detail: "none firing" });
    for (const check of ["disk-root", "disk-data", "memory"]) assert.equal(lineOf(lines, check).level, "OK", lineOf(lines, check).detail);
    // No systemd as PID 1 here: the unit lines are FAIL, in systemctl's words. The list is the server's.
    const units = lines.filter((l) => l.check.startsWith("unit "));
    console.log(`      NOTE: no systemd as PID 1 on this machine: ${units.length} unit lines are FAIL here ("${units[0]?.detail}"); the VM e2e checks them OK`);
    assert.deepEqual(units.map((l) => l.check), [
      `unit web@${appPort}.service`, "unit worker@1.service", "unit nginx.service", "unit saas-app.target",
      "unit watchdog.timer", "unit prometheus-node-exporter.service",
      ...units.filter((l) => l.check.startsWith("unit postgresql@")).map((l) => l.check),
    ]);
    for (const l of units) assert.match(`${l.level} ${l.detail}`, /^FAIL (systemctl: |no PostgreSQL cluster)/);
    const others = lines.filter((l) => l.level !== "OK" && !l.check.startsWith("unit "));
    // Other listeners on this shared machine are not ours to judge; ours above are OK.
    assert.deepEqual(others.filter((l) => !l.check.startsWith("listen ")), []);
  });

  it("each thing broken for real turns into its FAIL line, and the script exits 1", async () => {
    // The app instance down: nginx answers 502.
    // (nginx keeps idle upstream connections open: close them too, or close() waits for them.)
    const closed = new Promise<void>((r) => app.close(() => r()));
    app.closeAllConnections();
    await closed;
    // nginx's config broken (the running nginx keeps the old one, as a failed reload would).
    const brokenConf = join(dir, "broken.conf");
    writeFileSync(brokenConf, readFileSync(join(dir, "nginx.conf"), "utf8").replace("site.conf;", "site.conf; bogus_directive on;"));
    // The app's login with a wrong password.
    writeFileSync(join(env.OPS_CONFIG_DIR, "web.env"), `DATABASE_URL=postgres://app_web:wrong@127.0.0.1:${pg.port}/app?sslmode=disable\n`);
    // PostgreSQL and the exporter on every address.
    const bindir = (await runOk("bash", ["-c", "printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"])).trim();
    await runOk("runuser", ["-u", "postgres", "--", `${bindir}/pg_ctl`, "-D", join(pg.dir, "data"), "-l", join(pg.dir, "server.log"), "-w", "-m", "fast",
      "-o", `-p ${pg.port} -k ${pg.dir} -c listen_addresses=* -c fsync=off`, "restart"]);
    const publicExporterPort = await freePort();
    exporters.push(startExporter(`0.0.0.0:${publicExporterPort}`));
    await waitFor(`http://127.0.0.1:${publicExporterPort}/metrics`);
    // A drill 9 days old (alert after 8), an alert firing, no current release, a data volume not mounted.
    const old = Date.now() / 1000 - 9 * 86400;
    utimesSync(join(dir, "backup", "last-drill"), old, old);
    writeFileSync(join(dir, "watchdog", "firing", "disk-root"), "91% used\n");
    rmSync(join(dir, "app", "current"));
    const notMounted = join(dir, "volume");
    mkdirSync(notMounted);
    const watchdogEnv = join(env.OPS_CONFIG_DIR, "watchdog.env");
    writeFileSync(watchdogEnv, readFileSync(watchdogEnv, "utf8").replace("DATA_MOUNT='/'", `DATA_MOUNT='${notMounted}'`));

    const { code, lines } = await runScript({ ...env, OPS_NGINX_CONF: brokenConf });
    assert.equal(code, 1);
    const fail = (check: string, detail: RegExp) => {
      const l = lineOf(lines, check);
      assert.equal(l.level, "FAIL", `${check}: ${l.level} ${l.detail}`);
      assert.match(l.detail, detail);
    };
    fail("nginx -t", /unknown directive "bogus_directive"/);
    fail("health via nginx", new RegExp(`^http://127\\.0\\.0\\.1:${httpPort}/health: 502 `));
    fail("database as web", /password authentication failed for user "app_web"/);
    // ss spells "every address" 0.0.0.0, [::] or * (one dual-stack socket): each is a FAIL.
    const publicListeners = (port: number) => lines.filter((l) => new RegExp(`^listen (0\\.0\\.0\\.0|\\[::\\]|\\*):${port}$`).test(l.check));
    assert.ok(publicListeners(pg.port).length > 0 && publicListeners(publicExporterPort).length > 0, lines.map((l) => l.check).join("\n"));
    for (const l of publicListeners(pg.port)) assert.match(`${l.level} ${l.detail}`, /^FAIL PostgreSQL \(postgres\) on a public address/);
    for (const l of publicListeners(publicExporterPort)) assert.match(`${l.level} ${l.detail}`, /^FAIL metrics \(node exporter\) \(prometheus-node\) on a public address/);
    assert.equal(lineOf(lines, `listen 127.0.0.1:${exporterPort}`).level, "OK");
    fail("restore-drill", /^last good restore drill 9d 0h ago \(alert after 8d 0h\)$/);
    assert.equal(lineOf(lines, "backup").level, "OK");
    fail("alert disk-root", /^firing since \d{4}-.*: 91% used$/);
    fail("release", /^no current release/);
    fail("disk-data", new RegExp(`^${notMounted} is not mounted$`));
  });
});

describe("ops status script: the read replica as the web processes see it (DATABASE_READ_URL), on a real streaming standby", function () {
  this.timeout(120_000);
  const scratch = join(__dirname, "..", "..", "cli", "pg-scratch.sh");
  let dir: string;
  let primary: ScratchPg;
  let standbyDir: string;
  let standbyPort: number;
  let env: Record<string, string>;
  const standbySql = (sql: string) => runOk("psql", ["-X", "-q", "-At", "-h", "127.0.0.1", "-p", String(standbyPort), "-U", "postgres", "-d", "postgres", "-c", sql]);
  const readUrl = (password: string) => `postgres://app_web:${encodeURIComponent(password)}@127.0.0.1:${standbyPort}/app?sslmode=disable&uselibpqcompat=true`;
  const webEnv = (lines: string[]) => writeFileSync(join(env.OPS_CONFIG_DIR, "web.env"), lines.join("\n") + "\n");
  const readReplicaLine = async () => lineOf((await runScript(env)).lines, "read replica");

  before(async () => {
    dir = tempDir("ops-status-replica");
    mkdirSync(join(dir, "etc"));
    primary = await startPg();
    // The web login by password (scram), made on the primary before the clone: the standby has it, and the rule, too.
    await primary.psql("postgres", `create role app_web login password '${PASSWORD}'; create database app;`);
    const hba = join(primary.dir, "data", "pg_hba.conf");
    writeFileSync(hba, `host all app_web 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, "utf8")}`);
    await primary.psql("postgres", "select pg_reload_conf();");
    // Its own temp folder: pg-scratch.sh hands it to the postgres user (a folder inside root's would be out of its reach).
    standbyDir = tempDir("ops-status-standby");
    standbyPort = Number(new URL((await runOk("bash", [scratch, "replica", standbyDir, String(primary.port)])).trim().split("\n").pop()!).port);
    env = { OPS_CONFIG_DIR: join(dir, "etc"), OPS_APP_ROOT: join(dir, "app"), OPS_WATCHDOG_STATE_DIR: join(dir, "watchdog"), OPS_PRIVATE_IPV4_FILE: join(dir, "private-ipv4") };
    webEnv([`DATABASE_URL=postgres://app_web:${encodeURIComponent(PASSWORD)}@127.0.0.1:${primary.port}/app?sslmode=disable&uselibpqcompat=true`, `DATABASE_READ_URL=${readUrl(PASSWORD)}`]);
  });

  after(async () => {
    if (standbyDir) await runOk("bash", [scratch, "stop", standbyDir]).catch(() => {});
    await primary?.stop();
  });

  it("a standby streaming and caught up: OK, lag 0s, read as the web login", async () => {
    let line = await readReplicaLine();
    // Right after the clone the standby may still be connecting to the primary.
    for (let i = 0; i < 50 && line.detail.indexOf("lag 0s") < 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      line = await readReplicaLine();
    }
    assert.deepEqual(line, { level: "OK", check: "read replica", detail: `app_web@127.0.0.1:${standbyPort}/app: lag 0s (replayed all it received)` });
  });

  it("replay held back while the primary writes: the age of the last replayed transaction shows as the lag", async () => {
    await primary.psql("app", "create table marks (at timestamptz); insert into marks values (now());");
    await new Promise((r) => setTimeout(r, 500));
    await standbySql("select pg_wal_replay_pause()");
    await new Promise((r) => setTimeout(r, 2_500));
    await primary.psql("app", "insert into marks values (now());");
    try {
      let line = await readReplicaLine();
      for (let i = 0; i < 50 && /lag 0s/.test(line.detail); i++) {
        await new Promise((r) => setTimeout(r, 200));
        line = await readReplicaLine();
      }
      assert.equal(line.level, "OK", line.detail);
      const lag = Number(line.detail.match(/: lag (\d+)s$/)?.[1]);
      assert.ok(lag >= 2 && lag < 30, line.detail);
    } finally {
      await standbySql("select pg_wal_replay_resume()");
    }
  });

  it("the web login refused there: FAIL, in PostgreSQL's words", async () => {
    webEnv([`DATABASE_READ_URL=${readUrl("wrong")}`]);
    const line = await readReplicaLine();
    assert.equal(line.level, "FAIL");
    assert.match(line.detail, /^app_web@127\.0\.0\.1:\d+\/app: .*password authentication failed for user "app_web"/);
  });

  it("no DATABASE_READ_URL: n/a", async () => {
    webEnv([`DATABASE_URL=postgres://app_web:x@127.0.0.1:${primary.port}/app`]);
    assert.deepEqual(await readReplicaLine(), { level: "OK", check: "read replica", detail: "n/a: no DATABASE_READ_URL here (every read goes to the primary)" });
  });

  it("a promoted replica: FAIL, the app reads on the primary", async () => {
    webEnv([`DATABASE_READ_URL=${readUrl(PASSWORD)}`]);
    await standbySql("select pg_promote()");
    const line = await readReplicaLine();
    assert.deepEqual(line, { level: "FAIL", check: "read replica", detail: `app_web@127.0.0.1:${standbyPort}/app: not a standby (promoted?); the app reads on the primary` });
  });
});
