// Stripe for tests, with no call to Stripe's servers: a local HTTP server that answers the few
// API calls the app makes (the client is pointed at it with STRIPE_API_BASE) and records them,
// and webhook events signed with the library's own test helper.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

export const WEBHOOK_SECRET = "whsec_testsecret0123456789abcdef";
export const SECRET_KEY = "sk_test_localstub0123456789";

export interface StubRequest {
  method: string;
  path: string;
  /** Form fields as Stripe's client encodes them: `line_items[0][price]`, `metadata[orgId]`... */
  form: URLSearchParams;
  idempotencyKey: string | undefined;
}

export interface StripeStub {
  base: string;
  requests: StubRequest[];
  /** What GET /v1/subscriptions/:id answers. */
  subscriptions: Map<string, object>;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startStripeStub(): Promise<StripeStub> {
  const requests: StubRequest[] = [];
  const subscriptions = new Map<string, object>();
  let n = 0;
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0]!;
    const form = new URLSearchParams(await body(req));
    const key = req.headers["idempotency-key"];
    requests.push({ method: req.method!, path, form, idempotencyKey: typeof key === "string" ? key : undefined });
    const send = (status: number, obj: object) => {
      res.writeHead(status, { "content-type": "application/json", "request-id": `req_stub${++n}` });
      res.end(JSON.stringify(obj));
    };
    if (req.headers.authorization !== `Bearer ${SECRET_KEY}`) return send(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
    if (req.method === "POST" && path === "/v1/customers") return send(200, { id: `cus_stub${++n}`, object: "customer", email: form.get("email"), metadata: { orgId: form.get("metadata[orgId]") } });
    if (req.method === "POST" && path === "/v1/checkout/sessions") {
      const id = `cs_test_stub${++n}`;
      return send(200, { id, object: "checkout.session", url: `https://checkout.stripe.test/c/pay/${id}`, customer: form.get("customer"), client_reference_id: form.get("client_reference_id") });
    }
    if (req.method === "POST" && path === "/v1/billing_portal/sessions") {
      return send(200, { id: `bps_stub${++n}`, object: "billing_portal.session", url: `https://billing.stripe.test/p/session/${n}`, customer: form.get("customer") });
    }
    const sub = /^\/v1\/subscriptions\/([A-Za-z0-9_]+)$/.exec(path);
    if (req.method === "GET" && sub && subscriptions.has(sub[1]!)) return send(200, subscriptions.get(sub[1]!)!);
    return send(404, { error: { type: "invalid_request_error", message: `stub: no such route ${req.method} ${path}` } });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, requests, subscriptions, close: () => new Promise((r) => server.close(() => r())) };
}

const signer = new Stripe(SECRET_KEY);

/** The Stripe-Signature header for `payload`, as Stripe computes it (default: now, our secret). */
export function sign(payload: string, opts: { timestamp?: number; secret?: string } = {}): string {
  return signer.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? WEBHOOK_SECRET, timestamp: opts.timestamp });
}

let seq = 0;
/** A Stripe event envelope around `object`, with its `created` in Unix seconds. */
export function stripeEvent(type: string, object: object, created: number): { id: string; payload: string } {
  const id = `evt_test_${Date.now().toString(36)}${(++seq).toString(36)}`;
  const payload = JSON.stringify({ id, object: "event", api_version: "2026-10-28", created, type, livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, data: { object } });
  return { id, payload };
}

/** A subscription object as Stripe's events carry it (the fields the app reads, and a few more). */
export function subscriptionObject(o: { id: string; customer: string; status: string; priceId: string; orgId?: string; periodEnd?: number; created?: number }): object {
  return {
    id: o.id,
    object: "subscription",
    customer: o.customer,
    status: o.status,
    cancel_at_period_end: false,
    created: o.created ?? 1_700_000_000,
    metadata: o.orgId ? { orgId: o.orgId } : {},
    items: { object: "list", data: [{ id: `si_${o.id}`, object: "subscription_item", price: { id: o.priceId, object: "price" }, current_period_end: o.periodEnd ?? 1_900_000_000 }] },
  };
}

export function stripeEnv(stub: StripeStub | undefined, plans: string): Record<string, string> {
  return { STRIPE_SECRET_KEY: SECRET_KEY, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, BILLING_PLANS: plans, ...(stub ? { STRIPE_API_BASE: stub.base } : {}) };
}
