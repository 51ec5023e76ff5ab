// /admin: operator views for platform admins (users.is_platform_admin, granted with SQL; see
// README). Not tenant-scoped by design, and nothing else is reachable from here.
import type { FastifyInstance, FastifyRequest } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { currentUser, makeAuthenticate } from "../auth/authenticate.js";
import { ForbiddenError, NotFoundError } from "../core/errors.js";
import { listFailedJobs, retryFailedJob } from "../jobs/queue.js";
import { withTransaction } from "../db/pool.js";
import { recordEvent } from "../events/events.repository.js";
import { eventsPage, EventsOut, EventsQuery } from "../events/events.routes.js";

const JobParams = Type.Object({ jobId: Type.String({ pattern: "^[0-9]{1,18}$" }) });
const AdminEventsQuery = Type.Composite([EventsQuery, Type.Object({ orgId: Type.Optional(Type.String({ format: "uuid" })) })], { additionalProperties: false });

export async function adminRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));
  app.addHook("preHandler", async (request: FastifyRequest) => {
    if (!currentUser(request).isPlatformAdmin) throw new ForbiddenError("platform admins only");
  });

  app.get("/admin/stats", async () => {
    const { rows } = await ctx.pool.query<{ users: number; organizations: number; projects: number; files: number; failedJobs: number; pendingJobs: number }>(
      `SELECT (SELECT count(*) FROM users)::int AS users,
              (SELECT count(*) FROM organizations)::int AS organizations,
              (SELECT count(*) FROM projects)::int AS projects,
              (SELECT count(*) FROM files)::int AS files,
              (SELECT count(*) FROM graphile_worker.jobs WHERE attempts >= max_attempts)::int AS "failedJobs",
              (SELECT count(*) FROM graphile_worker.jobs WHERE attempts < max_attempts)::int AS "pendingJobs"`,
    );
    return rows[0];
  });

  app.get("/admin/jobs/failed", async () => ({ jobs: await listFailedJobs(ctx.pool) }));

  app.post<{ Params: Static<typeof JobParams> }>("/admin/jobs/:jobId/retry", { schema: { params: JobParams } }, async (request) => {
    await withTransaction(ctx.pool, async (tx) => {
      if (!(await retryFailedJob(tx, request.params.jobId))) throw new NotFoundError("permanently failed job");
      await recordEvent(tx, { kind: "admin.job_retried", data: { jobId: request.params.jobId } }, request);
    });
    return { retried: request.params.jobId };
  });

  // Every organization's audit log (or one org's with ?orgId=), newest first.
  app.get<{ Querystring: Static<typeof AdminEventsQuery> }>("/admin/events", { schema: { querystring: AdminEventsQuery, response: EventsOut } }, async (request) =>
    eventsPage(ctx, request.query, request.query.orgId),
  );
}
