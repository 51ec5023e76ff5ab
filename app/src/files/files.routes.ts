// /orgs/:orgId/files: upload (multipart field "file"), list, metadata, download, delete.
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { OrgParams, Pagination, Uuid } from "../api/schemas.js";
import { makeAuthenticate } from "../auth/authenticate.js";
import { addressKey } from "../auth/rate-limits.js";
import { hasRole } from "../auth/roles.js";
import { BadRequestError, ForbiddenError, NotFoundError, QuotaExceededError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { findProject } from "../projects/projects.repository.js";
import { makeRequireRole, tenantOf } from "../tenants/guard.js";
import { deleteFile, findFile, insertFile, listFiles, lockOrgUsage, orgUsage } from "./files.repository.js";
import { MAX_UPLOAD_BYTES, checkDeclaredType, guardUpload } from "./upload-guard.js";

const FileParams = Type.Object({ orgId: Uuid, fileId: Uuid });
const UploadQuery = Type.Object({ projectId: Type.Optional(Uuid) }, { additionalProperties: false });

export async function filesRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));
  const requireRole = makeRequireRole(ctx);

  app.post<{ Params: OrgParams; Querystring: Static<typeof UploadQuery> }>(
    "/orgs/:orgId/files",
    { schema: { params: OrgParams, querystring: UploadQuery }, preHandler: requireRole("member") },
    async (request, reply) => {
      const t = tenantOf(request);
      await app.rateLimits.consume("upload_account", t.userId);
      await app.rateLimits.consume("upload_ip", addressKey(request.ip));
      const quota = ctx.config.uploadQuotaBytes;
      const used = await orgUsage(ctx.pool, t.orgId);
      if (used >= quota) throw quotaExceeded(quota, used);
      const projectId = request.query.projectId ?? null;
      if (projectId && !(await findProject(ctx.pool, t.orgId, projectId))) throw new NotFoundError("project");
      if (!request.isMultipart()) throw new BadRequestError('send the file as multipart/form-data in a field named "file"');
      const part = await request.file({ limits: { fileSize: MAX_UPLOAD_BYTES + 1, files: 1, fields: 0 } });
      if (!part || part.fieldname !== "file") throw new BadRequestError('multipart/form-data must contain a field named "file"');
      const contentType = checkDeclaredType(part.mimetype);
      const filename = part.filename.replace(/[\\/\0]/g, "_").slice(0, 255) || "upload";

      const id = randomUUID();
      const storageKey = `${t.orgId}/${id}`;
      const { size } = await ctx.storage.put(storageKey, guardUpload(part.file, contentType), contentType);
      try {
        // The size is known once stored; the quota is checked again under the org's lock.
        const file = await withTransaction(ctx.pool, async (tx) => {
          const usedNow = await lockOrgUsage(tx, t.orgId);
          if (usedNow + size > quota) throw quotaExceeded(quota, usedNow, size);
          return insertFile(tx, { id, orgId: t.orgId, projectId, storageKey, filename, contentType, sizeBytes: size, uploadedBy: t.userId });
        });
        return reply.code(201).send({ file });
      } catch (err) {
        await ctx.storage.delete(storageKey).catch(() => {});
        throw err;
      }
    },
  );

  function quotaExceeded(quota: number, used: number, size?: number): QuotaExceededError {
    const need = size === undefined ? "" : ` and this file needs ${size}`;
    return new QuotaExceededError(`this organization's upload quota is ${quota} bytes; ${used} are in use${need}: delete files to make room`);
  }

  app.get<{ Params: OrgParams; Querystring: Pagination }>(
    "/orgs/:orgId/files",
    { schema: { params: OrgParams, querystring: Pagination }, preHandler: requireRole("member") },
    async (request) => ({ files: await listFiles(ctx.pool, tenantOf(request).orgId, request.query.limit) }),
  );

  app.get<{ Params: Static<typeof FileParams> }>(
    "/orgs/:orgId/files/:fileId",
    { schema: { params: FileParams }, preHandler: requireRole("member") },
    async (request) => {
      const file = await findFile(ctx.pool, tenantOf(request).orgId, request.params.fileId);
      if (!file) throw new NotFoundError("file");
      const { storageKey: _key, ...meta } = file;
      return { file: meta };
    },
  );

  app.get<{ Params: Static<typeof FileParams> }>(
    "/orgs/:orgId/files/:fileId/content",
    { schema: { params: FileParams }, preHandler: requireRole("member") },
    async (request, reply) => {
      const file = await findFile(ctx.pool, tenantOf(request).orgId, request.params.fileId);
      if (!file) throw new NotFoundError("file");
      const body = await ctx.storage.get(file.storageKey);
      return reply
        .header("content-type", file.contentType)
        .header("content-length", String(file.sizeBytes))
        .header("content-disposition", `attachment; filename*=UTF-8''${encodeURIComponent(file.filename)}`)
        .header("x-content-type-options", "nosniff")
        .send(body);
    },
  );

  app.delete<{ Params: Static<typeof FileParams> }>(
    "/orgs/:orgId/files/:fileId",
    { schema: { params: FileParams }, preHandler: requireRole("member") },
    async (request, reply) => {
      const t = tenantOf(request);
      const file = await findFile(ctx.pool, t.orgId, request.params.fileId);
      if (!file) throw new NotFoundError("file");
      if (!hasRole(t.role, "admin") && file.uploadedBy !== t.userId) throw new ForbiddenError("members can only delete files they uploaded");
      const key = await deleteFile(ctx.pool, t.orgId, file.id);
      if (key) await ctx.storage.delete(key).catch((err) => request.log.warn({ err, key }, "could not delete stored file"));
      return reply.code(204).send();
    },
  );
}
