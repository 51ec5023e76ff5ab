/**
 * Benchmark of a release rolled across the two app servers of stage scaled behind the balancer
 * (not a test): the stand-ins of test/release/across.ts (the program's rendered nginx site and
 * release.conf of app and app-2, each in a network namespace, the real app on one PostgreSQL,
 * HAProxy from Debian as the provider's balancer), under the client's GET and POST load through
 * HAProxy (test/support/httpLoad.ts: half the loops keep their connections, half open one per
 * request).
 *
 *   npm run bench:roll-across              the balancer's check as planned (5 s apart, 3 s timeout)
 *   npm run bench:roll-across -- --faster  1 s apart, 2 s timeout (what the test uses)
 *
 * Prints, side by side and not asserted: requests failed during a roll of B across app then app-2
 * (goal 0); throughput during the roll, and with one of the two servers drained, as ratios of the
 * steady throughput with both in rotation (same load, same run, after a warm-up; steady and
 * drained alternate, THROUGHPUT_ROUNDS each); and the time HAProxy takes to take
 * a drained server out and to put it back (medians of ROUNDS drains), next to the LB_OUT_SECONDS
 * and LB_IN_SECONDS the release waits for.
 */
import fs from "node:fs";
import { fakeId, packArtifact, sleep } from "../test/release/harness";
import { type Across, fasterCheck, startAcross } from "../test/release/across";
import type { LoadReport } from "../test/support/httpLoad";
import { drainSeconds, undrainSeconds } from "../plan/scaled";
import { runBench } from "./lib/teardown";

const STEADY_MS = 10_000;
const ROUNDS = 5;
const THROUGHPUT_ROUNDS = 2;
/** The first second of each measured load is warm-up (connections, JIT) and not counted. */
const WARMUP_MS = 1000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Answered requests per second between `from` and `to`. */
function rate(report: LoadReport, from: number, to: number): number {
  return report.okTimes.filter((t) => t >= from && t <= to).length / ((to - from) / 1000);
}

/** Load for `ms` (after warm-up): its answered requests per second and its failures. */
async function measure(across: Across, ms: number): Promise<{ rps: number; failed: number }> {
  const load = across.startLoad();
  const from = Date.now() + WARMUP_MS;
  await sleep(WARMUP_MS + ms);
  const to = Date.now();
  const report = await load.stop();
  return { rps: rate(report, from, to), failed: report.failed.length };
}

async function main() {
  const faster = process.argv.includes("--faster");
  const ids = { A: fakeId("a"), B: fakeId("b") };
  const across = await startAcross({ check: faster ? fasterCheck : undefined, firstRelease: (src, dir) => ({ artifact: packArtifact(src, ids.A, dir), id: ids.A }) });
  try {
    const B = packArtifact(across.src, ids.B, across.dir);
    const [first, second] = across.servers;

    // Warm-up: the instances have just started (cold JIT, empty pools); not counted.
    await measure(across, STEADY_MS);
    // Steady and one-drained side by side, alternating, THROUGHPUT_ROUNDS each; the load starts
    // once the balancer has the drained server out.
    const steadyRuns: Array<{ rps: number; failed: number }> = [];
    const drainedRuns: Array<{ rps: number; failed: number }> = [];
    for (let i = 0; i < THROUGHPUT_ROUNDS; i++) {
      steadyRuns.push(await measure(across, STEADY_MS));
      fs.writeFileSync(second!.drainFile, "");
      await across.waitState(second!.name, "down");
      drainedRuns.push(await measure(across, STEADY_MS));
      fs.rmSync(second!.drainFile);
      await across.waitState(second!.name, "up");
    }
    const mean = (runs: Array<{ rps: number }>) => runs.reduce((n, r) => n + r.rps, 0) / runs.length;
    const steady = { rps: mean(steadyRuns), failed: steadyRuns.reduce((n, r) => n + r.failed, 0), each: steadyRuns.map((r) => r.rps.toFixed(0)).join(", ") };
    const drained = { rps: mean(drainedRuns), failed: drainedRuns.reduce((n, r) => n + r.failed, 0), each: drainedRuns.map((r) => r.rps.toFixed(0)).join(", ") };

    // The balancer's reaction to the drain file, each server in turn, without load.
    const out: number[] = [];
    const back: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const s = across.servers[i % across.servers.length]!;
      fs.writeFileSync(s.drainFile, "");
      out.push(await across.waitState(s.name, "down"));
      fs.rmSync(s.drainFile);
      back.push(await across.waitState(s.name, "up"));
    }

    // The roll: B on app, then on app-2, as `pulumi up` chains the releases.
    const load = across.startLoad();
    await sleep(WARMUP_MS + 1000);
    const t0 = Date.now();
    const durations: string[] = [];
    for (const s of across.servers) {
      const started = Date.now();
      const r = await across.release(s, B, ids.B);
      if (r.code !== 0) throw new Error(`release B on ${s.name} failed:\n${r.stdout}${r.stderr}`);
      durations.push(`${s.name} ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    const t1 = Date.now();
    await sleep(1000);
    const roll = await load.stop();
    const rollRps = rate(roll, t0, t1);

    const row = (k: string, v: string) => console.log(`${k.padEnd(52)} ${v}`);
    const c = across.check;
    console.log(`\nroll across benchmark — real app (app/), ${first!.name} then ${second!.name}, 2 web instances each, HAProxy ${faster ? "(--faster) " : ""}check every ` +
      `${c.intervalSeconds} s, timeout ${c.timeoutSeconds} s, out after ${c.unhealthyThreshold}, back after ${c.healthyThreshold}; 6 loops GET+POST through HAProxy, ${new Date().toISOString()}`);
    row("failed requests during the roll (goal 0)", `${roll.failed.length} of ${roll.ok + roll.failed.length}` + (roll.failed.length ? ` ${JSON.stringify(roll.failed.slice(0, 3))}` : ""));
    row("roll duration", `${((t1 - t0) / 1000).toFixed(1)} s (${durations.join(", ")})`);
    row("steady throughput, both servers in rotation", `${steady.rps.toFixed(0)} req/s (mean of ${steady.each}; failed ${steady.failed})`);
    row("throughput with one of two servers drained", `${drained.rps.toFixed(0)} req/s (mean of ${drained.each}; failed ${drained.failed})`);
    row("ratio drained / steady", (drained.rps / steady.rps).toFixed(2));
    row("throughput during the roll", `${rollRps.toFixed(0)} req/s`);
    row("ratio roll / steady", (rollRps / steady.rps).toFixed(2));
    row(`HAProxy takes a drained server out, median of ${ROUNDS}`, `${(median(out) / 1000).toFixed(1)} s (min ${(Math.min(...out) / 1000).toFixed(1)}, max ${(Math.max(...out) / 1000).toFixed(1)}; LB_OUT_SECONDS ${drainSeconds(c)})`);
    row(`HAProxy puts it back, median of ${ROUNDS}`, `${(median(back) / 1000).toFixed(1)} s (min ${(Math.min(...back) / 1000).toFixed(1)}, max ${(Math.max(...back) / 1000).toFixed(1)}; LB_IN_SECONDS ${undrainSeconds(c)})`);
  } finally {
    across.stop();
  }
}

runBench(main);
