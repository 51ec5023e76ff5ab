// Joins a job's log lines to the request that enqueued it: the request id travels in the
// payload (jobs/queue.ts), and every task runs inside a log context that holds it, with the
// job's id and task, so whatever the task logs (itself, the mailer, the billing code) carries them.
import type { Job, Task, TaskList } from "graphile-worker";
import { withLogContext, type LogContext } from "../core/log-context.js";
import { isRequestId } from "../core/request-id.js";
import { REQUEST_ID_KEY } from "./queue.js";

/** The request id a payload carries, if it carries a well-formed one. */
export function requestIdOf(payload: unknown): string | undefined {
  const value = payload !== null && typeof payload === "object" ? (payload as Record<string, unknown>)[REQUEST_ID_KEY] : undefined;
  return isRequestId(value) ? value : undefined;
}

/** The log fields of one job: its id, task and, when a request enqueued it, the request's id. */
export function jobLogFields(job: Pick<Job, "id" | "task_identifier" | "payload">): LogContext {
  const requestId = requestIdOf(job.payload);
  return { jobId: String(job.id), task: job.task_identifier, ...(requestId ? { request_id: requestId } : {}) };
}

/** The same tasks, each run inside its job's log context. */
export function withJobLogContext(taskList: TaskList): TaskList {
  return Object.fromEntries(
    Object.entries(taskList).map(([name, task]): [string, Task] => [name, (payload, helpers) => withLogContext(jobLogFields(helpers.job), () => task!(payload, helpers))]),
  );
}
