// Configuration: every setting comes from environment variables, validated once at start.
// `parseConfig` is pure (env in, Config out) and collects every problem before throwing,
// one line per bad variable, in the `env/KEY must ...` form the deploy tooling greps for.
import path from "node:path";
import { parseBillingPlans, type BillingPlans } from "../billing/plans.js";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export interface S3Config {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Stripe, when billing is on. Web needs both secrets; the worker only the API key. */
export interface StripeConfig {
  secretKey: string;
  /** Only the web processes receive webhooks; undefined elsewhere. */
  webhookSecret: string | undefined;
  /** Another API base (stripe-mock, a test server); undefined = api.stripe.com. */
  apiBase: URL | undefined;
}

/** A read replica for chosen read-only queries (db/read-route.ts). */
export interface ReadReplicaConfig {
  url: string;
  /** Reads go to the primary while the replica is further behind than this. */
  maxLagMs: number;
}

export interface Config {
  databaseUrl: string;
  /** DATABASE_READ_URL (and DATABASE_READ_MAX_LAG_SECONDS); undefined = every read on the primary. */
  readReplica: ReadReplicaConfig | undefined;
  /**
   * VALKEY_URL (redis:// or rediss://): what several app servers must share (abuse-limit counters,
   * the shared cache); undefined = counters in PostgreSQL and no cache, as on one server.
   */
  valkeyUrl: string | undefined;
  port: number;
  host: string;
  secretKey: string;
  appUrl: string;
  /** smtp:// or smtps:// URL; undefined means "log emails instead of sending them". */
  smtpUrl: string | undefined;
  mailFrom: string;
  sentryDsn: string | undefined;
  /** Sentry's environment of every event (the stack's name); undefined = Sentry's default. */
  sentryEnvironment: string | undefined;
  /**
   * Metrics on a loopback-only listener at this offset plus the process's instance number (web:
   * PORT, worker: WORKER_ID); undefined = no metrics listener. See metrics/port.ts.
   */
  metricsPortOffset: number | undefined;
  /** The worker's instance number (systemd's worker@N sets WORKER_ID=N); 1 when unset. */
  workerId: number;
  /** Absolute path. */
  uploadDir: string;
  /**
   * Free bytes an upload must leave on UPLOAD_DIR's filesystem (UPLOAD_MIN_FREE_MIB): on the
   * one-server stage the uploads share the data volume with PostgreSQL, which must never find it full.
   */
  uploadMinFreeBytes: number;
  s3: S3Config | undefined;
  /** Bytes of uploaded files one organization may hold in total. */
  uploadQuotaBytes: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  workerConcurrency: number;
  stripe: StripeConfig | undefined;
  plans: BillingPlans;
  auditRetentionDays: number;
  /** Which of the app's tasks this worker process runs (WORKER_TASKS_ONLY / WORKER_TASKS_EXCEPT); see jobs/selection.ts. */
  workerTasks: WorkerTaskFilter;
}

/**
 * A worker runs every task, only the listed ones, or all but the listed ones. The names are
 * checked against the app's task list when the worker starts (jobs/selection.ts), not here:
 * the config does not know the tasks.
 */
export type WorkerTaskFilter = { mode: "all" } | { mode: "only" | "except"; tasks: string[] };

/** The two variables of WorkerTaskFilter; a worker takes one or neither. */
export const WORKER_TASK_VARS = { only: "WORKER_TASKS_ONLY", except: "WORKER_TASKS_EXCEPT" } as const;

/**
 * What a task name may look like in those variables: the app's names are snake_case, and the
 * list is written into a systemd unit's Environment= line, where a space, quote, "%" or "$"
 * would change it.
 */
export const TASK_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$/;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

export const DEFAULT_UPLOAD_QUOTA_BYTES = 1024 ** 3;

/** Worker instance numbers run from 1 to this; web ports start above it when metrics are on. */
export const MAX_WORKER_ID = 999;
const MIN_PORT_WITH_METRICS = MAX_WORKER_ID + 1;

const S3_KEYS = ["S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] as const;

/** Parse and validate the environment. Throws ConfigError listing every problem. */
export function parseConfig(env: Record<string, string | undefined>, cwd = process.cwd()): Config {
  const problems: string[] = [];
  // An empty variable (KEY= in an env file) means "not set".
  const get = (key: string): string | undefined => {
    const v = env[key];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const fail = (key: string, rule: string, given?: string): undefined => {
    problems.push(`env/${key} must ${rule}${given === undefined ? "" : ` (got ${JSON.stringify(given)})`}`);
    return undefined;
  };
  const required = (key: string, rule: string): string | undefined => get(key) ?? fail(key, `be set: ${rule}`);
  const url = (key: string, value: string | undefined, protocols: string[], rule: string): string | undefined => {
    if (value === undefined) return undefined;
    try {
      const u = new URL(value);
      if (!protocols.includes(u.protocol)) return fail(key, rule, redact(value));
      return value;
    } catch {
      return fail(key, rule, redact(value));
    }
  };
  const int = (key: string, dflt: number, min: number, max: number): number => {
    const raw = get(key);
    if (raw === undefined) return dflt;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      fail(key, `be an integer from ${min} to ${max}`, raw);
      return dflt;
    }
    return Number(raw);
  };

  const databaseUrl = url(
    "DATABASE_URL",
    required("DATABASE_URL", "a postgres:// URL"),
    ["postgres:", "postgresql:"],
    "be a postgres:// or postgresql:// URL",
  );
  const readUrl = url("DATABASE_READ_URL", get("DATABASE_READ_URL"), ["postgres:", "postgresql:"], "be a postgres:// or postgresql:// URL of a read replica");
  const maxLagSeconds = int("DATABASE_READ_MAX_LAG_SECONDS", 10, 1, 3600);
  if (readUrl !== undefined && readUrl === databaseUrl) fail("DATABASE_READ_URL", "name a read replica, not the same URL as DATABASE_URL");
  const valkeyUrl = parseValkeyUrl(get("VALKEY_URL"), fail);
  const port = int("PORT", 3000, 1, 65535);
  const host = get("HOST") ?? "127.0.0.1";

  let secretKey = get("SECRET_KEY");
  if (secretKey === undefined) fail("SECRET_KEY", "be set: at least 32 random characters (e.g. `openssl rand -hex 32`)");
  else if (secretKey.length < 32) {
    problems.push(`env/SECRET_KEY must be at least 32 characters (got ${secretKey.length})`);
    secretKey = undefined;
  }

  const appUrl = url("APP_URL", required("APP_URL", "the public http(s):// URL of the app"), ["http:", "https:"], "be an http:// or https:// URL");
  const smtpUrl = url("SMTP_URL", get("SMTP_URL"), ["smtp:", "smtps:"], "be an smtp:// or smtps:// URL");
  const sentryDsn = url("SENTRY_DSN", get("SENTRY_DSN"), ["http:", "https:"], "be a Sentry DSN (https://<key>@<host>/<project>)");
  // Sentry's own rule for environment names: at most 64 characters, no whitespace, no "/", not "None".
  let sentryEnvironment = get("SENTRY_ENVIRONMENT");
  if (sentryEnvironment !== undefined && (!/^[^\s/]{1,64}$/.test(sentryEnvironment) || sentryEnvironment === "None")) {
    sentryEnvironment = fail("SENTRY_ENVIRONMENT", 'be at most 64 characters without whitespace or "/", and not "None" (Sentry\'s rule; e.g. the stack name)', sentryEnvironment);
  }

  let mailFrom = get("MAIL_FROM");
  if (mailFrom !== undefined && !/^([^<>]*<)?[^\s@<>]+@[^\s@<>]+>?$/.test(mailFrom)) {
    mailFrom = fail("MAIL_FROM", 'be an email address or "Name <address>"', mailFrom);
  }
  if (mailFrom === undefined && appUrl !== undefined) mailFrom = `no-reply@${new URL(appUrl).hostname}`;

  const uploadDir = path.resolve(cwd, get("UPLOAD_DIR") ?? "./uploads");

  const s3Given = S3_KEYS.filter((k) => get(k) !== undefined);
  let s3: S3Config | undefined;
  if (s3Given.length > 0 && s3Given.length < S3_KEYS.length) {
    for (const k of S3_KEYS) if (get(k) === undefined) fail(k, `be set when any S3_* variable is set (got ${s3Given.join(", ")}); set all of ${S3_KEYS.join(", ")} or none`);
  } else if (s3Given.length === S3_KEYS.length) {
    const endpoint = url("S3_ENDPOINT", get("S3_ENDPOINT"), ["http:", "https:"], "be an http(s):// URL");
    if (endpoint !== undefined) {
      s3 = {
        endpoint,
        bucket: get("S3_BUCKET")!,
        region: get("S3_REGION")!,
        accessKeyId: get("S3_ACCESS_KEY_ID")!,
        secretAccessKey: get("S3_SECRET_ACCESS_KEY")!,
      };
    }
  }

  const uploadQuotaBytes = int("UPLOAD_QUOTA_BYTES", DEFAULT_UPLOAD_QUOTA_BYTES, 0, Number.MAX_SAFE_INTEGER);

  const rawLevel = get("LOG_LEVEL") ?? "info";
  const logLevel = (LOG_LEVELS as readonly string[]).includes(rawLevel) ? (rawLevel as LogLevel) : undefined;
  if (logLevel === undefined) fail("LOG_LEVEL", `be one of ${LOG_LEVELS.join(", ")}`, rawLevel);

  const shutdownTimeoutMs = int("SHUTDOWN_TIMEOUT_MS", 10000, 0, 600000);
  const workerConcurrency = int("WORKER_CONCURRENCY", 2, 1, 64);
  const uploadMinFreeBytes = int("UPLOAD_MIN_FREE_MIB", 2048, 0, 1024 * 1024) * 1024 * 1024;

  // Web metrics ports are offset + PORT, workers' offset + WORKER_ID: they never meet as long as
  // every PORT is above every WORKER_ID, which these bounds make sure of.
  const workerId = int("WORKER_ID", 1, 1, MAX_WORKER_ID);
  let metricsPortOffset: number | undefined;
  if (get("METRICS_PORT_OFFSET") !== undefined) {
    metricsPortOffset = int("METRICS_PORT_OFFSET", 0, 1, 65535 - MIN_PORT_WITH_METRICS);
    if (metricsPortOffset === 0) metricsPortOffset = undefined;
    else if (port < MIN_PORT_WITH_METRICS) {
      fail("PORT", `be at least ${MIN_PORT_WITH_METRICS} when METRICS_PORT_OFFSET is set (METRICS_PORT_OFFSET + 1 to + ${MAX_WORKER_ID} are the workers' metrics ports)`, String(port));
    } else if (port + metricsPortOffset > 65535) {
      fail("METRICS_PORT_OFFSET", `leave PORT + METRICS_PORT_OFFSET at most 65535 (PORT is ${port})`, String(metricsPortOffset));
    }
  }

  const stripe = parseStripe(get, fail);
  let plans: BillingPlans = parseBillingPlans(undefined);
  try {
    plans = parseBillingPlans(get("BILLING_PLANS"));
    if (plans.paid.length > 0 && !stripe) fail("STRIPE_SECRET_KEY", `be set when BILLING_PLANS has paid plans (${plans.paid.map((p) => p.id).join(", ")})`);
  } catch (err) {
    problems.push(`env/BILLING_PLANS must ${(err as Error).message}`);
  }
  // The retention job's SQL function refuses fewer than 30 days (migrations/003_billing_events.sql).
  const auditRetentionDays = int("AUDIT_RETENTION_DAYS", 365, 30, 36500);
  const workerTasks = parseWorkerTasks(get, fail);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    databaseUrl: databaseUrl!,
    readReplica: readUrl === undefined ? undefined : { url: readUrl, maxLagMs: maxLagSeconds * 1000 },
    valkeyUrl,
    port,
    host,
    secretKey: secretKey!,
    appUrl: appUrl!.replace(/\/+$/, ""),
    smtpUrl,
    mailFrom: mailFrom!,
    sentryDsn,
    sentryEnvironment,
    metricsPortOffset,
    workerId,
    uploadDir,
    uploadMinFreeBytes,
    s3,
    uploadQuotaBytes,
    logLevel: logLevel!,
    shutdownTimeoutMs,
    workerConcurrency,
    stripe,
    plans,
    auditRetentionDays,
    workerTasks,
  };
}

/** WORKER_TASKS_ONLY or WORKER_TASKS_EXCEPT: a comma-separated list of task names; never both. */
function parseWorkerTasks(get: (key: string) => string | undefined, fail: (key: string, rule: string, given?: string) => undefined): WorkerTaskFilter {
  const lists = (["only", "except"] as const).flatMap((mode) => {
    const key = WORKER_TASK_VARS[mode];
    const raw = get(key);
    if (raw === undefined) return [];
    const names = raw.split(",").map((n) => n.trim());
    const bad = names.filter((n) => !TASK_NAME_PATTERN.test(n));
    if (bad.length > 0) {
      fail(key, `be task names separated by commas (letters, digits, "_", ".", ":", "-"; e.g. send_welcome_email,process_stripe_event); ${bad.map((n) => JSON.stringify(n)).join(", ")} is not one`, raw);
      return [];
    }
    return [{ mode, tasks: [...new Set(names)] }];
  });
  if (get(WORKER_TASK_VARS.only) !== undefined && get(WORKER_TASK_VARS.except) !== undefined) {
    fail(WORKER_TASK_VARS.only, `not be set together with ${WORKER_TASK_VARS.except}: a worker runs only some tasks, or all but some; set one of them (or neither: every task)`);
    return { mode: "all" };
  }
  return lists[0] ?? { mode: "all" };
}

function parseStripe(
  get: (key: string) => string | undefined,
  fail: (key: string, rule: string, given?: string) => undefined,
): StripeConfig | undefined {
  const secretKey = get("STRIPE_SECRET_KEY");
  const webhookSecret = get("STRIPE_WEBHOOK_SECRET");
  const apiBase = get("STRIPE_API_BASE");
  let ok = true;
  // Never echo a secret: only say what it starts with.
  if (secretKey !== undefined && !/^(sk|rk)_(test|live)_[A-Za-z0-9]+$/.test(secretKey)) {
    ok = !!fail("STRIPE_SECRET_KEY", `be a Stripe secret or restricted key (sk_live_..., sk_test_..., rk_...); got one starting ${JSON.stringify(secretKey.slice(0, 3))}`);
  }
  if (webhookSecret !== undefined && !/^whsec_[A-Za-z0-9+/=]+$/.test(webhookSecret)) {
    ok = !!fail("STRIPE_WEBHOOK_SECRET", `be a webhook signing secret (whsec_...); got one starting ${JSON.stringify(webhookSecret.slice(0, 3))}`);
  }
  if (webhookSecret !== undefined && secretKey === undefined) ok = !!fail("STRIPE_SECRET_KEY", "be set when STRIPE_WEBHOOK_SECRET is set");
  let base: URL | undefined;
  if (apiBase !== undefined) {
    try {
      base = new URL(apiBase);
      if (!["http:", "https:"].includes(base.protocol) || base.pathname !== "/") throw new Error();
    } catch {
      ok = !!fail("STRIPE_API_BASE", "be an http(s):// URL without a path, such as http://127.0.0.1:12111", apiBase);
    }
  }
  if (!ok || secretKey === undefined) return undefined;
  return { secretKey, webhookSecret, apiBase: base };
}

const VALKEY_URL_RULE = "be a redis:// or rediss:// URL with a host and a port from 1 to 65535 (rediss://default:<password>@<host>:6379)";

/**
 * VALKEY_URL: redis:// (plain) or rediss:// (TLS), a host, a port (6379 when left out), at most a
 * database number as its path. The password is never echoed: redact() hides what precedes "@".
 */
function parseValkeyUrl(value: string | undefined, fail: (key: string, rule: string, given?: string) => undefined): string | undefined {
  if (value === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return fail("VALKEY_URL", VALKEY_URL_RULE, redact(value));
  }
  // WHATWG URL leaves the port empty when it is the scheme's default, and redis: has none: "" is 6379.
  const port = u.port === "" ? 6379 : Number(u.port);
  if (!["redis:", "rediss:"].includes(u.protocol) || u.hostname === "" || port < 1 || port > 65535) return fail("VALKEY_URL", VALKEY_URL_RULE, redact(value));
  if (!/^(\/\d{0,2})?$/.test(u.pathname) || u.search !== "" || u.hash !== "") {
    return fail("VALKEY_URL", "have no path other than a database number (/0), no query and no fragment", redact(value));
  }
  return value;
}

/** Never echo credentials embedded in a URL back into logs or error messages. */
function redact(value: string): string {
  return value.replace(/\/\/[^/@\s]*@/, "//***@");
}

/** Load config for an entrypoint: on error print one line per problem and exit 78 (EX_CONFIG). */
export function loadConfigOrExit(): Config {
  try {
    return parseConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
}
