// Task handlers run by the worker. A handler that throws is retried by graphile-worker with
// exponential backoff (exp(attempt) seconds) until max_attempts; then the job stays in
// graphile_worker.jobs as permanently failed (visible at GET /admin/jobs/failed) and the
// worker logs it at error level and reports it to Sentry.
import type { Task, TaskList } from "graphile-worker";
import type pg from "pg";
import type { Mailer } from "./mailer.js";
import { TASKS, type InvitationEmailPayload, type WelcomeEmailPayload } from "./queue.js";
import { findUserById } from "../users/users.repository.js";

export interface TaskDeps {
  pool: pg.Pool;
  mailer: Mailer;
  appUrl: string;
}

export function buildTaskList(deps: TaskDeps): TaskList {
  const welcome: Task = async (payload, helpers) => {
    const { userId } = payload as WelcomeEmailPayload;
    const user = await findUserById(deps.pool, userId);
    if (!user) {
      helpers.logger.info(`user ${userId} no longer exists; welcome email skipped`);
      return;
    }
    await abortable(helpers.abortPromise, deps.mailer.send({
      to: user.email,
      subject: "Welcome!",
      text: `Hi ${user.name},\n\nyour account is ready: ${deps.appUrl}\n`,
    }));
  };

  const invitation: Task = async (payload, helpers) => {
    const { invitationId, token } = payload as InvitationEmailPayload;
    const { rows } = await deps.pool.query<{ email: string; orgName: string; role: string }>(
      `SELECT i.email, o.name AS "orgName", i.role FROM invitations i JOIN organizations o ON o.id = i.org_id
        WHERE i.id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()`,
      [invitationId],
    );
    const inv = rows[0];
    if (!inv) {
      helpers.logger.info(`invitation ${invitationId} is no longer pending; email skipped`);
      return;
    }
    await abortable(helpers.abortPromise, deps.mailer.send({
      to: inv.email,
      subject: `You are invited to ${inv.orgName}`,
      text: `You have been invited to join ${inv.orgName} as ${inv.role}.\n\nSign in at ${deps.appUrl} and accept with this token:\n${token}\n`,
    }));
  };

  return { [TASKS.welcomeEmail]: welcome, [TASKS.invitationEmail]: invitation };
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
