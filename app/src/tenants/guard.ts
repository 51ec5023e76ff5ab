// The tenant guard: every route under /orgs/:orgId runs this after `authenticate`. It resolves
// the caller's membership in that org; a non-member gets 404 (the org's existence is not
// revealed), a member without the needed role gets 403. Handlers then use `tenantOf(request)`
// and pass its orgId to repositories, which always filter by it.
import type { FastifyReply, FastifyRequest } from "fastify";
import type { AppContext } from "../api/context.js";
import { ForbiddenError, NotFoundError, UnauthorizedError } from "../core/errors.js";
import { hasRole, type Role } from "../auth/roles.js";
import { findRole } from "./organizations.repository.js";

export interface Tenant {
  orgId: string;
  userId: string;
  role: Role;
}

declare module "fastify" {
  interface FastifyRequest {
    tenant?: Tenant;
  }
}

export function makeRequireRole(ctx: AppContext) {
  return (atLeast: Role) =>
    async function requireRole(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
      const user = request.user;
      if (!user) throw new UnauthorizedError();
      const { orgId } = request.params as { orgId: string };
      const role = await findRole(ctx.pool, orgId, user.userId);
      if (!role) throw new NotFoundError("organization");
      if (!hasRole(role, atLeast)) throw new ForbiddenError(`this action needs the ${atLeast} role or higher in the organization; you are ${role}`);
      request.tenant = { orgId, userId: user.userId, role };
    };
}

export function tenantOf(request: FastifyRequest): Tenant {
  if (!request.tenant) throw new Error("tenant guard did not run for this route");
  return request.tenant;
}
