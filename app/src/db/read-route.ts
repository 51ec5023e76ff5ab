// Where chosen read-only queries go: to the read replica (DATABASE_READ_URL) while it follows the
// primary closely enough, else to the primary. A query that can tolerate reading a little in the
// past (a report, the audit log) asks `reads.db()`; everything that writes, or reads what the
// same user just wrote, keeps using the primary pool.
//
// The replica is judged by a check every `checkEveryMs` (and at start), never on a request's
// path: it must be a standby (a promoted replica has its own history), and either have replayed
// all it received from a primary it is streaming from, or have replayed a transaction less than
// `maxLagMs` ago. The age of the last replayed transaction alone is not a lag (an idle primary
// sends nothing, and that age grows); with no WAL receiver running, nothing says the replica is
// current, so only that age counts and an idle, disconnected replica is dropped once it passes
// the bound. A read that fails on the replica for a connection reason (the replica went away,
// or canceled the read because of a conflict with recovery) is run again on the primary, once,
// and the replica is left out until the next check says it is back.
import type pg from "pg";
import type { Logger } from "../core/logger.js";
import type { Db } from "./pool.js";

export interface ReplicaState {
  usable: boolean;
  /** Why it is not used (or "" when it is). */
  reason: string;
  /** Estimated lag in ms (0 when it has replayed all it received); undefined when unknown. */
  lagMs?: number;
}

export interface ReadRoute {
  /** The pool a read-only query should use now. */
  db(): Db;
  /** Runs the check now (also run on a timer); returns and keeps the result. */
  check(): Promise<ReplicaState>;
  readonly state: ReplicaState;
  close(): Promise<void>;
}

export interface ReadRouteOptions {
  primary: pg.Pool;
  /** The replica's pool; without it every read goes to the primary. */
  replica?: pg.Pool;
  maxLagMs: number;
  checkEveryMs: number;
  log: Logger;
}

/** Readable by the app's own login (no pg_read_all_stats): the receiver's row shows its pid only. */
const STATE_SQL = `SELECT pg_is_in_recovery() AS standby,
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL) AS receiving,
  coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false) AS replayed_all,
  (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint AS replay_age_ms`;

/**
 * Errors after which the same read on the primary is the right answer: no SQLSTATE (the socket
 * failed), class 08 (connection exception), 57P (the server is shutting down or starting), 53
 * (out of resources), and 40001 from a standby (canceled by a conflict with recovery).
 */
export function isReplicaFailure(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith("08") || code.startsWith("57P") || code.startsWith("53") || code === "40001";
}

/** Judges one state row against the bound; pure, so the rule is tested without a replica. */
export function judgeReplica(row: { standby: boolean; receiving: boolean; replayed_all: boolean; replay_age_ms: string | number | null }, maxLagMs: number): ReplicaState {
  if (!row.standby) return { usable: false, reason: "not a standby (promoted?)" };
  if (row.receiving && row.replayed_all) return { usable: true, reason: "", lagMs: 0 };
  if (row.replay_age_ms === null) return { usable: false, reason: "nothing replayed yet" };
  const lagMs = Number(row.replay_age_ms);
  if (lagMs > maxLagMs) return { usable: false, reason: `lag ${lagMs} ms over ${maxLagMs} ms${row.receiving ? "" : " (not receiving from the primary)"}`, lagMs };
  return { usable: true, reason: "", lagMs };
}

export function createReadRoute(opts: ReadRouteOptions): ReadRoute {
  const { primary, replica, log } = opts;
  let state: ReplicaState = replica ? { usable: false, reason: "not checked yet" } : { usable: false, reason: "no replica configured" };
  const setState = (next: ReplicaState) => {
    if (next.usable !== state.usable) {
      if (next.usable) log.info({ lagMs: next.lagMs }, "read replica in use");
      else log.warn({ reason: next.reason }, "read replica left out: reads go to the primary");
    }
    state = next;
  };

  const check = async (): Promise<ReplicaState> => {
    if (!replica) return state;
    try {
      const { rows } = await replica.query(STATE_SQL);
      setState(judgeReplica(rows[0], opts.maxLagMs));
    } catch (err) {
      setState({ usable: false, reason: `check failed: ${(err as Error).message}` });
    }
    return state;
  };

  const onReplica: Db = {
    query: (async (...args: unknown[]) => {
      try {
        return await (replica!.query as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (err) {
        if (!isReplicaFailure(err)) throw err;
        setState({ usable: false, reason: `a read failed: ${(err as Error).message}` });
        return (primary.query as (...a: unknown[]) => Promise<unknown>)(...args);
      }
    }) as pg.Pool["query"],
  };

  let timer: NodeJS.Timeout | undefined;
  if (replica) {
    void check();
    timer = setInterval(() => void check(), opts.checkEveryMs);
    // The check never keeps the process alive by itself.
    timer.unref();
  }

  return {
    db: () => (replica && state.usable ? onReplica : primary),
    check,
    get state() {
      return state;
    },
    async close() {
      clearInterval(timer);
      await replica?.end().catch(() => {});
    },
  };
}
