// The process's one Valkey client (VALKEY_URL), made by the entrypoint like the pg pools and
// closed at shutdown. Valkey holds what several app servers must share (auth/rate-limits.ts'
// counters, core/shared-cache.ts); nothing in it is the only copy of anything, so the app keeps
// answering while it is away: every setting below makes a dead or stuck Valkey fail a command
// quickly instead of holding the request that sent it.
import type { Valkey as ValkeyClient, RedisOptions } from "iovalkey";
import type { Logger } from "./logger.js";

export type { ValkeyClient };

/**
 * A connect that has not finished after this is given up (and retried by retryStrategy). On the
 * private network TCP and TLS take milliseconds; without a bound, a dropped SYN (the server down,
 * a firewall dropping) waits for the kernel's retries, about two minutes.
 */
export const VALKEY_CONNECT_TIMEOUT_MS = 2000;
/**
 * A command without an answer after this fails: a counter's INCR or a cache GET answers in well
 * under a millisecond on the private network, so 500 ms means Valkey is stuck (paused, swapping,
 * a half-open connection). The caller then falls back (the limit counts in the process, the cache
 * misses); a login never waits longer than this on Valkey.
 */
export const VALKEY_COMMAND_TIMEOUT_MS = 500;
/** Reconnects keep trying for as long as the process lives, at most this far apart. */
export const VALKEY_MAX_RECONNECT_DELAY_MS = 2000;
/** While Valkey stays away, its warning is repeated this often (the first one comes at once). */
const REPEAT_WARNING_MS = 5 * 60 * 1000;

/** The client options, apart from the URL's own (host, port, user, password, TLS). */
export function valkeyOptions(url: string, connectionName: string): RedisOptions {
  return {
    connectionName, // CLIENT LIST on the server names the process kind
    connectTimeout: VALKEY_CONNECT_TIMEOUT_MS,
    commandTimeout: VALKEY_COMMAND_TIMEOUT_MS,
    // Off: while disconnected, a command fails at once instead of waiting in a queue for the
    // reconnect (with the queue on, every login during an outage would wait for Valkey's return).
    enableOfflineQueue: false,
    // 0: a command in flight when the connection drops fails instead of being sent again on the
    // next connection (a resent INCR would count twice; the caller has fallen back by then anyway).
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 100, VALKEY_MAX_RECONNECT_DELAY_MS),
    // TLS without checking the certificate, as libpq's sslmode=require: the Valkey server makes
    // its own self-signed certificate, and nothing on the private network could vouch for it.
    // TLS keeps the password and the data off the wire; the password is what keeps others out.
    tls: new URL(url).protocol === "rediss:" ? { rejectUnauthorized: false } : undefined,
  };
}

/**
 * What an operator should read for a connection error: the client's message plus what it
 * usually means. Never the URL (it holds the password); the client's messages do not either.
 */
export function describeValkeyError(err: Error & { code?: string }, url: string): string {
  const tls = new URL(url).protocol === "rediss:";
  const msg = err.message;
  if (/WRONGPASS|NOAUTH|invalid password|invalid username-password/i.test(msg)) return `${msg} (Valkey refused VALKEY_URL's user or password)`;
  if (!tls && /ECONNRESET|Connection is closed/i.test(msg)) {
    return `${msg} (VALKEY_URL is redis://, plain TCP: a Valkey that only speaks TLS closes such connections; use rediss://)`;
  }
  if (tls && /wrong version number|packet length too long|ssl|tls/i.test(msg)) return `${msg} (VALKEY_URL is rediss:// but the server did not answer with TLS)`;
  return msg;
}

/** Tracks whether Valkey is reachable and logs each change once, never each failed command. */
export class ValkeyStatus {
  private downSince: number | undefined;
  private warnedAt = 0;

  constructor(private readonly log: Logger, private readonly now: () => number = Date.now) {}

  get isDown(): boolean {
    return this.downSince !== undefined;
  }

  /** `reason` must not hold a secret or a counter key; callers pass error messages of the client. */
  down(reason: string): void {
    const t = this.now();
    if (this.downSince === undefined) this.downSince = t;
    else if (t - this.warnedAt < REPEAT_WARNING_MS) return;
    this.warnedAt = t;
    this.log.warn({ reason, downForMs: t - this.downSince }, "valkey unavailable: abuse limits count per process, the shared cache is off, until it is back");
  }

  up(): void {
    if (this.downSince === undefined) return;
    this.log.info({ downForMs: this.now() - this.downSince }, "valkey back: abuse limits and the cache are shared again");
    this.downSince = undefined;
  }
}

export interface Valkey {
  client: ValkeyClient;
  status: ValkeyStatus;
  /**
   * A command failed or timed out (the caller has fallen back). Notes the outage and, if the
   * connection still counts as up, drops it for a new one: a connection whose commands go
   * unanswered is stuck (a frozen server, a half-open TCP connection), and the reconnect's
   * "ready" is then what tells that Valkey is back.
   */
  commandFailed(reason: string): void;
  close(): Promise<void>;
}

/**
 * Connects in the background (the process starts whether or not Valkey answers: until it does,
 * limits count per process). iovalkey is imported only here, so a process without VALKEY_URL
 * never loads it (its own chunk in the release bundle).
 */
export async function createValkey(url: string, log: Logger, connectionName: string): Promise<Valkey> {
  // A CommonJS package: the release bundle's chunk for it exports only `default` (module.exports),
  // so the class is taken from there, as Node's own import also allows.
  const { Valkey } = (await import("iovalkey")).default;
  const client = new Valkey(url, valkeyOptions(url, connectionName));
  const status = new ValkeyStatus(log);
  let everReady = false;
  let closing = false;
  client.on("ready", () => {
    if (!everReady) log.info("valkey connected");
    everReady = true;
    status.up();
  });
  // Without a listener the client prints every error of its reconnect loop to stderr.
  client.on("error", (err: Error) => status.down(describeValkeyError(err, url)));
  client.on("close", () => {
    if (everReady && !closing && !status.isDown) status.down("connection closed");
  });
  return {
    client,
    status,
    commandFailed: (reason) => {
      status.down(reason);
      if (client.status === "ready") client.disconnect(true);
    },
    close: async () => {
      closing = true;
      // QUIT needs a connection; without one (Valkey away) there is nothing to say goodbye to.
      if (client.status === "ready") await client.quit().catch(() => client.disconnect());
      else client.disconnect();
    },
  };
}
