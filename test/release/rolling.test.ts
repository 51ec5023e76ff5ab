/**
 * The release script against the real things: nginx with the site provisioning/nginx.ts
 * renders, PostgreSQL (cli/pg-scratch.sh) and the app built from app/ — versions A and B
 * are the same build with different manifest ids, C is B with a bin/web whose /health says 503.
 *
 * The web instances run as local processes through fixtures/service-shim.sh, standing in for
 * systemctl: there is no systemd as PID 1 on this machine (see harness.ts). The script under
 * test is the same file provisioning installs as /usr/local/sbin/release.
 *
 * The `it`s are one scenario in order (A, then B over A, then C, then rollback to A): each
 * step starts from the state the previous one left, as on a real server.
 * RELEASE_TEST_STANDIN=1 swaps the real app for fixtures/standin (development only).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  FakeServer, type LoadResult, type Nginx, STANDIN_APP, buildRealApp, byRelease, fakeId, fetchRelease,
  freePorts, packArtifact, sleep, startLoad, startNginx, startPostgres, stopPostgres, tempDir, unhealthyWeb,
} from "./harness";

describe("@real release: rolling web instances behind real nginx under load", function () {
  this.timeout(120_000);
  const ids = { A: fakeId("a"), B: fakeId("b"), C: fakeId("c") };
  let dir: string;
  let pgDir: string | undefined;
  let databaseUrl: string;
  const artifacts: Record<string, string> = {};

  before(function () {
    this.timeout(600_000);
    dir = tempDir("release-roll");
    const src = process.env.RELEASE_TEST_STANDIN ? STANDIN_APP : buildRealApp(path.join(dir, "app"));
    artifacts.A = packArtifact(src, ids.A, dir);
    artifacts.B = packArtifact(src, ids.B, dir);
    artifacts.C = packArtifact(src, ids.C, dir, unhealthyWeb(ids.C));
    pgDir = path.join(dir, "pg");
    databaseUrl = startPostgres(pgDir);
  });

  after(function () {
    this.timeout(60_000);
    if (pgDir) stopPostgres(pgDir);
    if (dir && !process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** nginx (the rendered site) + a fake server whose web ports it proxies to. */
  async function site(name: string, webCount: number, opts: { surge?: boolean } = {}) {
    const ports = await freePorts(webCount + 1);
    const webPorts = ports.slice(0, webCount);
    const surgePort = ports[webCount];
    // The surge port is a `backup` server: nginx uses it only while every primary is down.
    const nginx = await startNginx(path.join(dir, `${name}-nginx`), webPorts, opts.surge ? [`server 127.0.0.1:${surgePort} backup;`] : []);
    const server = new FakeServer(path.join(dir, `${name}-server`), {
      webPorts,
      workerUnits: ["worker@1.service"],
      env: { DATABASE_URL: databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: nginx.url, LOG_LEVEL: "warn" },
      conf: ["HEALTH_TIMEOUT=15", "SETTLE_SECONDS=3", "KEEP_RELEASES=5", ...(opts.surge ? [`SURGE_PORT=${surgePort}`] : [])],
    });
    return { nginx, server, surgePort };
  }

  describe("two web instances: B over A, broken C, rollback to A", () => {
    let nginx: Nginx;
    let server: FakeServer;

    before(async () => {
      ({ nginx, server } = await site("two", 2));
    });

    after(() => {
      server?.stopAll();
      nginx?.stop();
    });

    afterEach(function () {
      if (this.currentTest?.state === "failed") console.log(server?.logs());
    });

    it("makes A the first release on an empty server", async () => {
      const run = await server.run([artifacts.A]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(server.currentId(), ids.A);
      await sleep(2500); // nginx marked the ports failed while nothing listened (fail_timeout=2s)
      assert.deepEqual(await fetchRelease(`${nginx.url}/health`), { status: 200, release: ids.A });
    });

    it("releases B over A with zero failed requests (GET and POST), then only B answers", async () => {
      const { run, result, posts, endedAt } = await underLoad(server, nginx, [artifacts.B], { posts: true });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assertNoFailures(result);
      assertPostsAnswered(posts);
      const seen = byRelease(result.samples);
      assert.ok(seen[ids.A] > 0 && seen[ids.B] > 0, `expected A then B during the roll, got ${JSON.stringify(seen)}`);
      const after = result.samples.filter((s) => s.t > endedAt);
      assert.ok(after.length > 0);
      assert.deepEqual(byRelease(after), { [ids.B]: after.length }, "every response after the release must come from B");
      assert.equal(server.currentId(), ids.B);
      assert.match(run.stdout, new RegExp(`OK — ${ids.B} is live \\(was ${ids.A}\\)`));
    });

    it("refuses broken C: exits 1 with the reason, rolls back, and B keeps serving", async () => {
      const { run, result } = await underLoad(server, nginx, [artifacts.C]);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /FAILED: web@\d+\.service: \/health on 127\.0\.0\.1:\d+ did not answer .* within 15s of its start \(.*; last answer: HTTP 503, release c/);
      assert.match(run.stderr, new RegExp(`rolled back; ${ids.B} is serving`));
      assertNoFailures(result);
      assert.deepEqual(byRelease(result.samples), { [ids.B]: result.total }, "only B may answer while C fails");
      assert.equal(server.currentId(), ids.B);
      const status = await server.run(["status"]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
    });

    it("rolls back to A on request, with zero failed requests (GET and POST)", async () => {
      const { run, result, posts, endedAt } = await underLoad(server, nginx, ["rollback", ids.A], { posts: true });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assertNoFailures(result);
      assertPostsAnswered(posts);
      const after = result.samples.filter((s) => s.t > endedAt);
      assert.deepEqual(byRelease(after), { [ids.A]: after.length }, "every response after the rollback must come from A");
      assert.equal(server.currentId(), ids.A);
      const status = await server.run(["status"]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.match(status.stdout, new RegExp(`current: ${ids.A}`));
      assert.match(status.stdout, new RegExp(`web@\\d+\\.service +healthy +release ${ids.A}`));
    });

    it("restarts every instance on the current release after a config change, with zero failed requests (GET and POST)", async () => {
      const [p1, p2] = server.opts.webPorts;
      const before = [p1, p2].map((p) => instancePid(server, `web@${p}`));
      fs.writeFileSync(server.envFile, fs.readFileSync(server.envFile, "utf8").replace(/^LOG_LEVEL=.*$/m, "LOG_LEVEL=error"));
      const { run, result, posts } = await underLoad(server, nginx, ["restart"], { posts: true });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, new RegExp(`OK — every instance restarted on ${ids.A}`));
      assertNoFailures(result);
      assertPostsAnswered(posts);
      assert.deepEqual(byRelease(result.samples), { [ids.A]: result.total }, "a restart keeps the release");
      const after = [p1, p2].map((p) => instancePid(server, `web@${p}`));
      assert.ok(after[0] !== before[0] && after[1] !== before[1], "both instances are new processes");
    });

    it("a config change that makes the app exit at start stops the restart at the first instance; the other serves, no request fails", async () => {
      const [p1, p2] = server.opts.webPorts;
      const kept = instancePid(server, `web@${p2}`);
      const good = fs.readFileSync(server.envFile, "utf8");
      // The app refuses an unknown LOG_LEVEL and exits 78 (EX_CONFIG) before it listens.
      fs.writeFileSync(server.envFile, good.replace(/^LOG_LEVEL=.*$/m, "LOG_LEVEL=verbose"));
      const { run, result, posts } = await underLoad(server, nginx, ["restart"], { posts: true });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, new RegExp(`release restart: FAILED: web@${p1}\\.service exited before /health answered`));
      assert.match(run.stderr, new RegExp(`not restarted, still running on the previous configuration: web@${p2}\\.service worker@1\\.service`));
      assert.match(run.stderr, /no release to roll back to/);
      assertNoFailures(result);
      assertPostsAnswered(posts);
      assert.equal(instancePid(server, `web@${p2}`), kept, "the second instance was never touched");
      assert.match(server.logs(), /env\/LOG_LEVEL must be one of/);

      fs.writeFileSync(server.envFile, good);
      const fixed = await server.run(["restart"]);
      assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
      assert.equal((await server.run(["status"])).code, 0);
    });

    it("a config change with a bad DATABASE_URL (up, but /health 503) stops the restart at the first instance; no request fails", async () => {
      const [p1, p2] = server.opts.webPorts;
      const kept = instancePid(server, `web@${p2}`);
      const good = fs.readFileSync(server.envFile, "utf8");
      fs.writeFileSync(server.envFile, good.replace(/^DATABASE_URL=.*$/m, `DATABASE_URL=postgres://app@127.0.0.1:${await closedPort()}/app`));
      const { run, result, posts } = await underLoad(server, nginx, ["restart"], { posts: true });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, new RegExp(`release restart: FAILED: web@${p1}\\.service: /health on 127\\.0\\.0\\.1:${p1} did not answer .*last answer: HTTP 503`));
      assert.match(run.stderr, new RegExp(`stopped web@${p1}\\.service`));
      assertNoFailures(result);
      assertPostsAnswered(posts);
      assert.equal(instancePid(server, `web@${p2}`), kept, "the second instance was never touched");

      fs.writeFileSync(server.envFile, good);
      const fixed = await server.run(["restart"]);
      assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    });
  });

  describe("one web instance with a surge port (nginx backup server)", () => {
    let nginx: Nginx;
    let server: FakeServer;
    let surgePort: number;

    before(async () => {
      ({ nginx, server, surgePort } = await site("one", 1, { surge: true }));
      const first = await server.run([artifacts.A]);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      await sleep(2500);
    });

    after(() => {
      server?.stopAll();
      nginx?.stop();
    });

    afterEach(function () {
      if (this.currentTest?.state === "failed") console.log(server?.logs());
    });

    it("releases B over A with zero failed requests (GET and POST) and stops the surge instance afterwards", async () => {
      const { run, result, posts, endedAt } = await underLoad(server, nginx, [artifacts.B], { posts: true });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, new RegExp(`web@${surgePort}\\.service: starting a temporary surge instance`));
      assertNoFailures(result);
      assertPostsAnswered(posts);
      const after = result.samples.filter((s) => s.t > endedAt);
      assert.deepEqual(byRelease(after), { [ids.B]: after.length });
      const surge = await fetch(`http://127.0.0.1:${surgePort}/health`).then(() => "answers", () => "down");
      assert.equal(surge, "down", "the surge instance must be stopped after the release");
    });
  });
});

/** The pid of an instance the service shim started. */
function instancePid(server: FakeServer, unit: string): string {
  return fs.readFileSync(path.join(server.shimState, `${unit}.pid`), "utf8").trim();
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const [port] = await freePorts(1);
  return port;
}

/**
 * A route no release has: every POST that reaches the app is a 404 and changes nothing. nginx
 * never retries a POST it has already sent, so a POST written onto a connection the stopping
 * instance closes comes back 502 — what the POST load is here to catch.
 */
const NO_SUCH_ROUTE = "/release-test-no-such-route";

/**
 * Runs `release args` while autocannon drives GET /health through nginx (and, with `posts`,
 * POST NO_SUCH_ROUTE on as many connections again); load continues 1 s after.
 */
async function underLoad(server: FakeServer, nginx: Nginx, args: string[], opts: { posts?: boolean } = {}) {
  const load = startLoad(`${nginx.url}/health`, 8);
  const postLoad = opts.posts ? startLoad(`${nginx.url}${NO_SUCH_ROUTE}`, 8, { method: "POST", body: "{}" }) : undefined;
  await sleep(1000); // steady state first, so the roll happens mid-traffic
  const run = await server.run(args);
  const endedAt = Date.now();
  await sleep(1000);
  const result = await load.stop();
  const posts = await postLoad?.stop();
  return { run, result, posts, endedAt };
}

function assertNoFailures(result: LoadResult) {
  assert.equal(result.errors, 0, `connection errors during the release: ${JSON.stringify(result.errorKinds)}`);
  assert.equal(result.timeouts, 0, `timeouts during the release: ${result.timeouts}`);
  const bad = result.samples.filter((s) => s.status !== 200);
  assert.equal(bad.length, 0, `non-200 responses: ${JSON.stringify(bad.slice(0, 5))}`);
  assert.ok(result.total > 200, `the load generator got only ${result.total} responses; too few to mean anything`);
}

/** Every POST reached an instance (the app's 404): no 502 from nginx, no connection error. */
function assertPostsAnswered(result: LoadResult | undefined) {
  assert.ok(result, "no POST load ran");
  const byStatus: Record<number, number> = {};
  for (const s of result.samples) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
  assert.equal(result.errors, 0, `POST connection errors during the release: ${JSON.stringify(result.errorKinds)}`);
  assert.equal(result.timeouts, 0, `POST timeouts during the release: ${result.timeouts}`);
  assert.deepEqual(Object.keys(byStatus), ["404"], `POST statuses (count by status) during the release: ${JSON.stringify(byStatus)}`);
  assert.ok(result.total > 200, `the POST load got only ${result.total} responses; too few to mean anything`);
}
