/**
 * The release script's behaviour beyond the happy roll: layout on disk, migrations, failure
 * paths, rollback, pruning, the lock, configuration errors. Fast: the instances are the
 * stand-in app (fixtures/standin, same contract as the real one) run through the service shim
 * (no systemd as PID 1 here; see harness.ts), no nginx, SETTLE_SECONDS=0. The zero-downtime
 * proof with real nginx, PostgreSQL and the real app is rolling.test.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { renderReleaseConf } from "../../provisioning/release";
import { FakeServer, STANDIN_APP, fakeId, freePorts, packArtifact, sleep, tempDir } from "./harness";

const BROKEN_WEB = "#!/bin/sh\necho 'web: cannot start' >&2\nexit 1\n";
const BROKEN_MIGRATE = "#!/bin/sh\necho 'migrate: relation already exists' >&2\nexit 1\n";

describe("@real release script: layout, failures, rollback, pruning, lock (stand-in app)", function () {
  this.timeout(60_000);
  let dir: string;
  let server: FakeServer;
  let migrateLog: string;
  const servers: FakeServer[] = [];
  let serial = 0;

  async function newServer(conf: string[] = [], webCount = 2): Promise<FakeServer> {
    const sdir = path.join(dir, `server-${serial++}`);
    migrateLog = path.join(sdir, "migrate.log");
    const s = new FakeServer(sdir, {
      webPorts: await freePorts(webCount),
      workerUnits: ["worker@1"],
      env: { DATABASE_URL: "postgres://unused@127.0.0.1/x", SECRET_KEY: "s".repeat(40), APP_URL: "http://example.test", MIGRATE_LOG: migrateLog },
      conf: ["SETTLE_SECONDS=0", "WORKER_CHECK_SECONDS=1", "HEALTH_TIMEOUT=5", ...conf],
    });
    servers.push(s);
    return s;
  }
  const artifact = (id: string, overrides: Record<string, string> = {}) => packArtifact(STANDIN_APP, id, dir, overrides);
  const migrations = () => (fs.existsSync(migrateLog) ? fs.readFileSync(migrateLog, "utf8").trim().split("\n") : []);
  const calls = (s: FakeServer) => fs.readFileSync(path.join(s.shimState, "calls.txt"), "utf8").trim().split("\n").map((l) => l.split(" ").slice(1).join(" "));

  before(() => {
    dir = tempDir("release-script");
  });
  beforeEach(async () => {
    server = await newServer();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.log(server.logs());
    for (const s of servers.splice(0)) s.stopAll();
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("unpacks, links shared state, migrates once, switches current and starts every instance", async () => {
    const a = fakeId("a");
    const r = await server.run([artifact(a)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const rel = path.join(server.appRoot, "releases", a);
    assert.equal(fs.readlinkSync(path.join(server.appRoot, "current")), `releases/${a}`);
    assert.equal(fs.readlinkSync(path.join(rel, ".env")), server.envFile);
    assert.equal(fs.readlinkSync(path.join(rel, "uploads")), path.join(server.appRoot, "shared/uploads"));
    assert.ok(fs.statSync(path.join(server.appRoot, "shared/uploads")).isDirectory());
    assert.deepEqual(migrations(), [a]);
    const status = await server.run(["status"]);
    assert.equal(status.code, 0, status.stdout);
    assert.equal(status.stdout.match(/healthy +release /g)?.length, 2, status.stdout);
    assert.match(status.stdout, /worker@1\.service +active/);
  });

  it("is a no-op when the same release is already current and healthy", async () => {
    const a = fakeId("a");
    const art = artifact(a);
    assert.equal((await server.run([art])).code, 0);
    const before = calls(server).length;
    const again = await server.run([art]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /already current and every instance is healthy/);
    assert.deepEqual(migrations(), [a], "no second migration");
    assert.deepEqual(calls(server).slice(before).filter((c) => !c.startsWith("is-active")), [], "no instance restarted");
  });

  it("stops on a failing migration: exit 1 with the reason, nothing restarted, old release still current", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const before = calls(server).length;
    const d = fakeId("d");
    const r = await server.run([artifact(d, { "bin/migrate": BROKEN_MIGRATE })]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`FAILED: migrations of release ${d} failed`));
    assert.equal(server.currentId(), a);
    assert.deepEqual(calls(server).slice(before).filter((c) => !c.startsWith("is-active")), []);
  });

  it("fails fast when a new instance exits, rolls it back, and the old release serves on every port", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const c = fakeId("c");
    const r = await server.run([artifact(c, { "bin/web": BROKEN_WEB })]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /FAILED: web@\d+\.service exited before \/health answered/);
    assert.match(r.stderr, new RegExp(`rolled back; ${a} is serving`));
    assert.ok(r.ms < 5000, `should not wait for HEALTH_TIMEOUT (5 s) when the process is gone; took ${r.ms} ms`);
    assert.equal(server.currentId(), a);
    const status = await server.run(["status"]);
    assert.equal(status.code, 0, status.stdout);
    assert.equal(status.stdout.match(new RegExp(`healthy +release ${a}`, "g"))?.length, 2, status.stdout);
    assert.match(status.stdout, new RegExp(`${c}  \\(unpacked, never went live\\)`));
  });

  it("rolls back on SIGTERM mid-roll (e.g. the SSH session dies) and the old release serves", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const b = fakeId("b");
    const art = artifact(b);
    const callsBefore = calls(server).length;
    const running = server.start([art]);
    // Wait until the roll has started an instance of B, then interrupt the script.
    const deadline = Date.now() + 10_000;
    while (!calls(server).slice(callsBefore).some((l) => l.startsWith("start web@")) && Date.now() < deadline) await sleep(20);
    process.kill(running.pid, "SIGTERM");
    const r = await running.result;
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /FAILED: interrupted by SIGTERM/, r.stdout + r.stderr);
    assert.equal(server.currentId(), a);
    const status = await server.run(["status"]);
    assert.equal(status.code, 0, status.stdout);
  });

  it("rollback without an id returns to the previous release, without migrating; an unknown id exits 2", async () => {
    const [a, b] = [fakeId("a"), fakeId("b")];
    assert.equal((await server.run([artifact(a)])).code, 0);
    assert.equal((await server.run([artifact(b)])).code, 0);
    const r = await server.run(["rollback"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(server.currentId(), a);
    assert.deepEqual(migrations(), [a, b], "rollback must not migrate");
    const back = await server.run(["rollback"]);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    assert.equal(server.currentId(), b, "a second rollback goes back to where the first came from");
    const unknown = await server.run(["rollback", "0123456789abcdef"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /release 0123456789abcdef is not on this server/);
  });

  it("keeps KEEP_RELEASES releases (current included) and removes older ones with their artifacts", async () => {
    server = await newServer(["KEEP_RELEASES=2"]);
    const ids = [fakeId("a"), fakeId("b"), fakeId("c")];
    for (const id of ids) {
      const uploaded = path.join(server.appRoot, "artifacts", `saas-app-${id}.tar.gz`);
      fs.mkdirSync(path.dirname(uploaded), { recursive: true });
      fs.copyFileSync(artifact(id), uploaded);
      const r = await server.run([uploaded]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    assert.deepEqual(server.releaseIds(), [ids[1], ids[2]].sort());
    assert.deepEqual(fs.readdirSync(path.join(server.appRoot, "artifacts")).sort(), [ids[1], ids[2]].map((i) => `saas-app-${i}.tar.gz`).sort());
  });

  it("refuses to run while another release holds the lock", async () => {
    fs.mkdirSync(server.appRoot, { recursive: true });
    const holder = spawn("flock", [path.join(server.appRoot, ".release.lock"), "sleep", "10"], { stdio: "ignore" });
    try {
      await sleep(200);
      const r = await server.run([artifact(fakeId("a"))]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /another release is running/);
      assert.equal(server.currentId(), undefined);
    } finally {
      holder.kill();
    }
  });

  it("a failed first release leaves no `current` and nothing running", async () => {
    const r = await server.run([artifact(fakeId("c"), { "bin/web": BROKEN_WEB })]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /this was the first release; nothing is serving/);
    assert.equal(server.currentId(), undefined);
    const status = await server.run(["status"]);
    assert.equal(status.code, 1);
    assert.match(status.stdout, /current: none/);
  });

  it("warns that a single web instance cannot restart without downtime unless SURGE_PORT is set", async () => {
    server = await newServer([], 1);
    const first = await server.run([artifact(fakeId("a"))]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.doesNotMatch(first.stderr, /only one web instance/, "nothing serves before the first release: no downtime to warn about");
    const r = await server.run([artifact(fakeId("b"))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /only one web instance .* requests fail while it restarts; set SURGE_PORT/);
  });

  it("starts every web instance at once on the first release (nothing is serving yet), one at a time after", async () => {
    const a = fakeId("a");
    const first = await server.run([artifact(a)]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, /first release: starting every web instance at once/);
    assert.doesNotMatch(first.stdout, /stopping \(draining/, "nothing to drain when nothing was serving");
    assert.equal(server.currentId(), a);
    const second = await server.run([artifact(fakeId("b"))]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.doesNotMatch(second.stdout, /first release/);
    // One at a time: the first port is healthy on b before the second one is stopped.
    assert.match(second.stdout, /web@\d+\.service: healthy on bbbb[0-9a-f]+ .*\n(.*\n)*?.*web@\d+\.service: stopping/);
  });

  it("rejects bad configuration with exit 2, naming the file and key, before touching anything", async () => {
    const cases: Array<[string, RegExp]> = [
      ['WEB_PORTS=""', /WEB_PORTS is empty/],
      ['WEB_PORTS="3001 http"', /WEB_PORTS: "http" is not a TCP port/],
      ["KEEP_RELEASES=1", /KEEP_RELEASES must be at least 2/],
      ["HEALTH_TIMOUT=5", /unknown key HEALTH_TIMOUT/],
      ["this is not a setting", /release\.conf:\d+: not a KEY=VALUE line/],
    ];
    for (const [line, message] of cases) {
      fs.appendFileSync(server.confFile, `${line}\n`);
      const r = await server.run([artifact(fakeId("a"))]);
      assert.equal(r.code, 2, `${line}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message, line);
      assert.ok(r.stderr.includes(server.confFile), `${line}: the message should name ${server.confFile}`);
      assert.equal(fs.existsSync(path.join(server.appRoot, "releases")), false, `${line}: nothing may be unpacked`);
      fs.writeFileSync(server.confFile, fs.readFileSync(server.confFile, "utf8").replace(`${line}\n`, ""));
    }
  });

  it("accepts the release.conf provisioning/release.ts renders", async () => {
    const ports = await freePorts(2);
    fs.writeFileSync(server.confFile, renderReleaseConf({ webPorts: ports, workerUnits: ["worker@1.service"], keepReleases: 3 }).replace('APP_USER="app"', 'APP_USER="root"'));
    const r = await server.run(["status"]);
    // Nothing runs yet: status says so with exit 1, not a configuration error (2).
    assert.equal(r.code, 1, r.stdout + r.stderr);
    for (const p of ports) assert.match(r.stdout, new RegExp(`web@${p}\\.service +UNHEALTHY`));
    assert.match(r.stdout, /worker@1\.service +NOT ACTIVE/);
  });
});
