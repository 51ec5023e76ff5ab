// One pg.Pool per process. Queries go through `Db` (a pool or a transaction's client), so a
// repository function works the same inside or outside a transaction.
import pg from "pg";
import type { Logger } from "../core/logger.js";

export type Db = Pick<pg.Pool, "query"> | pg.PoolClient;

export interface PoolOptions {
  max?: number;
  connectionTimeoutMillis?: number;
  applicationName?: string;
}

export function createPool(databaseUrl: string, log: Logger, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 3000,
    idleTimeoutMillis: 30000,
    application_name: opts.applicationName ?? "saas-app",
  });
  // An idle client whose server went away (restart, failover) emits 'error' on the pool;
  // without a listener that would crash the process. The pool drops the client by itself.
  pool.on("error", (err) => log.warn({ err: err.message }, "idle database connection lost"));
  // Same for a checked-out client (e.g. a LISTEN connection): its errors surface to the query
  // that uses it, so only log here.
  pool.on("connect", (client) => client.on("error", (err) => log.warn({ err: err.message }, "database connection error")));
  return pool;
}

/**
 * Opens one connection now and gives it back to the pool, without waiting for it: the process's
 * first query (web's first /health) then finds it open, and the connect (TCP, TLS, the server
 * starting a backend, auth) overlaps with the rest of the start instead of following it. One
 * connection only, so nothing else waits on it. A failure is only logged: the query that needs
 * the database reports it (web's /health answers 503 until the database answers).
 */
export function openFirstConnection(pool: pg.Pool, log: Logger): void {
  pool.connect().then(
    (client) => client.release(),
    (err: Error) => log.warn({ err: err.message }, "could not open a database connection at start"),
  );
}

/** Run `fn` in a transaction: commit on success, roll back on any error (nothing half-written). */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Health probe: one trivial round trip, bounded in time so a hung server cannot hang callers. */
export async function pingDatabase(pool: pg.Pool, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([pool.query("SELECT 1").then(() => true as const), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
