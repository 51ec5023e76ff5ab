// The worker loop: graphile-worker pulling jobs from PostgreSQL (LISTEN/NOTIFY for new jobs,
// polling for retries that come due). Signals are ours to handle (noHandleSignals), so shutdown
// follows the same rule as the web process: finish the current job within the timeout, else
// release it back to the queue (it is retried later), then exit 0.
import { Logger as GraphileLogger, run, type Runner, type TaskList } from "graphile-worker";
import type pg from "pg";
import type { Logger } from "../core/logger.js";
import type { ErrorReporter } from "../core/sentry.js";
import { jobLogFields, withJobLogContext } from "./job-context.js";

export interface WorkerOptions {
  pool: pg.Pool;
  taskList: TaskList;
  log: Logger;
  reporter: ErrorReporter;
  concurrency: number;
  /** After a stop request, how long running jobs get before their abortSignal fires. */
  shutdownTimeoutMs: number;
  /** How often to look for jobs that came due (retries); new jobs arrive by NOTIFY. */
  pollIntervalMs?: number;
  /** Recurring jobs, graphile-worker crontab lines. */
  crontab?: string;
}

export interface RunningWorker {
  runner: Runner;
  /** "finished": running jobs completed in time; "released": they were aborted and handed back to the queue. */
  stop(timeoutMs: number): Promise<"finished" | "released" | "abandoned">;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const { log } = opts;
  const runner = await run({
    pgPool: opts.pool,
    taskList: withJobLogContext(opts.taskList),
    concurrency: opts.concurrency,
    pollInterval: opts.pollIntervalMs ?? 2000,
    noHandleSignals: true,
    ...(opts.crontab ? { crontab: opts.crontab } : {}),
    gracefulShutdownAbortTimeout: opts.shutdownTimeoutMs,
    // Batch mode (even with 0 delay) makes shutdown wait for the "job done"/"job failed" writes;
    // unbatched, they are fire-and-forget and can be lost when the process exits right after.
    preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    logger: pinoGraphileLogger(log),
  });

  runner.events.on("job:success", ({ job }) => {
    log.info({ ...jobLogFields(job), attempt: job.attempts }, "job done");
  });
  runner.events.on("job:error", ({ job, error }) => {
    log.warn({ ...jobLogFields(job), attempt: job.attempts, maxAttempts: job.max_attempts, err: errMessage(error) }, "job failed; will retry");
  });
  runner.events.on("job:failed", ({ job, error }) => {
    const fields = jobLogFields(job);
    log.error({ ...fields, attempts: job.attempts, err: errMessage(error) }, "job permanently failed");
    opts.reporter.capture(error, { jobId: fields.jobId, task: fields.task, ...(fields.request_id ? { requestId: fields.request_id } : {}) });
  });

  return {
    runner,
    async stop(timeoutMs) {
      // runner.stop() stops taking jobs and waits for the running ones. At `timeoutMs`
      // graphile-worker fires the jobs' abortSignal (gracefulShutdownAbortTimeout): our tasks
      // then give up, the job is recorded as failed-for-now and unlocked, and it is retried
      // later (released). A task that ignores the signal gets 5 s more; then we leave anyway
      // and graphile-worker's stale-lock recovery frees the job eventually.
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const hardCap = new Promise<"abandoned">((resolve) => {
        timer = setTimeout(() => resolve("abandoned"), timeoutMs + 5000);
      });
      const outcome = await Promise.race([runner.stop().then(() => "stopped" as const), hardCap]);
      clearTimeout(timer);
      if (outcome === "abandoned") return "abandoned";
      return Date.now() - started >= timeoutMs ? "released" : "finished";
    },
  };
}

function errMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function pinoGraphileLogger(log: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message) => {
    const child = { scope: "graphile-worker", ...(scope.workerId ? { workerId: scope.workerId } : {}) };
    if (level === "error") log.error(child, message);
    else if (level === "warning") log.warn(child, message);
    else if (level === "info") log.debug(child, message); // per-job chatter: our events log the outcome
    else log.trace(child, message);
  });
}
