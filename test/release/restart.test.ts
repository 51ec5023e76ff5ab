/**
 * `release restart` (what a day-2 change of app.env or the app units runs) against the real
 * things, under load: nginx with the rendered site, PostgreSQL and the app built from app/, as in
 * rolling.test.ts. The `it`s run in order on one server that serves release A.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { type Nginx, FakeServer, byRelease, sleep } from "./harness";
import { assertNoFailures, assertPostsAnswered, closedPort, instancePid, startSite, underLoad, useLiveRelease } from "./live";

describe("@real release restart: a configuration change, health-gated, behind real nginx under load", function () {
  this.timeout(120_000);
  const live = useLiveRelease("release-restart");
  const { ids } = live;
  let nginx: Nginx;
  let server: FakeServer;

  before(async () => {
    ({ nginx, server } = await startSite(live, "restart", 2));
    const first = await server.run([live.artifacts.A]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    await sleep(2500); // nginx marked the ports failed while nothing listened (fail_timeout=2s)
  });

  after(() => {
    server?.stopAll();
    nginx?.stop();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") console.log(server?.logs());
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
