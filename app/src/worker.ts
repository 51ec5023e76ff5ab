// Entrypoint `bin/worker`: runs background jobs until SIGTERM/SIGINT.
import type { TaskList } from "graphile-worker";
import { ConfigError, loadConfigOrExit } from "./core/config.js";
import { createLogger } from "./core/logger.js";
import { readReleaseId } from "./core/release.js";
import { createErrorReporter } from "./core/sentry.js";
import { createPool } from "./db/pool.js";
import { createValkey } from "./core/valkey.js";
import { sharedCache } from "./core/shared-cache.js";
import { createMailer } from "./jobs/mailer.js";
import { buildTaskList } from "./jobs/tasks.js";
import { startWorker } from "./jobs/runner.js";
import { crontabFor, selectTasks, type CronEntry } from "./jobs/selection.js";
import { createStripeClient } from "./billing/stripe.js";
import { billingTaskList, BILLING_TASKS } from "./billing/tasks.js";
import { eventsTaskList, EVENTS_TASKS } from "./events/tasks.js";
import { metricsPort } from "./metrics/port.js";

const config = loadConfigOrExit();
const releaseId = readReleaseId();
const log = createLogger(config.logLevel, { service: "worker", release: releaseId });
const reporter = await createErrorReporter(config.sentryDsn, releaseId, "worker", config.sentryEnvironment);
// graphile-worker holds one connection for LISTEN plus one per concurrent job. No request waits on
// the worker, so its connections get longer to open than web's (WEB_POOL): with 3 s, a TLS
// handshake with a db server that was busy (or emulated, in the local VMs) took longer, and the
// worker exited at start and was restarted by systemd, over and over, instead of connecting a bit later.
const WORKER_CONNECT_TIMEOUT_MS = 15000;
const pool = createPool(config.databaseUrl, log, {
  max: config.workerConcurrency + 2, applicationName: "saas-app-worker", connectionTimeoutMillis: WORKER_CONNECT_TIMEOUT_MS,
});
// The worker writes what web caches (an org's subscription): it forgets the cached copy after each write.
const valkey = config.valkeyUrl === undefined ? undefined : await createValkey(config.valkeyUrl, log, "saas-app-worker");
const cache = sharedCache(valkey);
const mailer = createMailer(config.smtpUrl, config.mailFrom, log);
const allTasks = {
  ...buildTaskList({ pool, mailer, appUrl: config.appUrl, secretKey: config.secretKey }),
  ...billingTaskList({ pool, plans: config.plans, stripe: config.stripe ? await createStripeClient(config.stripe) : undefined, log, cache }),
  ...eventsTaskList({ pool, retentionDays: config.auditRetentionDays }),
};
// WORKER_TASKS_ONLY / WORKER_TASKS_EXCEPT: a name the app does not have stops the start, with the
// same exit code as any other bad setting (systemd then gives up and alerts, rather than run a
// worker that leaves jobs to no one).
let taskList: TaskList;
try {
  taskList = selectTasks(allTasks, config.workerTasks);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  await pool.end().catch(() => {});
  process.exit(78);
}
// Daily, at quiet hours (UTC). graphile-worker queues each run once however many workers share
// the crontab (its known_crontabs table); the job key keeps at most one of each pending. A worker
// schedules only the entries of tasks it runs, so each entry belongs to one kind of worker.
const CRON: CronEntry[] = [
  { schedule: "15 4 * * *", task: EVENTS_TASKS.pruneAuditEvents, options: `?jobKey=${EVENTS_TASKS.pruneAuditEvents}&max=3` },
  { schedule: "25 4 * * *", task: BILLING_TASKS.pruneStripeEvents, options: `?jobKey=${BILLING_TASKS.pruneStripeEvents}&max=3` },
];
const crontab = crontabFor(CRON, taskList);
const metricsAt = metricsPort(config, "worker");
const metrics = metricsAt === undefined ? undefined : await (await import("./metrics/index.js")).startWorkerMetrics({ pool, log, port: metricsAt, tasks: config.workerTasks.mode });

const worker = await startWorker({
  pool,
  taskList,
  ...(crontab ? { crontab } : {}),
  log,
  reporter,
  concurrency: config.workerConcurrency,
  shutdownTimeoutMs: config.shutdownTimeoutMs,
});
metrics?.watch(worker.runner.events);
log.info({ concurrency: config.workerConcurrency, tasks: config.workerTasks.mode, runs: Object.keys(taskList) }, "worker started");

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down: finishing current jobs");
  const outcome = await worker.stop(config.shutdownTimeoutMs);
  const says = { finished: "current jobs finished", released: "current jobs released back to the queue", abandoned: "a job ignored the abort; leaving it to stale-lock recovery" };
  log.info({ outcome }, says[outcome]);
  mailer.close();
  await metrics?.server.close();
  await valkey?.close();
  await pool.end().catch(() => {});
  await reporter.flush(2000);
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
// If the runner dies on its own (e.g. lost its database for good), exit so systemd restarts us.
worker.runner.promise.then(
  () => {
    if (!stopping) {
      log.error("worker runner stopped unexpectedly");
      process.exit(1);
    }
  },
  (err: unknown) => {
    log.error({ err }, "worker runner crashed");
    process.exit(1);
  },
);
