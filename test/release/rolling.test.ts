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
 * step starts from the state the previous one left, as on a real server. Restarts after a
 * configuration change are restart.test.ts (its own database and nginx, so both run in parallel).
 * RELEASE_TEST_STANDIN=1 swaps the real app for fixtures/standin (development only).
 */
import assert from "node:assert/strict";
import { type Nginx, FakeServer, byRelease, fetchRelease, sleep } from "./harness";
import { assertNoFailures, assertPostsAnswered, startSite, underLoad, useLiveRelease } from "./live";

describe("@real release: rolling web instances behind real nginx under load", function () {
  this.timeout(120_000);
  const live = useLiveRelease("release-roll");
  const { ids } = live;
  const site = (name: string, webCount: number, opts: { surge?: boolean } = {}) => startSite(live, name, webCount, opts);

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
      const run = await server.run([live.artifacts.A]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(server.currentId(), ids.A);
      await sleep(2500); // nginx marked the ports failed while nothing listened (fail_timeout=2s)
      assert.deepEqual(await fetchRelease(`${nginx.url}/health`), { status: 200, release: ids.A });
    });

    it("releases B over A with zero failed requests (GET and POST), then only B answers", async () => {
      const { run, result, posts, endedAt } = await underLoad(server, nginx, [live.artifacts.B], { posts: true });
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
      const { run, result } = await underLoad(server, nginx, [live.artifacts.C]);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      // The deadline is HEALTH_TIMEOUT (15 s) or 3x the slowest start measured on this machine,
      // whichever is longer: on a busy machine it is longer than 15 s.
      const failed = /FAILED: web@\d+\.service: \/health on 127\.0\.0\.1:\d+ did not answer .* within (\d+)s of its start \(HEALTH_TIMEOUT=15s or 3x the slowest start measured here, [\d.]+s; last answer: HTTP 503, release c/.exec(run.stderr);
      assert.ok(failed, run.stderr);
      assert.ok(Number(failed[1]) >= 15, `a deadline under HEALTH_TIMEOUT: ${failed[0]}`);
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

  });

  describe("one web instance with a surge port (nginx backup server)", () => {
    let nginx: Nginx;
    let server: FakeServer;
    let surgePort: number;

    before(async () => {
      ({ nginx, server, surgePort } = await site("one", 1, { surge: true }));
      const first = await server.run([live.artifacts.A]);
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
      const { run, result, posts, endedAt } = await underLoad(server, nginx, [live.artifacts.B], { posts: true });
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

