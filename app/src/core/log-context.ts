// Fields every log line written while a job runs carries (its request id, job id and task), so
// a task's own lines, the mailer's and the billing code's join up with the request that enqueued
// the job without each of them passing the fields along. The web process needs none of this: a
// request's lines are written through request.log, a child logger that holds its request id.
import { AsyncLocalStorage } from "node:async_hooks";

export interface LogContext {
  request_id?: string;
  jobId?: string;
  task?: string;
}

const storage = new AsyncLocalStorage<LogContext>();

export function withLogContext<T>(fields: LogContext, fn: () => T): T {
  return storage.run(fields, fn);
}

/** A copy of the fields of the job running in this async context ({} outside one): pino's mixin merges into what it is given. */
export function currentLogContext(): LogContext {
  const fields = storage.getStore();
  return fields ? { ...fields } : {};
}
