// /auth: register, verify the address, login, logout, password reset, session management.
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, Email, Name, Uuid } from "../api/schemas.js";
import { ConflictError, InvalidTokenError, NotFoundError, UnauthorizedError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { recordEvent } from "../events/events.repository.js";
import { enqueueAccountEmail, enqueueWelcomeEmail, TASKS } from "../jobs/queue.js";
import { insertOrganization } from "../tenants/organizations.repository.js";
import { findCredentials, findUserIdByEmail, insertUserIfNew, markEmailVerified, normalizeEmail, updatePasswordHash } from "../users/users.repository.js";
import { findTokenUser, useAccountToken, voidAccountTokens } from "./account-tokens.repository.js";
import { currentUser, makeAuthenticate } from "./authenticate.js";
import { hashPassword, verifyAgainstDummy, verifyPassword } from "./password.js";
import { addressKey, emailKey } from "./rate-limits.js";
import { createSession, listSessions, revokeAllSessions, revokeSession } from "./sessions.repository.js";
import { hashToken, newToken } from "./tokens.js";

export const Password = Type.String({ minLength: 10, maxLength: 200 });
const Token = Type.String({ minLength: 10, maxLength: 200 });

const RegisterBody = Body({ email: Email, password: Password, name: Name, organizationName: Type.Optional(Name) });
const LoginBody = Body({ email: Email, password: Type.String({ minLength: 1, maxLength: 200 }) });
const VerifyBody = Body({ token: Token });
const ResetRequestBody = Body({ email: Email });
const ResetBody = Body({ token: Token, newPassword: Password });
const SessionParams = Type.Object({ sessionId: Uuid });

/**
 * What signup answers, whether the address was new or already had an account: the same status
 * and body, and both paths pay for one scrypt hash, so the answer does not tell which it was.
 * The mailbox learns it: a new address gets the welcome mail with its verification link, an
 * existing one a note that someone tried to sign up with it.
 */
export const REGISTER_ANSWER = {
  status: "verification_sent",
  message: "check your inbox: follow the link we sent to confirm your address, then log in",
} as const;
/** Same idea for password reset requests: known or unknown address, one answer. */
export const RESET_ANSWER = {
  status: "reset_sent",
  message: "if an account uses this address, we sent it a link to set a new password; it works for 30 minutes",
} as const;

export async function authRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const authenticate = makeAuthenticate(ctx);
  const { secretKey } = ctx.config;
  const limits = app.rateLimits;

  // Signup: user + organization (owner) + welcome-email job, all or nothing. No session: the
  // new owner logs in (an unverified account may only read its profile, resend the link, log out).
  app.post<{ Body: Static<typeof RegisterBody> }>("/auth/register", { schema: { body: RegisterBody } }, async (request, reply) => {
    const { email, password, name, organizationName } = request.body;
    await limits.consume("register_ip", addressKey(request.ip));
    await limits.consume("mail_address", emailKey(email));
    const passwordHash = await hashPassword(password);
    await withTransaction(ctx.pool, async (tx) => {
      const user = await insertUserIfNew(tx, email, name, passwordHash);
      if (user) {
        await insertOrganization(tx, organizationName ?? `${name}'s organization`, user.id);
        await enqueueWelcomeEmail(tx, { userId: user.id }, { requestId: request.id });
        return;
      }
      const existing = await findUserIdByEmail(tx, email);
      if (existing) await enqueueAccountEmail(tx, TASKS.registrationNoticeEmail, { userId: existing }, request.id);
    });
    return reply.code(202).send(REGISTER_ANSWER);
  });

  // The link in the welcome/verification mail. The token alone proves the mailbox: no session needed.
  app.post<{ Body: Static<typeof VerifyBody> }>("/auth/verify-email", { schema: { body: VerifyBody } }, async (request) => {
    await limits.consume("token_ip", addressKey(request.ip));
    await withTransaction(ctx.pool, async (tx) => {
      const userId = await useAccountToken(tx, "verify_email", hashToken(secretKey, request.body.token));
      if (!userId) throw new InvalidTokenError("verification");
      await markEmailVerified(tx, userId);
    });
    return { emailVerified: true };
  });

  app.post(
    "/auth/verification/resend",
    { preHandler: authenticate, config: { allowUnverified: true } },
    async (request, reply) => {
      const me = currentUser(request);
      if (me.emailVerified) throw new ConflictError("your email address is already verified");
      await limits.consume("verification_resend_account", me.userId);
      await limits.consume("mail_address", emailKey(me.email));
      await enqueueAccountEmail(ctx.pool, TASKS.verificationEmail, { userId: me.userId }, request.id);
      return reply.code(202).send({ status: "verification_sent", message: "check your inbox for a new link" });
    },
  );

  // Unverified accounts may log in (their session can read /me, resend the link and log out).
  app.post<{ Body: Static<typeof LoginBody> }>("/auth/login", { schema: { body: LoginBody } }, async (request) => {
    const { email, password } = request.body;
    const account = emailKey(email);
    await limits.consume("login_ip", addressKey(request.ip));
    await limits.consume("login_failures_account", account);
    const creds = await findCredentials(ctx.pool, email);
    let ok: boolean;
    try {
      ok = creds ? await verifyPassword(password, creds.passwordHash) : await verifyAgainstDummy(password);
    } catch (err) {
      await limits.refund("login_failures_account", account); // not a failed guess (e.g. the hash cap's 503)
      throw err;
    }
    if (!creds || !ok) {
      await recordEvent(ctx.pool, { kind: "auth.login_failed", actorId: creds?.id ?? null, data: { email: normalizeEmail(email) } }, request);
      throw new UnauthorizedError("email or password is incorrect");
    }
    await limits.refund("login_failures_account", account);
    const token = newToken("sess");
    await withTransaction(ctx.pool, async (tx) => {
      await createSession(tx, creds.id, hashToken(secretKey, token), request.headers["user-agent"]);
      await recordEvent(tx, { kind: "auth.login", actorId: creds.id }, request);
    });
    return { token };
  });

  app.post<{ Body: Static<typeof ResetRequestBody> }>(
    "/auth/password-reset/request",
    { schema: { body: ResetRequestBody } },
    async (request, reply) => {
      await limits.consume("password_reset_ip", addressKey(request.ip));
      await limits.consume("mail_address", emailKey(request.body.email));
      const userId = await findUserIdByEmail(ctx.pool, request.body.email);
      if (userId) await enqueueAccountEmail(ctx.pool, TASKS.passwordResetEmail, { userId }, request.id);
      return reply.code(202).send(RESET_ANSWER);
    },
  );

  // A reset proves the mailbox, so it also verifies the address (the way for an owner to take
  // back an address someone else signed up with), and signs out every session.
  app.post<{ Body: Static<typeof ResetBody> }>("/auth/password-reset", { schema: { body: ResetBody } }, async (request, reply) => {
    await limits.consume("token_ip", addressKey(request.ip));
    const tokenHash = hashToken(secretKey, request.body.token);
    // Refuse a dead token before paying for a hash; the transaction below re-checks (single use).
    if (!(await findTokenUser(ctx.pool, "reset_password", tokenHash))) throw new InvalidTokenError("password reset");
    const passwordHash = await hashPassword(request.body.newPassword);
    await withTransaction(ctx.pool, async (tx) => {
      const userId = await useAccountToken(tx, "reset_password", tokenHash);
      if (!userId) throw new InvalidTokenError("password reset");
      await updatePasswordHash(tx, userId, passwordHash);
      await markEmailVerified(tx, userId);
      await voidAccountTokens(tx, userId, "reset_password");
      await revokeAllSessions(tx, userId);
    });
    return reply.code(204).send();
  });

  app.post("/auth/logout", { preHandler: authenticate, config: { allowUnverified: true } }, async (request, reply) => {
    const user = currentUser(request);
    await revokeSession(ctx.pool, user.userId, user.sessionId);
    return reply.code(204).send();
  });

  app.post("/auth/logout-all", { preHandler: authenticate, config: { allowUnverified: true } }, async (request) => {
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
