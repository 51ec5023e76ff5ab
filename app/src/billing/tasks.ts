// The billing module's jobs: processing a recorded Stripe event, and pruning old ones.
import type { Task, TaskList } from "graphile-worker";
import type { Db } from "../db/pool.js";
import { enqueue } from "../jobs/queue.js";
import { pruneStripeEvents } from "./billing.repository.js";
import { processStripeEvent, type StripeEventDeps } from "./process.js";

export const BILLING_TASKS = { processStripeEvent: "process_stripe_event", pruneStripeEvents: "prune_stripe_events" } as const;

/** Stripe stops redelivering an event after 3 days; a processed one is kept this long for dedupe and inspection. */
export const STRIPE_EVENT_KEEP_DAYS = 30;

/**
 * One queue for every Stripe event: they are applied one at a time, in the order received, and
 * ahead of other jobs (priority). 20 attempts: backoff is capped, so a bug fixed within a day
 * still gets its events applied.
 */
export function enqueueStripeEvent(db: Db, eventId: string, requestId?: string): Promise<string> {
  return enqueue(db, BILLING_TASKS.processStripeEvent, { eventId }, { queueName: "stripe-events", priority: -10, jobKey: `stripe:${eventId}`, maxAttempts: 20, requestId });
}

export function billingTaskList(deps: StripeEventDeps): TaskList {
  const process: Task = async (payload, helpers) => {
    const { eventId } = payload as { eventId: string };
    const outcome = await processStripeEvent(deps, eventId);
    helpers.logger.info(`stripe event ${eventId}: ${outcome}`);
  };
  const prune: Task = async (_payload, helpers) => {
    const removed = await pruneStripeEvents(deps.pool, STRIPE_EVENT_KEEP_DAYS);
    helpers.logger.info(`pruned ${removed} processed stripe events`);
  };
  return { [BILLING_TASKS.processStripeEvent]: process, [BILLING_TASKS.pruneStripeEvents]: prune };
}
