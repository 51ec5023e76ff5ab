// Abuse limits (rate-limiter-flexible). Counters live in a store every web process shares —
// Valkey when VALKEY_URL is set (several app servers), else PostgreSQL's `rate_limits` table —
// because a counter in one process's memory lets a client spread its attempts over the
// instances behind nginx and the servers behind the load balancer.
// Each limit counts per client address (request.ip: nginx's X-Forwarded-For, trusted from
// loopback only, see api/app.ts) or per account (a user id, or a hash of the email address
// the request names). Over the limit: 429 with Retry-After and the usual JSON error body.
import { createHash } from "node:crypto";
import type pg from "pg";
import type { RateLimiterAbstract, RateLimiterRes as RateLimiterResult } from "rate-limiter-flexible";
import RateLimiterMemory from "rate-limiter-flexible/lib/RateLimiterMemory.js";
import RateLimiterPostgres from "rate-limiter-flexible/lib/RateLimiterPostgres.js";
import RateLimiterRes from "rate-limiter-flexible/lib/RateLimiterRes.js";
import RateLimiterValkey from "rate-limiter-flexible/lib/RateLimiterValkey.js";
import { TooManyRequestsError } from "../core/errors.js";
import type { Valkey } from "../core/valkey.js";
import { normalizeEmail } from "../users/users.repository.js";

// The package's index loads every store it supports (about 10 MB of RSS and half a second of
// start-up): the classes used here come from their own files (typed in rate-limiter-parts.d.ts),
// imported statically so that the release bundle carries them.

interface Limit {
  points: number;
  /** Window in seconds. */
  duration: number;
  /** What the 429 message says was too frequent. */
  what: string;
}

const MINUTE = 60;
const HOUR = 3600;

/** Every limit, in one place. `_ip` keys are client addresses; `_account` keys are users or email addresses. */
export const LIMITS = {
  // Every login attempt from an address (an office behind one NAT logs in a lot: generous).
  login_ip: { points: 100, duration: 15 * MINUTE, what: "login attempts from your address" },
  // Failed logins against one account: the password-guessing limit. Successes do not count,
  // so someone hammering an account cannot lock its owner out for more than this window.
  login_failures_account: { points: 10, duration: 15 * MINUTE, what: "failed logins for this account" },
  register_ip: { points: 10, duration: HOUR, what: "sign-ups from your address" },
  password_change_account: { points: 5, duration: 15 * MINUTE, what: "password changes" },
  password_change_ip: { points: 20, duration: 15 * MINUTE, what: "password changes from your address" },
  // Reset confirmations and verifications carry a 256-bit token; this only bounds the work.
  token_ip: { points: 30, duration: 15 * MINUTE, what: "verification and reset attempts from your address" },
  password_reset_ip: { points: 10, duration: HOUR, what: "password reset requests from your address" },
  invitation_accept_account: { points: 10, duration: 15 * MINUTE, what: "invitation acceptances" },
  invitation_accept_ip: { points: 30, duration: 15 * MINUTE, what: "invitation acceptances from your address" },
  invitation_send_account: { points: 30, duration: HOUR, what: "invitations sent" },
  verification_resend_account: { points: 3, duration: HOUR, what: "verification emails" },
  // Any account mail to one address (verification, reset, "someone tried to register", invitation):
  // nobody can turn the app into a mail cannon aimed at one inbox.
  mail_address: { points: 5, duration: HOUR, what: "emails to this address" },
  upload_account: { points: 60, duration: 10 * MINUTE, what: "uploads" },
  upload_ip: { points: 120, duration: 10 * MINUTE, what: "uploads from your address" },
} as const satisfies Record<string, Limit>;
export type LimitName = keyof typeof LIMITS;

/** Makes the store-backed limiter for one limit. */
export type LimiterStore = (opts: { keyPrefix: string; points: number; duration: number }) => RateLimiterAbstract;

export const RATE_LIMIT_TABLE = "rate_limits";

/**
 * PostgreSQL store: one upsert per counted request on the shared table (created by migration
 * 002). Expiry times are epoch ms from each app server's clock, so servers must keep time (NTP).
 */
export function postgresLimiterStore(pool: pg.Pool): LimiterStore {
  let sweeper = true; // one limiter per process deletes long-expired rows (every 5 min), not all of them
  return (opts) => {
    const limiter = new RateLimiterPostgres({ storeClient: pool, tableName: RATE_LIMIT_TABLE, tableCreated: true, clearExpiredByTimeout: sweeper, ...opts });
    sweeper = false;
    return limiter;
  };
}

/** Every counter key in Valkey starts with this (the shared cache has its own prefix). */
export const VALKEY_LIMIT_PREFIX = "rl:";

/**
 * Valkey store: one INCR (a Lua script that also sets the expiry) per counted request, expiry
 * kept by Valkey itself (no sweeper, no clock of ours).
 *
 * When Valkey is away or stuck, a login must still be answered and still be limited. Each limit
 * then counts in the process's memory (an insurance limiter with the same points and window):
 * limits hold, only per process (a client spreading attempts over N processes gets N times the
 * points), for as long as the outage lasts; counts made meanwhile stay in that process and are
 * not carried over. Failing closed instead (503 on every login and sign-up while Valkey is away)
 * would make Valkey's outage the whole product's; failing open (no limits) would hand a password
 * guesser the outage. The client fails fast (core/valkey.ts: no offline queue, 500 ms command
 * timeout), and `rejectIfValkeyNotReady` skips Valkey at once while it is disconnected.
 * The outage is logged once (ValkeyStatus), never per request and never with a counter key.
 */
export function valkeyLimiterStore(valkey: Valkey): LimiterStore {
  return (opts) => {
    const insuranceLimiter = new InsuranceLimiter(valkey, { points: opts.points, duration: opts.duration, keyPrefix: opts.keyPrefix });
    return new RateLimiterValkey({
      storeClient: valkey.client,
      rejectIfValkeyNotReady: true,
      insuranceLimiter,
      ...opts,
      keyPrefix: VALKEY_LIMIT_PREFIX + opts.keyPrefix,
    });
  };
}

/** The in-process fallback; each use notes the outage (logged once), the store's error is not passed on. */
class InsuranceLimiter extends RateLimiterMemory {
  constructor(
    private readonly valkey: Valkey,
    opts: { points: number; duration: number; keyPrefix: string },
  ) {
    super(opts);
  }

  override consume(key: string | number, points?: number, options?: { [key: string]: unknown }): Promise<RateLimiterResult> {
    this.valkey.commandFailed("a rate-limit command failed or timed out");
    return super.consume(key, points, options);
  }
}

/** A counter key for an email address: hashed, so the table holds no addresses. */
export function emailKey(email: string): string {
  return createHash("sha256").update(normalizeEmail(email)).digest("base64url");
}

/**
 * A counter key for a client address. IPv6 counts per /64: one host usually holds a whole /64,
 * so counting single addresses would let it rotate through 2^64 of them.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(":")) return ip;
  const [head, tail = ""] = ip.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = ip.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
  return `${groups.slice(0, 4).map((g) => (g || "0").toLowerCase().replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

export class RateLimits {
  private readonly limiters: Record<LimitName, RateLimiterAbstract>;

  constructor(store: LimiterStore) {
    this.limiters = Object.fromEntries(
      Object.entries(LIMITS).map(([name, l]) => [name, store({ keyPrefix: name, points: l.points, duration: l.duration })]),
    ) as Record<LimitName, RateLimiterAbstract>;
  }

  /** Counts one request; throws 429 once the limit is passed. */
  async consume(name: LimitName, key: string): Promise<void> {
    try {
      await this.limiters[name].consume(key);
    } catch (err) {
      throw toTooMany(name, err);
    }
  }

  /**
   * Gives back the point `consume` took: for limits on failures only (count every attempt up
   * front, so concurrent attempts cannot overshoot; refund the ones that succeeded).
   */
  async refund(name: LimitName, key: string): Promise<void> {
    await this.limiters[name].reward(key, 1);
  }
}

function toTooMany(name: LimitName, err: unknown): Error {
  if (!(err instanceof RateLimiterRes)) return err as Error; // the store failed: a 500, not a 429
  const seconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
  return new TooManyRequestsError(`too many ${LIMITS[name].what}: try again in ${seconds} s`, seconds);
}
