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
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { renderNginxSite } from "../provisioning/nginx";
import {
  FakeServer, buildRealApp, fakeId, freePort, freePorts, packArtifact, sleep, startPostgres, stopPostgres, tempDir,
} from "../test/release/harness";

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

// ---------------------------------------------------------------- nginx as on the server

interface Nginx {
  port: number;
  masterPid: number;
  stop(): void;
}

/**
 * Debian's own /etc/nginx/nginx.conf (worker_processes auto, sendfile, gzip, ...) with the rendered
 * site where conf.d/*.conf is included, and its pid, logs and temp paths in `dir`. The test
 * harness's nginx runs 1 worker in a minimal main config; this measures what the server runs.
 */
function startNginx(dir: string, webPorts: number[], port: number): Nginx {
  fs.mkdirSync(dir, { recursive: true });
  const site = renderNginxSite({ webPorts, httpPort: port, listenAddress: "127.0.0.1", accessLog: path.join(dir, "access.log") });
  fs.writeFileSync(path.join(dir, "site.conf"), site);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((n) => `${n}_temp_path ${path.join(dir, `${n}_temp`)};`);
  const debian = fs.readFileSync("/etc/nginx/nginx.conf", "utf8");
  const workers = WORKER_PROCESSES ? debian.replace(/^worker_processes .*;$/m, `worker_processes ${WORKER_PROCESSES};`) : debian;
  const main = workers
    .replace(/^pid .*;$/m, `pid ${path.join(dir, "nginx.pid")};`)
    .replace(/^error_log .*;$/m, `error_log ${path.join(dir, "error.log")};`)
    .replace(/access_log \/var\/log\/nginx\/access\.log;/, `access_log ${path.join(dir, "default-access.log")};`)
    .replace("include /etc/nginx/conf.d/*.conf;", `${temp.join(" ")}\n\tinclude ${path.join(dir, "site.conf")};`)
    .replace("include /etc/nginx/sites-enabled/*;", "");
  if (!main.includes(path.join(dir, "site.conf"))) throw new Error("/etc/nginx/nginx.conf has no `include /etc/nginx/conf.d/*.conf;` to put the site in");
  fs.writeFileSync(path.join(dir, "nginx.conf"), main);
  const args = ["-p", dir, "-c", path.join(dir, "nginx.conf")];
  execFileSync("nginx", [...args, "-t", "-q"], { stdio: "pipe" });
  execFileSync("nginx", args, { stdio: "pipe" });
  const masterPid = Number(fs.readFileSync(path.join(dir, "nginx.pid"), "utf8").trim());
  return {
    port,
    masterPid,
    stop() {
      try {
        execFileSync("nginx", [...args, "-s", "stop"], { stdio: "ignore" });
      } catch {
        /* already gone */
      }
    },
  };
}

function childPids(pid: number): number[] {
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
  return out.split("\n").map((l) => Number(l.trim())).filter((n) => n > 0);
}

/** utime + stime of each process that still exists, in seconds (clock ticks of 1/100 s on Linux). */
function cpuByPid(pids: number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // exited (a PostgreSQL backend whose connection closed)
    }
    // Fields after the command name (which may hold spaces) start at field 3; utime/stime are 14/15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return out;
}

/** A group of server processes whose CPU time is sampled around each run. */
interface CpuGroup {
  name: string;
  pids(): number[];
}

/** CPU seconds each group used between two samples; a process born in between counts from 0. */
function cpuUsed(before: Map<number, number>[], after: Map<number, number>[]): number[] {
  return after.map((end, i) => [...end].reduce((n, [pid, t]) => n + t - (before[i].get(pid) ?? 0), 0));
}

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

// ---------------------------------------------------------------- load: wrk

/**
 * wrk script: thread i sends to target i mod n (so the direct side spreads the same threads and
 * connections over the instances), pauses WRK_PAUSE_MS after each answer if set, counts non-2xx
 * answers, and prints the totals and the raw
 * latency histogram (µs value, count) so rounds can be merged exactly.
 */
const WRK_SCRIPT = `
local targets = {}
for t in string.gmatch(os.getenv("WRK_TARGETS"), "%S+") do table.insert(targets, t) end
local threads = {}
function setup(thread)
  local host, port = string.match(targets[#threads % #targets + 1], "^(.*):(%d+)$")
  thread.addr = wrk.lookup(host, port)[1]
  table.insert(threads, thread)
end
local pause = tonumber(os.getenv("WRK_PAUSE_MS") or "0")
if pause > 0 then
  function delay() return pause end
end
non2xx = 0
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d\\n", summary.requests, summary.duration, n, e.connect + e.read + e.write + e.timeout))
  for i = 1, #latency do
    local v, c = latency(i)
    io.write(string.format("LAT %d %d\\n", v, c))
  end
end
`;

interface Run {
  requests: number;
  seconds: number;
  non2xx: number;
  errors: number;
  /** latency µs -> count */
  histogram: Map<number, number>;
  /** CPU seconds per CpuGroup (in the order given) during the run. */
  cpu: number[];
  /** TCP connections to the instances' ports that entered TIME-WAIT during the run. */
  closed: number;
}

interface Target {
  /** host:port each wrk thread is sent to, round-robin. */
  addrs: string[];
  path: string;
  headers: Record<string, string>;
  connections: number;
  pauseMs: number;
}

function runWrk(scriptFile: string, target: Target, seconds: number): Promise<Omit<Run, "cpu" | "closed">> {
  const [first] = target.addrs;
  const threads = WEB_INSTANCES;
  const wrkArgs = [
    `-t${threads}`, `-c${target.connections}`, `-d${seconds}s`, "--timeout", "5s", "-s", scriptFile,
    ...Object.entries(target.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    `http://${first}${target.path}`,
  ];
  const [cmd, args] = PIN ? ["taskset", ["-c", LOAD_CPU, "wrk", ...wrkArgs]] : ["wrk", wrkArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, WRK_TARGETS: target.addrs.join(" "), WRK_PAUSE_MS: String(target.pauseMs) }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      const m = /^RESULT (\d+) (\d+) (\d+) (\d+)$/m.exec(out);
      if (code !== 0 || !m) return reject(new Error(`wrk ${args.join(" ")} exited ${code}:\n${out}${err}`));
      const histogram = new Map<number, number>();
      for (const [, v, c] of out.matchAll(/^LAT (\d+) (\d+)$/gm)) histogram.set(Number(v), (histogram.get(Number(v)) ?? 0) + Number(c));
      resolve({ requests: Number(m[1]), seconds: Number(m[2]) / 1e6, non2xx: Number(m[3]), errors: Number(m[4]), histogram });
    });
  });
}

// ---------------------------------------------------------------- figures

interface Side {
  rps: number;
  rpsPerRound: number[];
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  requests: number;
  /** CPU µs per request of each group. */
  cpuUs: number[];
  /** Connections to the instances closed per 1000 requests. */
  closedPer1000: number;
}

/** Latency at percentile p (0-100) of a µs histogram, in ms. */
function percentileMs(histogram: Map<number, number>, p: number): number {
  const values = [...histogram.keys()].sort((a, b) => a - b);
  const total = values.reduce((n, v) => n + histogram.get(v)!, 0);
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (const v of values) {
    seen += histogram.get(v)!;
    if (seen >= rank) return v / 1000;
  }
  return NaN;
}

function summarize(runs: Run[]): Side {
  const histogram = new Map<number, number>();
  for (const r of runs) for (const [v, c] of r.histogram) histogram.set(v, (histogram.get(v) ?? 0) + c);
  const sum = (f: (r: Run) => number) => runs.reduce((n, r) => n + f(r), 0);
  const requests = sum((r) => r.requests);
  return {
    rps: requests / sum((r) => r.seconds),
    rpsPerRound: runs.map((r) => r.requests / r.seconds),
    p50: percentileMs(histogram, 50),
    p99: percentileMs(histogram, 99),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    requests,
    cpuUs: runs[0].cpu.map((_, i) => (sum((r) => r.cpu[i]) / requests) * 1e6),
    closedPer1000: (sum((r) => r.closed) / requests) * 1000,
  };
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
  let nginx: Nginx | undefined;
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
    nginx = startNginx(path.join(dir, "nginx"), webPorts, await freePort());
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
    const reg = await fetch(`${nginxUrl}/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "bench@example.test", password: "long enough pw", name: "bench" }),
    });
    if (reg.status !== 201 && reg.status !== 200) throw new Error(`register: ${reg.status} ${await reg.text()}`);
    const { token, organization } = (await reg.json()) as { token: string; organization: { id: string } };
    const auth = { Authorization: `Bearer ${token}` };
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${nginxUrl}/orgs/${organization.id}/projects`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ name: `project ${i}`, description: "x".repeat(200) }),
      });
      if (r.status !== 201 && r.status !== 200) throw new Error(`create project: ${r.status} ${await r.text()}`);
    }

    const scriptFile = path.join(dir, "wrk.lua");
    fs.writeFileSync(scriptFile, WRK_SCRIPT);
    const endpoints = [
      { title: "GET /health", path: "/health", headers: {} },
      { title: "GET /orgs/:orgId/projects (auth, 20 rows)", path: `/orgs/${organization.id}/projects`, headers: auth },
    ];
    const sides: Record<SideName, string[]> = {
      nginx: [`127.0.0.1:${nginx.port}`],
      direct: webPorts.map((p) => `127.0.0.1:${p}`),
    };
    const postmaster = Number(fs.readFileSync(path.join(pgDir, "data/postmaster.pid"), "utf8").split("\n")[0]);
    const groups: CpuGroup[] = [
      { name: "nginx", pids: () => childPids(nginx!.masterPid) },
      { name: "app", pids: () => webPids },
      { name: "pg", pids: () => [postmaster, ...childPids(postmaster)] },
    ];
    const sample = () => groups.map((g) => cpuByPid(g.pids()));
    const measure = async (target: Target, seconds: number): Promise<Run> => {
      const before = sample();
      const tw = timeWaitTo(webPorts);
      const r = await runWrk(scriptFile, target, seconds);
      const closed = [...timeWaitTo(webPorts)].filter((c) => !tw.has(c)).length;
      return { ...r, cpu: cpuUsed(before, sample()), closed };
    };

    /** Both sides under one pass's load, rounds alternating which side goes first. */
    const compare = async (ep: (typeof endpoints)[number], pass: Pass): Promise<Pair> => {
      const target = (side: SideName): Target => ({ addrs: sides[side], path: ep.path, headers: ep.headers, connections: pass.connections, pauseMs: pass.pauseMs });
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
      for (const side of SIDES) await runWrk(scriptFile, { addrs: sides[side], path: ep.path, headers: ep.headers, connections: CONNECTIONS, pauseMs: 0 }, WARMUP_SECONDS);
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
    server?.stopAll();
    nginx?.stop();
    if (pgStarted) stopPostgres(pgDir);
    if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
