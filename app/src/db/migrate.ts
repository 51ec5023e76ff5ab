// Schema migrations: the app's own SQL files (migrations/*.sql, run by node-pg-migrate) and the
// job queue's schema (graphile-worker ships its own migrations). Idempotent; safe to run on
// every release before the switch. node-pg-migrate takes an advisory lock, so two concurrent
// runs do not race.
import path from "node:path";
import { runner } from "node-pg-migrate";
import { Logger as GraphileLogger, runMigrations as runQueueMigrations } from "graphile-worker";
import { packageRoot } from "../core/release.js";
import type { Logger } from "../core/logger.js";

export const migrationsDir = path.join(packageRoot, "migrations");

export async function migrateUp(databaseUrl: string, log: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: migrationsDir,
    direction: "up",
    migrationsTable: "pgmigrations",
    checkOrder: true,
    singleTransaction: true,
    log: (msg: string) => log.debug(msg),
    logger: { debug: () => {}, info: (m: string) => log.debug(m), warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
  });
  await runQueueMigrations({ connectionString: databaseUrl, logger: silentGraphileLogger() });
  return applied.map((m) => m.name);
}

function silentGraphileLogger(): GraphileLogger {
  return new GraphileLogger(() => () => {});
}
