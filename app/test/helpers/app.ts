// Building the real app for tests: real database, real storage, logs captured in memory.
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { JobHelpers } from "graphile-worker";
import type pg from "pg";
import { buildApp, type BuildOptions } from "../../src/api/app.js";
import type { AppContext } from "../../src/api/context.js";
import { parseConfig, type Config } from "../../src/core/config.js";
import { createLogger, type Logger, type Service } from "../../src/core/logger.js";
import type { LogLevel } from "../../src/core/config.js";
import { createErrorReporter, type ErrorReporter } from "../../src/core/sentry.js";
import { createPool } from "../../src/db/pool.js";
import { createStorage, type FileStorage } from "../../src/files/storage.js";
import { createValkey, type Valkey } from "../../src/core/valkey.js";
import { sharedCache } from "../../src/core/shared-cache.js";
import type { Email } from "../../src/jobs/mailer.js";
import { buildTaskList } from "../../src/jobs/tasks.js";

export const SECRET = "test-secret-key-0123456789abcdef-xyz";

export function databaseUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error("TEST_DATABASE_URL not set: run through mocha (test/helpers/global.ts)");
  return url;
}

/** A fresh temporary directory inside the run's temp root (removed after the run). */
export function tmpDir(prefix: string): string {
  return mkdtempSync(path.join(process.env.SAAS_APP_TEST_TMP ?? os.tmpdir(), `${prefix}-`));
}

export function testEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    DATABASE_URL: databaseUrl(),
    SECRET_KEY: SECRET,
    APP_URL: "http://app.example.test",
    UPLOAD_DIR: tmpDir("uploads"),
    LOG_LEVEL: "info",
    ...overrides,
  };
}

export interface TestApp {
  app: FastifyInstance;
  pool: pg.Pool;
  config: Config;
  storage: FileStorage;
  /** The app's own Valkey client, when VALKEY_URL is given (as web.ts makes it). */
  valkey: Valkey | undefined;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** The processes' own logger (createLogger: same fields, same shape), writing into an array. */
export function captureLogger(level: LogLevel = "info", service: Service = "web"): { log: Logger; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger(level, { service, release: "test" }, sink), logs };
}

export async function startTestApp(
  envOverrides: Record<string, string | undefined> = {},
  opts: BuildOptions & { reporter?: ErrorReporter; releaseId?: string } = {},
): Promise<TestApp> {
  const config = parseConfig(testEnv(envOverrides));
  const { log, logs } = captureLogger();
  // The wait for a connection is the web process's own (createPool's default), not shorter: on a
  // 2-core machine busy with VMs, opening a PostgreSQL connection, or waiting for one of the five
  // while a test sends several requests at once, can take over a second, which then is a 500.
  const pool = createPool(config.databaseUrl, log, { max: 5 });
  const storage = createStorage(config);
  const reporter = opts.reporter ?? (await createErrorReporter(config.sentryDsn, "test", "web"));
  const valkey = config.valkeyUrl === undefined ? undefined : await createValkey(config.valkeyUrl, log, "saas-app-test");
  const ctx: AppContext = { config, pool, log, valkey, cache: sharedCache(valkey), storage, reporter, releaseId: opts.releaseId ?? "dev" };
  const app = await buildApp(ctx, opts);
  await app.ready();
  return {
    app,
    pool,
    config,
    storage,
    valkey,
    logs,
    close: async () => {
      await app.close();
      await valkey?.close();
      await pool.end();
    },
  };
}

export function uniqueEmail(tag = "user"): string {
  return `${tag}-${randomUUID().slice(0, 8)}@example.test`;
}

export interface Registered {
  token: string;
  userId: string;
  email: string;
  orgId: string;
  auth: { authorization: string };
  /** The client address the account signed up and logs in from (X-Forwarded-For, trusted from loopback). */
  ip: string;
}

// Random start: a reused TEST_DATABASE_URL keeps the counters of earlier runs.
let nextAddress = Math.floor(Math.random() * 2 ** 23);
/** A client address of its own (in 10/8), so one test's limits do not spill into another's. */
export function uniqueAddress(): string {
  const n = nextAddress++ % 2 ** 24;
  return `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`;
}

/** As nginx forwards it: the app trusts X-Forwarded-For from loopback, which is where inject comes from. */
export const from = (ip: string) => ({ "x-forwarded-for": ip });

/**
 * Runs a mail task's real handler once, as the worker would, with a mailer that keeps the mail,
 * and returns it. The test then reads the token from the mail, as its reader would.
 */
export async function runMailTask(t: Pick<TestApp, "pool" | "config">, task: string, payload: object): Promise<Email | undefined> {
  const sent: Email[] = [];
  const tasks = buildTaskList({
    pool: t.pool,
    mailer: { send: async (m) => void sent.push(m), close: () => {} },
    appUrl: t.config.appUrl,
    secretKey: t.config.secretKey,
  });
  const helpers = { logger: { info: () => {} }, abortPromise: new Promise<void>(() => {}) } as unknown as JobHelpers;
  await tasks[task]!(payload, helpers);
  return sent[0];
}

export function tokenIn(mail: Email | undefined): string {
  const m = /#token=([A-Za-z0-9_-]+)/.exec(mail?.text ?? "");
  if (!m) throw new Error(`no token in mail: ${JSON.stringify(mail)}`);
  return m[1]!;
}

export async function login(app: FastifyInstance, email: string, password: string, ip: string): Promise<string> {
  const res = await app.inject({ method: "POST", url: "/auth/login", headers: from(ip), payload: { email, password } });
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
  return res.json().token;
}

/**
 * Signs up through the API, then (unless `verified: false`) confirms the address the way its
 * owner would: the welcome mail's handler mints the token, the link's token goes to
 * /auth/verify-email. Then logs in. Returns the session and the new organization.
 */
export async function register(
  t: Pick<TestApp, "app" | "pool" | "config">,
  tag = "user",
  password = "correct horse battery",
  opts: { verified?: boolean } = {},
): Promise<Registered> {
  const email = uniqueEmail(tag);
  const ip = uniqueAddress();
  const res = await t.app.inject({ method: "POST", url: "/auth/register", headers: from(ip), payload: { email, password, name: tag } });
  if (res.statusCode !== 202) throw new Error(`register failed: ${res.statusCode} ${res.body}`);
  const { rows } = await t.pool.query<{ id: string }>("SELECT id FROM users WHERE email = $1", [email]);
  const userId = rows[0]!.id;
  if (opts.verified !== false) {
    const token = tokenIn(await runMailTask(t, "send_welcome_email", { userId }));
    const v = await t.app.inject({ method: "POST", url: "/auth/verify-email", headers: from(ip), payload: { token } });
    if (v.statusCode !== 200) throw new Error(`verify failed: ${v.statusCode} ${v.body}`);
  }
  const token = await login(t.app, email, password, ip);
  const auth = { authorization: `Bearer ${token}` };
  const orgs = await t.app.inject({ method: "GET", url: "/me", headers: auth });
  return { token, userId, email, orgId: orgs.json().organizations[0].id, auth, ip };
}

/**
 * register() against a running web process (fetch, no keep-alive): signs up, confirms the
 * address through the welcome mail's real handler and /auth/verify-email, logs in.
 */
export async function registerOverHttp(base: string, tag: string, password = "long enough pw"): Promise<{ token: string; orgId: string; email: string }> {
  const email = uniqueEmail(tag);
  const client = from(uniqueAddress());
  const post = (path: string, body: object) =>
    fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", connection: "close", ...client }, body: JSON.stringify(body) });
  const reg = await post("/auth/register", { email, password, name: tag });
  if (reg.status !== 202) throw new Error(`register failed: ${reg.status} ${await reg.text()}`);
  const config = parseConfig(testEnv());
  const pool = createPool(config.databaseUrl, captureLogger("silent").log, { max: 1 });
  try {
    const { rows } = await pool.query<{ id: string }>("SELECT id FROM users WHERE email = $1", [email]);
    const token = tokenIn(await runMailTask({ pool, config }, "send_welcome_email", { userId: rows[0]!.id }));
    const v = await post("/auth/verify-email", { token });
    if (v.status !== 200) throw new Error(`verify failed: ${v.status} ${await v.text()}`);
  } finally {
    await pool.end();
  }
  const login = await post("/auth/login", { email, password });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${await login.text()}`);
  const { token } = (await login.json()) as { token: string };
  const me = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${token}`, connection: "close" } });
  const { organizations } = (await me.json()) as { organizations: Array<{ id: string }> };
  return { token, orgId: organizations[0]!.id, email };
}
