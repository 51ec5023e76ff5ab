// /billing/webhook (Stripe -> us) and /orgs/:orgId/billing... (an org's plan, invoices, and the
// links to Stripe Checkout and the Customer Portal, for its owners).
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { Body, OrgParams } from "../api/schemas.js";
import { currentUser, makeAuthenticate } from "../auth/authenticate.js";
import { BadRequestError, ConflictError, NotFoundError, ServiceUnavailableError } from "../core/errors.js";
import { withTransaction } from "../db/pool.js";
import { recordEvent } from "../events/events.repository.js";
import { makeRequireRole, tenantOf } from "../tenants/guard.js";
import { findOrganization } from "../tenants/organizations.repository.js";
import { findCustomerId, findEntitledSubscription, insertStripeEvent, linkCustomer, listInvoices } from "./billing.repository.js";
import { entitlement, planOf, usage } from "./limits.js";
import { LIMITS } from "./plans.js";
import { lazyStripeClient, type Stripe } from "./stripe.js";
import { enqueueStripeEvent } from "./tasks.js";

const CheckoutBody = Body({ planId: Type.String({ minLength: 1, maxLength: 40 }) });
const InvoicesQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }), before: Type.Optional(Type.String({ pattern: "^in_[A-Za-z0-9]+$" })) },
  { additionalProperties: false },
);

/** Stripe's events are small; the largest (invoices with many lines) stay well under this. */
const WEBHOOK_BODY_LIMIT = 512 * 1024;

export async function billingRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const { stripe: stripeConfig, plans } = ctx.config;
  const stripe = stripeConfig ? lazyStripeClient(stripeConfig) : undefined;

  await app.register(webhookRoute, { ctx, stripe });

  await app.register(async (scope) => {
    scope.addHook("preHandler", makeAuthenticate(ctx));
    const requireRole = makeRequireRole(ctx);

    const needStripe = (): Promise<Stripe> => {
      if (!stripe) throw new ServiceUnavailableError("billing is not configured on this server (STRIPE_SECRET_KEY is not set)");
      return stripe();
    };

    // Any member may see the plan and usage: it explains a 402.
    scope.get<{ Params: OrgParams }>("/orgs/:orgId/billing", { schema: { params: OrgParams }, preHandler: requireRole("member") }, async (request) => {
      const { orgId } = tenantOf(request);
      const sub = await entitlement(ctx.pool, orgId, ctx.cache);
      const plan = planOf(plans, sub);
      const used = Object.fromEntries(await Promise.all(LIMITS.map(async (l) => [l, await usage(ctx.pool, orgId, l)] as const)));
      return {
        plan: { id: plan.id, name: plan.name, limits: Object.fromEntries(LIMITS.map((l) => [l, plan.limits[l] ?? null])) },
        usage: used,
        subscription: sub ? { status: sub.status, cancelAtPeriodEnd: sub.cancelAtPeriodEnd, currentPeriodEnd: sub.currentPeriodEnd } : null,
        availablePlans: plans.paid.map((p) => ({ id: p.id, name: p.name })),
      };
    });

    scope.get<{ Params: OrgParams; Querystring: Static<typeof InvoicesQuery> }>(
      "/orgs/:orgId/billing/invoices",
      { schema: { params: OrgParams, querystring: InvoicesQuery }, preHandler: requireRole("owner") },
      async (request) => ({ invoices: await listInvoices(ctx.pool, tenantOf(request).orgId, request.query.limit, request.query.before) }),
    );

    // A Checkout session for a paid plan; the subscription itself arrives by webhook.
    scope.post<{ Params: OrgParams; Body: Static<typeof CheckoutBody> }>(
      "/orgs/:orgId/billing/checkout",
      { schema: { params: OrgParams, body: CheckoutBody }, preHandler: requireRole("owner") },
      async (request) => {
        const { orgId } = tenantOf(request);
        const plan = plans.paid.find((p) => p.id === request.body.planId);
        if (!plan) {
          const ids = plans.paid.map((p) => p.id);
          throw new BadRequestError(`body/planId must be one of the paid plans (${ids.length ? ids.join(", ") : "none configured"}); got ${JSON.stringify(request.body.planId)}`);
        }
        const client = await needStripe();
        if (await findEntitledSubscription(ctx.pool, orgId)) throw new ConflictError("this organization already has a subscription: change plan in the billing portal (POST .../billing/portal)");
        const customerId = await customerOf(ctx, client, orgId, currentUser(request).email);
        const session = await client.checkout.sessions.create({
          mode: "subscription",
          customer: customerId,
          client_reference_id: orgId,
          line_items: [{ price: plan.stripePriceId!, quantity: 1 }],
          subscription_data: { metadata: { orgId } },
          success_url: `${ctx.config.appUrl}/billing?checkout=success`,
          cancel_url: `${ctx.config.appUrl}/billing?checkout=canceled`,
        });
        await recordEvent(ctx.pool, { kind: "billing.checkout_started", orgId, data: { planId: plan.id, checkoutSessionId: session.id } }, request);
        return { url: session.url };
      },
    );

    scope.post<{ Params: OrgParams }>(
      "/orgs/:orgId/billing/portal",
      { schema: { params: OrgParams }, preHandler: requireRole("owner") },
      async (request) => {
        const { orgId } = tenantOf(request);
        const client = await needStripe();
        const customerId = await findCustomerId(ctx.pool, orgId);
        if (!customerId) throw new ConflictError("this organization has no billing account yet: subscribe first (POST .../billing/checkout)");
        const session = await client.billingPortal.sessions.create({ customer: customerId, return_url: `${ctx.config.appUrl}/billing` });
        return { url: session.url };
      },
    );
  });
}

/**
 * The org's Stripe customer, created on first checkout. The idempotency key makes two
 * concurrent first checkouts get the same customer from Stripe (for 24 hours), and the link
 * keeps the first one written.
 */
async function customerOf(ctx: AppContext, stripe: Stripe, orgId: string, email: string): Promise<string> {
  const existing = await findCustomerId(ctx.pool, orgId);
  if (existing) return existing;
  const org = await findOrganization(ctx.pool, orgId);
  if (!org) throw new NotFoundError("organization");
  const customer = await stripe.customers.create({ name: org.name, email, metadata: { orgId } }, { idempotencyKey: `customer-of-org:${orgId}` });
  return withTransaction(ctx.pool, (tx) => linkCustomer(tx, orgId, customer.id));
}

/**
 * POST /billing/webhook. Stripe signs the exact bytes it sends, so this route (and only this
 * one: its own plugin scope) takes the body as a Buffer instead of parsed JSON. A verified event
 * is recorded once and handed to the worker; the answer is 200 within one short transaction,
 * well inside Stripe's timeout, and a redelivery is answered 200 without doing anything again.
 */
async function webhookRoute(app: FastifyInstance, opts: { ctx: AppContext; stripe: (() => Promise<Stripe>) | undefined }): Promise<void> {
  const { ctx, stripe } = opts;
  const secret = ctx.config.stripe?.webhookSecret;
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) => done(null, body));

  app.post("/billing/webhook", async (request) => {
    if (!stripe || !secret) throw new ServiceUnavailableError("Stripe webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET is not set)");
    const signature = request.headers["stripe-signature"];
    if (typeof signature !== "string" || signature === "") throw new BadRequestError("headers/stripe-signature is required: Stripe signs every webhook");
    if (!Buffer.isBuffer(request.body)) throw new BadRequestError("body must be the JSON event exactly as Stripe sent it (content-type: application/json)");
    const client = await stripe();
    let event: Stripe.Event;
    try {
      event = client.webhooks.constructEvent(request.body, signature, secret);
    } catch (err) {
      throw new BadRequestError(`headers/stripe-signature does not verify: ${(err as Error).message}`);
    }
    const recorded = await withTransaction(ctx.pool, async (tx) => {
      const fresh = await insertStripeEvent(tx, event, (request.body as Buffer).toString("utf8"));
      if (fresh) await enqueueStripeEvent(tx, event.id, request.id);
      return fresh;
    });
    request.log.info({ stripeEvent: event.id, type: event.type, duplicate: !recorded }, "stripe webhook");
    return { received: true, duplicate: !recorded };
  });
}
