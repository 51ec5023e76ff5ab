// Entrypoint `bin/migrate`: apply pending migrations, print what ran, exit 0 (or 1 on error).
import { loadConfigOrExit } from "./core/config.js";
import { createLogger } from "./core/logger.js";
import { readReleaseId } from "./core/release.js";
import { migrateUp } from "./db/migrate.js";

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, { service: "migrate", release: readReleaseId() });
try {
  const applied = await migrateUp(config.databaseUrl, log);
  log.info({ applied }, applied.length ? `applied ${applied.length} migration(s)` : "schema up to date");
} catch (err) {
  log.error({ err }, "migration failed");
  process.exitCode = 1;
}
