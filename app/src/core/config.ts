// Configuration: every setting comes from environment variables, validated once at start.
// `parseConfig` is pure (env in, Config out) and collects every problem before throwing,
// one line per bad variable, in the `env/KEY must ...` form the deploy tooling greps for.
import path from "node:path";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export interface S3Config {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface Config {
  databaseUrl: string;
  port: number;
  host: string;
  secretKey: string;
  appUrl: string;
  /** smtp:// or smtps:// URL; undefined means "log emails instead of sending them". */
  smtpUrl: string | undefined;
  mailFrom: string;
  sentryDsn: string | undefined;
  /** Absolute path. */
  uploadDir: string;
  s3: S3Config | undefined;
  /** Bytes of uploaded files one organization may hold in total. */
  uploadQuotaBytes: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  workerConcurrency: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

export const DEFAULT_UPLOAD_QUOTA_BYTES = 1024 ** 3;

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

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    databaseUrl: databaseUrl!,
    port,
    host,
    secretKey: secretKey!,
    appUrl: appUrl!.replace(/\/+$/, ""),
    smtpUrl,
    mailFrom: mailFrom!,
    sentryDsn,
    uploadDir,
    s3,
    uploadQuotaBytes,
    logLevel: logLevel!,
    shutdownTimeoutMs,
    workerConcurrency,
  };
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
