// Which tasks one worker process runs (WORKER_TASKS_ONLY / WORKER_TASKS_EXCEPT, core/config.ts).
// graphile-worker 0.17 takes a job only when its task identifier is in the runner's task list
// (its get-job query filters on `task_id = any(<ids of the listed tasks>)`), so a worker given a
// part of the list never takes the other jobs: they wait in the same table for a worker that has
// them. That is how a stack gives its critical jobs (the mail a user waits for, Stripe events)
// processes of their own: a flood of other jobs cannot hold them up. Job rows do not change.
import type { TaskList } from "graphile-worker";
import { ConfigError, WORKER_TASK_VARS, type WorkerTaskFilter } from "../core/config.js";

/**
 * The part of `all` this worker runs. A name the app does not have fails the start (a typo in the
 * stack would otherwise leave those jobs to no one, or run them where they were meant not to run),
 * and so does a filter that leaves nothing to run.
 */
export function selectTasks(all: TaskList, filter: WorkerTaskFilter): TaskList {
  if (filter.mode === "all") return all;
  const key = WORKER_TASK_VARS[filter.mode];
  const known = Object.keys(all);
  const unknown = filter.tasks.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new ConfigError([`env/${key} must name tasks this app has; ${unknown.map((n) => JSON.stringify(n)).join(", ")} ${unknown.length === 1 ? "is" : "are"} not one (known tasks: ${known.join(", ")})`]);
  }
  const keep = (name: string) => filter.tasks.includes(name) === (filter.mode === "only");
  const selected = Object.fromEntries(Object.entries(all).filter(([name]) => keep(name)));
  if (Object.keys(selected).length === 0) {
    throw new ConfigError([`env/${key} must leave this worker at least one task; it excludes every one (${known.join(", ")})`]);
  }
  return selected;
}

/** One recurring job: graphile-worker's crontab line is `<schedule> <task> <options>`. */
export interface CronEntry {
  schedule: string;
  task: string;
  /** graphile-worker's `?key=value&...` options; empty for none. */
  options: string;
}

/**
 * The crontab of a worker that runs `tasks`: the entries of its own tasks only, so each entry is
 * scheduled by exactly one kind of worker (the one that runs it). Undefined when none is left.
 */
export function crontabFor(entries: readonly CronEntry[], tasks: TaskList): string | undefined {
  const lines = entries.filter((e) => Object.hasOwn(tasks, e.task)).map((e) => [e.schedule, e.task, e.options].filter(Boolean).join(" "));
  return lines.length > 0 ? lines.join("\n") : undefined;
}
