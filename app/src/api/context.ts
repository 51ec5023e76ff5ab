// What every module's routes need, built once per process by the entrypoint (or a test).
import type pg from "pg";
import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import type { ErrorReporter } from "../core/sentry.js";
import type { FileStorage } from "../files/storage.js";
import type { ReadRoute } from "../db/read-route.js";
import type { Valkey } from "../core/valkey.js";
import type { SharedCache } from "../core/shared-cache.js";

/** Where each answered request is counted; metrics/collectors.ts has the Prometheus one. */
export interface RequestMetrics {
  /** `route`: the matched route's pattern, undefined when no route matched. */
  observe(method: string, route: string | undefined, status: number, seconds: number): void;
}

export interface AppContext {
  config: Config;
  pool: pg.Pool;
  /** Where reads that may lag a little go (the replica while it keeps up); absent = the primary. */
  reads?: ReadRoute;
  log: Logger;
  /** The process's Valkey client when VALKEY_URL is set: abuse-limit counters go there. */
  valkey?: Valkey;
  /** The cache all app servers share (core/shared-cache.ts); absent = no cache, reads go to the database. */
  cache?: SharedCache;
  storage: FileStorage;
  reporter: ErrorReporter;
  releaseId: string;
  /** Set when the process serves metrics (METRICS_PORT_OFFSET). */
  metrics?: RequestMetrics;
}
