// preHandler for routes that need a signed-in user: resolves the bearer token to a live session
// and, unless the route says otherwise, requires a verified email address. Verified is the
// default so a new route cannot forget it; the few routes an unverified account may use say
// `config: { allowUnverified: true }` (README: what "act" means).
import type { FastifyReply, FastifyRequest } from "fastify";
import type { AppContext } from "../api/context.js";
import { EmailUnverifiedError, UnauthorizedError } from "../core/errors.js";
import { findSessionUser, type SessionUser } from "./sessions.repository.js";
import { hashToken } from "./tokens.js";

declare module "fastify" {
  interface FastifyRequest {
    user?: SessionUser;
  }
  interface FastifyContextConfig {
    /** The route serves accounts whose email address is not verified yet. */
    allowUnverified?: boolean;
  }
}

export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer\s+(\S+)$/i);
  return match?.[1];
}

export function makeAuthenticate(ctx: AppContext) {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const token = bearerToken(request);
    if (!token) throw new UnauthorizedError();
    const user = await findSessionUser(ctx.pool, hashToken(ctx.config.secretKey, token));
    if (!user) throw new UnauthorizedError("session is invalid, expired or revoked: log in again");
    if (!user.emailVerified && !request.routeOptions.config.allowUnverified) throw new EmailUnverifiedError();
    request.user = user;
  };
}

/** The signed-in user; only call behind `authenticate`. */
export function currentUser(request: FastifyRequest): SessionUser {
  if (!request.user) throw new UnauthorizedError();
  return request.user;
}
