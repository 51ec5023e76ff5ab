// Prometheus metrics of one process, served on its loopback port (metrics/port.ts). Loaded by the
// entrypoints only when METRICS_PORT_OFFSET is set, so a process without metrics never loads
// prom-client.
import type { WorkerEvents } from "graphile-worker";
import type pg from "pg";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { RequestMetrics } from "../api/context.js";
import type { WorkerTaskFilter } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import { jobOutcomeMetrics, jobQueueMetrics, poolMetrics, requestMetrics, workerTasksInfo } from "./collectors.js";
import { startMetricsServer, type MetricsServer } from "./server.js";

/** Process metrics from prom-client (CPU, RSS, heap, event-loop delay, GC) and the pool's. */
function baseRegistry(pool: pg.Pool): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  poolMetrics(registry, pool);
  return registry;
}

export async function startWebMetrics(opts: { pool: pg.Pool; log: Logger; port: number }): Promise<{ requests: RequestMetrics; server: MetricsServer }> {
  const registry = baseRegistry(opts.pool);
  const requests = requestMetrics(registry);
  jobQueueMetrics(registry, opts.pool, opts.log);
  return { requests, server: await startMetricsServer(registry, opts.port, opts.log) };
}

/**
 * Listens before the worker takes its first job (a taken port then stops the start with no job
 * left locked); `watch` counts the outcomes once the runner exists.
 */
export async function startWorkerMetrics(opts: { pool: pg.Pool; log: Logger; port: number; tasks?: WorkerTaskFilter["mode"] }): Promise<{ server: MetricsServer; watch(events: WorkerEvents): void }> {
  const registry = baseRegistry(opts.pool);
  workerTasksInfo(registry, opts.tasks ?? "all");
  const server = await startMetricsServer(registry, opts.port, opts.log);
  return { server, watch: (events) => jobOutcomeMetrics(registry, events) };
}
