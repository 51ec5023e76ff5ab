// Tables `billing_customers`, `subscriptions`, `invoices`, `stripe_events`. Reads and writes of
// tenant rows take the org id; webhook processing finds the org from the Stripe object first.
import type { Db } from "../db/pool.js";

export interface SubscriptionRow {
  stripeSubscriptionId: string;
  orgId: string;
  status: string;
  priceId: string | null;
  planId: string | null;
  cancelAtPeriodEnd: boolean;
  currentPeriodEnd: Date | null;
  stripeEventCreated: Date;
}
export interface InvoiceRow {
  stripeInvoiceId: string;
  stripeSubscriptionId: string | null;
  status: string | null;
  currency: string;
  amountDue: number;
  amountPaid: number;
  hostedInvoiceUrl: string | null;
  periodStart: Date | null;
  periodEnd: Date | null;
  createdAt: Date;
}

/** Stripe never moves a subscription out of these (a canceled one cannot be reactivated). */
export const TERMINAL_SUBSCRIPTION_STATUSES = ["canceled", "incomplete_expired"];
/** Statuses that keep the paid plan: past_due too, while Stripe retries the payment. */
export const ENTITLED_STATUSES = ["active", "trialing", "past_due"];
/** An invoice never leaves these. */
export const TERMINAL_INVOICE_STATUSES = ["paid", "void"];

const SUB_COLUMNS = `stripe_subscription_id AS "stripeSubscriptionId", org_id AS "orgId", status, price_id AS "priceId", plan_id AS "planId",
  cancel_at_period_end AS "cancelAtPeriodEnd", current_period_end AS "currentPeriodEnd", stripe_event_created AS "stripeEventCreated"`;
const INVOICE_COLUMNS = `stripe_invoice_id AS "stripeInvoiceId", stripe_subscription_id AS "stripeSubscriptionId", status, currency,
  amount_due::int AS "amountDue", amount_paid::int AS "amountPaid", hosted_invoice_url AS "hostedInvoiceUrl",
  period_start AS "periodStart", period_end AS "periodEnd", created_at AS "createdAt"`;

export async function findCustomerId(db: Db, orgId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(`SELECT stripe_customer_id AS id FROM billing_customers WHERE org_id = $1`, [orgId]);
  return rows[0]?.id;
}

export async function orgOfCustomer(db: Db, customerId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ orgId: string }>(`SELECT org_id AS "orgId" FROM billing_customers WHERE stripe_customer_id = $1`, [customerId]);
  return rows[0]?.orgId;
}

/** Links the org to its Stripe customer; a second link for the same org keeps the first. Returns the linked id. */
export async function linkCustomer(db: Db, orgId: string, customerId: string): Promise<string> {
  await db.query(`INSERT INTO billing_customers (org_id, stripe_customer_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [orgId, customerId]);
  return (await findCustomerId(db, orgId))!;
}

export async function organizationExists(db: Db, orgId: string): Promise<boolean> {
  const { rows } = await db.query(`SELECT 1 FROM organizations WHERE id = $1`, [orgId]);
  return rows.length === 1;
}

/** The subscription that decides the org's plan: the newest one that is entitled. */
export async function findEntitledSubscription(db: Db, orgId: string): Promise<SubscriptionRow | undefined> {
  const { rows } = await db.query<SubscriptionRow>(
    `SELECT ${SUB_COLUMNS} FROM subscriptions WHERE org_id = $1 AND status = ANY($2) ORDER BY stripe_event_created DESC, updated_at DESC LIMIT 1`,
    [orgId, ENTITLED_STATUSES],
  );
  return rows[0];
}

export async function findSubscription(db: Db, subscriptionId: string): Promise<SubscriptionRow | undefined> {
  const { rows } = await db.query<SubscriptionRow>(`SELECT ${SUB_COLUMNS} FROM subscriptions WHERE stripe_subscription_id = $1`, [subscriptionId]);
  return rows[0];
}

export type SubscriptionWrite = Omit<SubscriptionRow, "stripeEventCreated"> & { stripeCustomerId: string; stripeEventCreated: Date };

/**
 * Writes the subscription as of an event, unless the row already holds a newer event's state or a
 * terminal status: so a replayed or late event changes nothing. Returns the row's status before
 * (null when new), or undefined when nothing was written.
 */
export async function upsertSubscription(db: Db, s: SubscriptionWrite): Promise<{ previousStatus: string | null } | undefined> {
  const { rows } = await db.query<{ previousStatus: string | null }>(
    `WITH before AS (SELECT status FROM subscriptions WHERE stripe_subscription_id = $1 FOR UPDATE)
     INSERT INTO subscriptions AS s (stripe_subscription_id, org_id, stripe_customer_id, status, price_id, plan_id, cancel_at_period_end, current_period_end, stripe_event_created)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (stripe_subscription_id) DO UPDATE SET
       status = EXCLUDED.status, price_id = EXCLUDED.price_id, plan_id = EXCLUDED.plan_id,
       cancel_at_period_end = EXCLUDED.cancel_at_period_end, current_period_end = EXCLUDED.current_period_end,
       stripe_event_created = EXCLUDED.stripe_event_created, updated_at = now()
     WHERE s.stripe_event_created <= EXCLUDED.stripe_event_created AND s.status <> ALL($10)
     RETURNING (SELECT status FROM before) AS "previousStatus"`,
    [s.stripeSubscriptionId, s.orgId, s.stripeCustomerId, s.status, s.priceId, s.planId, s.cancelAtPeriodEnd, s.currentPeriodEnd, s.stripeEventCreated, TERMINAL_SUBSCRIPTION_STATUSES],
  );
  return rows[0];
}

export type InvoiceWrite = InvoiceRow & { orgId: string; stripeEventCreated: Date };

/** As upsertSubscription, for invoices. Returns whether a row was written. */
export async function upsertInvoice(db: Db, i: InvoiceWrite): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO invoices AS i (stripe_invoice_id, org_id, stripe_subscription_id, status, currency, amount_due, amount_paid, hosted_invoice_url, period_start, period_end, created_at, stripe_event_created)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (stripe_invoice_id) DO UPDATE SET
       status = EXCLUDED.status, amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
       hosted_invoice_url = EXCLUDED.hosted_invoice_url, stripe_event_created = EXCLUDED.stripe_event_created, updated_at = now()
     WHERE i.stripe_event_created <= EXCLUDED.stripe_event_created AND (i.status IS NULL OR i.status <> ALL($13))`,
    [i.stripeInvoiceId, i.orgId, i.stripeSubscriptionId, i.status, i.currency, i.amountDue, i.amountPaid, i.hostedInvoiceUrl, i.periodStart, i.periodEnd, i.createdAt, i.stripeEventCreated, TERMINAL_INVOICE_STATUSES],
  );
  return rowCount === 1;
}

/** Newest first; keyset pagination by the last invoice id seen. */
export async function listInvoices(db: Db, orgId: string, limit: number, before?: string): Promise<InvoiceRow[]> {
  const { rows } = await db.query<InvoiceRow>(
    `SELECT ${INVOICE_COLUMNS} FROM invoices
      WHERE org_id = $1 AND ($3::text IS NULL OR (created_at, stripe_invoice_id) < (SELECT created_at, stripe_invoice_id FROM invoices WHERE org_id = $1 AND stripe_invoice_id = $3))
      ORDER BY created_at DESC, stripe_invoice_id DESC LIMIT $2`,
    [orgId, limit, before ?? null],
  );
  return rows;
}

/** Records a verified webhook event once; false when it was already recorded (a redelivery). */
export async function insertStripeEvent(db: Db, e: { id: string; type: string; created: number }, payload: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO stripe_events (id, type, created_at, payload) VALUES ($1, $2, to_timestamp($3), $4::jsonb) ON CONFLICT (id) DO NOTHING`,
    [e.id, e.type, e.created, payload],
  );
  return rowCount === 1;
}

export interface StoredStripeEvent {
  id: string;
  type: string;
  payload: unknown;
  processedAt: Date | null;
}

/** Locks the event row for processing (the worker's transaction). */
export async function lockStripeEvent(db: Db, id: string): Promise<StoredStripeEvent | undefined> {
  const { rows } = await db.query<StoredStripeEvent>(
    `SELECT id, type, payload, processed_at AS "processedAt" FROM stripe_events WHERE id = $1 FOR UPDATE`,
    [id],
  );
  return rows[0];
}

export async function markStripeEventProcessed(db: Db, id: string): Promise<void> {
  await db.query(`UPDATE stripe_events SET processed_at = now() WHERE id = $1`, [id]);
}

/** Processed events older than `days`; redeliveries stop after 3 days, so 30 is plenty for dedupe. */
export async function pruneStripeEvents(db: Db, days: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM stripe_events WHERE processed_at IS NOT NULL AND received_at < now() - make_interval(days => $1)`,
    [days],
  );
  return rowCount ?? 0;
}
