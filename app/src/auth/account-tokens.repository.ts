// Table `account_tokens`: single-use, short-lived tokens mailed to an account's own address
// (verify the address, reset the password). The worker mints one when it sends the mail; the
// database keeps only its HMAC (auth/tokens.ts). Each works once; a password reset voids every
// other reset token of the account.
import type { Db } from "../db/pool.js";

export type AccountTokenPurpose = "verify_email" | "reset_password";

/** Lifetimes: a reset link grants the account, so it lives briefly; a verification link a day. */
export const TOKEN_TTL_MINUTES: Record<AccountTokenPurpose, number> = { verify_email: 24 * 60, reset_password: 30 };

export async function insertAccountToken(db: Db, userId: string, purpose: AccountTokenPurpose, tokenHash: Buffer): Promise<void> {
  await db.query(
    `INSERT INTO account_tokens (user_id, purpose, token_hash, expires_at)
     VALUES ($1, $2, $3, now() + make_interval(mins => $4))`,
    [userId, purpose, tokenHash, TOKEN_TTL_MINUTES[purpose]],
  );
}

/** The user a usable token belongs to, without using it up (to refuse early, before costly work). */
export async function findTokenUser(db: Db, purpose: AccountTokenPurpose, tokenHash: Buffer): Promise<string | undefined> {
  const { rows } = await db.query<{ userId: string }>(
    `SELECT user_id AS "userId" FROM account_tokens
      WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()`,
    [tokenHash, purpose],
  );
  return rows[0]?.userId;
}

/** Uses a token up (once: a concurrent second use finds nothing); returns its user. */
export async function useAccountToken(db: Db, purpose: AccountTokenPurpose, tokenHash: Buffer): Promise<string | undefined> {
  const { rows } = await db.query<{ userId: string }>(
    `UPDATE account_tokens SET used_at = now()
      WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
      RETURNING user_id AS "userId"`,
    [tokenHash, purpose],
  );
  return rows[0]?.userId;
}

/** Voids every unused token of a purpose (after a reset, the other reset links die). */
export async function voidAccountTokens(db: Db, userId: string, purpose: AccountTokenPurpose): Promise<void> {
  await db.query(`UPDATE account_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`, [userId, purpose]);
}
