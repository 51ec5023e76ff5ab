// What every module's routes need, built once per process by the entrypoint (or a test).
import type pg from "pg";
import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import type { ErrorReporter } from "../core/sentry.js";
import type { FileStorage } from "../files/storage.js";

export interface AppContext {
  config: Config;
  pool: pg.Pool;
  log: Logger;
  storage: FileStorage;
  reporter: ErrorReporter;
  releaseId: string;
}
