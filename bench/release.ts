/**
 * Benchmark of a rolling release (not a test): real nginx (provisioning/nginx.ts site), real
 * PostgreSQL, the real app from app/ as releases A and B, 2 web instances + 1 worker run
 * through the test service shim (no systemd as PID 1 here; see test/release/harness.ts).
 *
 *   npx tsx bench/release.ts                   (RELEASE_TEST_STANDIN=1 uses the stand-in app)
 *   npx tsx bench/release.ts --first-release   first-release start-up only (see below)
 *
 * Prints: release duration, requests served during the release, failed requests, and the
 * throughput during the release as a ratio of steady-state throughput measured in this run
 * (same load generator, same connections, GET /health through nginx).
 *
 * --first-release: 3 web instances + 2 workers released onto empty servers, side by side, with
 * the web instances started in batches of this machine's CPU count (what `release` does) and all
 * at once (RELEASE_CPUS=3, as it did before), ROUNDS times each, alternating. Prints the slowest
 * start-to-healthy of a web instance (what the health deadline must cover) and the time until
 * every web instance is healthy, and their ratios batches / all at once.
 */
import os from "node:os";
import path from "node:path";
import {
  FakeServer, type LoadResult, type Nginx, STANDIN_APP, buildRealApp, byRelease, fakeId, freePorts, packArtifact,
  sleep, startLoad, startNginx, startPostgres, tempDir,
} from "../test/release/harness";
import { runBench, tearDownBench } from "./lib/teardown";

const CONNECTIONS = 8;
const STEADY_MS = 5000;

function failed(r: LoadResult): number {
  return r.errors + r.timeouts + r.non2xx;
}

const FIRST_RELEASE_WEB = 3;
const ROUNDS = 3;

/** Slowest "start to healthy" of the summary lines, in seconds. */
function slowestStart(stdout: string): number {
  const times = [...stdout.matchAll(/^release \[.*healthy on [0-9a-f]+ \(start to healthy (\d+\.\d)s\)$/gm)].map((m) => Number(m[1]));
  if (times.length !== FIRST_RELEASE_WEB) throw new Error(`expected ${FIRST_RELEASE_WEB} start times in:\n${stdout}`);
  return Math.max(...times);
}

async function firstRelease() {
  const dir = tempDir("release-bench-first");
  const pgDir = path.join(dir, "pg");
  let pgStarted = false;
  const servers: FakeServer[] = [];
  try {
    const standin = Boolean(process.env.RELEASE_TEST_STANDIN);
    const src = standin ? STANDIN_APP : buildRealApp(path.join(dir, "app"));
    const A = packArtifact(src, fakeId("a"), dir);
    const databaseUrl = startPostgres(pgDir);
    pgStarted = true;
    const cpus = os.availableParallelism();
    const modes: Array<[string, string]> = [[`batches of ${cpus} (nproc)`, String(cpus)], ["all at once", String(FIRST_RELEASE_WEB)]];
    const results: Record<string, { slowest: number[]; web: number[] }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, batch] of modes) {
        const server = new FakeServer(path.join(dir, `server-${round}-${batch}`), {
          webPorts: await freePorts(FIRST_RELEASE_WEB),
          workerUnits: ["worker@1.service", "worker@2.service"],
          env: { DATABASE_URL: databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: "http://127.0.0.1", LOG_LEVEL: "warn" },
          conf: ["HEALTH_TIMEOUT=120", "WORKER_CHECK_SECONDS=1"],
        });
        servers.push(server);
        const run = await server.run([A], { RELEASE_CPUS: batch });
        if (run.code !== 0) throw new Error(`first release (${name}) failed:\n${run.stdout}${run.stderr}\n${server.logs()}`);
        const webHealthy = run.stdout.match(/\[\+(\d+\.\d)s\] (web@\d+\.service +healthy on)/g) ?? [];
        const lastWeb = Number(/\+(\d+\.\d)s/.exec(webHealthy[webHealthy.length - 1] ?? "")?.[1]);
        const r = (results[name] ??= { slowest: [], web: [] });
        r.slowest.push(slowestStart(run.stdout));
        r.web.push(lastWeb);
        server.stopAll();
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const row = (k: string, v: string) => console.log(`${k.padEnd(48)} ${v}`);
    console.log(`\nfirst release — ${standin ? "STAND-IN app" : "real app (app/)"}, ${FIRST_RELEASE_WEB} web + 2 workers, ` +
      `${cpus} CPUs, median of ${ROUNDS} alternating rounds, ${new Date().toISOString()}`);
    for (const [name] of modes) {
      row(`${name}: slowest web start-to-healthy`, `${median(results[name].slowest).toFixed(1)} s  (${results[name].slowest.join(", ")})`);
      row(`${name}: every web instance healthy after`, `${median(results[name].web).toFixed(1)} s  (${results[name].web.join(", ")})`);
    }
    const [batched, together] = modes.map(([name]) => results[name]);
    row("ratio batches / all at once: slowest start", (median(batched.slowest) / median(together.slowest)).toFixed(2));
    row("ratio batches / all at once: all web healthy", (median(batched.web) / median(together.web)).toFixed(2));
  } finally {
    tearDownBench(dir, { servers, pgDir: pgStarted ? pgDir : undefined });
  }
}

async function main() {
  if (process.argv.includes("--first-release")) return firstRelease();
  const dir = tempDir("release-bench");
  let nginx: Nginx | undefined;
  let server: FakeServer | undefined;
  const pgDir = path.join(dir, "pg");
  let pgStarted = false;
  try {
    const standin = Boolean(process.env.RELEASE_TEST_STANDIN);
    const src = standin ? STANDIN_APP : buildRealApp(path.join(dir, "app"));
    const ids = { A: fakeId("a"), B: fakeId("b") };
    const A = packArtifact(src, ids.A, dir);
    const B = packArtifact(src, ids.B, dir);
    const databaseUrl = startPostgres(pgDir);
    pgStarted = true;
    const webPorts = await freePorts(2);
    nginx = await startNginx(path.join(dir, "nginx"), webPorts);
    server = new FakeServer(path.join(dir, "server"), {
      webPorts,
      workerUnits: ["worker@1.service"],
      env: { DATABASE_URL: databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: nginx.url, LOG_LEVEL: "warn" },
      conf: ["HEALTH_TIMEOUT=30", "SETTLE_SECONDS=3"],
    });
    const first = await server.run([A]);
    if (first.code !== 0) throw new Error(`release A failed:\n${first.stdout}${first.stderr}\n${server.logs()}`);
    await sleep(2500); // nginx's fail_timeout from the ports being down before A started

    const url = `${nginx.url}/health`;
    // Steady state: same load, no release; the first second is warm-up and not counted.
    const steadyLoad = startLoad(url, CONNECTIONS);
    await sleep(1000 + STEADY_MS);
    const steady = await steadyLoad.stop();
    const steadyFrom = steady.startedAt + 1000;
    const steadyCount = steady.samples.filter((s) => s.t >= steadyFrom).length;
    const steadyRps = steadyCount / ((steady.stoppedAt - steadyFrom) / 1000);

    // The release of B over A under the same load.
    const load = startLoad(url, CONNECTIONS);
    await sleep(1000);
    const t0 = Date.now();
    const run = await server.run([B]);
    const t1 = Date.now();
    await sleep(500);
    const during = await load.stop();
    if (run.code !== 0) throw new Error(`release B failed:\n${run.stdout}${run.stderr}`);
    const inRelease = during.samples.filter((s) => s.t >= t0 && s.t <= t1);
    const releaseRps = inRelease.length / ((t1 - t0) / 1000);
    const seen = byRelease(inRelease);

    const row = (k: string, v: string) => console.log(`${k.padEnd(48)} ${v}`);
    console.log(`\nrelease benchmark — ${standin ? "STAND-IN app" : "real app (app/)"}, 2 web instances + 1 worker, ` +
      `${CONNECTIONS} connections, GET /health via nginx, SETTLE_SECONDS=3, ${new Date().toISOString()}`);
    row("release duration", `${((t1 - t0) / 1000).toFixed(2)} s`);
    row("requests served during the release", `${inRelease.length} (A ${seen[ids.A] ?? 0}, B ${seen[ids.B] ?? 0})`);
    row("failed requests (errors + timeouts + non-2xx)", `${failed(during)} over the whole loaded run of ${during.total}` +
      (failed(during) ? ` ${JSON.stringify(during.errorKinds)}` : ""));
    row("steady-state throughput", `${steadyRps.toFixed(0)} req/s (${steadyCount} in ${((steady.stoppedAt - steadyFrom) / 1000).toFixed(1)} s)`);
    row("throughput during the release", `${releaseRps.toFixed(0)} req/s`);
    row("ratio release / steady", `${(releaseRps / steadyRps).toFixed(2)}`);
    console.log("\nscript summary:\n" + run.stdout.split("\n").filter((l) => /^(release: OK|  )/.test(l)).join("\n"));

    // POSTs, which nginx retries on another instance only if they were never sent: one written
    // onto a keep-alive connection the stopping instance is closing comes back 502. The app never
    // closes an idle connection itself (nginx's upstream keepalive_timeout is shorter than the
    // app's, and on SIGTERM it only stops listening), so this should print 0. The route does not
    // exist, so every POST that reaches the app is a 404 and changes nothing.
    await sleep(2500);
    const posts = startLoad(`${nginx.url}/bench-no-such-route`, CONNECTIONS, { method: "POST", body: "{}" });
    await sleep(1000);
    const back = await server.run(["rollback"]);
    await sleep(500);
    const postResult = await posts.stop();
    if (back.code !== 0) throw new Error(`rollback failed:\n${back.stdout}${back.stderr}`);
    const post5xx = postResult.samples.filter((s) => s.status >= 500).length;
    const byStatus: Record<number, number> = {};
    for (const s of postResult.samples) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
    console.log("");
    row("POST during a rollback (B -> A): 5xx + errors", `${post5xx + postResult.errors + postResult.timeouts} of ${postResult.total} ${JSON.stringify(byStatus)}`);
  } finally {
    tearDownBench(dir, { servers: [server], nginx, pgDir: pgStarted ? pgDir : undefined });
  }
}

runBench(main);
