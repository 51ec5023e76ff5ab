// Plan limits: which plan an organization is on (its entitled subscription's price, else the free
// plan) and the check that runs before anything a plan limits is created.
import type { Db } from "../db/pool.js";
import { PlanLimitError } from "../core/errors.js";
import { findEntitledSubscription } from "./billing.repository.js";
import { planById, planByPrice, type BillingPlans, type LimitName, type Plan } from "./plans.js";

export async function currentPlan(db: Db, plans: BillingPlans, orgId: string): Promise<Plan> {
  const sub = await findEntitledSubscription(db, orgId);
  if (!sub) return plans.free;
  // By price first (config may rename plans); a price no longer configured keeps the plan it was bought as.
  return planByPrice(plans, sub.priceId) ?? (sub.planId ? planById(plans, sub.planId) : undefined) ?? plans.free;
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
export async function assertWithinLimit(tx: Db, plans: BillingPlans, orgId: string, limit: LimitName, adding = 1): Promise<void> {
  const plan = await currentPlan(tx, plans, orgId);
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
