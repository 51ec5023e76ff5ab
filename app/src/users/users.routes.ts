// /me: the signed-in user's own profile and organizations.
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, Name } from "../api/schemas.js";
import { currentUser, makeAuthenticate } from "../auth/authenticate.js";
import { hashPassword, verifyPassword } from "../auth/password.js";
import { Password } from "../auth/auth.routes.js";
import { addressKey } from "../auth/rate-limits.js";
import { revokeAllSessions } from "../auth/sessions.repository.js";
import { NotFoundError, UnauthorizedError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { listOrganizationsOfUser } from "../tenants/organizations.repository.js";
import { findCredentials, findUserById, updatePasswordHash, updateUserName } from "./users.repository.js";

const PatchMeBody = Body({ name: Name });
const ChangePasswordBody = Body({ currentPassword: Type.String({ minLength: 1, maxLength: 200 }), newPassword: Password });

export async function usersRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));

  // Readable before the address is verified: the client shows "check your inbox" from here.
  app.get("/me", { config: { allowUnverified: true } }, async (request) => {
    const { userId } = currentUser(request);
    const [user, organizations] = await Promise.all([findUserById(ctx.pool, userId), listOrganizationsOfUser(ctx.pool, userId)]);
    if (!user) throw new NotFoundError("user");
    return { user, organizations };
  });

  app.patch<{ Body: Static<typeof PatchMeBody> }>("/me", { schema: { body: PatchMeBody } }, async (request) => {
    const user = await updateUserName(ctx.pool, currentUser(request).userId, request.body.name);
    if (!user) throw new NotFoundError("user");
    return { user };
  });

  // Changing the password signs out every session (a stolen token dies with the old password).
  app.post<{ Body: Static<typeof ChangePasswordBody> }>("/me/password", { schema: { body: ChangePasswordBody } }, async (request, reply) => {
    const me = currentUser(request);
    // A stolen session must not become an unlimited oracle for the current password.
    await app.rateLimits.consume("password_change_account", me.userId);
    await app.rateLimits.consume("password_change_ip", addressKey(request.ip));
    const creds = await findCredentials(ctx.pool, me.email);
    if (!creds || !(await verifyPassword(request.body.currentPassword, creds.passwordHash))) {
      throw new UnauthorizedError("current password is incorrect");
    }
    const hash = await hashPassword(request.body.newPassword);
    await withTransaction(ctx.pool, async (tx) => {
      await updatePasswordHash(tx, me.userId, hash);
      await revokeAllSessions(tx, me.userId);
    });
    return reply.code(204).send();
  });
}
