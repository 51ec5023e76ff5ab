// Where a process serves its metrics: 127.0.0.1 only, at METRICS_PORT_OFFSET plus its instance
// number. A web instance's number is its PORT, a worker's its WORKER_ID (systemd's web@3001 and
// worker@1 set them), so every instance on a server gets a port of its own from one setting in
// the shared app.env, and a scraper finds them from the instance list alone. With an offset of
// 10000: web@3001 -> 13001, web@3002 -> 13002, the surge instance web@3100 -> 13100,
// worker@1 -> 10001. parseConfig keeps PORT above every WORKER_ID, so the two kinds never meet.
import type { Config } from "../core/config.js";

export type ProcessKind = "web" | "worker";

/** The metrics port of this process, or undefined when metrics are off. */
export function metricsPort(config: Pick<Config, "metricsPortOffset" | "port" | "workerId">, kind: ProcessKind): number | undefined {
  if (config.metricsPortOffset === undefined) return undefined;
  return config.metricsPortOffset + (kind === "web" ? config.port : config.workerId);
}

/** Metrics are never served on a public address, whatever HOST says. */
export const METRICS_HOST = "127.0.0.1";
