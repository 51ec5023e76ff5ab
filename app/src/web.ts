// Entrypoint `bin/web`: the HTTP server. systemd runs several of these on PORT=3001..300N
// behind nginx. On SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0; if they
// do not finish within SHUTDOWN_TIMEOUT_MS, exit 1 (systemd then shows the forced stop).
import { loadConfigOrExit } from "./core/config.js";
import { createLogger } from "./core/logger.js";
import { readReleaseId } from "./core/release.js";
import { createErrorReporter } from "./core/sentry.js";
import { createPool } from "./db/pool.js";
import { createStorage } from "./files/storage.js";
import { buildApp } from "./api/app.js";

const config = loadConfigOrExit();
const releaseId = readReleaseId();
const log = createLogger(config.logLevel, { component: "web", release: releaseId });
const reporter = await createErrorReporter(config.sentryDsn, releaseId, "web");
const pool = createPool(config.databaseUrl, log, { applicationName: "saas-app-web" });
const storage = createStorage(config);

const app = await buildApp({ config, pool, log, storage, reporter, releaseId });
await app.listen({ port: config.port, host: config.host });
log.info({ port: config.port, host: config.host, storage: storage.kind }, "web listening");

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down: no new connections, finishing in-flight requests");
  const timer = setTimeout(() => {
    log.error({ timeoutMs: config.shutdownTimeoutMs }, "in-flight requests did not finish in time; exiting");
    process.exit(1);
  }, config.shutdownTimeoutMs);
  timer.unref();
  await app.close();
  await pool.end().catch(() => {});
  await reporter.flush(2000);
  log.info("shutdown complete");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
