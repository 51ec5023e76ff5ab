// /orgs/:orgId/projects: CRUD on the tenant-scoped example resource.
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, Name, OrgParams, Pagination, Uuid } from "../api/schemas.js";
import { makeAuthenticate } from "../auth/authenticate.js";
import { hasRole } from "../auth/roles.js";
import { ForbiddenError, NotFoundError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { assertWithinLimit } from "../billing/limits.js";
import { storageKeysOfProject } from "../files/files.repository.js";
import { makeRequireRole, tenantOf } from "../tenants/guard.js";
import { deleteProject, findProject, insertProject, listProjects, updateProject } from "./projects.repository.js";

const Description = Type.String({ maxLength: 5000 });
const CreateBody = Body({ name: Name, description: Type.Optional(Description) });
const PatchBody = Type.Object({ name: Type.Optional(Name), description: Type.Optional(Description) }, { additionalProperties: false, minProperties: 1 });
const ProjectParams = Type.Object({ orgId: Uuid, projectId: Uuid });
// Response schemas: fast serialization (fast-json-stringify) and no accidental extra fields.
const ProjectOut = Type.Object({
  id: Type.String(),
  orgId: Type.String(),
  name: Type.String(),
  description: Type.String(),
  createdBy: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: "date-time" }),
  updatedAt: Type.String({ format: "date-time" }),
});
const ListOut = { 200: Type.Object({ projects: Type.Array(ProjectOut) }) };
const OneOut = { 200: Type.Object({ project: ProjectOut }) };

export async function projectsRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));
  const requireRole = makeRequireRole(ctx);

  app.get<{ Params: OrgParams; Querystring: Pagination }>(
    "/orgs/:orgId/projects",
    { schema: { params: OrgParams, querystring: Pagination, response: ListOut }, preHandler: requireRole("member") },
    async (request) => ({ projects: await listProjects(ctx.pool, tenantOf(request).orgId, request.query.limit, request.query.before) }),
  );

  app.post<{ Params: OrgParams; Body: Static<typeof CreateBody> }>(
    "/orgs/:orgId/projects",
    { schema: { params: OrgParams, body: CreateBody }, preHandler: requireRole("member") },
    async (request, reply) => {
      const t = tenantOf(request);
      const project = await withTransaction(ctx.pool, async (tx) => {
        await assertWithinLimit(tx, ctx, t.orgId, "projects");
        return insertProject(tx, t.orgId, t.userId, request.body.name, request.body.description ?? "");
      });
      return reply.code(201).send({ project });
    },
  );

  app.get<{ Params: Static<typeof ProjectParams> }>(
    "/orgs/:orgId/projects/:projectId",
    { schema: { params: ProjectParams, response: OneOut }, preHandler: requireRole("member") },
    async (request) => {
      const project = await findProject(ctx.pool, tenantOf(request).orgId, request.params.projectId);
      if (!project) throw new NotFoundError("project");
      return { project };
    },
  );

  // Members may edit their own projects; admins and owners any project of the org.
  app.patch<{ Params: Static<typeof ProjectParams>; Body: Static<typeof PatchBody> }>(
    "/orgs/:orgId/projects/:projectId",
    { schema: { params: ProjectParams, body: PatchBody }, preHandler: requireRole("member") },
    async (request) => {
      const t = tenantOf(request);
      const project = await withTransaction(ctx.pool, async (tx) => {
        const existing = await findProject(tx, t.orgId, request.params.projectId);
        if (!existing) throw new NotFoundError("project");
        if (!hasRole(t.role, "admin") && existing.createdBy !== t.userId) throw new ForbiddenError("members can only edit projects they created");
        return updateProject(tx, t.orgId, existing.id, request.body);
      });
      return { project };
    },
  );

  app.delete<{ Params: Static<typeof ProjectParams> }>(
    "/orgs/:orgId/projects/:projectId",
    { schema: { params: ProjectParams }, preHandler: requireRole("admin") },
    async (request, reply) => {
      const t = tenantOf(request);
      const keys = await withTransaction(ctx.pool, async (tx) => {
        const fileKeys = await storageKeysOfProject(tx, t.orgId, request.params.projectId);
        if (!(await deleteProject(tx, t.orgId, request.params.projectId))) throw new NotFoundError("project");
        return fileKeys;
      });
      // The rows are gone (committed); now the bytes. A failure here only leaves an orphan object.
      for (const key of keys) await ctx.storage.delete(key).catch((err) => request.log.warn({ err, key }, "could not delete stored file"));
      return reply.code(204).send();
    },
  );
}
