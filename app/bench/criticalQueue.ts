// Benchmark (not a test): how long a critical job waits behind a flood of N slow jobs, with the
// same two worker processes (two job slots each) either both running every task (not isolated)
// or one running only the critical task and one all the others (WORKER_TASKS_ONLY / _EXCEPT, as
// worker-critical@ and worker@ do on a server). The slow task sleeps; the critical one does
// nothing, so what is measured is the queue: enqueue to done. A scratch PostgreSQL, real
// graphile-worker, the app's runner and task selection.
//   npx tsx bench/criticalQueue.ts [--flood 20,60] [--slow-ms 200] [--runs 3]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { TaskList } from "graphile-worker";
import { pino } from "pino";
import type { WorkerTaskFilter } from "../src/core/config.js";
import { createLogger } from "../src/core/logger.js";
import { migrateUp } from "../src/db/migrate.js";
import { createPool } from "../src/db/pool.js";
import { enqueue } from "../src/jobs/queue.js";
import { startWorker, type RunningWorker } from "../src/jobs/runner.js";
import { selectTasks } from "../src/jobs/selection.js";

const appRoot = fileURLToPath(new URL("..", import.meta.url));
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const FLOODS = arg("flood", "20,60").split(",").map(Number);
const SLOW_MS = Number(arg("slow-ms", "200"));
const RUNS = Number(arg("runs", "3"));
const SLOW = "bench_slow";
const CRITICAL = "bench_critical";
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

const tmp = mkdtempSync(path.join(os.tmpdir(), "saas-app-bench-queue-"));
const pgDir = path.join(tmp, "pg");
const pgScratch = path.join(appRoot, "..", "cli", "pg-scratch.sh");
try {
  execFileSync("chmod", ["755", tmp]);
  const databaseUrl = execFileSync("bash", [pgScratch, "start", pgDir], { encoding: "utf8" }).trim().split("\n").pop()!;
  await migrateUp(databaseUrl, pino({ level: "silent" }));
  const log = createLogger("warn", { service: "worker", release: "bench" });
  const pool = createPool(databaseUrl, log, { max: 12 });
  const done = new Map<string, number>();
  const tasks: TaskList = {
    [SLOW]: async () => void (await new Promise((r) => setTimeout(r, SLOW_MS))),
    [CRITICAL]: async (payload) => void done.set((payload as { id: string }).id, Date.now()),
  };

  /** Milliseconds from enqueue to done of one critical job behind `flood` slow ones, with these two workers. */
  async function measure(filters: [WorkerTaskFilter, WorkerTaskFilter], flood: number, run: number): Promise<number> {
    let started = 0;
    const workers: RunningWorker[] = [];
    for (const filter of filters) {
      const w = await startWorker({ pool, taskList: selectTasks(tasks, filter), log, reporter: { capture: () => {}, flush: async () => {} }, concurrency: 2, pollIntervalMs: 200, shutdownTimeoutMs: 2000 });
      w.runner.events.on("job:start", ({ job }) => void (job.task_identifier === SLOW && started++));
      workers.push(w);
    }
    try {
      for (let i = 0; i < flood; i++) await enqueue(pool, SLOW, { i });
      while (started === 0) await new Promise((r) => setTimeout(r, 5));
      const id = `${flood}-${run}-${filters[0].mode}`;
      const at = Date.now();
      await enqueue(pool, CRITICAL, { id });
      while (!done.has(id)) await new Promise((r) => setTimeout(r, 2));
      return done.get(id)! - at;
    } finally {
      await Promise.all(workers.map((w) => w.stop(2000)));
      await pool.query(`SELECT graphile_worker.complete_jobs(array(SELECT id FROM graphile_worker.jobs WHERE task_identifier = $1))`, [SLOW]);
    }
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: string[] = [];
  for (const flood of FLOODS) {
    const shared: number[] = [];
    const isolated: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      shared.push(await measure([{ mode: "all" }, { mode: "all" }], flood, run));
      isolated.push(await measure([{ mode: "except", tasks: [CRITICAL] }, { mode: "only", tasks: [CRITICAL] }], flood, run));
    }
    const [s, i] = [median(shared), median(isolated)];
    say(`flood ${flood}: not isolated ${shared.join(", ")} ms; isolated ${isolated.join(", ")} ms`);
    rows.push(`${String(flood).padStart(5)}  ${String(s).padStart(14)}  ${String(i).padStart(11)}  ${(s / Math.max(i, 1)).toFixed(1).padStart(6)}x`);
  }
  await pool.end();
  console.log(`critical job latency behind a flood of slow jobs (${SLOW_MS} ms each; 2 workers x 2 slots; median of ${RUNS})`);
  console.log(`flood  not isolated ms  isolated ms   ratio`);
  for (const row of rows) console.log(row);
} finally {
  try {
    execFileSync("bash", [pgScratch, "stop", pgDir]);
  } catch {
    // already stopped
  }
  rmSync(tmp, { recursive: true, force: true });
}
