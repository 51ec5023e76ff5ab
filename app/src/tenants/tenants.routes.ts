// /orgs: organizations, members and invitations.
// Roles: member = read + create projects/files; admin = manage members and invitations;
// owner = everything, including roles. An org always keeps at least one owner.
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, Email, Name, OrgParams, Uuid } from "../api/schemas.js";
import { currentUser, makeAuthenticate } from "../auth/authenticate.js";
import { hasRole, type Role } from "../auth/roles.js";
import { addressKey, emailKey } from "../auth/rate-limits.js";
import { hashToken, newToken } from "../auth/tokens.js";
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { assertWithinLimit } from "../billing/limits.js";
import { recordEvent } from "../events/events.repository.js";
import { enqueueInvitationEmail } from "../jobs/queue.js";
import { normalizeEmail } from "../users/users.repository.js";
import { makeRequireRole, tenantOf } from "./guard.js";
import {
  insertInvitation,
  listPendingInvitations,
  lockUsableInvitation,
  markAccepted,
  revokeInvitation,
} from "./invitations.repository.js";
import {
  addMember,
  findOrganization,
  insertOrganization,
  listMembers,
  listOrganizationsOfUser,
  lockMemberships,
  removeMember,
  renameOrganization,
  setMemberRole,
} from "./organizations.repository.js";

const OrgBody = Body({ name: Name });
const MemberParams = Type.Object({ orgId: Uuid, userId: Uuid });
const RoleBody = Body({ role: Type.Union([Type.Literal("owner"), Type.Literal("admin"), Type.Literal("member")]) });
const InviteBody = Body({ email: Email, role: Type.Union([Type.Literal("admin"), Type.Literal("member")]) });
const InvitationParams = Type.Object({ orgId: Uuid, invitationId: Uuid });
const AcceptBody = Body({ token: Type.String({ minLength: 10, maxLength: 200 }) });

export async function tenantsRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));
  const requireRole = makeRequireRole(ctx);

  app.get("/orgs", async (request) => ({ organizations: await listOrganizationsOfUser(ctx.pool, currentUser(request).userId) }));

  app.post<{ Body: Static<typeof OrgBody> }>("/orgs", { schema: { body: OrgBody } }, async (request, reply) => {
    const org = await withTransaction(ctx.pool, (tx) => insertOrganization(tx, request.body.name, currentUser(request).userId));
    return reply.code(201).send({ organization: { ...org, role: "owner" } });
  });

  app.get<{ Params: OrgParams }>("/orgs/:orgId", { schema: { params: OrgParams }, preHandler: requireRole("member") }, async (request) => {
    const tenant = tenantOf(request);
    const org = await findOrganization(ctx.pool, tenant.orgId);
    if (!org) throw new NotFoundError("organization");
    return { organization: { ...org, role: tenant.role } };
  });

  app.patch<{ Params: OrgParams; Body: Static<typeof OrgBody> }>(
    "/orgs/:orgId",
    { schema: { params: OrgParams, body: OrgBody }, preHandler: requireRole("admin") },
    async (request) => {
      const org = await renameOrganization(ctx.pool, tenantOf(request).orgId, request.body.name);
      if (!org) throw new NotFoundError("organization");
      return { organization: org };
    },
  );

  app.get<{ Params: OrgParams }>("/orgs/:orgId/members", { schema: { params: OrgParams }, preHandler: requireRole("member") }, async (request) => ({
    members: await listMembers(ctx.pool, tenantOf(request).orgId),
  }));

  app.patch<{ Params: Static<typeof MemberParams>; Body: Static<typeof RoleBody> }>(
    "/orgs/:orgId/members/:userId",
    { schema: { params: MemberParams, body: RoleBody }, preHandler: requireRole("owner") },
    async (request) => {
      const { orgId } = tenantOf(request);
      const { userId } = request.params;
      const role = request.body.role;
      await withTransaction(ctx.pool, async (tx) => {
        const members = await lockMemberships(tx, orgId);
        const target = members.find((m) => m.userId === userId);
        if (!target) throw new NotFoundError("member");
        assertOwnerRemains(members, userId, role);
        await setMemberRole(tx, orgId, userId, role);
        if (target.role !== role) await recordEvent(tx, { kind: "member.role_changed", orgId, data: { userId, from: target.role, to: role } }, request);
      });
      return { member: { userId, role } };
    },
  );

  // Admins remove members and admins; only owners remove owners; anyone may leave.
  app.delete<{ Params: Static<typeof MemberParams> }>(
    "/orgs/:orgId/members/:userId",
    { schema: { params: MemberParams }, preHandler: requireRole("member") },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const { userId } = request.params;
      await withTransaction(ctx.pool, async (tx) => {
        const members = await lockMemberships(tx, tenant.orgId);
        const target = members.find((m) => m.userId === userId);
        if (!target) throw new NotFoundError("member");
        const self = userId === tenant.userId;
        if (!self && !hasRole(tenant.role, "admin")) throw new ForbiddenError("removing other members needs the admin role or higher");
        if (!self && target.role === "owner" && tenant.role !== "owner") throw new ForbiddenError("only an owner can remove an owner");
        assertOwnerRemains(members, userId, undefined);
        await removeMember(tx, tenant.orgId, userId);
        await recordEvent(tx, { kind: "member.removed", orgId: tenant.orgId, data: { userId, role: target.role, left: self } }, request);
      });
      return reply.code(204).send();
    },
  );

  // Only the invitee's mailbox gets the token: the worker mints it when it sends the mail (the
  // row starts with the hash of a token nobody holds), so no job payload or log ever has it.
  app.post<{ Params: OrgParams; Body: Static<typeof InviteBody> }>(
    "/orgs/:orgId/invitations",
    { schema: { params: OrgParams, body: InviteBody }, preHandler: requireRole("admin") },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const email = normalizeEmail(request.body.email);
      await app.rateLimits.consume("invitation_send_account", tenant.userId);
      await app.rateLimits.consume("mail_address", emailKey(email));
      const unsentToken = hashToken(ctx.config.secretKey, newToken("inv"));
      const invitation = await withTransaction(ctx.pool, async (tx) => {
        const members = await listMembers(tx, tenant.orgId);
        if (members.some((m) => m.email === email)) throw new ConflictError(`${email} is already a member of this organization`);
        await assertWithinLimit(tx, ctx, tenant.orgId, "members");
        const inv = await insertInvitation(tx, tenant.orgId, email, request.body.role, unsentToken, tenant.userId);
        await recordEvent(tx, { kind: "invitation.created", orgId: tenant.orgId, data: { invitationId: inv.id, email, role: inv.role } }, request);
        await enqueueInvitationEmail(tx, { invitationId: inv.id }, request.id);
        return inv;
      });
      return reply.code(201).send({ invitation });
    },
  );

  app.get<{ Params: OrgParams }>("/orgs/:orgId/invitations", { schema: { params: OrgParams }, preHandler: requireRole("admin") }, async (request) => ({
    invitations: await listPendingInvitations(ctx.pool, tenantOf(request).orgId),
  }));

  app.delete<{ Params: Static<typeof InvitationParams> }>(
    "/orgs/:orgId/invitations/:invitationId",
    { schema: { params: InvitationParams }, preHandler: requireRole("admin") },
    async (request, reply) => {
      const { orgId } = tenantOf(request);
      const { invitationId } = request.params;
      await withTransaction(ctx.pool, async (tx) => {
        if (!(await revokeInvitation(tx, orgId, invitationId))) throw new NotFoundError("invitation");
        await recordEvent(tx, { kind: "invitation.revoked", orgId, data: { invitationId } }, request);
      });
      return reply.code(204).send();
    },
  );

  // Accepting needs a session whose email matches the invitation (the token alone is not enough),
  // and that email verified (authenticate's default): else anyone could sign up as the invitee.
  app.post<{ Body: Static<typeof AcceptBody> }>("/invitations/accept", { schema: { body: AcceptBody } }, async (request) => {
    const user = currentUser(request);
    await app.rateLimits.consume("invitation_accept_account", user.userId);
    await app.rateLimits.consume("invitation_accept_ip", addressKey(request.ip));
    const organizationId = await withTransaction(ctx.pool, async (tx) => {
      const inv = await lockUsableInvitation(tx, hashToken(ctx.config.secretKey, request.body.token));
      if (!inv) throw new NotFoundError("invitation (it may have expired, been revoked or already been used)");
      if (inv.email !== user.email) throw new ForbiddenError("this invitation was sent to a different email address");
      // The invitation already counted against the members limit; it is about to turn into a member.
      await assertWithinLimit(tx, ctx, inv.orgId, "members", 0);
      if (!(await addMember(tx, inv.orgId, user.userId, inv.role))) throw new ConflictError("you already are a member of this organization");
      await markAccepted(tx, inv.id);
      await recordEvent(tx, { kind: "member.joined", orgId: inv.orgId, data: { userId: user.userId, role: inv.role, invitationId: inv.id } }, request);
      return inv.orgId;
    });
    return { organizationId };
  });
}

/** Throws unless at least one owner remains after `userId` gets `newRole` (undefined = removed). */
function assertOwnerRemains(members: Array<{ userId: string; role: Role }>, userId: string, newRole: Role | undefined): void {
  const owners = members.filter((m) => (m.userId === userId ? newRole : m.role) === "owner");
  if (owners.length === 0) throw new BadRequestError("an organization needs at least one owner: make someone else owner first");
}
