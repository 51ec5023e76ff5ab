// Processing a recorded Stripe event (the worker's `process_stripe_event` job). Events arrive
// late, twice or out of order; every write compares the event's `created` with the row's and
// never leaves a terminal status (billing.repository.ts), so the outcome does not depend on the
// order of delivery. Two events of one second cannot be ordered by `created`: then the worker
// fetches the subscription as it is now.
import type Stripe from "stripe";
import type pg from "pg";
import type { Logger } from "../core/logger.js";
import { withTransaction, type Db } from "../db/pool.js";
import { recordEvent } from "../events/events.repository.js";
import {
  findSubscription,
  linkCustomer,
  lockStripeEvent,
  markStripeEventProcessed,
  organizationExists,
  orgOfCustomer,
  TERMINAL_SUBSCRIPTION_STATUSES,
  upsertInvoice,
  upsertSubscription,
} from "./billing.repository.js";
import { planByPrice, type BillingPlans } from "./plans.js";
import { forgetEntitlement } from "./limits.js";
import { noCache, type SharedCache } from "../core/shared-cache.js";

export interface StripeEventDeps {
  pool: pg.Pool;
  plans: BillingPlans;
  /** Absent when the worker has no STRIPE_SECRET_KEY: same-second ties are then applied in arrival order. */
  stripe: Stripe | undefined;
  log: Logger;
  /** The shared cache web reads entitlements from; each subscription written is forgotten there. */
  cache?: SharedCache;
}

type Outcome = "applied" | "ignored" | "already processed" | "unknown event";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const idOf = (x: string | { id: string } | null | undefined): string | undefined => (typeof x === "string" ? x : x?.id);

export async function processStripeEvent(deps: StripeEventDeps, eventId: string): Promise<Outcome> {
  const peek = await deps.pool.query<{ payload: Stripe.Event }>(`SELECT payload FROM stripe_events WHERE id = $1`, [eventId]);
  const event = peek.rows[0]?.payload;
  if (!event) return "unknown event";
  // The API call (if any) happens before the transaction, so no row lock waits on the network.
  const current = event.type.startsWith("customer.subscription.") ? await currentIfTied(deps, event) : undefined;

  let subscriptionOf: string | undefined;
  const outcome = await withTransaction(deps.pool, async (tx): Promise<Outcome> => {
    const stored = await lockStripeEvent(tx, eventId);
    if (!stored || stored.processedAt) return "already processed";
    const created = new Date(event.created * 1000);
    let outcome: Outcome = "ignored";
    if (event.type === "checkout.session.completed") {
      outcome = await applyCheckout(tx, event.data.object as Stripe.Checkout.Session);
    } else if (event.type.startsWith("customer.subscription.")) {
      const applied = await applySubscription(tx, deps, current ?? (event.data.object as Stripe.Subscription), created, event.id);
      outcome = applied.outcome;
      subscriptionOf = applied.orgId;
    } else if (event.type.startsWith("invoice.")) {
      outcome = await applyInvoice(tx, event.data.object as Stripe.Invoice, created, event.id);
    }
    await markStripeEventProcessed(tx, eventId);
    return outcome;
  });
  // Committed: web's next read of this org's plan (on any server) reads the new row.
  if (subscriptionOf) await forgetEntitlement(deps.cache ?? noCache, subscriptionOf);
  return outcome;
}

/** When the row was written from an event of the same second, the event cannot say which is newer: ask Stripe. */
async function currentIfTied(deps: StripeEventDeps, event: Stripe.Event): Promise<Stripe.Subscription | undefined> {
  const sub = event.data.object as Stripe.Subscription;
  const row = await findSubscription(deps.pool, sub.id);
  if (!row || !deps.stripe) return undefined;
  if (row.stripeEventCreated.getTime() !== event.created * 1000 || TERMINAL_SUBSCRIPTION_STATUSES.includes(row.status)) return undefined;
  return deps.stripe.subscriptions.retrieve(sub.id);
}

async function orgFor(db: Db, metadataOrgId: string | undefined, customerId: string | undefined): Promise<string | undefined> {
  if (metadataOrgId && UUID.test(metadataOrgId) && (await organizationExists(db, metadataOrgId))) return metadataOrgId;
  return customerId ? orgOfCustomer(db, customerId) : undefined;
}

async function applyCheckout(tx: Db, session: Stripe.Checkout.Session): Promise<Outcome> {
  const customerId = idOf(session.customer);
  const orgId = session.client_reference_id ?? undefined;
  if (!customerId || !orgId || !UUID.test(orgId) || !(await organizationExists(tx, orgId))) return "ignored";
  await linkCustomer(tx, orgId, customerId);
  return "applied";
}

/** `orgId` is set when the org's subscription row was written. */
async function applySubscription(
  tx: Db, deps: StripeEventDeps, sub: Stripe.Subscription, created: Date, stripeEventId: string,
): Promise<{ outcome: Outcome; orgId?: string }> {
  const customerId = idOf(sub.customer)!;
  const orgId = await orgFor(tx, sub.metadata?.orgId, customerId);
  if (!orgId) {
    deps.log.warn({ subscription: sub.id, customer: customerId }, "subscription of no known organization; ignored");
    return { outcome: "ignored" };
  }
  const item = sub.items?.data?.[0];
  const priceId = item?.price?.id ?? null;
  const written = await upsertSubscription(tx, {
    stripeSubscriptionId: sub.id,
    orgId,
    stripeCustomerId: customerId,
    status: sub.status,
    priceId,
    planId: planByPrice(deps.plans, priceId)?.id ?? null,
    cancelAtPeriodEnd: sub.cancel_at_period_end ?? false,
    currentPeriodEnd: item?.current_period_end ? new Date(item.current_period_end * 1000) : null,
    stripeEventCreated: created,
  });
  if (!written) return { outcome: "ignored" };
  await recordEvent(tx, {
    kind: "billing.subscription_changed",
    orgId,
    actorId: null,
    data: { subscriptionId: sub.id, status: sub.status, previousStatus: written.previousStatus, priceId, stripeEventId },
  });
  return { outcome: "applied", orgId };
}

async function applyInvoice(tx: Db, invoice: Stripe.Invoice, created: Date, stripeEventId: string): Promise<Outcome> {
  const details = invoice.parent?.subscription_details ?? undefined;
  const orgId = await orgFor(tx, details?.metadata?.orgId, idOf(invoice.customer));
  if (!orgId) return "ignored";
  const written = await upsertInvoice(tx, {
    stripeInvoiceId: invoice.id!,
    orgId,
    stripeSubscriptionId: idOf(details?.subscription) ?? null,
    status: invoice.status ?? null,
    currency: invoice.currency,
    amountDue: invoice.amount_due,
    amountPaid: invoice.amount_paid,
    hostedInvoiceUrl: invoice.hosted_invoice_url ?? null,
    periodStart: invoice.period_start ? new Date(invoice.period_start * 1000) : null,
    periodEnd: invoice.period_end ? new Date(invoice.period_end * 1000) : null,
    createdAt: new Date(invoice.created * 1000),
    stripeEventCreated: created,
  });
  if (!written) return "ignored";
  await recordEvent(tx, {
    kind: "billing.invoice_changed",
    orgId,
    actorId: null,
    data: { invoiceId: invoice.id, status: invoice.status, amountDue: invoice.amount_due, currency: invoice.currency, stripeEventId },
  });
  return "applied";
}
