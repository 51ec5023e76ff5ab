/**
 * Benchmark of the proxy's cost (not a test): the real app (app/) on 2 web instances with real
 * PostgreSQL, measured in ONE run (a) through the rendered nginx site (provisioning/nginx.ts inside
 * Debian's own nginx.conf, as on the server) and (b) directly at the same instances, with the same
 * load: wrk, the same threads and connections, the direct side's threads spread one per instance
 * port. Two endpoints: GET /health and an authenticated list, GET /orgs/:orgId/projects (a bearer
 * token, 20 rows as in app/bench/bench.ts).
 *
 *   npx tsx bench/proxy.ts [--seconds 4] [--rounds 2] [--connections 16] [--burst 128] [--no-pin] [--worker-processes N]
 *
 * Three passes per endpoint: "light" (one connection per instance and a pause after each answer:
 * the latency of the hop itself, no queue in front of it), "loaded" (--connections, the server
 * saturated: throughput and latency under load) and "burst" (--burst connections: more requests in
 * flight than nginx's upstream keepalive cache holds, where nginx may close and reopen upstream
 * connections; the count of upstream connections it closed is printed). Rounds alternate which side goes first (nginx direct, direct
 * nginx, ...) so a drift in the machine's load falls on both sides alike. Prints per endpoint, pass
 * and side: requests/s, p50 and p99 latency, non-2xx answers and socket errors, and the CPU time
 * per request of nginx's workers, the app instances and PostgreSQL (read from /proc around each
 * round: unlike requests/s it hardly moves when other work shares the machine); then the ratio
 * nginx/direct of requests/s under load (goal >= 0.9) and the p99 nginx adds (goal <= 1 ms).
 *
 * The load generator shares the machine's cores with nginx, the app and PostgreSQL. By default the
 * server side (PostgreSQL, nginx, the instances: everything this process starts) is pinned to CPU 0
 * and wrk to CPU 1 (taskset), so wrk's own work never takes CPU from the side it measures and the
 * server's CPU is what the two sides compete for; --no-pin lets everything share every core.
 * wrk rather than autocannon: it is C and costs a fraction of the CPU per request.
 * Instances run through the test service shim (no systemd as PID 1 here; see test/release/harness.ts).
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  FakeServer, buildRealApp, fakeId, freePort, freePorts, packArtifact, sleep, startPostgres, tempDir,
} from "../test/release/harness";
import { startServerNginx, type BenchNginx } from "./lib/nginx";
import { childPids, cpuUsed, postgresPids, sampleCpu, type CpuGroup } from "./lib/procCpu";
import { seedTenant } from "./lib/tenant";
import { runBench, tearDownBench } from "./lib/teardown";
import { runWrk, summarizeRuns, writeWrkScript, type MeasuredRun, type RunSummary, type WrkResult, type WrkTarget } from "./lib/wrk";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer; got ${JSON.stringify(process.argv[i + 1])}`);
  return v;
};
const SECONDS = arg("seconds", 4);
const ROUNDS = arg("rounds", 2);
const CONNECTIONS = arg("connections", 16);
const BURST_CONNECTIONS = arg("burst", 128);
const PIN = !process.argv.includes("--no-pin");
/** Overrides Debian's `worker_processes auto` (to see what the number of workers costs); 0 keeps it. */
const WORKER_PROCESSES = process.argv.includes("--worker-processes") ? arg("worker-processes", 0) : 0;
const WEB_INSTANCES = 2;
const WARMUP_SECONDS = 2;

interface Pass {
  name: string;
  connections: number;
  seconds: number;
  /** Each connection waits this long after an answer before its next request (wrk's delay()). */
  pauseMs: number;
  about: string;
}

const PASSES: Pass[] = [
  {
    name: "light", connections: WEB_INSTANCES, seconds: 3, pauseMs: 2,
    about: `${WEB_INSTANCES} connections (one per instance on the direct side), 2 ms pause after each answer: the server mostly idle, latency is the hop's, not a queue's`,
  },
  { name: "loaded", connections: CONNECTIONS, seconds: SECONDS, pauseMs: 0, about: `${CONNECTIONS} connections, no pause: the server saturated` },
  {
    name: "burst", connections: BURST_CONNECTIONS, seconds: SECONDS, pauseMs: 0,
    about: `${BURST_CONNECTIONS} connections, no pause: more requests in flight than nginx keeps idle upstream connections for`,
  },
];
const SIDES = ["nginx", "direct"] as const;
type SideName = (typeof SIDES)[number];
const SERVER_CPU = "0";
const LOAD_CPU = "1";

/**
 * Sockets in TIME-WAIT toward the instances' ports (local and peer address of each): the side that
 * closes a TCP connection keeps it 60 s, so those new after a run are the connections closed in it
 * (nginx churning its upstream connections, and closing those whose requests were still in flight when
 * wrk stopped; on the direct side, wrk's own, closed when it exits).
 */
function timeWaitTo(ports: number[]): Set<string> {
  const filter = `( ${ports.map((p) => `dport = :${p}`).join(" or ")} )`;
  const out = execFileSync("ss", ["-H", "-tan", "state", "time-wait", filter], { encoding: "utf8" });
  return new Set(out.split("\n").map((l) => l.trim().split(/\s+/).slice(-2).join(" ")).filter((l) => l));
}

// ---------------------------------------------------------------- load

/** A run with the CPU seconds per CpuGroup (in the order given). */
interface Run extends MeasuredRun {
  /** TCP connections to the instances' ports that entered TIME-WAIT during the run. */
  closed: number;
}

function wrk(scriptFile: string, target: WrkTarget, seconds: number): Promise<WrkResult> {
  return runWrk(scriptFile, target, { threads: WEB_INSTANCES, seconds, cpu: PIN ? LOAD_CPU : undefined });
}

// ---------------------------------------------------------------- figures

interface Side extends RunSummary {
  /** Connections to the instances closed per 1000 requests. */
  closedPer1000: number;
}

function summarize(runs: Run[]): Side {
  const summary = summarizeRuns(runs);
  return { ...summary, closedPer1000: (runs.reduce((n, r) => n + r.closed, 0) / summary.requests) * 1000 };
}

interface Pair {
  nginx: Side;
  direct: Side;
}

// ---------------------------------------------------------------- the run

async function main() {
  const dir = tempDir("proxy-bench");
  const pgDir = path.join(dir, "pg");
  let pgStarted = false;
  let nginx: BenchNginx | undefined;
  let server: FakeServer | undefined;
  try {
    const src = buildRealApp(path.join(dir, "app"));
    const id = fakeId("a");
    const artifact = packArtifact(src, id, dir);
    // From here on everything this process starts inherits CPU 0 (PostgreSQL, nginx, the instances).
    if (PIN) execFileSync("taskset", ["-a", "-p", "-c", SERVER_CPU, String(process.pid)], { stdio: "ignore" });
    const databaseUrl = startPostgres(pgDir);
    pgStarted = true;
    const webPorts = await freePorts(WEB_INSTANCES);
    nginx = startServerNginx(path.join(dir, "nginx"), webPorts, await freePort(), WORKER_PROCESSES || undefined);
    const nginxUrl = `http://127.0.0.1:${nginx.port}`;
    server = new FakeServer(path.join(dir, "server"), {
      webPorts,
      env: { DATABASE_URL: databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: nginxUrl, LOG_LEVEL: "info" },
      conf: ["HEALTH_TIMEOUT=30", "SETTLE_SECONDS=0"],
    });
    const release = await server.run([artifact]);
    if (release.code !== 0) throw new Error(`release failed:\n${release.stdout}${release.stderr}\n${server.logs()}`);
    await sleep(2500); // nginx's fail_timeout from the ports being down before the release started
    const webPids = webPorts.map((p) => Number(fs.readFileSync(path.join(server!.shimState, `web@${p}.pid`), "utf8").trim()));

    // One tenant with 20 projects; its owner's token reads them (as app/bench/bench.ts).
    const tenant = await seedTenant(nginxUrl, (sql) => execFileSync("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", databaseUrl], { input: sql, encoding: "utf8" }));

    const scriptFile = writeWrkScript(dir);
    const endpoints = [
      { title: "GET /health", path: "/health", headers: {} },
      { title: "GET /orgs/:orgId/projects (auth, 20 rows)", path: tenant.listPath, headers: tenant.auth },
    ];
    const sides: Record<SideName, string[]> = {
      nginx: [`127.0.0.1:${nginx.port}`],
      direct: webPorts.map((p) => `127.0.0.1:${p}`),
    };
    const groups: CpuGroup[] = [
      { name: "nginx", pids: () => childPids(nginx!.masterPid) },
      { name: "app", pids: () => webPids },
      { name: "pg", pids: () => postgresPids(path.join(pgDir, "data")) },
    ];
    const measure = async (target: WrkTarget, seconds: number): Promise<Run> => {
      const before = sampleCpu(groups);
      const tw = timeWaitTo(webPorts);
      const r = await wrk(scriptFile, target, seconds);
      const closed = [...timeWaitTo(webPorts)].filter((c) => !tw.has(c)).length;
      return { ...r, cpu: cpuUsed(before, sampleCpu(groups)), closed };
    };

    /** Both sides under one pass's load, rounds alternating which side goes first. */
    const compare = async (ep: (typeof endpoints)[number], pass: Pass): Promise<Pair> => {
      const target = (side: SideName): WrkTarget => ({ addrs: sides[side], path: ep.path, headers: ep.headers, connections: pass.connections, pauseMs: pass.pauseMs });
      const runs: Record<SideName, Run[]> = { nginx: [], direct: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const side of round % 2 === 0 ? SIDES : [...SIDES].reverse()) runs[side].push(await measure(target(side), pass.seconds));
      }
      return { nginx: summarize(runs.nginx), direct: summarize(runs.direct) };
    };

    const load0 = os.loadavg()[0];
    const results: { title: string; pairs: Pair[] }[] = [];
    for (const ep of endpoints) {
      // Warm-up (JIT, connection pools, nginx's upstream connections), not counted.
      for (const side of SIDES) await wrk(scriptFile, { addrs: sides[side], path: ep.path, headers: ep.headers, connections: CONNECTIONS, pauseMs: 0 }, WARMUP_SECONDS);
      const pairs: Pair[] = [];
      for (const pass of PASSES) pairs.push(await compare(ep, pass));
      results.push({ title: ep.title, pairs });
    }

    const nginxVersion = /nginx\/([\d.]+)/.exec(spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr)?.[1] ?? "?";
    console.log(`\nproxy cost — real app (app/): ${WEB_INSTANCES} web instances (LOG_LEVEL=info, as on the server), real PostgreSQL; ` +
      `nginx ${nginxVersion} in Debian's nginx.conf (${childPids(nginx.masterPid).length} workers${WORKER_PROCESSES ? ", set by --worker-processes" : ""}) ` +
      `with the rendered site; wrk ${WEB_INSTANCES} threads; per pass ${ROUNDS} rounds per side, alternating which side goes first`);
    for (const pass of PASSES) console.log(`  ${pass.name.padEnd(7)} ${pass.seconds} s rounds, ${pass.about}`);
    console.log(PIN
      ? `pinned: server side (PostgreSQL, nginx, instances) on CPU ${SERVER_CPU}, wrk on CPU ${LOAD_CPU}`
      : "not pinned: wrk, nginx, the instances and PostgreSQL share every core");
    console.log(`${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), load average ${load0.toFixed(2)} at start, ` +
      `${os.loadavg()[0].toFixed(2)} at end, ${new Date().toISOString()}`);
    const head = ["", "req/s", "p50 ms", "p99 ms", "non-2xx", "errors", ...groups.map((g) => `${g.name} µs`), "server µs", "closed/1k", "  req/s per round"];
    const widths = [14, 7, 8, 8, 8, 7, ...groups.map(() => 9), 10, 10, 0];
    const line = (cells: string[]) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : widths[i] ? c.padStart(widths[i]) : `  ${c}`)).join(""));
    const total = (s: Side) => s.cpuUs.reduce((n, x) => n + x, 0);
    const ms = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(2)} ms`;
    const goal = (ok: boolean) => (ok ? "met" : "MISSED");
    console.log("µs: CPU time per request of nginx's workers, the app instances, PostgreSQL; server: their sum. " +
      "closed/1k: connections to the instances closed per 1000 requests (nginx side: upstream churn, plus those of the requests " +
      "in flight when wrk stops; direct side: wrk's own)");
    for (const r of results) {
      console.log(`\n${r.title}`);
      line(head);
      r.pairs.forEach((pair, i) => {
        for (const side of SIDES) {
          const s = pair[side];
          line([`${PASSES[i].name} ${side}`, s.rps.toFixed(0), s.p50.toFixed(2), s.p99.toFixed(2), String(s.non2xx), String(s.errors),
            ...s.cpuUs.map((x) => x.toFixed(0)), total(s).toFixed(0), s.closedPer1000.toFixed(1), s.rpsPerRound.map((x) => x.toFixed(0)).join(" ")]);
        }
      });
      r.pairs.forEach((pair, i) => {
        const ratio = pair.nginx.rps / pair.direct.rps;
        const addedP99 = pair.nginx.p99 - pair.direct.p99;
        const throughput = PASSES[i].pauseMs ? "" : `req/s nginx/direct ${ratio.toFixed(3)} (goal >= 0.9: ${goal(ratio >= 0.9)}), ` +
          `server CPU/request direct/nginx ${(total(pair.direct) / total(pair.nginx)).toFixed(3)}, `;
        const latency = `added p50 ${ms(pair.nginx.p50 - pair.direct.p50)}, p99 ${ms(addedP99)}` +
          (PASSES[i].pauseMs ? ` (goal <= 1 ms: ${goal(addedP99 <= 1)})` : "");
        console.log(`${PASSES[i].name.padEnd(7)} ${throughput}${latency}`);
      });
    }
  } finally {
    tearDownBench(dir, { servers: [server], nginx, pgDir: pgStarted ? pgDir : undefined });
  }
}

runBench(main);
