// The events module's job: the daily retention prune (graphile-worker cron, worker.ts).
import type { Task, TaskList } from "graphile-worker";
import type pg from "pg";
import { pruneEvents } from "./events.repository.js";

export const EVENTS_TASKS = { pruneAuditEvents: "prune_audit_events" } as const;

export function eventsTaskList(deps: { pool: pg.Pool; retentionDays: number }): TaskList {
  const prune: Task = async (_payload, helpers) => {
    const removed = await pruneEvents(deps.pool, deps.retentionDays);
    helpers.logger.info(`pruned ${removed} audit events older than ${deps.retentionDays} days`);
  };
  return { [EVENTS_TASKS.pruneAuditEvents]: prune };
}
