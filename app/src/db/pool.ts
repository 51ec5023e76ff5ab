// One pg.Pool per process. Queries go through `Db` (a pool or a transaction's client), so a
// repository function works the same inside or outside a transaction.
import pg from "pg";
import type { Logger } from "../core/logger.js";

export type Db = Pick<pg.Pool, "query"> | pg.PoolClient;

export interface PoolOptions {
  max?: number;
  /** Connections kept open however long they idle (pg-pool closes the others after idleTimeoutMillis). */
  min?: number;
  /** How long a request waits for a connection: a free one of the pool, or a new one's connect. */
  connectionTimeoutMillis?: number;
  idleTimeoutMillis?: number;
  applicationName?: string;
}

/**
 * Web's pool, what a request waits on.
 * - A connect may take 10 s before the request fails. A connect is TCP, TLS, the server starting
 *   a backend and scram auth; on a db server that is busy, or an app server carrying the load of
 *   a drained peer mid-roll, that took longer than the 3 s this once was (emulated servers: about
 *   1 request in 1,000 answered 500 during a roll), and waiting a few seconds beats an error. A
 *   database that is down still fails at once (connection refused), and /health bounds its own
 *   probe (pingDatabase).
 * - Two connections stay open while idle, so the usual concurrency of one instance never opens one
 *   on a request's path after a quiet spell; warmPool opens them at start. Two per web instance
 *   count against PostgreSQL's max_connections (100) like the ones in use.
 */
export const WEB_POOL: PoolOptions = { max: 10, min: 2, connectionTimeoutMillis: 10_000 };

export function createPool(databaseUrl: string, log: Logger, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    min: opts.min ?? 0,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 3000,
    idleTimeoutMillis: opts.idleTimeoutMillis ?? 30000,
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
 * Opens the pool's kept connections (its `min`, at least one) in the background; not awaited, it
 * never rejects. The first opens alone and goes back to the pool at once: the process's first
 * query (web's first /health) then finds it open, and that connect (TCP, TLS, the server starting
 * a backend, auth) overlaps with the rest of the start instead of following it. The others open
 * after it, together, each held until all are open (a connection given back would be taken again
 * instead of a new one opened). A failure is only logged: the query that needs the database
 * reports it (web's /health answers 503 until the database answers).
 */
export async function warmPool(pool: pg.Pool, log: Logger): Promise<void> {
  const warn = (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not open a database connection at start");
  try {
    (await pool.connect()).release();
  } catch (err) {
    warn(err);
    return;
  }
  const kept = pool.options.min ?? 0;
  if (kept <= 1) return;
  const opened = await Promise.allSettled(Array.from({ length: kept }, () => pool.connect()));
  for (const o of opened) if (o.status === "fulfilled") o.value.release();
  const failed = opened.find((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failed) warn(failed.reason);
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
