-- Up Migration
-- Verified accounts and abuse limits. Expand-only: a nullable column and new tables, so the
-- release before this one keeps working against the new schema while the switch happens.

-- Fail fast rather than queue behind a long transaction while holding users' lock.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

-- NULL until the owner proves the mailbox (verification link or password reset).
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified_at timestamptz;

-- Accounts that existed before verification did could already act; they keep doing so.
UPDATE users SET email_verified_at = created_at WHERE email_verified_at IS NULL;

-- Single-use, short-lived tokens mailed to the account's address. Only an HMAC of the token is
-- stored (as for sessions); the worker mints the token when it sends the mail, so the raw token
-- is never written to the database, a job payload or a log.
CREATE TABLE IF NOT EXISTS account_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX IF NOT EXISTS account_tokens_user_idx ON account_tokens (user_id, purpose);

-- rate-limiter-flexible's RateLimiterPostgres store (its own layout: key, points, expire in epoch
-- ms). Created here rather than by the library at start: the web login has no CREATE right, and
-- the owner's default privileges give web and worker read/write on it. `points` stays a 32-bit
-- integer: the library compares it as a number, and pg hands a bigint back as a string.
CREATE TABLE IF NOT EXISTS rate_limits (
  key text PRIMARY KEY,
  -- squawk-ignore prefer-bigint-over-int
  points integer NOT NULL DEFAULT 0,
  expire bigint
);

-- Down Migration
DROP TABLE IF EXISTS rate_limits;
DROP TABLE IF EXISTS account_tokens;
ALTER TABLE users DROP COLUMN IF EXISTS email_verified_at;
