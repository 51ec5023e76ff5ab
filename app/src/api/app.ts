// The HTTP application: cross-cutting concerns (request ids, release header, one log line per
// request, error mapping, health) and the module routes. Built from an AppContext so tests
// can build it against their own database and storage.
import { randomUUID } from "node:crypto";
import Fastify, { LogController, type FastifyBaseLogger, type FastifySchemaValidationError, type FastifyError, type FastifyInstance, type FastifyServerOptions } from "fastify";
import multipart from "@fastify/multipart";
import type { AppContext } from "./context.js";
import { AppError } from "../core/errors.js";
import { isRequestId } from "../core/request-id.js";
import { pingDatabase } from "../db/pool.js";
import { precompiledSchemas } from "./precompiled-schemas.js";
import { precompiledCompilers } from "./schema-compilers.js";
import { adminRoutes } from "../admin/admin.routes.js";
import { authRoutes } from "../auth/auth.routes.js";
import { postgresLimiterStore, RateLimits, valkeyLimiterStore } from "../auth/rate-limits.js";
import { billingRoutes } from "../billing/billing.routes.js";
import { eventsRoutes } from "../events/events.routes.js";
import { filesRoutes } from "../files/files.routes.js";
import { MAX_UPLOAD_BYTES } from "../files/upload-guard.js";
import { projectsRoutes } from "../projects/projects.routes.js";
import { tenantsRoutes } from "../tenants/tenants.routes.js";
import { usersRoutes } from "../users/users.routes.js";

declare module "fastify" {
  interface FastifyInstance {
    /**
     * From now on every response carries `Connection: close`, so each keep-alive connection ends
     * with its next answer. web.ts calls it on SIGTERM before it stops accepting; close() does too.
     */
    startDraining(): void;
    /** Abuse limits, counted in the store every web process shares (auth/rate-limits.ts). */
    rateLimits: RateLimits;
  }
}

/**
 * How long an idle keep-alive connection stays open (Fastify's default is 72 s). It must exceed
 * nginx's upstream `keepalive_timeout` (3 s, provisioning/nginx.ts) so that nginx, never the app,
 * closes an idle connection: nginx may be writing a request onto it at that very moment, and a
 * POST it has sent is not retried — the client gets a 502. It also bounds the SIGTERM drain for
 * idle connections of clients other than nginx (Node closes them 1 s after this), so keep it well
 * under SHUTDOWN_TIMEOUT_MS.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 5000;

export interface BuildOptions {
  /** Upper bound for the health probe's database round trip. */
  healthTimeoutMs?: number;
  /**
   * How route schemas become validators and serializers. Default: the build's precompiled ones
   * in a release, Fastify's own compilers (Ajv, fast-json-stringify) in a checkout. The build
   * passes its capturing compilers (schema-compilers.ts).
   */
  schemaController?: FastifyServerOptions["schemaController"];
}

export async function buildApp(ctx: AppContext, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // We write exactly one line per request, in onResponse.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      // nginx sets X-Request-Id; kept when it looks like an id, so log lines join up across hops.
      return isRequestId(given) ? given : randomUUID();
    },
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // While draining on SIGTERM, requests that arrive on already-open keep-alive connections
    // are still served (with Connection: close) instead of answered 503.
    return503OnClosing: false,
    // request.ip (what abuse limits count by) is the client nginx saw, from X-Forwarded-For, only
    // when the connection itself comes from nginx on this server; anyone else's header is ignored.
    trustProxy: "127.0.0.1",
    bodyLimit: 1024 * 1024,
    schemaErrorFormatter: formatSchemaErrors,
    schemaController: opts.schemaController ?? (precompiledSchemas ? precompiledCompilers(precompiledSchemas) : undefined),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", useDefaults: true } },
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-app-release", ctx.releaseId);
    reply.header("x-request-id", request.id);
  });

  // Draining: a request on an open keep-alive connection (in flight, or sent by nginx onto an
  // idle one) gets its answer with Connection: close, so the connection ends with it and the
  // server can finish closing without ever closing a connection under a client's feet.
  let draining = false;
  app.decorate("startDraining", () => {
    draining = true;
  });
  app.addHook("preClose", async () => {
    draining = true;
  });
  app.addHook("onSend", async (_request, reply) => {
    if (draining) reply.header("connection", "close");
  });

  const metrics = ctx.metrics;
  app.addHook("onResponse", async (request, reply) => {
    metrics?.observe(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000);
    request.log.info(
      {
        method: request.method,
        path: request.url.split("?", 1)[0],
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 100) / 100,
      },
      "request",
    );
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.validation) {
      return reply.code(400).send({ error: "validation", message: err.message });
    }
    if (err instanceof AppError) {
      if (err.retryAfterSeconds !== undefined) reply.header("retry-after", String(err.retryAfterSeconds));
      return reply.code(err.statusCode).send({ error: err.code, message: err.message, ...err.details });
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Framework and plugin errors (bad JSON, body too large, bad multipart...) say what is wrong.
      return reply.code(status).send({ error: err.code ?? "bad_request", message: err.message });
    }
    request.log.error({ err }, "unhandled error");
    ctx.reporter.capture(err, { requestId: request.id, method: request.method, path: request.url.split("?", 1)[0] });
    return reply.code(500).send({ error: "internal", message: `internal server error (request id ${request.id})` });
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route for ${request.method} ${request.url.split("?", 1)[0]}` }),
  );

  // Cheap: one pooled `SELECT 1`, bounded in time. 200 only when the database answers.
  const healthTimeoutMs = opts.healthTimeoutMs ?? 2000;
  app.get("/health", async (_request, reply) => {
    const up = await pingDatabase(ctx.pool, healthTimeoutMs);
    return up ? { status: "ok" } : reply.code(503).send({ status: "unavailable" });
  });

  // The shared counter store: Valkey when the stack has one (VALKEY_URL), else PostgreSQL.
  app.decorate("rateLimits", new RateLimits(ctx.valkey ? valkeyLimiterStore(ctx.valkey) : postgresLimiterStore(ctx.pool)));

  await app.register(multipart, { limits: { fileSize: MAX_UPLOAD_BYTES + 1, files: 1 } });
  await app.register(authRoutes, ctx);
  await app.register(usersRoutes, ctx);
  await app.register(tenantsRoutes, ctx);
  await app.register(projectsRoutes, ctx);
  await app.register(filesRoutes, ctx);
  await app.register(adminRoutes, ctx);
  await app.register(billingRoutes, ctx);
  await app.register(eventsRoutes, ctx);
  return app;
}

/** "body/email must match format \"email\"", "body has unknown property \"x\"", "body/name is required". */
function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const messages = errors.map((e) => {
    const at = `${dataVar}${e.instancePath}`;
    const params = e.params as { additionalProperty?: string; missingProperty?: string };
    if (e.keyword === "additionalProperties" && params.additionalProperty) return `${at} has unknown property "${params.additionalProperty}"`;
    if (e.keyword === "required" && params.missingProperty) return `${at}/${params.missingProperty} is required`;
    return `${at} ${e.message ?? "is invalid"}`;
  });
  return new Error(messages.join("; "));
}
