// Enqueueing jobs. Jobs live in PostgreSQL (graphile-worker's schema), so a job is added with
// plain SQL on the caller's connection: inside a transaction it commits or rolls back with the
// rows that caused it (a signup that fails leaves no welcome email behind, and vice versa).
import type { Db } from "../db/pool.js";

export const TASKS = {
  /** After signup: welcome, with the link that verifies the address. */
  welcomeEmail: "send_welcome_email",
  /** A fresh verification link (resend). */
  verificationEmail: "send_verification_email",
  passwordResetEmail: "send_password_reset_email",
  /** Someone tried to sign up with an address that already has an account. */
  registrationNoticeEmail: "send_registration_notice_email",
  invitationEmail: "send_invitation_email",
} as const;

// Payloads carry ids only, never a token: job rows are readable by every app login, kept while
// they fail, listed to admins and in backups. The worker mints a mail's token when it sends it.
export interface WelcomeEmailPayload {
  userId: string;
}
/** Payload of the verification, password-reset and registration-notice emails. */
export interface AccountEmailPayload {
  userId: string;
}
export interface InvitationEmailPayload {
  invitationId: string;
}

/**
 * Every payload may also carry `requestId`: the id of the request that enqueued the job (not a
 * secret: nginx made it up, or the client sent it), so the worker's log lines for the job join
 * the request's. Tasks ignore it; the worker's job wrapper reads it (jobs/job-context.ts).
 */
export const REQUEST_ID_KEY = "requestId";

/** Default attempts: backoff is exp(attempt) seconds, so 8 attempts span about 25 minutes. */
export const DEFAULT_MAX_ATTEMPTS = 8;

export interface EnqueueOptions {
  maxAttempts?: number;
  /** Deduplicates: a second job with the same key replaces the pending one. */
  jobKey?: string;
  /** Jobs of one named queue run one at a time, in order; none = run in parallel. */
  queueName?: string;
  /** Lower runs first (default 0). */
  priority?: number;
  /** The request that enqueues the job (its X-Request-Id), stored in the payload as `requestId`. */
  requestId?: string;
}

export async function enqueue(db: Db, task: string, payload: object, opts: EnqueueOptions = {}): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM graphile_worker.add_job($1, $2::json, max_attempts => $3, job_key => $4, queue_name => $5, priority => $6)`,
    [task, JSON.stringify(opts.requestId === undefined ? payload : { ...payload, [REQUEST_ID_KEY]: opts.requestId }), opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, opts.jobKey ?? null, opts.queueName ?? null, opts.priority ?? 0],
  );
  return String(rows[0]!.id);
}

export function enqueueWelcomeEmail(db: Db, payload: WelcomeEmailPayload, opts: EnqueueOptions = {}): Promise<string> {
  return enqueue(db, TASKS.welcomeEmail, payload, { jobKey: `welcome:${payload.userId}`, ...opts });
}

export type AccountEmailTask = typeof TASKS.verificationEmail | typeof TASKS.passwordResetEmail | typeof TASKS.registrationNoticeEmail;

/** One pending mail of a kind per user: a second request while one waits does not add another. */
export function enqueueAccountEmail(db: Db, task: AccountEmailTask, payload: AccountEmailPayload, requestId?: string): Promise<string> {
  return enqueue(db, task, payload, { jobKey: `${task}:${payload.userId}`, requestId });
}

export function enqueueInvitationEmail(db: Db, payload: InvitationEmailPayload, requestId?: string): Promise<string> {
  return enqueue(db, TASKS.invitationEmail, payload, { jobKey: `invitation:${payload.invitationId}`, requestId });
}

export interface JobRow {
  id: string;
  task: string;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  runAt: Date;
  createdAt: Date;
  updatedAt: Date;
  lockedAt: Date | null;
}

const JOB_COLUMNS = `id::text, task_identifier AS task, attempts, max_attempts AS "maxAttempts", last_error AS "lastError",
  run_at AS "runAt", created_at AS "createdAt", updated_at AS "updatedAt", locked_at AS "lockedAt"`;

/** Permanently failed jobs: out of attempts. graphile-worker keeps them (it never deletes a failed job). */
export async function listFailedJobs(db: Db, limit = 100): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM graphile_worker.jobs WHERE attempts >= max_attempts ORDER BY updated_at DESC LIMIT $1`,
    [limit],
  );
  return rows;
}

export async function findJob(db: Db, id: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM graphile_worker.jobs WHERE id = $1`, [id]);
  return rows[0];
}

/** Give a permanently failed job a fresh set of attempts, due now. */
export async function retryFailedJob(db: Db, id: string): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT id FROM graphile_worker.reschedule_jobs(ARRAY[$1::bigint], run_at => now(), attempts => 0)
      WHERE id IN (SELECT id FROM graphile_worker.jobs WHERE id = $1::bigint AND attempts >= max_attempts)`,
    [id],
  );
  return rows.length === 1;
}
