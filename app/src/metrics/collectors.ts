// What the app measures, each a function that registers its metrics on a process's registry.
// Values that already live somewhere (the pg pool's counts, the job table) are read when
// Prometheus scrapes, not kept up to date on every change.
import type { WorkerEvents } from "graphile-worker";
import type pg from "pg";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../core/logger.js";
import type { RequestMetrics } from "../api/context.js";

/** The route label of a request no route matched: its raw URL would give every scanner's probe a series of its own. */
export const UNMATCHED_ROUTE = "unmatched";

/** Request count, latency and status per route pattern (`/orgs/:orgId/projects`, never the URL itself). */
export function requestMetrics(registry: Registry): RequestMetrics {
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP requests by method, route pattern and status code, and how long the app took to answer them",
    labelNames: ["method", "route", "status_code"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return {
    observe: (method, route, status, seconds) =>
      duration.observe({ method, route: route ?? UNMATCHED_ROUTE, status_code: String(status) }, seconds),
  };
}

/** The pg pool's own counts (totalCount, idleCount, waitingCount) and its size. */
export function poolMetrics(registry: Registry, pool: pg.Pool): void {
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge("db_pool_connections", "Connections the database pool holds, idle and in use (pg totalCount)", () => pool.totalCount);
  gauge("db_pool_idle_connections", "Pool connections open and unused (pg idleCount)", () => pool.idleCount);
  gauge("db_pool_waiting_clients", "Queries waiting for a pool connection because all are in use (pg waitingCount)", () => pool.waitingCount);
  gauge("db_pool_max_connections", "The most connections the pool opens", () => pool.options.max ?? 10);
}

export const JOB_STATES = ["ready", "scheduled", "running", "failed"] as const;
type JobState = (typeof JOB_STATES)[number];

/**
 * One query over graphile-worker's job table, shared by the scrape's two gauges. A running job
 * counts as running even on its last attempt (attempts is raised when a job is taken).
 */
const JOB_QUEUE_SQL = `
  SELECT task_identifier AS task,
         CASE WHEN locked_at IS NOT NULL THEN 'running'
              WHEN attempts >= max_attempts THEN 'failed'
              WHEN run_at > now() THEN 'scheduled'
              ELSE 'ready' END AS state,
         count(*)::int AS jobs,
         extract(epoch FROM now() - min(run_at))::float8 AS "oldestSeconds"
    FROM graphile_worker.jobs
   GROUP BY 1, 2`;

type JobQueueRow = { task: string; state: JobState; jobs: number; oldestSeconds: number };

/**
 * A scrape must not hang on a database that does not answer, nor pile up connections while it
 * does not: pg's client-side query_timeout fails the query (pg/lib/client.js reads it from the
 * query's config too, which @types/pg does not list), and pg-pool drops a client whose query failed.
 */
const JOB_QUERY: pg.QueryConfig = { text: JOB_QUEUE_SQL, query_timeout: 2000 } as pg.QueryConfig;

/**
 * The job queue as the database holds it: jobs per task and state, and how long the oldest job
 * that is due has waited. Read by web, not by the worker: when every worker is down, the queue
 * still has to be seen growing. Each web instance reports the same figures (take the max).
 */
export function jobQueueMetrics(registry: Registry, pool: pg.Pool, log: Logger): void {
  let inFlight: Promise<JobQueueRow[] | undefined> | undefined;
  const load = (): Promise<JobQueueRow[] | undefined> =>
    (inFlight ??= pool
      .query<JobQueueRow>(JOB_QUERY)
      .then((r) => r.rows)
      .catch((err: unknown) => {
        // Left out of this scrape (no stale numbers); db_pool_* and /health say why.
        log.warn({ err: err instanceof Error ? err.message : String(err) }, "metrics: reading the job queue failed");
        return undefined;
      })
      .finally(() => (inFlight = undefined)));

  new Gauge({
    name: "jobs_in_queue",
    help: "Background jobs by task and state: ready (due, waiting for a worker), scheduled (due later, retries included), running, failed (out of attempts, kept for an admin)",
    labelNames: ["task", "state"] as const,
    registers: [registry],
    async collect() {
      const rows = await load();
      this.reset();
      if (!rows) return;
      for (const task of new Set(rows.map((r) => r.task))) for (const state of JOB_STATES) this.set({ task, state }, 0);
      for (const r of rows) this.set({ task: r.task, state: r.state }, r.jobs);
    },
  });
  new Gauge({
    name: "jobs_oldest_ready_age_seconds",
    help: "How long the longest-waiting due job has been due (0 when none waits, NaN when the job table could not be read): grows when no worker takes jobs",
    registers: [registry],
    async collect() {
      const rows = await load();
      // A gauge without labels is always exported (0 after a reset): NaN says "unknown", and no
      // comparison in an alert rule is true of it.
      if (!rows) return this.set(NaN);
      this.set(Math.max(0, ...rows.filter((r) => r.state === "ready").map((r) => r.oldestSeconds)));
    },
  });
}

export const JOB_OUTCOMES = ["success", "retry", "failed"] as const;

/** Each job run this worker finished, by task and outcome: success, retry (failed, attempts left), failed (for good). */
export function jobOutcomeMetrics(registry: Registry, events: WorkerEvents): void {
  const runs = new Counter({
    name: "worker_jobs_total",
    help: "Job runs this worker finished, by task and outcome: success, retry (failed with attempts left), failed (out of attempts)",
    labelNames: ["task", "outcome"] as const,
    registers: [registry],
  });
  events.on("job:success", ({ job }) => runs.inc({ task: job.task_identifier, outcome: "success" }));
  // graphile-worker emits job:error for every failed run, the last one too, then job:failed for that one.
  events.on("job:error", ({ job }) => {
    if (job.attempts < job.max_attempts) runs.inc({ task: job.task_identifier, outcome: "retry" });
  });
  events.on("job:failed", ({ job }) => runs.inc({ task: job.task_identifier, outcome: "failed" }));
}

/**
 * Which tasks this worker runs (WORKER_TASKS_ONLY / _EXCEPT): `only` on the workers of a stack's
 * critical tasks, `except` on the others, `all` where every worker runs everything. Always 1; the
 * label tells a dashboard which kind of worker a process is.
 */
export function workerTasksInfo(registry: Registry, tasks: "all" | "only" | "except"): void {
  new Gauge({ name: "worker_tasks_info", help: "Which tasks this worker runs: all, only the listed (WORKER_TASKS_ONLY) or all but the listed (WORKER_TASKS_EXCEPT)", labelNames: ["tasks"] as const, registers: [registry] }).set({ tasks }, 1);
}
