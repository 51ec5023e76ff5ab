// /auth: register, login, logout, session management.
import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, Email, Name, Uuid } from "../api/schemas.js";
import { NotFoundError, UnauthorizedError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { recordEvent } from "../events/events.repository.js";
import { enqueueWelcomeEmail } from "../jobs/queue.js";
import { insertOrganization } from "../tenants/organizations.repository.js";
import { findCredentials, insertUser, normalizeEmail } from "../users/users.repository.js";
import { currentUser, makeAuthenticate } from "./authenticate.js";
import { hashPassword, verifyAgainstDummy, verifyPassword } from "./password.js";
import { createSession, listSessions, revokeAllSessions, revokeSession } from "./sessions.repository.js";
import { hashToken, newToken } from "./tokens.js";

export const Password = Type.String({ minLength: 10, maxLength: 200 });

const RegisterBody = Body({ email: Email, password: Password, name: Name, organizationName: Type.Optional(Name) });
const LoginBody = Body({ email: Email, password: Type.String({ minLength: 1, maxLength: 200 }) });
const SessionParams = Type.Object({ sessionId: Uuid });

export async function authRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const authenticate = makeAuthenticate(ctx);
  const { secretKey } = ctx.config;

  // Signup: user + organization (owner) + session + welcome-email job, all or nothing.
  app.post<{ Body: Static<typeof RegisterBody> }>("/auth/register", { schema: { body: RegisterBody } }, async (request, reply) => {
    const { email, password, name, organizationName } = request.body;
    const passwordHash = await hashPassword(password);
    const token = newToken("sess");
    const result = await withTransaction(ctx.pool, async (tx) => {
      const user = await insertUser(tx, email, name, passwordHash);
      const organization = await insertOrganization(tx, organizationName ?? `${name}'s organization`, user.id);
      await createSession(tx, user.id, hashToken(secretKey, token), request.headers["user-agent"]);
      await enqueueWelcomeEmail(tx, { userId: user.id });
      return { user, organization };
    });
    return reply.code(201).send({ token, user: result.user, organization: { ...result.organization, role: "owner" } });
  });

  app.post<{ Body: Static<typeof LoginBody> }>("/auth/login", { schema: { body: LoginBody } }, async (request) => {
    const { email, password } = request.body;
    const creds = await findCredentials(ctx.pool, email);
    const ok = creds ? await verifyPassword(password, creds.passwordHash) : await verifyAgainstDummy(password);
    if (!creds || !ok) {
      await recordEvent(ctx.pool, { kind: "auth.login_failed", actorId: creds?.id ?? null, data: { email: normalizeEmail(email) } }, request);
      throw new UnauthorizedError("email or password is incorrect");
    }
    const token = newToken("sess");
    await withTransaction(ctx.pool, async (tx) => {
      await createSession(tx, creds.id, hashToken(secretKey, token), request.headers["user-agent"]);
      await recordEvent(tx, { kind: "auth.login", actorId: creds.id }, request);
    });
    return { token };
  });

  app.post("/auth/logout", { preHandler: authenticate }, async (request, reply) => {
    const user = currentUser(request);
    await revokeSession(ctx.pool, user.userId, user.sessionId);
    return reply.code(204).send();
  });

  app.post("/auth/logout-all", { preHandler: authenticate }, async (request) => {
    const revoked = await revokeAllSessions(ctx.pool, currentUser(request).userId);
    return { revoked };
  });

  app.get("/auth/sessions", { preHandler: authenticate }, async (request) => {
    const user = currentUser(request);
    const sessions = await listSessions(ctx.pool, user.userId);
    return { sessions: sessions.map((s) => ({ ...s, current: s.id === user.sessionId })) };
  });

  app.delete<{ Params: Static<typeof SessionParams> }>(
    "/auth/sessions/:sessionId",
    { schema: { params: SessionParams }, preHandler: authenticate },
    async (request, reply) => {
      const revoked = await revokeSession(ctx.pool, currentUser(request).userId, request.params.sessionId);
      if (!revoked) throw new NotFoundError("session");
      return reply.code(204).send();
    },
  );
}
