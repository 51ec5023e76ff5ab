// Table `users`.
import type { Db } from "../db/pool.js";
import { ConflictError, isUniqueViolation } from "../core/errors.js";

export interface User {
  id: string;
  email: string;
  name: string;
  /** When the owner proved the mailbox; null until then (the account cannot act yet). */
  emailVerifiedAt: Date | null;
  createdAt: Date;
}

const COLUMNS = `id, email, name, email_verified_at AS "emailVerifiedAt", created_at AS "createdAt"`;

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export async function insertUser(db: Db, email: string, name: string, passwordHash: string): Promise<User> {
  try {
    const { rows } = await db.query<User>(
      `INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
      [normalizeEmail(email), name, passwordHash],
    );
    return rows[0]!;
  } catch (err) {
    if (isUniqueViolation(err, "users_email_key")) throw new ConflictError("an account with this email already exists: log in instead");
    throw err;
  }
}

/** Inserts the user unless the address is taken; undefined then (signup answers the same either way). */
export async function insertUserIfNew(db: Db, email: string, name: string, passwordHash: string): Promise<User | undefined> {
  const { rows } = await db.query<User>(
    `INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING RETURNING ${COLUMNS}`,
    [normalizeEmail(email), name, passwordHash],
  );
  return rows[0];
}

export async function findUserIdByEmail(db: Db, email: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(`SELECT id FROM users WHERE email = $1`, [normalizeEmail(email)]);
  return rows[0]?.id;
}

/** Marks the address verified (first proof wins: a later one keeps the original time). */
export async function markEmailVerified(db: Db, id: string): Promise<void> {
  await db.query(`UPDATE users SET email_verified_at = now() WHERE id = $1 AND email_verified_at IS NULL`, [id]);
}

export async function findUserById(db: Db, id: string): Promise<User | undefined> {
  const { rows } = await db.query<User>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
  return rows[0];
}

export async function findCredentials(db: Db, email: string): Promise<{ id: string; passwordHash: string } | undefined> {
  const { rows } = await db.query<{ id: string; passwordHash: string }>(
    `SELECT id, password_hash AS "passwordHash" FROM users WHERE email = $1`,
    [normalizeEmail(email)],
  );
  return rows[0];
}

export async function updateUserName(db: Db, id: string, name: string): Promise<User | undefined> {
  const { rows } = await db.query<User>(`UPDATE users SET name = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, name]);
  return rows[0];
}

export async function updatePasswordHash(db: Db, id: string, passwordHash: string): Promise<void> {
  await db.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [id, passwordHash]);
}
