// Table `sessions`: revocable bearer sessions.
import type { Db } from "../db/pool.js";

export const SESSION_TTL_DAYS = 30;

export interface SessionUser {
  sessionId: string;
  userId: string;
  email: string;
  name: string;
  isPlatformAdmin: boolean;
  emailVerified: boolean;
}

export interface SessionRow {
  id: string;
  userAgent: string | null;
  createdAt: Date;
  expiresAt: Date;
}

export async function createSession(db: Db, userId: string, tokenHash: Buffer, userAgent: string | undefined): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO sessions (user_id, token_hash, user_agent, expires_at)
     VALUES ($1, $2, $3, now() + make_interval(days => $4)) RETURNING id`,
    [userId, tokenHash, userAgent?.slice(0, 300) ?? null, SESSION_TTL_DAYS],
  );
  return rows[0]!.id;
}

/** The live (not revoked, not expired) session for a token hash, with its user. */
export async function findSessionUser(db: Db, tokenHash: Buffer): Promise<SessionUser | undefined> {
  const { rows } = await db.query<SessionUser>(
    `SELECT s.id AS "sessionId", u.id AS "userId", u.email, u.name, u.is_platform_admin AS "isPlatformAdmin",
            u.email_verified_at IS NOT NULL AS "emailVerified"
       FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`,
    [tokenHash],
  );
  return rows[0];
}

export async function listSessions(db: Db, userId: string): Promise<SessionRow[]> {
  const { rows } = await db.query<SessionRow>(
    `SELECT id, user_agent AS "userAgent", created_at AS "createdAt", expires_at AS "expiresAt"
       FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
      ORDER BY created_at DESC`,
    [userId],
  );
  return rows;
}

/** Revoke one of the user's sessions; false when it is not theirs or already revoked. */
export async function revokeSession(db: Db, userId: string, sessionId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`,
    [sessionId, userId],
  );
  return rowCount === 1;
}

export async function revokeAllSessions(db: Db, userId: string): Promise<number> {
  const { rowCount } = await db.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, [userId]);
  return rowCount ?? 0;
}
