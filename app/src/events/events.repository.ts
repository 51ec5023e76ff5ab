// Table `audit_events`: the append-only audit log. recordEvent is the one way in; call it with
// the same Db as the change it records (inside its transaction), so an event exists if and only
// if the change committed. The table refuses UPDATE and DELETE from the app's logins
// (migrations/003_billing_events.sql); old rows go only through prune_audit_events.
import type { FastifyRequest } from "fastify";
import type { Db } from "../db/pool.js";

/** What happened, as `area.action`. Add a kind here before recording it. */
export const EVENT_KINDS = [
  "auth.login",
  "auth.login_failed",
  "member.role_changed",
  "member.removed",
  "member.joined",
  "invitation.created",
  "invitation.revoked",
  "billing.checkout_started",
  "billing.subscription_changed",
  "billing.invoice_changed",
  "admin.job_retried",
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export interface EventInput {
  kind: EventKind;
  /** The organization it concerns; null for events of a user alone (login). */
  orgId?: string | null;
  /** Who did it; defaults to the request's signed-in user. null = nobody signed in (a failed login, Stripe). */
  actorId?: string | null;
  /** Small, non-secret facts: ids, roles, emails, statuses. Never tokens or passwords. */
  data?: Record<string, unknown>;
}

export interface AuditEvent {
  id: string;
  orgId: string | null;
  actorUserId: string | null;
  kind: string;
  requestId: string | null;
  ip: string | null;
  data: Record<string, unknown>;
  occurredAt: Date;
}

const COLUMNS = `id::text, org_id AS "orgId", actor_user_id AS "actorUserId", kind, request_id AS "requestId", host(ip) AS ip, data, occurred_at AS "occurredAt"`;

/** Appends one event; with a request, its id, client address and signed-in user come along. */
export async function recordEvent(db: Db, event: EventInput, request?: FastifyRequest): Promise<void> {
  const actorId = event.actorId !== undefined ? event.actorId : (request?.user?.userId ?? null);
  await db.query(
    `INSERT INTO audit_events (org_id, actor_user_id, kind, request_id, ip, data) VALUES ($1, $2, $3, $4, $5, $6)`,
    [event.orgId ?? null, actorId, event.kind, request?.id ?? null, request?.ip ?? null, JSON.stringify(event.data ?? {})],
  );
}

export interface EventFilter {
  /** Only this organization's events; undefined = every event (platform admins). */
  orgId?: string;
  limit: number;
  /** Keyset pagination: events older than this id. */
  before?: string;
}

/**
 * Newest first. The ORDER BY names the table's column: a bare `id` would be the text the SELECT
 * list casts it to, which puts "9" before "10" (and skips the index on org_id, id).
 */
export async function listEvents(db: Db, filter: EventFilter): Promise<AuditEvent[]> {
  const { rows } = await db.query<AuditEvent>(
    `SELECT ${COLUMNS} FROM audit_events
      WHERE ($1::uuid IS NULL OR org_id = $1) AND ($2::bigint IS NULL OR id < $2)
      ORDER BY audit_events.id DESC LIMIT $3`,
    [filter.orgId ?? null, filter.before ?? null, filter.limit],
  );
  return rows;
}

/** Removes events older than `keepDays` (at least 30) through the owner's function; returns how many. */
export async function pruneEvents(db: Db, keepDays: number): Promise<number> {
  const { rows } = await db.query<{ removed: string }>(`SELECT prune_audit_events($1) AS removed`, [keepDays]);
  return Number(rows[0]!.removed);
}
