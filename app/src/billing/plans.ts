// Plans: one free plan and any number of paid plans, each a Stripe price. They come from the
// BILLING_PLANS variable (JSON) so that prices live in Stripe and the app only maps them to limits.
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import { Errors } from "@sinclair/typebox/errors";

/** What a plan limits. null or absent = unlimited. */
export const LIMITS = ["projects", "members"] as const;
export type LimitName = (typeof LIMITS)[number];

const Limit = Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000 }), Type.Null()]);
const PlanSchema = Type.Object(
  {
    id: Type.String({ pattern: "^[a-z][a-z0-9_-]{0,39}$" }),
    name: Type.String({ minLength: 1, maxLength: 100 }),
    stripePriceId: Type.Optional(Type.String({ pattern: "^price_[A-Za-z0-9]+$" })),
    limits: Type.Object({ projects: Type.Optional(Limit), members: Type.Optional(Limit) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
const PlansSchema = Type.Array(PlanSchema, { minItems: 1, maxItems: 50 });

export type Plan = Static<typeof PlanSchema>;
export interface BillingPlans {
  free: Plan;
  paid: Plan[];
}

/** Without BILLING_PLANS: one free plan, nothing limited, no paid plans (billing off). */
const UNLIMITED_FREE: Plan = { id: "free", name: "Free", limits: {} };

export const PLANS_EXAMPLE = `[{"id":"free","name":"Free","limits":{"projects":3,"members":3}},{"id":"pro","name":"Pro","stripePriceId":"price_...","limits":{"projects":null,"members":50}}]`;

/** Parses BILLING_PLANS; throws an Error whose message completes "env/BILLING_PLANS must ...". */
export function parseBillingPlans(raw: string | undefined): BillingPlans {
  if (raw === undefined) return { free: UNLIMITED_FREE, paid: [] };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new Error(`be a JSON list of plans such as ${PLANS_EXAMPLE} (${(err as Error).message})`);
  }
  const error = Errors(PlansSchema, json).First();
  if (error) {
    const at = error.path === "" ? "the value" : error.path;
    throw new Error(`be a JSON list of plans such as ${PLANS_EXAMPLE}; at ${at}: ${error.message}`);
  }
  const plans = json as Plan[];
  const free = plans.filter((p) => p.stripePriceId === undefined);
  if (free.length !== 1) throw new Error(`have exactly one plan without stripePriceId (the free plan); got ${free.length}`);
  for (const key of ["id", "stripePriceId"] as const) {
    const seen = new Set<string>();
    for (const p of plans) {
      const v = p[key];
      if (v === undefined) continue;
      if (seen.has(v)) throw new Error(`name each ${key} once; ${JSON.stringify(v)} is repeated`);
      seen.add(v);
    }
  }
  return { free: free[0]!, paid: plans.filter((p) => p.stripePriceId !== undefined) };
}

export function planById(plans: BillingPlans, id: string): Plan | undefined {
  return [plans.free, ...plans.paid].find((p) => p.id === id);
}

export function planByPrice(plans: BillingPlans, priceId: string | null | undefined): Plan | undefined {
  return priceId ? plans.paid.find((p) => p.stripePriceId === priceId) : undefined;
}
