/**
 * The release script on each kind of server stage separated has: the worker server (workers only:
 * unpack, switch, restart the workers with their check; no migrations, no web step, no health gate)
 * and the app server (web only: migrations, the health-gated web roll, no workers), each with the
 * release.conf provisioning renders for it. And migrations: the web server runs them, the worker
 * server never does, and they get the schema owner's credential from MIGRATE_ENV_FILE without the
 * app's processes ever seeing it. Fast: the stand-in app through the service shim, as script.test.ts.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { renderApp } from "../../provisioning/roles/app";
import { RELEASE_PATHS } from "../../provisioning/release";
import { FakeServer, STANDIN_APP, fakeId, freePorts, packArtifact, tempDir } from "./harness";

const BROKEN_WORKER = "#!/bin/sh\necho 'worker: cannot start' >&2\nexit 1\n";
/** A migration that fails when it runs a second time against the same database (here: a marker directory). */
const MIGRATE_ONCE = '#!/bin/sh\nmkdir "$MIGRATION_MARKER" || { echo "migrate: already applied" >&2; exit 1; }\n';

/** release.conf as provisioning renders it for a server with these processes, runnable here (APP_USER root). */
function renderedConf(processes: { webPorts: number[]; workerUnits: string[] }): string {
  const login = (user: string) => ({ user, password: "p".repeat(20) });
  // The owner's login only where migrations run (the server with web instances), as plan/database.ts gives it.
  const owner = processes.webPorts.length > 0 ? { owner: login("app") } : {};
  const database = { endpoint: { host: "127.0.0.1", port: 5432, database: "app", tls: false }, credentials: { ...owner, web: login("app_web"), worker: login("app_worker") } };
  const app = renderApp({ url: "http://192.0.2.10", environment: {}, secretKey: "k".repeat(40), uploads: { storage: "volume" }, database }, processes);
  const conf = app.files.find((f) => f.path === RELEASE_PATHS.config);
  assert.ok(conf, "the app part renders release.conf");
  return conf.content.replace('APP_USER="app"', 'APP_USER="root"');
}

describe("@real release script on a worker-only and a web-only server (stand-in app)", function () {
  this.timeout(60_000);
  let dir: string;
  const servers: FakeServer[] = [];
  let serial = 0;

  /** A server whose release.conf is the rendered one (fast settings appended, as script.test.ts uses). */
  function newServer(processes: { webPorts: number[]; workerUnits: string[] }, env: Record<string, string> = {}): FakeServer {
    const s = new FakeServer(path.join(dir, `server-${serial++}`), {
      webPorts: processes.webPorts,
      workerUnits: processes.workerUnits,
      env: { DATABASE_URL: "postgres://app_web@127.0.0.1/app", SECRET_KEY: "s".repeat(40), APP_URL: "http://example.test", ...env },
    });
    fs.writeFileSync(s.confFile, renderedConf(processes) + "SETTLE_SECONDS=0\nWORKER_CHECK_SECONDS=1\nHEALTH_TIMEOUT=5\n");
    servers.push(s);
    return s;
  }
  const artifact = (id: string, overrides: Record<string, string> = {}) => packArtifact(STANDIN_APP, id, dir, overrides);
  const calls = (s: FakeServer) =>
    fs.existsSync(path.join(s.shimState, "calls.txt"))
      ? fs.readFileSync(path.join(s.shimState, "calls.txt"), "utf8").trim().split("\n").map((l) => l.split(" ").slice(1).join(" "))
      : [];
  const actions = (s: FakeServer, from = 0) => calls(s).slice(from).filter((c) => !c.startsWith("is-active"));
  const pid = (s: FakeServer, unit: string) => fs.readFileSync(path.join(s.shimState, `${unit}.pid`), "utf8").trim();
  /** The release a running instance runs: its working directory, resolved when it started. */
  const runningRelease = (s: FakeServer, unit: string) => path.basename(fs.readlinkSync(`/proc/${pid(s, unit)}/cwd`));

  before(() => {
    dir = tempDir("release-servers");
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") for (const s of servers) console.log(s.logs());
    for (const s of servers.splice(0)) s.stopAll();
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe("worker-only server (stage separated's worker server)", () => {
    const workers = ["worker@1.service", "worker@2.service"];
    const noWeb = (out: string) => assert.doesNotMatch(out, /nginx|web@|\/health|surge|health deadline/, `nothing about web on a worker-only server:\n${out}`);

    it("renders MIGRATE=no and no web ports", () => {
      const conf = renderedConf({ webPorts: [], workerUnits: workers });
      assert.match(conf, /^WEB_PORTS=""$/m);
      assert.match(conf, /^MIGRATE="no"$/m);
    });

    it("release, release over it, restart and rollback: the workers restarted on the right release, never a web step or a migration", async () => {
      const server = newServer({ webPorts: [], workerUnits: workers }, { MIGRATION_MARKER: path.join(dir, "worker-marker") });
      const [a, b] = [fakeId("a"), fakeId("b")];
      const first = await server.run([artifact(a, { "bin/migrate": MIGRATE_ONCE })]);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      noWeb(first.stdout + first.stderr);
      assert.match(first.stdout, /migrations +not run here \(MIGRATE=no\)/);
      assert.equal(fs.existsSync(path.join(dir, "worker-marker")), false, "the worker server never migrates");
      assert.deepEqual(actions(server), ["stop worker@1", "start worker@1", "stop worker@2", "start worker@2"]);
      for (const w of ["worker@1", "worker@2"]) assert.equal(runningRelease(server, w), a);

      const before = calls(server).length;
      const second = await server.run([artifact(b, { "bin/migrate": MIGRATE_ONCE })]);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      noWeb(second.stdout + second.stderr);
      assert.match(second.stdout, new RegExp(`OK — ${b} is live \\(was ${a}\\)`));
      assert.deepEqual(actions(server, before), ["stop worker@1", "start worker@1", "stop worker@2", "start worker@2"]);
      for (const w of ["worker@1", "worker@2"]) assert.equal(runningRelease(server, w), b);

      const pids = ["worker@1", "worker@2"].map((w) => pid(server, w));
      const restart = await server.run(["restart"]);
      assert.equal(restart.code, 0, restart.stdout + restart.stderr);
      noWeb(restart.stdout + restart.stderr);
      assert.match(restart.stdout, new RegExp(`OK — every instance restarted on ${b}`));
      ["worker@1", "worker@2"].forEach((w, i) => {
        assert.notEqual(pid(server, w), pids[i], `${w} is a new process`);
        assert.equal(runningRelease(server, w), b);
      });

      const back = await server.run(["rollback"]);
      assert.equal(back.code, 0, back.stdout + back.stderr);
      noWeb(back.stdout + back.stderr);
      assert.equal(server.currentId(), a);
      for (const w of ["worker@1", "worker@2"]) assert.equal(runningRelease(server, w), a);

      const status = await server.run(["status"]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      noWeb(status.stdout);
      assert.match(status.stdout, /worker@1\.service +active\n +worker@2\.service +active/);
      assert.match(status.stdout, /migrations: not run here \(MIGRATE=no\)/);
      assert.equal(fs.existsSync(path.join(dir, "worker-marker")), false, "not by a release, a restart or a rollback either");
    });

    it("a worker that dies at start fails the worker check, and the workers go back to the previous release", async () => {
      const server = newServer({ webPorts: [], workerUnits: workers });
      const a = fakeId("a");
      assert.equal((await server.run([artifact(a)])).code, 0);
      const c = fakeId("c");
      const r = await server.run([artifact(c, { "bin/worker": BROKEN_WORKER })]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      noWeb(r.stdout + r.stderr);
      assert.match(r.stderr, /FAILED: worker@1\.service is not running 1s after start/);
      assert.match(r.stderr, new RegExp(`rolled back; ${a} is serving`));
      assert.equal(server.currentId(), a);
      for (const w of ["worker@1", "worker@2"]) assert.equal(runningRelease(server, w), a);
    });

    it("a first release whose workers die leaves no `current` and nothing running", async () => {
      const server = newServer({ webPorts: [], workerUnits: workers });
      const r = await server.run([artifact(fakeId("c"), { "bin/worker": BROKEN_WORKER })]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /this was the first release; nothing is serving/);
      assert.equal(server.currentId(), undefined);
      assert.equal((await server.run(["status"])).code, 1);
    });
  });

  describe("web-only server (stage separated's app server)", () => {
    it("release, restart and rollback: migrations run once per release, the web instances roll, no worker is touched", async () => {
      const webPorts = await freePorts(2);
      const marker = path.join(dir, "web-marker");
      const server = newServer({ webPorts, workerUnits: [] }, { MIGRATION_MARKER: marker });
      assert.match(fs.readFileSync(server.confFile, "utf8"), /^MIGRATE="yes"$/m);
      const [a, b] = [fakeId("a"), fakeId("b")];
      const first = await server.run([artifact(a, { "bin/migrate": MIGRATE_ONCE })]);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.ok(fs.existsSync(marker), "the web server ran the migration");
      fs.rmdirSync(marker); // the next release's migration would otherwise fail, as it should on a second run

      const before = calls(server).length;
      const second = await server.run([artifact(b, { "bin/migrate": MIGRATE_ONCE })]);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.ok(fs.existsSync(marker), "the web server ran B's migration");
      const [p1, p2] = webPorts;
      assert.deepEqual(actions(server, before), [`start migrate@${b}`, `stop web@${p1}`, `start web@${p1}`, `stop web@${p2}`, `start web@${p2}`]);
      for (const p of webPorts) assert.equal(runningRelease(server, `web@${p}`), b);

      const restart = await server.run(["restart"]);
      assert.equal(restart.code, 0, restart.stdout + restart.stderr);
      const back = await server.run(["rollback"]);
      assert.equal(back.code, 0, back.stdout + back.stderr);
      for (const p of webPorts) assert.equal(runningRelease(server, `web@${p}`), a);
      const all = [first, second, restart, back].map((r) => r.stdout + r.stderr).join("\n");
      assert.doesNotMatch(all, /worker/, "nothing about workers on a web-only server");
      assert.ok(calls(server).every((c) => /^[a-z-]+ web@\d+$|^start migrate@[0-9a-z]+$/.test(c)), `only web units and the migrations: ${calls(server).join(", ")}`);
    });
  });

  describe("migrations across the two servers", () => {
    it("run on the web server and not on the worker server, with the owner's credential only bin/migrate sees", async () => {
      const marker = path.join(dir, "shared-marker");
      const urlSeen = path.join(dir, "migrate-url");
      const migrate = `#!/bin/sh\nmkdir "$MIGRATION_MARKER" || exit 1\nprintf '%s' "$DATABASE_URL" >"${urlSeen}"\n`;
      const env = { MIGRATION_MARKER: marker };
      const web = newServer({ webPorts: await freePorts(1), workerUnits: [] }, env);
      const worker = newServer({ webPorts: [], workerUnits: ["worker@1.service"] }, env);
      // The schema owner's credential: a root-only file only the web server's release.conf names.
      const ownerEnv = path.join(web.root, "etc/migrate.env");
      fs.writeFileSync(ownerEnv, "DATABASE_URL=postgres://app:owner-secret@127.0.0.1/app\n", { mode: 0o600 });
      fs.appendFileSync(web.confFile, `MIGRATE_ENV_FILE=${ownerEnv}\n`);

      const a = fakeId("a");
      const art = artifact(a, { "bin/migrate": migrate });
      // The order `pulumi up` keeps: the web server's release first, then the worker server's.
      const onWeb = await web.run([art]);
      assert.equal(onWeb.code, 0, onWeb.stdout + onWeb.stderr);
      const onWorker = await worker.run([art]);
      assert.equal(onWorker.code, 0, onWorker.stdout + onWorker.stderr);
      assert.ok(fs.existsSync(marker), "migrated once, by the web server (a second run would have failed the worker's release)");
      assert.equal(fs.readFileSync(urlSeen, "utf8"), "postgres://app:owner-secret@127.0.0.1/app", "bin/migrate got the owner's DATABASE_URL");
      const [port] = web.opts.webPorts;
      const webEnv = fs.readFileSync(`/proc/${pid(web, `web@${port}`)}/environ`, "utf8");
      assert.match(webEnv, /DATABASE_URL=postgres:\/\/app_web@/, "the web instance runs with the app's own env file");
      assert.doesNotMatch(webEnv, /owner-secret/, "the web instance never sees the owner's credential");
    });

    it("refuses an owner's env file every user can read, before anything switches", async () => {
      const server = newServer({ webPorts: await freePorts(1), workerUnits: [] });
      const ownerEnv = path.join(server.root, "etc/migrate.env");
      fs.writeFileSync(ownerEnv, "DATABASE_URL=postgres://app:owner-secret@127.0.0.1/app\n", { mode: 0o644 });
      fs.chmodSync(ownerEnv, 0o644);
      fs.appendFileSync(server.confFile, `MIGRATE_ENV_FILE=${ownerEnv}\n`);
      const r = await server.run([artifact(fakeId("a"))]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /MIGRATE_ENV_FILE .*migrate\.env is readable or writable by every user; .*chmod 0600/);
      assert.doesNotMatch(r.stdout + r.stderr, /owner-secret/, "the credential is never printed");
      assert.equal(server.currentId(), undefined);
      assert.deepEqual(actions(server), [], "no instance started");
    });

    it("a release on a server whose release.conf has no MIGRATE is refused before anything changes", async () => {
      const server = newServer({ webPorts: [], workerUnits: ["worker@1.service"] });
      fs.writeFileSync(server.confFile, fs.readFileSync(server.confFile, "utf8").replace(/^MIGRATE=.*\n/m, ""));
      const r = await server.run([artifact(fakeId("a"))]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /MIGRATE is not set; yes on the server with web instances .*, no on every other server/);
      assert.equal(fs.existsSync(path.join(server.appRoot, "releases")), false, "nothing unpacked");
      assert.deepEqual(calls(server), []);
    });
  });
});
