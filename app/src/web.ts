// Entrypoint `bin/web`: the HTTP server. systemd runs several of these on PORT=3001..300N
// behind nginx. On SIGTERM/SIGINT: stop accepting, answer what arrives on open connections
// (with Connection: close) until every connection has ended, exit 0; if that takes longer than
// SHUTDOWN_TIMEOUT_MS, exit 1 (systemd then shows the forced stop).
import { Server as NetServer } from "node:net";
import { promisify } from "node:util";
import { loadConfigOrExit } from "./core/config.js";
import { createLogger } from "./core/logger.js";
import { readReleaseId } from "./core/release.js";
import { createErrorReporter } from "./core/sentry.js";
import { createPool, WEB_POOL, warmPool } from "./db/pool.js";
import { createReadRoute } from "./db/read-route.js";
import { createValkey } from "./core/valkey.js";
import { sharedCache } from "./core/shared-cache.js";
import { createStorage } from "./files/storage.js";
import { buildApp } from "./api/app.js";
import { metricsPort } from "./metrics/port.js";

const config = loadConfigOrExit();
const releaseId = readReleaseId();
const log = createLogger(config.logLevel, { service: "web", release: releaseId });
const reporter = await createErrorReporter(config.sentryDsn, releaseId, "web", config.sentryEnvironment);
const pool = createPool(config.databaseUrl, log, { ...WEB_POOL, applicationName: "saas-app-web" });
void warmPool(pool, log);
// The replica's check runs in the background; until it says the replica keeps up, reads use the primary.
const reads = createReadRoute({
  primary: pool,
  replica: config.readReplica && createPool(config.readReplica.url, log, { applicationName: "saas-app-web-reads", max: 5 }),
  maxLagMs: config.readReplica?.maxLagMs ?? 0,
  checkEveryMs: 5000,
  log,
});
// Connects in the background: without Valkey yet, limits count per process (auth/rate-limits.ts).
const valkey = config.valkeyUrl === undefined ? undefined : await createValkey(config.valkeyUrl, log, "saas-app-web");
const cache = sharedCache(valkey);
const storage = createStorage(config);
// Before the app listens: a taken metrics port stops the start, as a taken PORT would.
const metricsAt = metricsPort(config, "web");
const metrics = metricsAt === undefined ? undefined : await (await import("./metrics/index.js")).startWebMetrics({ pool, log, port: metricsAt });

const app = await buildApp({ config, pool, reads, log, valkey, cache, storage, reporter, releaseId, metrics: metrics?.requests });
await app.listen({ port: config.port, host: config.host });
log.info({ port: config.port, host: config.host, storage: storage.kind }, "web listening");

/**
 * Stops accepting connections and resolves once every open one has ended. This is net.Server's
 * close: http.Server#close (which Fastify's close() calls) first closes the IDLE keep-alive
 * connections, racing nginx, which may be writing a request onto one of them at that moment —
 * for a POST it never retries, a 502. Left open, they end by themselves: nginx closes its idle
 * ones after its upstream keepalive_timeout (3 s), a request on one gets Connection: close
 * (startDraining), other clients' idle ones end at KEEP_ALIVE_TIMEOUT_MS (api/app.ts).
 * A connect nginx tries meanwhile is refused, which it retries on another instance, POST included.
 */
const stopAccepting = (): Promise<void> => promisify(NetServer.prototype.close).call(app.server);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  const t0 = Date.now();
  app.startDraining();
  const drained = stopAccepting();
  // Logged once the listening socket is closed, so whoever sees this line sees connects refused.
  log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down: no new connections, draining open ones");
  const timer = setTimeout(() => {
    log.error({ timeoutMs: config.shutdownTimeoutMs }, "in-flight requests did not finish in time; exiting");
    process.exit(1);
  }, config.shutdownTimeoutMs);
  timer.unref();
  await drained;
  log.info({ durationMs: Date.now() - t0 }, "drained: every connection has ended");
  // Runs the close hooks; Fastify ignores the server's ERR_SERVER_NOT_RUNNING (already closed above).
  await app.close();
  await metrics?.server.close();
  await reads.close();
  await valkey?.close();
  await pool.end().catch(() => {});
  await reporter.flush(2000);
  log.info("shutdown complete");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
