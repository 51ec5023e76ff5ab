/**
 * wrk as the benchmarks' load generator: C, so it costs a fraction of the CPU per request that a
 * Node load generator would take from the side it measures. A Lua script spreads its threads over
 * targets, can pause after each answer, counts non-2xx answers and prints the raw latency
 * histogram, so rounds merge exactly instead of averaging percentiles.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/**
 * Thread i sends to target i mod n (so a "direct" side spreads the same threads and connections
 * over several instances), pauses WRK_PAUSE_MS after each answer if set, counts non-2xx answers,
 * and prints the totals and the latency histogram (µs value, count). WRK_METHOD and WRK_BODY, when
 * set, replace the GET without a body.
 */
const WRK_SCRIPT = `
wrk.method = os.getenv("WRK_METHOD") or wrk.method
wrk.body = os.getenv("WRK_BODY") or wrk.body
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

/** Writes the script into `dir` once; its path goes to every runWrk call. */
export function writeWrkScript(dir: string): string {
  const file = path.join(dir, "wrk.lua");
  fs.writeFileSync(file, WRK_SCRIPT);
  return file;
}

export interface WrkTarget {
  /** host:port each wrk thread is sent to, round-robin. */
  addrs: string[];
  path: string;
  headers: Record<string, string>;
  connections: number;
  /** Each connection waits this long after an answer before its next request (wrk's delay()). */
  pauseMs: number;
  /** A request other than a GET without a body (give its content-type in `headers`). */
  method?: string;
  body?: string;
}

export interface WrkOptions {
  threads: number;
  seconds: number;
  /** CPU list for taskset (e.g. "1"), or undefined to let wrk run anywhere. */
  cpu?: string;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  non2xx: number;
  /** Socket errors: connect, read, write and timeouts. */
  errors: number;
  /** latency µs -> count */
  histogram: Map<number, number>;
}

export function runWrk(scriptFile: string, target: WrkTarget, opts: WrkOptions): Promise<WrkResult> {
  const [first] = target.addrs;
  const wrkArgs = [
    `-t${opts.threads}`, `-c${target.connections}`, `-d${opts.seconds}s`, "--timeout", "5s", "-s", scriptFile,
    ...Object.entries(target.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    `http://${first}${target.path}`,
  ];
  const [cmd, args] = opts.cpu ? ["taskset", ["-c", opts.cpu, "wrk", ...wrkArgs]] : ["wrk", wrkArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: {
        ...process.env,
        WRK_TARGETS: target.addrs.join(" "),
        WRK_PAUSE_MS: String(target.pauseMs),
        ...(target.method ? { WRK_METHOD: target.method } : {}),
        ...(target.body !== undefined ? { WRK_BODY: target.body } : {}),
      }, stdio: ["ignore", "pipe", "pipe"] });
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

/** One histogram of several runs' latencies. */
export function mergeHistograms(histograms: Map<number, number>[]): Map<number, number> {
  const merged = new Map<number, number>();
  for (const h of histograms) for (const [v, c] of h) merged.set(v, (merged.get(v) ?? 0) + c);
  return merged;
}

/** Latency at percentile p (0-100) of a µs histogram, in ms. */
export function percentileMs(histogram: Map<number, number>, p: number): number {
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

/** One wrk run with the CPU seconds each measured group spent during it (in a fixed order). */
export interface MeasuredRun extends WrkResult {
  cpu: number[];
}

/** What several runs of one side add up to: throughput, latency percentiles, failures, CPU µs per request. */
export interface RunSummary {
  rps: number;
  rpsPerRound: number[];
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  requests: number;
  /** CPU µs per request of each group. */
  cpuUs: number[];
}

export function summarizeRuns(runs: MeasuredRun[]): RunSummary {
  const histogram = mergeHistograms(runs.map((r) => r.histogram));
  const sum = (f: (r: MeasuredRun) => number) => runs.reduce((n, r) => n + f(r), 0);
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
  };
}
