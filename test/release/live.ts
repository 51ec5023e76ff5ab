/**
 * What the live release suites share: one real app build, PostgreSQL, the rendered nginx site in
 * front of a FakeServer (the release script through the service shim), and load from autocannon.
 * Each suite file gets its own temp folder, database and nginx, so the files run in parallel.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  FakeServer, type LoadResult, type Nginx, STANDIN_APP, buildRealApp, fakeId, freePorts, packArtifact, sleep, startLoad,
  startNginx, startPostgres, stopPostgres, tempDir, unhealthyWeb,
} from "./harness";

export interface LiveRelease {
  ids: { A: string; B: string; C: string };
  /** Versions A and B (the same build, other ids) and a broken C whose /health says 503. */
  artifacts: Record<"A" | "B" | "C", string>;
  dir: string;
  /** The unpacked build the artifacts were packed from (for packing more versions). */
  src: string;
  databaseUrl: string;
}

/**
 * Registers the suite's before/after hooks: the app built (RELEASE_TEST_STANDIN=1 swaps in the
 * stand-in, development only), A/B/C packed, PostgreSQL started; the returned object is filled in
 * by the time the suite's own hooks and tests run.
 */
export function useLiveRelease(name: string): LiveRelease {
  const live = { ids: { A: fakeId("a"), B: fakeId("b"), C: fakeId("c") }, artifacts: {} } as LiveRelease;
  let pgDir: string | undefined;
  before(function () {
    this.timeout(600_000);
    live.dir = tempDir(name);
    const src = process.env.RELEASE_TEST_STANDIN ? STANDIN_APP : buildRealApp(path.join(live.dir, "app"));
    live.src = src;
    live.artifacts = {
      A: packArtifact(src, live.ids.A, live.dir),
      B: packArtifact(src, live.ids.B, live.dir),
      C: packArtifact(src, live.ids.C, live.dir, unhealthyWeb(live.ids.C)),
    };
    pgDir = path.join(live.dir, "pg");
    live.databaseUrl = startPostgres(pgDir);
  });
  after(function () {
    this.timeout(60_000);
    if (pgDir) stopPostgres(pgDir);
  });
  return live;
}

/** The app's environment on a fake server of this suite (its database, nginx's URL). */
export function appEnv(live: LiveRelease, appUrl: string): Record<string, string> {
  return { DATABASE_URL: live.databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: appUrl, LOG_LEVEL: "warn" };
}

/** nginx (the rendered site) + a fake server whose web ports it proxies to (and one worker unless told otherwise). */
export async function startSite(live: LiveRelease, name: string, webCount: number, opts: { surge?: boolean; workerUnits?: string[] } = {}) {
  const ports = await freePorts(webCount + 1);
  const webPorts = ports.slice(0, webCount);
  const surgePort = ports[webCount];
  // The surge port is a `backup` server: nginx uses it only while every primary is down.
  const nginx = await startNginx(path.join(live.dir, `${name}-nginx`), webPorts, opts.surge ? [`server 127.0.0.1:${surgePort} backup;`] : []);
  const server = new FakeServer(path.join(live.dir, `${name}-server`), {
    webPorts,
    workerUnits: opts.workerUnits ?? ["worker@1.service"],
    env: appEnv(live, nginx.url),
    conf: ["HEALTH_TIMEOUT=15", "SETTLE_SECONDS=3", "KEEP_RELEASES=5", ...(opts.surge ? [`SURGE_PORT=${surgePort}`] : [])],
  });
  return { nginx, server, surgePort };
}

/** The pid of an instance the service shim started. */
export function instancePid(server: FakeServer, unit: string): string {
  return fs.readFileSync(path.join(server.shimState, `${unit}.pid`), "utf8").trim();
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
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
export async function underLoad(server: FakeServer, nginx: Nginx, args: string[], opts: { posts?: boolean } = {}) {
  const errorLog = path.join(nginx.dir, "error.log");
  const errorLogFrom = fs.existsSync(errorLog) ? fs.statSync(errorLog).size : 0;
  const load = startLoad(`${nginx.url}/health`, 8);
  const postLoad = opts.posts ? startLoad(`${nginx.url}${NO_SUCH_ROUTE}`, 8, { method: "POST", body: "{}" }) : undefined;
  await sleep(1000); // steady state first, so the roll happens mid-traffic
  const run = await server.run(args);
  const endedAt = Date.now();
  await sleep(1000);
  const result = await load.stop();
  const posts = await postLoad?.stop();
  // What nginx logged meanwhile (at warn and above): on a 502 it names the upstream and the
  // reason (reset, refused, closed prematurely), which the status alone does not.
  const nginxErrors = fs.existsSync(errorLog) ? fs.readFileSync(errorLog).subarray(errorLogFrom).toString("utf8") : "";
  return { run, result, posts: posts && { ...posts, nginxErrors }, endedAt };
}

export function assertNoFailures(result: LoadResult) {
  assert.equal(result.errors, 0, `connection errors during the release: ${JSON.stringify(result.errorKinds)}`);
  assert.equal(result.timeouts, 0, `timeouts during the release: ${result.timeouts}`);
  const bad = result.samples.filter((s) => s.status !== 200);
  assert.equal(bad.length, 0, `non-200 responses: ${JSON.stringify(bad.slice(0, 5))}`);
  assert.ok(result.total > 200, `the load generator got only ${result.total} responses; too few to mean anything`);
}

/**
 * nginx's error lines of a run, for a failure message: a refused connect to a stopping instance is
 * expected (nginx tries the next one, POST included) and only counted; anything else is shown.
 */
const EXPECTED_NGINX_ERROR = /\(111: Connection refused\)|upstream server temporarily disabled/;
function nginxReasons(errors: string | undefined): string {
  const lines = (errors ?? "").split("\n").filter((l) => l.trim());
  const other = lines.filter((l) => !EXPECTED_NGINX_ERROR.test(l));
  return `; nginx's error log meanwhile: ${lines.length - other.length} refused connects to a stopping instance` +
    (other.length ? `, and:\n${other.slice(-10).join("\n")}` : ", nothing else");
}

/** Every POST reached an instance (the app's 404): no 502 from nginx, no connection error. */
export function assertPostsAnswered(result: (LoadResult & { nginxErrors?: string }) | undefined) {
  assert.ok(result, "no POST load ran");
  const byStatus: Record<number, number> = {};
  for (const s of result.samples) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
  assert.equal(result.errors, 0, `POST connection errors during the release: ${JSON.stringify(result.errorKinds)}`);
  assert.equal(result.timeouts, 0, `POST timeouts during the release: ${result.timeouts}`);
  assert.deepEqual(Object.keys(byStatus), ["404"], `POST statuses (count by status) during the release: ${JSON.stringify(byStatus)}${nginxReasons(result.nginxErrors)}`);
  assert.ok(result.total > 200, `the POST load got only ${result.total} responses; too few to mean anything`);
}
