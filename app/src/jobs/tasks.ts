// Task handlers run by the worker. A handler that throws is retried by graphile-worker with
// exponential backoff (exp(attempt) seconds) until max_attempts; then the job stays in
// graphile_worker.jobs as permanently failed (visible at GET /admin/jobs/failed) and the
// worker logs it at error level and reports it to Sentry.
//
// Mails that carry a token mint it here, at send time: the payload holds only an id, the
// database only the token's HMAC, and the raw token exists in this process's memory and the
// mail. A retried job mints a fresh token (the unsent one is replaced, never delivered).
// Links put the token after `#`: browsers do not send the fragment, so it stays out of every
// access log between the reader and the front end, which posts it to the API.
import type { Task, TaskList } from "graphile-worker";
import type pg from "pg";
import type { Mailer } from "./mailer.js";
import { TASKS, type AccountEmailPayload, type InvitationEmailPayload, type WelcomeEmailPayload } from "./queue.js";
import { insertAccountToken, TOKEN_TTL_MINUTES, type AccountTokenPurpose } from "../auth/account-tokens.repository.js";
import { hashToken, newToken } from "../auth/tokens.js";
import { setInvitationToken } from "../tenants/invitations.repository.js";
import { findUserById, type User } from "../users/users.repository.js";

export interface TaskDeps {
  pool: pg.Pool;
  mailer: Mailer;
  appUrl: string;
  /** Keys the HMAC of the tokens this worker mints (the web process checks them with the same key). */
  secretKey: string;
}

/** Token prefixes: a leaked token says what it is for. */
const TOKEN_PREFIX: Record<AccountTokenPurpose, string> = { verify_email: "vrf", reset_password: "rst" };

export function buildTaskList(deps: TaskDeps): TaskList {
  const mint = async (userId: string, purpose: AccountTokenPurpose): Promise<string> => {
    const token = newToken(TOKEN_PREFIX[purpose]);
    await insertAccountToken(deps.pool, userId, purpose, hashToken(deps.secretKey, token));
    return token;
  };
  const verifyLink = async (user: User) => `${deps.appUrl}/verify-email#token=${await mint(user.id, "verify_email")}`;

  /** A task mailing one user, skipped (not failed) when the user is gone. */
  const toUser =
    (what: string, compose: (user: User) => Promise<{ subject: string; text: string } | undefined>): Task =>
    async (payload, helpers) => {
      const { userId } = payload as WelcomeEmailPayload | AccountEmailPayload;
      const user = await findUserById(deps.pool, userId);
      if (!user) {
        helpers.logger.info(`user ${userId} no longer exists; ${what} skipped`);
        return;
      }
      const mail = await compose(user);
      if (!mail) {
        helpers.logger.info(`${what} for user ${userId} no longer needed; skipped`);
        return;
      }
      await abortable(helpers.abortPromise, deps.mailer.send({ to: user.email, ...mail }));
    };

  const welcome = toUser("welcome email", async (user) => ({
    subject: "Welcome!",
    text:
      `Hi ${user.name},\n\nyour account is ready: ${deps.appUrl}\n` +
      (user.emailVerifiedAt ? "" : `\nConfirm your email address to start using it (the link works for 24 hours):\n${await verifyLink(user)}\n`),
  }));

  const verification = toUser("verification email", async (user) =>
    user.emailVerifiedAt
      ? undefined
      : { subject: "Confirm your email address", text: `Hi ${user.name},\n\nconfirm your email address (the link works for 24 hours):\n${await verifyLink(user)}\n` },
  );

  const passwordReset = toUser("password reset email", async (user) => ({
    subject: "Set a new password",
    text:
      `Hi ${user.name},\n\nsomeone (we hope you) asked to reset the password of your account.\n` +
      `Set a new one here; the link works for ${TOKEN_TTL_MINUTES.reset_password} minutes and signs out every session:\n` +
      `${deps.appUrl}/reset-password#token=${await mint(user.id, "reset_password")}\n\nIf it was not you, ignore this email: nothing changes.\n`,
  }));

  const registrationNotice = toUser("registration notice", async (user) => ({
    subject: "Someone tried to sign up with your address",
    text:
      `Hi ${user.name},\n\nsomeone tried to create an account with this email address, which already has one.\n` +
      `If it was you: log in at ${deps.appUrl}, or reset your password at ${deps.appUrl}/reset-password if you forgot it.\n` +
      `If you never created this account, resetting the password gives it to you (it proves this mailbox is yours).\n` +
      `Otherwise there is nothing to do: no second account was created.\n`,
  }));

  const invitation: Task = async (payload, helpers) => {
    const { invitationId } = payload as InvitationEmailPayload;
    const token = newToken("inv");
    const inv = await setInvitationToken(deps.pool, invitationId, hashToken(deps.secretKey, token));
    if (!inv) {
      helpers.logger.info(`invitation ${invitationId} is no longer pending; email skipped`);
      return;
    }
    await abortable(helpers.abortPromise, deps.mailer.send({
      to: inv.email,
      subject: `You are invited to ${inv.orgName}`,
      text: `You have been invited to join ${inv.orgName} as ${inv.role}.\n\nSign in at ${deps.appUrl} with this address and accept:\n${deps.appUrl}/accept-invitation#token=${token}\n`,
    }));
  };

  return {
    [TASKS.welcomeEmail]: welcome,
    [TASKS.verificationEmail]: verification,
    [TASKS.passwordResetEmail]: passwordReset,
    [TASKS.registrationNoticeEmail]: registrationNotice,
    [TASKS.invitationEmail]: invitation,
  };
}

/** Gives up on `work` when the worker is shutting down and the job's time is up. */
async function abortable<T>(abortPromise: Promise<void>, work: Promise<T>): Promise<T> {
  const stop = () => {
    throw new Error("aborted: worker shutting down");
  };
  const aborted = abortPromise.then(stop, stop);
  work.catch(() => {}); // an abandoned send may still fail later; nobody awaits it then
  return Promise.race([work, aborted]);
}
