/**
 * Stage separated's two app servers against the real things: the app server (web only, behind
 * nginx with the rendered site) and the worker server (the real graphile-worker only), both on one
 * PostgreSQL, released in the order `pulumi up` keeps (the app server's release, then the worker
 * server's). Each release's bin/migrate first creates a table named after the release in
 * PostgreSQL, which fails on a second run: a release migrated twice, or by the worker server,
 * fails. Instances run through the service shim (no systemd as PID 1 here, see harness.ts).
 * The `it`s are one scenario in order, each starting from the state the previous one left.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { type Nginx, FakeServer, byRelease, fakeId, packArtifact, sleep } from "./harness";
import { appEnv, assertNoFailures, assertPostsAnswered, instancePid, startSite, underLoad, useLiveRelease } from "./live";

/** bin/migrate that records the release in PostgreSQL (failing if it already did), then runs the app's migrations. */
function markedMigrate(id: string): Record<string, string> {
  return {
    "bin/migrate": `#!/bin/sh
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q -c 'CREATE TABLE release_migrated_${id} ()' || exit 1
here=$(dirname "$(readlink -f "$0")")
exec node "$here/../dist/migrate.js"
`,
  };
}

describe("@real stage separated: the app server and the worker server, released in order on one database", function () {
  this.timeout(300_000);
  const live = useLiveRelease("release-separated");
  const ids = { A: fakeId("a"), B: fakeId("b") };
  const artifacts: Record<"A" | "B", string> = { A: "", B: "" };
  let nginx: Nginx;
  let app: FakeServer;
  let worker: FakeServer;

  /** Tables the migrations of each release created: which releases were migrated, and how often. */
  const migratedReleases = () =>
    execFileSync("psql", [live.databaseUrl, "-At", "-c", "SELECT tablename FROM pg_tables WHERE tablename LIKE 'release_migrated_%' ORDER BY 1"], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((t) => t.replace("release_migrated_", ""));
  /** The release a worker process runs: its working directory, resolved when it started. */
  const workerRelease = (unit: string) => path.basename(fs.readlinkSync(`/proc/${instancePid(worker, unit)}/cwd`));

  before(async () => {
    artifacts.A = packArtifact(live.src, ids.A, live.dir, markedMigrate(ids.A));
    artifacts.B = packArtifact(live.src, ids.B, live.dir, markedMigrate(ids.B));
    ({ nginx, server: app } = await startSite(live, "separated-app", 2, { workerUnits: [] }));
    worker = new FakeServer(path.join(live.dir, "separated-worker-server"), {
      webPorts: [],
      workerUnits: ["worker@1.service", "worker@2.service"],
      migrate: false,
      env: appEnv(live, nginx.url),
      conf: ["KEEP_RELEASES=5"],
    });
  });

  after(() => {
    app?.stopAll();
    worker?.stopAll();
    nginx?.stop();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") console.log(app?.logs(), worker?.logs());
  });

  it("first release: the app server migrates and serves A, then the worker server starts its workers on A without migrating", async () => {
    const onApp = await app.run([artifacts.A]);
    assert.equal(onApp.code, 0, onApp.stdout + onApp.stderr);
    assert.deepEqual(migratedReleases(), [ids.A]);
    const onWorker = await worker.run([artifacts.A]);
    assert.equal(onWorker.code, 0, onWorker.stdout + onWorker.stderr);
    assert.match(onWorker.stdout, /migrations +not run here \(MIGRATE=no\)/);
    assert.doesNotMatch(onWorker.stdout + onWorker.stderr, /nginx|web@|\/health/);
    assert.deepEqual(migratedReleases(), [ids.A], "the worker server did not migrate");
    for (const unit of ["worker@1", "worker@2"]) assert.equal(workerRelease(unit), ids.A);
  });

  it("B: the app server migrates and rolls web with zero failed requests, then the worker server moves its workers to B", async () => {
    await sleep(2500); // nginx marked the ports failed while nothing listened (fail_timeout=2s)
    const { run, result, posts, endedAt } = await underLoad(app, nginx, [artifacts.B], { posts: true });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assertNoFailures(result);
    assertPostsAnswered(posts);
    const after = result.samples.filter((s) => s.t > endedAt);
    assert.deepEqual(byRelease(after), { [ids.B]: after.length }, "the app server serves B");
    assert.deepEqual(migratedReleases(), [ids.A, ids.B]);
    assert.doesNotMatch(run.stdout, /worker@/, "the app server has no workers to restart");

    const before = ["worker@1", "worker@2"].map((u) => instancePid(worker, u));
    const onWorker = await worker.run([artifacts.B]);
    assert.equal(onWorker.code, 0, onWorker.stdout + onWorker.stderr);
    assert.match(onWorker.stdout, new RegExp(`OK — ${ids.B} is live \\(was ${ids.A}\\)`));
    assert.deepEqual(migratedReleases(), [ids.A, ids.B], "B was migrated once, by the app server");
    ["worker@1", "worker@2"].forEach((u, i) => {
      assert.notEqual(instancePid(worker, u), before[i], `${u} is a new process`);
      assert.equal(workerRelease(u), ids.B);
    });
  });

  it("restart and rollback on the worker server: workers only, never a migration", async () => {
    const before = ["worker@1", "worker@2"].map((u) => instancePid(worker, u));
    const restart = await worker.run(["restart"]);
    assert.equal(restart.code, 0, restart.stdout + restart.stderr);
    ["worker@1", "worker@2"].forEach((u, i) => assert.notEqual(instancePid(worker, u), before[i], `${u} restarted`));
    const back = await worker.run(["rollback"]);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    for (const u of ["worker@1", "worker@2"]) assert.equal(workerRelease(u), ids.A);
    assert.doesNotMatch(restart.stdout + restart.stderr + back.stdout + back.stderr, /nginx|web@|\/health|migrating/);
    assert.deepEqual(migratedReleases(), [ids.A, ids.B]);
    const status = await worker.run(["status"]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, new RegExp(`current: ${ids.A}`));
  });

  it("releasing B on the worker server again (it was rolled back) runs no migration: the marker table would refuse a second one", async () => {
    const again = await worker.run([artifacts.B]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    for (const u of ["worker@1", "worker@2"]) assert.equal(workerRelease(u), ids.B);
    // The same release on the app server is a no-op (already current and healthy), so no second run there either.
    const onApp = await app.run([artifacts.B]);
    assert.equal(onApp.code, 0, onApp.stdout + onApp.stderr);
    assert.match(onApp.stdout, /already current and every instance is healthy/);
    assert.deepEqual(migratedReleases(), [ids.A, ids.B]);
  });
});
