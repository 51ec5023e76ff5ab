// Plan limits: which plan an organization is on (its entitled subscription's price, else the free
// plan) and the check that runs before anything a plan limits is created.
import type { Db } from "../db/pool.js";
import { PlanLimitError } from "../core/errors.js";
import { noCache, type SharedCache } from "../core/shared-cache.js";
import { findEntitledSubscription } from "./billing.repository.js";
import { planById, planByPrice, type BillingPlans, type LimitName, type Plan } from "./plans.js";

/** What plan lookups need: the configured plans, and the shared cache when there is one. */
export interface PlanContext {
  config: { plans: BillingPlans };
  cache?: SharedCache;
}

/**
 * The part of an org's entitled subscription that decides its plan and that GET .../billing shows;
 * null = none (the free plan). Plain JSON, so the shared cache can hold it as it is.
 */
export interface Entitlement {
  status: string;
  priceId: string | null;
  planId: string | null;
  cancelAtPeriodEnd: boolean;
  /** ISO 8601, as the API answers it. */
  currentPeriodEnd: string | null;
}

/**
 * How long an org's entitlement stays in the shared cache. Every write of a subscription (the
 * worker applying a Stripe event) forgets it once committed, so this only bounds two rarer
 * cases: a read that began before such a write storing the old value just after the forget, and
 * a subscription changed outside the app (SQL by hand). Both are at most this late, which next to
 * Stripe's own delivery (webhooks arrive seconds to minutes after the change) is nothing: the
 * worst case is one more project or invitation on a plan that has just been lowered, or a
 * raised limit applied half a minute late. Short, so a stale value never lasts.
 */
export const ENTITLEMENT_TTL_SECONDS = 30;

/** The cache key of an org's entitlement ("v1": a change of Entitlement's shape takes a new one). */
export function entitlementKey(orgId: string): string {
  return `billing:entitlement:v1:${orgId}`;
}

/**
 * The org's entitlement, from the shared cache when it has it (it is read before each project or
 * invitation is created and on every GET .../billing, and changes only when Stripe says so).
 * Not for deciding whether to start a second subscription: checkout reads the table itself.
 */
export function entitlement(db: Db, orgId: string, cache: SharedCache = noCache): Promise<Entitlement | null> {
  return cache.remember(entitlementKey(orgId), ENTITLEMENT_TTL_SECONDS, async () => {
    const sub = await findEntitledSubscription(db, orgId);
    if (!sub) return null;
    const { status, priceId, planId, cancelAtPeriodEnd, currentPeriodEnd } = sub;
    return { status, priceId, planId, cancelAtPeriodEnd, currentPeriodEnd: currentPeriodEnd?.toISOString() ?? null };
  });
}

/** Call after the transaction that wrote the org's subscription has committed (before, a read could cache the old row again). */
export function forgetEntitlement(cache: SharedCache, orgId: string): Promise<void> {
  return cache.delete(entitlementKey(orgId));
}

/** The plan an entitlement gives. By price first (config may rename plans); a price no longer configured keeps the plan it was bought as. */
export function planOf(plans: BillingPlans, ent: Entitlement | null): Plan {
  if (!ent) return plans.free;
  return planByPrice(plans, ent.priceId) ?? (ent.planId ? planById(plans, ent.planId) : undefined) ?? plans.free;
}

export async function currentPlan(db: Db, ctx: PlanContext, orgId: string): Promise<Plan> {
  return planOf(ctx.config.plans, await entitlement(db, orgId, ctx.cache));
}

const USAGE_SQL: Record<LimitName, string> = {
  projects: `SELECT count(*)::int AS n FROM projects WHERE org_id = $1`,
  // Pending invitations count: each may become a member.
  members: `SELECT (SELECT count(*) FROM memberships WHERE org_id = $1)::int
                 + (SELECT count(*) FROM invitations WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now())::int AS n`,
};

export async function usage(db: Db, orgId: string, limit: LimitName): Promise<number> {
  const { rows } = await db.query<{ n: number }>(USAGE_SQL[limit], [orgId]);
  return rows[0]!.n;
}

/**
 * Throws PlanLimitError (402) when the org may not add `adding` more of `limit`. Call it inside
 * the transaction that adds them: it takes a transaction-scoped lock per org and limit, so two
 * concurrent requests cannot both pass the check and overshoot.
 */
export async function assertWithinLimit(tx: Db, ctx: PlanContext, orgId: string, limit: LimitName, adding = 1): Promise<void> {
  const plan = await currentPlan(tx, ctx, orgId);
  const max = plan.limits[limit];
  if (max === undefined || max === null) return;
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('plan-limit:' || $1 || ':' || $2, 0))`, [orgId, limit]);
  const current = await usage(tx, orgId, limit);
  if (current + adding > max) {
    throw new PlanLimitError(
      `the ${plan.name} plan allows ${max} ${limit} per organization and this one has ${current}; an owner can upgrade (POST /orgs/${orgId}/billing/checkout)`,
      { limit, plan: plan.id, max, current },
    );
  }
}
