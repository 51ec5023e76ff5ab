/**
 * The release script's behaviour beyond the happy roll: layout on disk, migrations, failure
 * paths, rollback, pruning, the lock, configuration errors. Fast: the instances are the
 * stand-in app (fixtures/standin, same contract as the real one) run through the service shim
 * (no systemd as PID 1 here; see harness.ts), no nginx, SETTLE_SECONDS=0. The zero-downtime
 * proof with real nginx, PostgreSQL and the real app is rolling.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { renderReleaseConf } from "../../provisioning/release";
import { FakeServer, STANDIN_APP, fakeId, freePorts, packArtifact, sleep, tempDir } from "./harness";

const BROKEN_WEB = "#!/bin/sh\necho 'web: cannot start' >&2\nexit 1\n";
const BROKEN_MIGRATE = "#!/bin/sh\necho 'migrate: relation already exists' >&2\nexit 1\n";

describe("@real release script: layout, failures, rollback, pruning, lock (stand-in app)", function () {
  // Some tests run three releases and a rollback of real processes: a minute is not enough on a
  // busy 2-core machine (seen at load 9).
  this.timeout(180_000);
  let dir: string;
  let server: FakeServer;
  let migrateLog: string;
  const servers: FakeServer[] = [];
  let serial = 0;

  async function newServer(conf: string[] = [], webCount = 2, env: Record<string, string> = {}): Promise<FakeServer> {
    const sdir = path.join(dir, `server-${serial++}`);
    migrateLog = path.join(sdir, "migrate.log");
    const s = new FakeServer(sdir, {
      webPorts: await freePorts(webCount),
      workerUnits: ["worker@1"],
      env: { DATABASE_URL: "postgres://unused@127.0.0.1/x", SECRET_KEY: "s".repeat(40), APP_URL: "http://example.test", MIGRATE_LOG: migrateLog, ...env },
      conf: ["SETTLE_SECONDS=0", "WORKER_CHECK_SECONDS=1", "HEALTH_TIMEOUT=5", ...conf],
    });
    servers.push(s);
    return s;
  }
  const artifact = (id: string, overrides: Record<string, string> = {}) => packArtifact(STANDIN_APP, id, dir, overrides);
  const migrations = () => (fs.existsSync(migrateLog) ? fs.readFileSync(migrateLog, "utf8").trim().split("\n") : []);
  const calls = (s: FakeServer) => fs.readFileSync(path.join(s.shimState, "calls.txt"), "utf8").trim().split("\n").map((l) => l.split(" ").slice(1).join(" "));
  /** Service calls other than is-active, from the `from`-th call on. */
  const actions = (s: FakeServer, from = 0) => calls(s).slice(from).filter((c) => !c.startsWith("is-active"));
  const pid = (s: FakeServer, unit: string) => fs.readFileSync(path.join(s.shimState, `${unit}.pid`), "utf8").trim();
  /**
   * The web instances started together: consecutive `start web@` calls with no wait in between
   * (waiting for health probes an instance, which logs the answer with LOG_HEALTH_TO_SHIM, and
   * asks the service manager whether the unit is still active while it is not yet healthy).
   */
  const webStartBatches = (s: FakeServer): string[][] => {
    const batches: string[][] = [];
    let open = false;
    for (const c of calls(s)) {
      if (c.startsWith("start web@")) {
        if (!open) batches.push([]);
        batches[batches.length - 1].push(c.slice("start ".length));
        open = true;
      } else if (c.startsWith("is-active web@") || c.startsWith("health web@")) open = false;
    }
    return batches;
  };

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
    assert.deepEqual(calls(server).slice(before).filter((c) => !c.startsWith("is-active")), [`start migrate@${d}`]);
  });

  // Every program the release runs as root, under names a PATH line could shadow.
  const ROOT_TOOLS = [
    "awk", "basename", "cat", "chmod", "chown", "cp", "curl", "date", "dirname", "find", "flock", "gzip", "head", "id", "jq",
    "journalctl", "kill", "ln", "mkdir", "mktemp", "mv", "nproc", "readlink", "rm", "sed", "setpriv", "sleep", "sort", "stat",
    "systemctl", "tac", "tail", "tar", "timeout", "touch", "tr", "wc",
  ];

  it("variables of the env file steer nothing the release runs as root (PATH, LD_PRELOAD): only the app's processes get them", async function () {
    const evil = path.join(dir, "evil");
    const marker = path.join(evil, "ran.txt");
    fs.mkdirSync(evil, { recursive: true });
    for (const tool of ROOT_TOOLS) fs.writeFileSync(path.join(evil, tool), `#!/bin/sh\necho "${tool} uid=$(/usr/bin/id -u)" >>${marker}\nexit 1\n`, { mode: 0o755 });
    const env: Record<string, string> = { PATH: `${evil}:/usr/local/bin:/usr/bin:/bin` };
    // A preloaded library that records which program loaded it (a C compiler is needed to build it).
    if (spawnSync("cc", ["--version"]).status === 0) {
      fs.writeFileSync(path.join(evil, "evil.c"), `#include <stdio.h>\n#include <unistd.h>\n__attribute__((constructor)) static void evil(void) { char exe[256] = {0}; if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) return; FILE *f = fopen("${marker}", "a"); if (f) { fprintf(f, "preload %s uid=%d\\n", exe, (int)getuid()); fclose(f); } }\n`);
      execFileSync("cc", ["-shared", "-fPIC", "-o", path.join(evil, "evil.so"), path.join(evil, "evil.c")]);
      env.LD_PRELOAD = path.join(evil, "evil.so");
    } else {
      console.log("      SKIPPED LOUDLY (LD_PRELOAD half only): no C compiler to build the preloaded library");
    }
    const s = await newServer([], 1, env);
    const a = fakeId("a");
    const r = await s.run([artifact(a)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(migrations(), [a]);
    assert.equal((await s.run(["restart"])).code, 0);
    // The stand-in service manager hands the env file to the app's processes (as systemd does to
    // the units): their interpreter (/usr/bin/env, node) loads the library; nothing else may.
    const ran = fs.existsSync(marker) ? fs.readFileSync(marker, "utf8").trim().split("\n") : [];
    const appOwn = /^preload \/usr\/bin\/(env|node(js)?) /;
    assert.deepEqual(ran.filter((l) => !appOwn.test(l)), [], "programs run with the env file's PATH or LD_PRELOAD");
    if (env.LD_PRELOAD) assert.ok(ran.some((l) => appOwn.test(l)), "the app's processes got the env file's LD_PRELOAD (the probe can see it)");
  });

  it("fails fast when a new instance exits, rolls it back, and the old release serves on every port", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const c = fakeId("c");
    const r = await server.run([artifact(c, { "bin/web": BROKEN_WEB })]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /FAILED: web@\d+\.service exited before \/health answered/);
    assert.match(r.stderr, new RegExp(`rolled back; ${a} is serving`));
    // Not HEALTH_TIMEOUT's deadline: that path reports "did not answer ... within".
    assert.doesNotMatch(r.stderr, /did not answer/);
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

  it("starts a first release's web instances in batches of the CPU count, each healthy before the next, workers last", async () => {
    const expected: Array<[string, number[][]]> = [
      ["1", [[0], [1], [2]]],
      ["2", [[0, 1], [2]]],
      ["4", [[0, 1, 2]]],
    ];
    for (const [cpus, batches] of expected) {
      // A slow start, so that waiting for a batch shows in the service calls.
      const s = await newServer(["HEALTH_TIMEOUT=10"], 3, { START_DELAY_MS: "300", LOG_HEALTH_TO_SHIM: "1" });
      const r = await s.run([artifact(fakeId("a"))], { RELEASE_CPUS: cpus });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`first release: starting the web instances ${cpus} at a time`));
      assert.deepEqual(webStartBatches(s), batches.map((b) => b.map((i) => `web@${s.opts.webPorts[i]}`)), `RELEASE_CPUS=${cpus}`);
      const acts = actions(s);
      const lastWebStart = acts.map((c) => c.startsWith("start web@")).lastIndexOf(true);
      assert.ok(acts.indexOf("start worker@1") > lastWebStart, `workers start after every web instance: ${acts.join(", ")}`);
    }
    const bad = await server.run(["status"], { RELEASE_CPUS: "0" });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /RELEASE_CPUS: "0" is not a whole number of CPUs >= 1/);
  });

  it("derives the health deadline from the start time measured on this machine", async () => {
    // Every start takes 1.5 s, longer than HEALTH_TIMEOUT.
    const s = await newServer(["HEALTH_TIMEOUT=1"], 2, { START_DELAY_MS: "1500" });
    const record = path.join(s.appRoot, "start-ms");
    // Nothing measured yet: the first start gets 5 x HEALTH_TIMEOUT.
    const first = await s.run([artifact(fakeId("a"))], { RELEASE_CPUS: "2" });
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const measured = Number(fs.readFileSync(record, "utf8"));
    // At least the stand-in's own delay; how much longer depends on the machine's load.
    assert.ok(measured >= 1500, `start-ms: ${measured}`);
    // Then 3 x what was measured (here about 4.5 s), not HEALTH_TIMEOUT alone.
    const b = fakeId("b");
    const second = await s.run([artifact(b)]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const status = await s.run(["status"]);
    assert.match(status.stdout, /health deadline: \d+s \(HEALTH_TIMEOUT=1s or 3x the slowest start measured here, \d+\.\ds\)/);
    // A record from a faster machine makes the deadline HEALTH_TIMEOUT: the 1.5 s start fails it,
    // and the rollback (which waits at least as long as a first start) brings b back.
    fs.writeFileSync(record, "100\n");
    const third = await s.run([artifact(fakeId("c"))]);
    assert.equal(third.code, 1, third.stdout + third.stderr);
    assert.match(third.stderr, /did not answer "200, X-App-Release: c[0-9a-f]+" within 1s of its start \(HEALTH_TIMEOUT=1s or 3x the slowest start measured here, 0\.1s; last answer: no answer\)/);
    assert.match(third.stderr, new RegExp(`rolled back; ${b} is serving`));
    assert.equal(s.currentId(), b);
  });

  it("restart before the first release has nothing to do and needs no configuration", async () => {
    fs.rmSync(server.confFile);
    const r = await server.run(["restart"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /no release yet .*: nothing to restart/);
    assert.equal(fs.existsSync(path.join(server.shimState, "calls.txt")), false, "no service was touched");
  });

  it("restart: every instance on the current release, one at a time, health-gated, workers last", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const [p1, p2] = server.opts.webPorts;
    const pids = [`web@${p1}`, `web@${p2}`, "worker@1"].map((u) => pid(server, u));
    const before = calls(server).length;
    const r = await server.run(["restart"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`OK — every instance restarted on ${a}`));
    assert.deepEqual(actions(server, before), [
      `stop web@${p1}`, `start web@${p1}`, `stop web@${p2}`, `start web@${p2}`, "stop worker@1", "start worker@1",
    ]);
    assert.match(r.stdout, new RegExp(`web@${p1}\\.service: healthy on ${a}(.*\\n)*.*web@${p2}\\.service: stopping`), "the second stops only once the first is healthy");
    const after = [`web@${p1}`, `web@${p2}`, "worker@1"].map((u) => pid(server, u));
    for (let i = 0; i < 3; i++) assert.notEqual(after[i], pids[i], "every instance is a new process");
    assert.deepEqual(migrations(), [a], "a restart never migrates");
    assert.equal(server.currentId(), a);
    assert.equal((await server.run(["status"])).code, 0);
  });

  it("stopping an instance resets no connection: connects meanwhile are refused (nginx retries those), the ones already queued are answered", async () => {
    // The stand-in's loop is busy for a moment on SIGTERM, as under load: connects in that moment
    // queue at the listener, and closing it then would reset them after their request was sent.
    const busy = await newServer([], 2, { STOP_BUSY_MS: "400" });
    assert.equal((await busy.run([artifact(fakeId("a"))])).code, 0);
    const port = busy.opts.webPorts[0];
    const { outcomes, run } = await rawPostsUntil(port, busy.run(["restart"]));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(outcomes.reset ?? 0, 0, `connections reset after their request was sent: ${JSON.stringify(outcomes)}`);
    assert.ok((outcomes.refused ?? 0) > 0, `no connect was refused, so the stop was never probed: ${JSON.stringify(outcomes)}`);
    assert.ok((outcomes.answered ?? 0) > 0, `nothing answered: ${JSON.stringify(outcomes)}`);
    assert.deepEqual(Object.keys(outcomes).filter((k) => !["answered", "refused", "reset"].includes(k)), [], JSON.stringify(outcomes));
  });

  it("restart with an env that breaks start-up stops at the first instance; the others keep running on the old env", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    const [p1, p2] = server.opts.webPorts;
    const untouched = [`web@${p2}`, "worker@1"].map((u) => pid(server, u));
    const before = calls(server).length;
    // The stand-in, like the app, exits at start without SECRET_KEY.
    fs.writeFileSync(server.envFile, fs.readFileSync(server.envFile, "utf8").replace(/^SECRET_KEY=.*\n/m, ""));
    const r = await server.run(["restart"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`release restart: FAILED: web@${p1}\\.service exited before /health answered`));
    assert.match(r.stderr, new RegExp(`stopped web@${p1}\\.service \\(nginx sends it nothing\\)`));
    assert.match(r.stderr, new RegExp(`not restarted, still running on the previous configuration: web@${p2}\\.service worker@1\\.service`));
    assert.match(r.stderr, /a configuration change has no release to roll back to: fix .*app\.env/);
    assert.deepEqual(actions(server, before), [`stop web@${p1}`, `start web@${p1}`, `stop web@${p1}`], "nothing but the first instance was touched");
    assert.deepEqual([`web@${p2}`, "worker@1"].map((u) => pid(server, u)), untouched);
    assert.equal((await fetch(`http://127.0.0.1:${p2}/health`)).status, 200);
  });

  it("rolls web one port at a time once a release is serving", async () => {
    const a = fakeId("a");
    assert.equal((await server.run([artifact(a)])).code, 0);
    assert.equal(server.currentId(), a);
    const second = await server.run([artifact(fakeId("b"))]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.doesNotMatch(second.stdout, /first release/);
    // One at a time: the first port is healthy on b before the second one is stopped.
    assert.match(second.stdout, /web@\d+\.service: healthy on bbbb[0-9a-f]+ .*\n(.*\n)*?.*web@\d+\.service: stopping/);
  });

  it("rejects bad configuration with exit 2, naming the file and key, before touching anything", async () => {
    const cases: Array<[string, RegExp]> = [
      ['WEB_PORTS=""\nWORKER_UNITS=""', /WEB_PORTS and WORKER_UNITS are both empty/],
      ["MIGRATE=maybe", /MIGRATE: "maybe" must be yes \(this server runs migrations\) or no/],
      ["MIGRATE_ENV_FILE=etc/migrate.env", /MIGRATE_ENV_FILE: "etc\/migrate\.env" must be an absolute path/],
      ['MIGRATE=no\nMIGRATE_ENV_FILE=/etc/migrate.env', /MIGRATE_ENV_FILE is set but MIGRATE is not yes/],
      ['WEB_PORTS=""\nSURGE_PORT=3100', /SURGE_PORT is set but WEB_PORTS is empty/],
      ['WEB_PORTS="3001 http"', /WEB_PORTS: "http" is not a TCP port/],
      ["KEEP_RELEASES=1", /KEEP_RELEASES must be at least 2/],
      ["LB_DRAIN_FILE=run/lb-drain", /LB_DRAIN_FILE: "run\/lb-drain" must be an absolute path/],
      ['WEB_PORTS=""\nLB_DRAIN_FILE=/run/lb-drain', /LB_DRAIN_FILE is set but WEB_PORTS is empty/],
      ["LB_OUT_SECONDS=soon", /LB_OUT_SECONDS: "soon" is not a whole number of seconds/],
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
    fs.writeFileSync(server.confFile, renderReleaseConf({ webPorts: ports, workerUnits: ["worker@1.service"], migrate: true, keepReleases: 3 }).replace('APP_USER="app"', 'APP_USER="root"'));
    const r = await server.run(["status"]);
    // Nothing runs yet: status says so with exit 1, not a configuration error (2).
    assert.equal(r.code, 1, r.stdout + r.stderr);
    for (const p of ports) assert.match(r.stdout, new RegExp(`web@${p}\\.service +UNHEALTHY`));
    assert.match(r.stdout, /worker@1\.service +NOT ACTIVE/);
  });
});

/**
 * Eight clients, each connecting to 127.0.0.1:<port> and sending a POST, again and again until
 * `until` settles: what each attempt came to (answered, refused at connect, reset after the
 * request was written, or another error code).
 */
async function rawPostsUntil<T>(port: number, until: Promise<T>): Promise<{ outcomes: Record<string, number>; run: T }> {
  const outcomes: Record<string, number> = {};
  let done = false;
  const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
  const attempt = () =>
    new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      let answer = "";
      socket.on("connect", () => socket.end("POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"));
      socket.on("data", (d) => (answer += d));
      socket.on("close", () => {
        if (answer.startsWith("HTTP/1.1 ")) count("answered");
        resolve();
      });
      socket.on("error", (e: NodeJS.ErrnoException) => count(e.code === "ECONNREFUSED" ? "refused" : e.code === "ECONNRESET" ? "reset" : e.code ?? "error"));
    });
  const clients = Array.from({ length: 8 }, async () => {
    while (!done) await attempt();
  });
  const run = await until;
  done = true;
  await Promise.all(clients);
  return { outcomes, run };
}
