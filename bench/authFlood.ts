/**
 * Benchmark of a login flood's cost to everyone else (not a test): real nginx (the rendered site,
 * with its per-address limit on the auth routes), real PostgreSQL, the real app from app/ as two
 * web instances through the test service shim (test/release/harness.ts).
 *
 *   npm run bench:auth-flood   (FLOOD_SECONDS, ROUNDS, FLOOD_CONNECTIONS, FLOOD_PAUSE_MS override)
 *
 * The flood guesses passwords for one account (POST /auth/login, wrong password) from 127.0.0.1.
 * One probe, at 127.0.0.5, asks GET /health through nginx one request at a time, with a short
 * pause, and records each answer's latency. Each round measures the probe in four windows of
 * FLOOD_SECONDS, side by side in this run:
 *   idle        nothing else runs;
 *   nginx       the flood through nginx at a bounded rate: FLOOD_CONNECTIONS connections, each
 *               pausing FLOOD_PAUSE_MS after an answer (about 1,000 requests/s by default, 50
 *               times the 20 logins/s that fill both cores with password hashes without limits);
 *   nginx-max   the flood through nginx as fast as wrk sends it (tens of thousands a second): on
 *               this machine wrk's own CPU is taken from the server's two cores, which a real
 *               attacker's is not, so this window overstates the flood's cost;
 *   direct      the bounded flood straight to one app instance, past nginx (what the app alone
 *               faces without the edge's limit: its own per-address limit and hash cap still apply).
 * Halfway through each window, another person at 127.0.0.3 logs in to their own account.
 *
 * Prints each window's probe p50/p99, their ratios to idle, how each nginx flood was answered (from
 * nginx's JSON access log) and the other person's logins. wrk is C and costs the measured side
 * little CPU; the probe is Node in this process, which idles while it waits.
 */
import fs from "node:fs";
import path from "node:path";
import {
  FakeServer, type Nginx, buildRealApp, fakeId, freePorts, markVerified, packArtifact, sleep, startNginx, startPostgres, tempDir,
} from "../test/release/harness";
import { agentFrom, requestFrom } from "../test/release/flood";
import { runWrk, writeWrkScript } from "./lib/wrk";
import { runBench, tearDownBench } from "./lib/teardown";

const FLOOD_SECONDS = Number(process.env.FLOOD_SECONDS ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const FLOOD_CONNECTIONS = Number(process.env.FLOOD_CONNECTIONS ?? 32);
const FLOOD_PAUSE_MS = Number(process.env.FLOOD_PAUSE_MS ?? 32);
const PROBE_AT = "127.0.0.5";
const PERSON_AT = "127.0.0.3";
/** The probe's pause between answers: a steady trickle, not load of its own. */
const PROBE_PAUSE_MS = 20;
const ACCOUNT = { email: "person@example.test", password: "a long enough password" };
/** The account the flood guesses at; another one than the person's (whose own lockout is the app's per-account limit). */
const TARGET_EMAIL = "target@example.test";

const WINDOWS = ["idle", "nginx", "nginx-max", "direct"] as const;
type Window = (typeof WINDOWS)[number];
type FloodWindow = Exclude<Window, "idle">;

/** GET /health from PROBE_AT until `until`, one at a time; latencies in ms. */
async function probe(url: string, until: number): Promise<number[]> {
  const agent = agentFrom(PROBE_AT, 1);
  const latencies: number[] = [];
  while (Date.now() < until) {
    const t0 = process.hrtime.bigint();
    const answer = await requestFrom(agent, url);
    if (answer.status !== 200) throw new Error(`/health answered ${answer.status}: ${answer.body}`);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await sleep(PROBE_PAUSE_MS);
  }
  agent.destroy();
  return latencies;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Statuses nginx logged for /auth/login from `address` since `fromLine`. */
function loginStatuses(accessLog: string, address: string, fromLine: number): { byStatus: Record<string, number>; lines: number } {
  const lines = fs.readFileSync(accessLog, "utf8").split("\n").filter(Boolean);
  const byStatus: Record<string, number> = {};
  for (const line of lines.slice(fromLine)) {
    const entry = JSON.parse(line) as { remote_addr: string; uri: string; status: number };
    if (entry.remote_addr !== address || entry.uri !== "/auth/login") continue;
    byStatus[entry.status] = (byStatus[entry.status] ?? 0) + 1;
  }
  return { byStatus, lines: lines.length };
}

async function main() {
  const dir = tempDir("auth-flood-bench");
  let nginx: Nginx | undefined;
  let server: FakeServer | undefined;
  const pgDir = path.join(dir, "pg");
  let pgStarted = false;
  try {
    const src = buildRealApp(path.join(dir, "app"));
    const A = packArtifact(src, fakeId("a"), dir);
    const databaseUrl = startPostgres(pgDir);
    pgStarted = true;
    const webPorts = await freePorts(2);
    nginx = await startNginx(path.join(dir, "nginx"), webPorts);
    server = new FakeServer(path.join(dir, "server"), {
      webPorts,
      workerUnits: [],
      env: { DATABASE_URL: databaseUrl, SECRET_KEY: "x".repeat(48), APP_URL: nginx.url, LOG_LEVEL: "warn" },
    });
    const first = await server.run([A]);
    if (first.code !== 0) throw new Error(`release A failed:\n${first.stdout}${first.stderr}\n${server.logs()}`);
    await sleep(2500); // nginx's fail_timeout from the ports being down before A started

    const person = agentFrom(PERSON_AT, 1);
    const reg = await requestFrom(person, `${nginx.url}/auth/register`, { ...ACCOUNT, name: "Person" });
    if (reg.status !== 202) throw new Error(`register answered ${reg.status}: ${reg.body}`);
    markVerified(databaseUrl, ACCOUNT.email);

    const accessLog = path.join(dir, "nginx", "access.log");
    const scriptFile = writeWrkScript(dir);
    const floods: Record<FloodWindow, { addr: string; pauseMs: number }> = {
      nginx: { addr: new URL(nginx.url).host, pauseMs: FLOOD_PAUSE_MS },
      "nginx-max": { addr: new URL(nginx.url).host, pauseMs: 0 },
      direct: { addr: `127.0.0.1:${webPorts[0]}`, pauseMs: FLOOD_PAUSE_MS },
    };
    const flood = (window: FloodWindow) =>
      runWrk(scriptFile, {
        addrs: [floods[window].addr], path: "/auth/login", headers: { "content-type": "application/json" }, connections: FLOOD_CONNECTIONS,
        pauseMs: floods[window].pauseMs, method: "POST", body: JSON.stringify({ email: TARGET_EMAIL, password: "wrong guess" }),
      }, { threads: 1, seconds: FLOOD_SECONDS });

    const latencies: Record<Window, number[]> = { idle: [], nginx: [], "nginx-max": [], direct: [] };
    const floodRps: Record<FloodWindow, number[]> = { nginx: [], "nginx-max": [], direct: [] };
    const nginxAnswers: Record<"nginx" | "nginx-max", Record<string, number>> = { nginx: {}, "nginx-max": {} };
    const personLogins: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const window of WINDOWS) {
        const logLines = fs.readFileSync(accessLog, "utf8").split("\n").filter(Boolean).length;
        const until = Date.now() + FLOOD_SECONDS * 1000;
        const probing = probe(`${nginx.url}/health`, until);
        // The person logs in halfway through every window, the idle one included: a login's own
        // hash is ordinary traffic, so it is in the baseline too.
        const flooding = window === "idle" ? undefined : flood(window);
        await sleep((FLOOD_SECONDS * 1000) / 2);
        const login = await requestFrom(person, `${nginx.url}/auth/login`, ACCOUNT);
        personLogins.push(`${window}: ${login.status}`);
        const result = await flooding;
        latencies[window].push(...(await probing));
        if (window !== "idle") floodRps[window].push(result!.requests / result!.seconds);
        if (window === "nginx" || window === "nginx-max") {
          const answers = nginxAnswers[window];
          for (const [status, n] of Object.entries(loginStatuses(accessLog, "127.0.0.1", logLines).byStatus)) answers[status] = (answers[status] ?? 0) + n;
        }
        // The auth limit is per address and per minute: let the person's own budget refill.
        await sleep(2000);
      }
    }

    const row = (k: string, v: string) => console.log(`${k.padEnd(52)} ${v}`);
    const idleP99 = percentile(latencies.idle, 99);
    console.log(`\nlogin flood benchmark — real app (app/), 2 web instances, nginx's rendered site, ${FLOOD_CONNECTIONS} flood connections, ` +
      `each pausing ${FLOOD_PAUSE_MS} ms (nginx-max: none), ${ROUNDS} rounds of ${FLOOD_SECONDS} s windows side by side, ${new Date().toISOString()}`);
    for (const window of WINDOWS) {
      const l = latencies[window];
      const rps = window === "idle" ? "" : ` (flood ${floodRps[window].map((r) => r.toFixed(0)).join(", ")} req/s)`;
      row(`/health from another address, ${window}: p50 / p99`, `${percentile(l, 50).toFixed(1)} / ${percentile(l, 99).toFixed(1)} ms over ${l.length} requests${rps}`);
    }
    for (const window of ["nginx", "nginx-max", "direct"] as const) {
      row(`ratio p99 ${window} / idle`, (percentile(latencies[window], 99) / idleP99).toFixed(2));
    }
    for (const window of ["nginx", "nginx-max"] as const) {
      const answers = nginxAnswers[window];
      const total = Object.values(answers).reduce((a, b) => a + b, 0);
      row(`the ${window} flood, answered`, `${JSON.stringify(answers)}; 429 share ${(((answers["429"] ?? 0) / total) * 100).toFixed(2)} %`);
    }
    row("the other person's logins, by window", personLogins.join(", "));
  } finally {
    tearDownBench(dir, { servers: [server], nginx, pgDir: pgStarted ? pgDir : undefined });
  }
}

runBench(main);
