// Building the real app for tests: real database, real storage, logs captured in memory.
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type pg from "pg";
import { pino } from "pino";
import { buildApp, type BuildOptions } from "../../src/api/app.js";
import type { AppContext } from "../../src/api/context.js";
import { parseConfig, type Config } from "../../src/core/config.js";
import type { Logger } from "../../src/core/logger.js";
import { createErrorReporter, type ErrorReporter } from "../../src/core/sentry.js";
import { createPool } from "../../src/db/pool.js";
import { createStorage, type FileStorage } from "../../src/files/storage.js";

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
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export function captureLogger(level = "info"): { log: Logger; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level }, sink), logs };
}

export async function startTestApp(
  envOverrides: Record<string, string | undefined> = {},
  opts: BuildOptions & { reporter?: ErrorReporter; releaseId?: string } = {},
): Promise<TestApp> {
  const config = parseConfig(testEnv(envOverrides));
  const { log, logs } = captureLogger();
  const pool = createPool(config.databaseUrl, log, { max: 5, connectionTimeoutMillis: 1000 });
  const storage = createStorage(config);
  const reporter = opts.reporter ?? (await createErrorReporter(config.sentryDsn, "test", "web"));
  const ctx: AppContext = { config, pool, log, storage, reporter, releaseId: opts.releaseId ?? "dev" };
  const app = await buildApp(ctx, opts);
  await app.ready();
  return {
    app,
    pool,
    config,
    storage,
    logs,
    close: async () => {
      await app.close();
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
}

export async function register(app: FastifyInstance, tag = "user", password = "correct horse battery"): Promise<Registered> {
  const email = uniqueEmail(tag);
  const res = await app.inject({ method: "POST", url: "/auth/register", payload: { email, password, name: tag } });
  if (res.statusCode !== 201) throw new Error(`register failed: ${res.statusCode} ${res.body}`);
  const body = res.json();
  return { token: body.token, userId: body.user.id, email, orgId: body.organization.id, auth: { authorization: `Bearer ${body.token}` } };
}
