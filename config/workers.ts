/**
 * Isolated critical workers: the app's tasks a stack gives worker processes of their own
 * (`criticalTasks`), and how many such processes it runs (`criticalWorkerInstances`). Those
 * processes run only these tasks (the app's WORKER_TASKS_ONLY), the other workers every task but
 * these (WORKER_TASKS_EXCEPT), so a flood of other jobs cannot hold up the mail a user waits for
 * or a Stripe event (README "Critical workers").
 */
import type { Stage } from "./stages";

/**
 * The reference app's critical tasks: its mails (app/src/jobs/queue.ts TASKS) and the Stripe event
 * (app/src/billing/tasks.ts BILLING_TASKS.processStripeEvent). A copy, not an import: the program
 * never loads the app's code; test/config/workers.test.ts fails when the two lists part.
 */
export const DEFAULT_CRITICAL_TASKS: readonly string[] = [
  "send_welcome_email",
  "send_verification_email",
  "send_password_reset_email",
  "send_registration_notice_email",
  "send_invitation_email",
  "process_stripe_event",
];

/**
 * A task name as the app's WORKER_TASKS_ONLY / _EXCEPT take it (app/src/core/config.ts
 * TASK_NAME_PATTERN): the list lands in a unit's Environment= line, where a space, quote, "%" or
 * "$" would change it.
 */
export const TASK_NAME_RULE = /^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$/;

/** Critical worker processes per server that runs workers; more are no use for a handful of light tasks. */
export const CRITICAL_WORKER_INSTANCES_RANGE = { min: 0, max: 8 } as const;

/** Isolation is on by default only where a stack has grown to several app servers. */
export const DEFAULT_CRITICAL_WORKER_INSTANCES: Readonly<Record<Stage, number>> = { mvp: 0, separated: 0, scaled: 1 };
