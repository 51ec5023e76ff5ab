// Errors a request can end with. Route code throws these; the HTTP error handler maps them to
// status codes and a stable JSON body: { "error": "<code>", "message": "<what and how to fix>" }.

export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Sent as Retry-After (seconds) when set: when to come back (429, 503). */
    readonly retryAfterSeconds?: number,
    /** Machine-readable facts added to the body beside error and message. */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends AppError {
  constructor(message: string) {
    super(400, "bad_request", message);
  }
}
export class UnauthorizedError extends AppError {
  constructor(message = "authentication required: send Authorization: Bearer <token>") {
    super(401, "unauthorized", message);
  }
}
export class ForbiddenError extends AppError {
  constructor(message: string) {
    super(403, "forbidden", message);
  }
}
/** Also used for resources of another tenant: their existence is not revealed. */
export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, "not_found", `${what} not found`);
  }
}
export class ConflictError extends AppError {
  constructor(message: string) {
    super(409, "conflict", message);
  }
}
export class PayloadTooLargeError extends AppError {
  constructor(message: string) {
    super(413, "payload_too_large", message);
  }
}
export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string) {
    super(415, "unsupported_media_type", message);
  }
}

/** A verified email address is needed for this (see README: what an unverified account may do). */
export class EmailUnverifiedError extends AppError {
  constructor() {
    super(403, "email_unverified", "verify your email address first: follow the link we sent you, or POST /auth/verification/resend for a new one");
  }
}
/** A verification, reset or invitation token that is unknown, expired or already used. */
export class InvalidTokenError extends AppError {
  constructor(what: string) {
    super(400, "invalid_token", `this ${what} link is invalid, has expired or was already used: request a new one`);
  }
}
export class QuotaExceededError extends AppError {
  constructor(message: string) {
    super(413, "quota_exceeded", message);
  }
}
export class TooManyRequestsError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    super(429, "too_many_requests", message, retryAfterSeconds);
  }
}
/** A plan limit reached: 402, with the limit, the plan and the numbers in the body. */
export class PlanLimitError extends AppError {
  constructor(message: string, details: { limit: string; plan: string; max: number; current: number }) {
    super(402, "plan_limit", message, undefined, details);
  }
}
export class ServiceUnavailableError extends AppError {
  constructor(message: string, retryAfterSeconds?: number) {
    super(503, "unavailable", message, retryAfterSeconds);
  }
}

/** PostgreSQL unique_violation, so repositories can turn it into a ConflictError. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === "23505" && (constraint === undefined || e.constraint === constraint);
}
