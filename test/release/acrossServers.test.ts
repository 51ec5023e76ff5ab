/**
 * A release rolled across the two app servers of stage scaled behind the balancer, against the
 * real things (test/release/across.ts: the program's rendered nginx site and release.conf of app
 * and app-2, each in a network namespace with the real app through the release script, one
 * PostgreSQL, HAProxy from Debian as the provider's balancer with the plan's check thresholds).
 *
 * Under continuous GET and POST load from a client through HAProxy, a new release goes to app,
 * then to app-2, as `pulumi up` chains the AppRelease commands, each server drained at the
 * balancer first: no request may fail and both servers end on the new release. Then a release
 * that cannot start on app-2: app takes it, app-2 fails its health gate and rolls back, and the
 * roll stops there (in `pulumi up` the failed command stops every release after it), again
 * without one failed request. That mixed state is the intended one: migrations are
 * expand/contract, so the old and the new release both run against the schema the new one
 * migrated to, and the next `pulumi up` retries the releases that did not happen.
 *
 * The balancer's check runs 1 s apart instead of the plan's 5 s (across.ts fasterCheck: the
 * thresholds are the plan's), to keep the file near a minute; bench/rollAcross.ts measures with
 * the plan's own timing.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { type Across, fasterCheck, startAcross } from "./across";
import { fakeId, packArtifact, sleep } from "./harness";
import type { LoadReport } from "../support/httpLoad";
import type { StateChange } from "../support/haproxy";
import { undrainSeconds } from "../../plan/scaled";

/** Release C's bin/web: exits at once on app-2 only (something only that server lacks), runs the real web elsewhere. */
function failsOnAppTwo(realWeb: string): Record<string, string> {
  return {
    "bin/web": '#!/bin/sh\nif [ "$STANDIN_SERVER" = "app-2" ]; then echo "web: cannot start on this server" >&2; exit 1; fi\n' +
      'exec "$(dirname "$(readlink -f "$0")")/web.real" "$@"\n',
    "bin/web.real": realWeb,
  };
}

describe("@real a release rolled across two app servers behind HAProxy (stage scaled): app then app-2, zero failed requests, a failure on app-2 stops the roll", function () {
  this.timeout(300_000);
  const ids = { A: fakeId("a"), B: fakeId("b"), C: fakeId("c") };
  const artifacts = { B: "", C: "" };
  let across: Across;
  let skipped = false;

  before(async function () {
    this.timeout(600_000);
    const missing = ["haproxy", "nginx", "curl", "psql"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
    if (process.getuid?.() !== 0 || missing.length > 0) {
      const why = `needs root, ip netns and ${missing.length ? missing.join(", ") : "haproxy, nginx"} (npm run setup installs them)`;
      if (process.env.CI) throw new Error(`the roll across servers test ${why}`);
      console.log(`      SKIPPED LOUDLY: ${why}`);
      skipped = true;
      this.skip();
    }
    across = await startAcross({ check: fasterCheck, firstRelease: (src, dir) => ({ artifact: packArtifact(src, ids.A, dir), id: ids.A }) });
    artifacts.B = packArtifact(across.src, ids.B, across.dir);
    artifacts.C = packArtifact(across.src, ids.C, across.dir, failsOnAppTwo(fs.readFileSync(`${across.src}/bin/web`, "utf8")));
  });

  after(() => {
    if (!skipped) across?.stop();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") for (const s of across?.servers ?? []) console.log(`--- ${s.name}\n${s.server.logs()}`);
  });

  /** Runs `roll` under the client's load while watching the balancer; the load's report and the balancer's changes. */
  async function underLoad<T>(roll: () => Promise<T>): Promise<{ result: T; report: LoadReport; changes: StateChange[] }> {
    const watch = across.watchStates();
    const load = across.startLoad();
    await sleep(1500); // the load in full swing before the first drain
    const result = await roll();
    await sleep(1500);
    const report = await load.stop();
    return { result, report, changes: await watch.stop() };
  }

  function assertNoFailedRequests(report: LoadReport) {
    assert.deepEqual(report.failed.slice(0, 5), [], `${report.failed.length} failed requests of ${report.ok + report.failed.length}; by method and status ${JSON.stringify(report.byMethodStatus)}`);
    const gets = Object.entries(report.byMethodStatus).filter(([k]) => k.startsWith("GET 2")).reduce((n, [, v]) => n + v, 0);
    const posts = Object.entries(report.byMethodStatus).filter(([k]) => k.startsWith("POST 2")).reduce((n, [, v]) => n + v, 0);
    assert.ok(gets > 100 && posts > 100, `too little load to mean anything: ${JSON.stringify(report.byMethodStatus)}`);
  }

  /** The balancer took `name` out and put it back within [from, to], and had every other server in rotation meanwhile. */
  function assertDrainedAlone(changes: StateChange[], name: string, from: number, to: number) {
    const own = changes.filter((c) => c.name === name && c.t >= from && c.t <= to).map((c) => c.state);
    assert.deepEqual(own, ["down", "up"], `${name} left the balancer's rotation and came back during its release: ${JSON.stringify(changes)}`);
    const others = changes.filter((c) => c.name !== name && c.t >= from && c.t <= to && c.state === "down");
    assert.deepEqual(others, [], `no other server was out while ${name} was`);
  }

  /** X-App-Release of `count` requests through the balancer, each on a new connection. */
  function releasesServed(count: number): Set<string> {
    const seen = new Set<string>();
    for (let i = 0; i < count; i++) {
      const r = spawnSync("ip", ["netns", "exec", across.clientNs, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-D", "-", `${across.appUrl}/health`], { encoding: "utf8" });
      const m = /^x-app-release: (\S+)/im.exec(r.stdout);
      assert.ok(m, `no release header: ${r.stdout}${r.stderr}`);
      seen.add(m[1]!);
    }
    return seen;
  }

  it("the program releases app first and app-2 after it, each with a drain at the balancer in its release.conf", () => {
    assert.deepEqual(across.render.order, ["app", "app-2"]);
    for (const name of across.render.order) assert.match(across.render.files[name]!.releaseConf, /^LB_DRAIN_FILE="\/run\/saas-vps\/lb-drain"$/m);
  });

  it("B rolled across app then app-2 with the release command Pulumi runs: zero failed GETs and POSTs, each server drained alone, both on B, the client's address in both access logs", async () => {
    const logFrom = across.servers.map((s) => fs.statSync(s.accessLog).size);
    const { result: windows, report, changes } = await underLoad(async () => {
      const out: Array<{ from: number; to: number }> = [];
      for (const s of across.servers) {
        const from = Date.now();
        const r = await across.release(s, artifacts.B, ids.B);
        assert.equal(r.code, 0, `release on ${s.name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /load balancer: draining/);
        out.push({ from, to: Date.now() });
      }
      return out;
    });
    console.log(`      roll: ${across.servers.map((s, i) => `${s.name} ${((windows[i]!.to - windows[i]!.from) / 1000).toFixed(1)} s`).join(", ")}; ` +
      `${report.ok} requests answered, ${JSON.stringify(report.byMethodStatus)}, by release ${JSON.stringify(report.byRelease)}`);
    assertNoFailedRequests(report);
    across.servers.forEach((s, i) => assertDrainedAlone(changes, s.name, windows[i]!.from, windows[i]!.to));
    for (const s of across.servers) assert.equal(s.server.currentId(), ids.B, `${s.name} is on B`);
    assert.deepEqual([...new Set(report.lastReleases)], [ids.B], "the last answers all came from B");
    assert.deepEqual([...releasesServed(6)], [ids.B]);

    // The PROXY header carried the client's address to each server's nginx, never HAProxy's.
    across.servers.forEach((s, i) => {
      const lines = fs.readFileSync(s.accessLog, "utf8").slice(logFrom[i]).trim().split("\n").map((l) => JSON.parse(l) as { remote_addr: string });
      assert.ok(lines.length > 100, `${s.name} served ${lines.length} requests of the load`);
      assert.deepEqual([...new Set(lines.map((l) => l.remote_addr))], [across.clientAddress], `${s.name}'s access log shows the client only`);
    });
  });

  it("C cannot start on app-2: app takes it, app-2 fails its health gate and rolls back to B while serving, the roll stops there; zero failed requests", async () => {
    const [app, app2] = across.servers as [Across["servers"][0], Across["servers"][0]];
    const { result, report, changes } = await underLoad(async () => {
      const from = Date.now();
      const onApp = await across.release(app, artifacts.C, ids.C);
      const mid = Date.now();
      const onApp2 = await across.release(app2, artifacts.C, ids.C);
      const to = Date.now();
      // A failed release removes the drain file after its rollback and exits without waiting for
      // the balancer (its exit status is what matters then): app-2 is back within LB_IN_SECONDS.
      const backMs = await across.waitState(app2.name, "up", undrainSeconds(across.check) * 1000 + 2000);
      return { onApp, onApp2, from, mid, to, backMs };
    });
    const { onApp, onApp2 } = result;
    console.log(`      failed roll: app ${((result.mid - result.from) / 1000).toFixed(1)} s, app-2 ${((result.to - result.mid) / 1000).toFixed(1)} s; ` +
      `app-2 back in the balancer ${(result.backMs / 1000).toFixed(1)} s after its release failed; ${report.ok} requests answered, by release ${JSON.stringify(report.byRelease)}`);
    assert.equal(onApp.code, 0, onApp.stdout + onApp.stderr);
    assert.equal(onApp2.code, 1, `app-2's release must fail (the AppRelease command, and with it pulumi up): ${onApp2.stdout}${onApp2.stderr}`);
    assert.match(onApp2.stderr, new RegExp(`rolled back; ${ids.B} is serving`));
    assert.match(onApp2.stdout + onApp2.stderr, /exited before \/health answered/);
    assertNoFailedRequests(report);
    assertDrainedAlone(changes, app.name, result.from, result.mid);
    // The watcher polls every 50 ms: it may note app-2 back a moment after waitState saw it.
    assertDrainedAlone(changes, app2.name, result.mid, result.to + result.backMs + 500);
    // The intended state after a failed roll: app on C, app-2 back on B, both in rotation and serving.
    assert.equal(app.server.currentId(), ids.C);
    assert.equal(app2.server.currentId(), ids.B);
    assert.deepEqual(await across.states(), { app: "up", "app-2": "up" });
    assert.deepEqual([...releasesServed(10)].sort(), [ids.B, ids.C].sort(), "the balancer sends requests to both releases");
  });
});
