import assert from "node:assert/strict";
import type pg from "pg";
import { captureLogger, databaseUrl, register, startTestApp, type Registered, type TestApp } from "./helpers/app.js";
import { sign, startStripeStub, stripeEnv, stripeEvent, subscriptionObject, WEBHOOK_SECRET, type StripeStub } from "./helpers/stripe.js";
import { waitFor } from "./helpers/wait.js";
import { createPool } from "../src/db/pool.js";
import { startWorker, type RunningWorker } from "../src/jobs/runner.js";
import { billingTaskList } from "../src/billing/tasks.js";
import { createStripeClient } from "../src/billing/stripe.js";

const PLANS = JSON.stringify([
  { id: "free", name: "Free", limits: { projects: 2, members: 2 } },
  { id: "pro", name: "Pro", stripePriceId: "price_pro", limits: { projects: null, members: 10 } },
]);
const now = () => Math.floor(Date.now() / 1000);

describe("billing: Stripe webhook", () => {
  let t: TestApp;
  let stub: StripeStub;
  let workerPool: pg.Pool;
  let worker: RunningWorker;

  const post = (payload: string, headers: Record<string, string>) =>
    t.app.inject({ method: "POST", url: "/billing/webhook", headers: { "content-type": "application/json; charset=utf-8", ...headers }, payload });
  const deliver = (e: { payload: string }) => post(e.payload, { "stripe-signature": sign(e.payload) });
  const counts = async (eventId: string) => {
    const { rows } = await t.pool.query(
      `SELECT (SELECT count(*) FROM stripe_events WHERE id = $1)::int AS events,
              (SELECT count(*) FROM graphile_worker.jobs WHERE key = 'stripe:' || $1)::int AS jobs`,
      [eventId],
    );
    return rows[0] as { events: number; jobs: number };
  };
  const processed = (eventId: string) =>
    waitFor(`event ${eventId} processed`, async () => (await t.pool.query("SELECT 1 FROM stripe_events WHERE id = $1 AND processed_at IS NOT NULL", [eventId])).rowCount === 1);
  const subscriptionRow = async (id: string) =>
    (await t.pool.query(`SELECT status, price_id AS "priceId", plan_id AS "planId", org_id AS "orgId" FROM subscriptions WHERE stripe_subscription_id = $1`, [id])).rows[0];

  before(async () => {
    stub = await startStripeStub();
    t = await startTestApp(stripeEnv(stub, PLANS));
  });
  after(async () => {
    await worker?.stop(5000);
    await workerPool?.end();
    await t.close();
    await stub.close();
  });

  async function startBillingWorker() {
    const { log } = captureLogger("warn");
    workerPool = createPool(databaseUrl(), log, { max: 4 });
    worker = await startWorker({
      pool: workerPool,
      taskList: billingTaskList({ pool: workerPool, plans: t.config.plans, stripe: await createStripeClient(t.config.stripe!), log }),
      log,
      reporter: { capture: () => {}, flush: async () => {} },
      concurrency: 2,
      pollIntervalMs: 200,
      shutdownTimeoutMs: 5000,
    });
  }

  describe("signature (nothing recorded unless it verifies)", () => {
    const e = stripeEvent("customer.subscription.updated", subscriptionObject({ id: "sub_sig", customer: "cus_sig", status: "active", priceId: "price_pro" }), now());

    it("a missing Stripe-Signature header: 400 naming it", async () => {
      const res = await post(e.payload, {});
      assert.equal(res.statusCode, 400);
      assert.match(res.json().message, /headers\/stripe-signature is required/);
      assert.deepEqual(await counts(e.id), { events: 0, jobs: 0 });
    });

    it("a signature made with another secret: 400", async () => {
      const res = await post(e.payload, { "stripe-signature": sign(e.payload, { secret: "whsec_someoneelse000" }) });
      assert.equal(res.statusCode, 400);
      assert.match(res.json().message, /stripe-signature does not verify/);
      assert.deepEqual(await counts(e.id), { events: 0, jobs: 0 });
    });

    it("a body changed after signing (re-serialized JSON): 400", async () => {
      const reformatted = JSON.stringify(JSON.parse(e.payload), null, 2);
      const res = await post(reformatted, { "stripe-signature": sign(e.payload) });
      assert.equal(res.statusCode, 400);
      assert.deepEqual(await counts(e.id), { events: 0, jobs: 0 });
    });

    it("a stale timestamp (10 minutes old, tolerance is 5): 400", async () => {
      const res = await post(e.payload, { "stripe-signature": sign(e.payload, { timestamp: now() - 600 }) });
      assert.equal(res.statusCode, 400);
      assert.match(res.json().message, /tolerance/i);
      assert.deepEqual(await counts(e.id), { events: 0, jobs: 0 });
    });

    it("a valid one: 200, recorded once and queued for the worker on the stripe-events queue", async () => {
      const res = await deliver(e);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { received: true, duplicate: false });
      assert.deepEqual(await counts(e.id), { events: 1, jobs: 1 });
      const job = await t.pool.query("SELECT task_identifier AS task, queue_name AS queue, priority FROM graphile_worker.jobs WHERE key = $1", [`stripe:${e.id}`]);
      assert.deepEqual(job.rows[0], { task: "process_stripe_event", queue: "stripe-events", priority: -10 });
    });

    it("a replayed event: 200, and nothing changes", async () => {
      const before = (await t.pool.query("SELECT received_at, payload FROM stripe_events WHERE id = $1", [e.id])).rows[0];
      const res = await deliver(e);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { received: true, duplicate: true });
      assert.deepEqual(await counts(e.id), { events: 1, jobs: 1 });
      assert.deepEqual((await t.pool.query("SELECT received_at, payload FROM stripe_events WHERE id = $1", [e.id])).rows[0], before);
    });

    it("JSON parsing of every other route is untouched by the webhook's raw-body parser", async () => {
      const res = await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: "nobody@example.test", password: "whatever pw" } });
      assert.equal(res.statusCode, 401);
    });
  });

  describe("processing, plans and limits", () => {
    let owner: Registered;
    before(async () => {
      // Events of the signature tests are queued too; the worker applies them (to no known org).
      await startBillingWorker();
      owner = await register(t, "payer");
    });

    const newProject = (name: string) => t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/projects`, headers: owner.auth, payload: { name } });

    it("the free plan's project limit answers 402 naming the limit and the plan", async () => {
      assert.equal((await newProject("one")).statusCode, 201);
      assert.equal((await newProject("two")).statusCode, 201);
      const res = await newProject("three");
      assert.equal(res.statusCode, 402, res.body);
      const body = res.json();
      assert.deepEqual({ ...body, message: undefined }, { error: "plan_limit", message: undefined, limit: "projects", plan: "free", max: 2, current: 2 });
      assert.match(body.message, /the Free plan allows 2 projects/);
      const n = await t.pool.query("SELECT count(*)::int AS n FROM projects WHERE org_id = $1", [owner.orgId]);
      assert.equal(n.rows[0].n, 2);
    });

    it("checkout: creates the Stripe customer once and a session for the plan's price", async () => {
      const bad = await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/billing/checkout`, headers: owner.auth, payload: { planId: "gold" } });
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().message, /body\/planId must be one of the paid plans \(pro\); got "gold"/);
      const missing = await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/billing/checkout`, headers: owner.auth, payload: {} });
      assert.equal(missing.statusCode, 400);
      assert.match(missing.json().message, /body\/planId is required/);

      const res = await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/billing/checkout`, headers: { ...owner.auth, "x-request-id": "req-checkout-1" }, payload: { planId: "pro" } });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(res.json().url, /^https:\/\/checkout\.stripe\.test\/c\/pay\/cs_test_/);
      const calls = stub.requests.filter((r) => r.method === "POST");
      const customer = calls.find((r) => r.path === "/v1/customers")!;
      assert.equal(customer.form.get("metadata[orgId]"), owner.orgId);
      assert.equal(customer.form.get("email"), owner.email);
      assert.equal(customer.idempotencyKey, `customer-of-org:${owner.orgId}`);
      const session = calls.find((r) => r.path === "/v1/checkout/sessions")!;
      assert.equal(session.form.get("mode"), "subscription");
      assert.equal(session.form.get("line_items[0][price]"), "price_pro");
      assert.equal(session.form.get("client_reference_id"), owner.orgId);
      assert.equal(session.form.get("subscription_data[metadata][orgId]"), owner.orgId);
      assert.equal(session.form.get("success_url"), "http://app.example.test/billing?checkout=success");
      const linked = await t.pool.query("SELECT stripe_customer_id AS id FROM billing_customers WHERE org_id = $1", [owner.orgId]);
      assert.equal(linked.rows[0].id, session.form.get("customer"));
      // A second checkout reuses the customer.
      await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/billing/checkout`, headers: owner.auth, payload: { planId: "pro" } });
      assert.equal(stub.requests.filter((r) => r.path === "/v1/customers").length, 1);
      const ev = await t.pool.query("SELECT request_id AS \"requestId\", actor_user_id AS actor, data FROM audit_events WHERE org_id = $1 AND kind = 'billing.checkout_started' ORDER BY id LIMIT 1", [owner.orgId]);
      assert.equal(ev.rows[0].requestId, "req-checkout-1");
      assert.equal(ev.rows[0].actor, owner.userId);
      assert.equal(ev.rows[0].data.planId, "pro");
    });

    it("a subscription event moves the org to the paid plan; the limit follows", async () => {
      const customer = (await t.pool.query("SELECT stripe_customer_id AS id FROM billing_customers WHERE org_id = $1", [owner.orgId])).rows[0].id;
      const created = stripeEvent("customer.subscription.created", subscriptionObject({ id: "sub_pay", customer, status: "active", priceId: "price_pro", orgId: owner.orgId }), now() - 100);
      assert.equal((await deliver(created)).statusCode, 200);
      await processed(created.id);
      assert.deepEqual(await subscriptionRow("sub_pay"), { status: "active", priceId: "price_pro", planId: "pro", orgId: owner.orgId });
      assert.equal((await newProject("three")).statusCode, 201);
      const billing = (await t.app.inject({ method: "GET", url: `/orgs/${owner.orgId}/billing`, headers: owner.auth })).json();
      assert.equal(billing.plan.id, "pro");
      assert.deepEqual(billing.usage, { projects: 3, members: 1 });
      assert.equal(billing.subscription.status, "active");
      const audit = await t.pool.query("SELECT data FROM audit_events WHERE org_id = $1 AND kind = 'billing.subscription_changed'", [owner.orgId]);
      assert.deepEqual(audit.rows.map((r) => [r.data.status, r.data.previousStatus, r.data.stripeEventId]), [["active", null, created.id]]);
    });

    it("updated then canceled, delivered out of order, ends canceled (and back on the free plan)", async () => {
      const customer = (await t.pool.query("SELECT stripe_customer_id AS id FROM billing_customers WHERE org_id = $1", [owner.orgId])).rows[0].id;
      const updated = stripeEvent("customer.subscription.updated", subscriptionObject({ id: "sub_pay", customer, status: "past_due", priceId: "price_pro", orgId: owner.orgId }), now() - 50);
      const canceled = stripeEvent("customer.subscription.deleted", subscriptionObject({ id: "sub_pay", customer, status: "canceled", priceId: "price_pro", orgId: owner.orgId }), now() - 10);
      assert.equal((await deliver(canceled)).statusCode, 200);
      assert.equal((await deliver(updated)).statusCode, 200);
      await processed(canceled.id);
      await processed(updated.id);
      assert.equal((await subscriptionRow("sub_pay")).status, "canceled");
      // Replaying the older event once more changes nothing either.
      await t.pool.query("UPDATE stripe_events SET processed_at = NULL WHERE id = $1", [updated.id]);
      await t.pool.query("SELECT graphile_worker.add_job('process_stripe_event', json_build_object('eventId', $1::text), queue_name => 'stripe-events')", [updated.id]);
      await processed(updated.id);
      assert.equal((await subscriptionRow("sub_pay")).status, "canceled");
      const res = await newProject("four");
      assert.equal(res.statusCode, 402);
      assert.equal(res.json().current, 3);
    });

    it("two events of the same second: the worker asks Stripe for the current subscription", async () => {
      const org = await register(t, "tie");
      const at = now() - 30;
      const first = stripeEvent("customer.subscription.created", subscriptionObject({ id: "sub_tie", customer: "cus_tie", status: "incomplete", priceId: "price_pro", orgId: org.orgId }), at);
      const second = stripeEvent("customer.subscription.updated", subscriptionObject({ id: "sub_tie", customer: "cus_tie", status: "incomplete", priceId: "price_pro", orgId: org.orgId }), at);
      stub.subscriptions.set("sub_tie", subscriptionObject({ id: "sub_tie", customer: "cus_tie", status: "active", priceId: "price_pro", orgId: org.orgId }));
      await deliver(first);
      await processed(first.id);
      assert.equal(stub.requests.filter((r) => r.path === "/v1/subscriptions/sub_tie").length, 0, "no tie yet, no API call");
      await deliver(second);
      await processed(second.id);
      assert.equal(stub.requests.filter((r) => r.method === "GET" && r.path === "/v1/subscriptions/sub_tie").length, 1);
      assert.equal((await subscriptionRow("sub_tie")).status, "active");
    });

    it("invoices: a late payment_failed does not undo paid; owners list them", async () => {
      const customer = (await t.pool.query("SELECT stripe_customer_id AS id FROM billing_customers WHERE org_id = $1", [owner.orgId])).rows[0].id;
      const invoice = (status: string) => ({
        id: "in_test1", object: "invoice", customer, status, currency: "eur", amount_due: 1900, amount_paid: status === "paid" ? 1900 : 0,
        hosted_invoice_url: "https://invoice.stripe.test/i/1", period_start: now() - 86400 * 30, period_end: now(), created: now() - 3600,
        parent: { type: "subscription_details", subscription_details: { subscription: "sub_pay", metadata: { orgId: owner.orgId } } },
      });
      const paid = stripeEvent("invoice.paid", invoice("paid"), now() - 5);
      const failed = stripeEvent("invoice.payment_failed", invoice("open"), now() - 20);
      await deliver(paid);
      await deliver(failed);
      await processed(paid.id);
      await processed(failed.id);
      const res = await t.app.inject({ method: "GET", url: `/orgs/${owner.orgId}/billing/invoices`, headers: owner.auth });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json().invoices.map((i: { stripeInvoiceId: string; status: string; amountPaid: number }) => [i.stripeInvoiceId, i.status, i.amountPaid]), [["in_test1", "paid", 1900]]);
      const bad = await t.app.inject({ method: "GET", url: `/orgs/${owner.orgId}/billing/invoices?limit=0`, headers: owner.auth });
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().message, /querystring\/limit must be >= 1/);
    });

    it("portal: 409 before the org has a Stripe customer, then a link for its customer", async () => {
      const fresh = await register(t, "noportal");
      const none = await t.app.inject({ method: "POST", url: `/orgs/${fresh.orgId}/billing/portal`, headers: fresh.auth });
      assert.equal(none.statusCode, 409);
      const res = await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/billing/portal`, headers: owner.auth });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(res.json().url, /^https:\/\/billing\.stripe\.test\/p\/session\//);
      const call = stub.requests.filter((r) => r.path === "/v1/billing_portal/sessions").pop()!;
      assert.equal(call.form.get("return_url"), "http://app.example.test/billing");
    });

    it("billing routes are for owners (members may only read the plan)", async () => {
      const member = await register(t, "billmember");
      await t.pool.query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'admin')", [owner.orgId, member.userId]);
      assert.equal((await t.app.inject({ method: "GET", url: `/orgs/${owner.orgId}/billing`, headers: member.auth })).statusCode, 200);
      for (const [method, url] of [["POST", "billing/checkout"], ["POST", "billing/portal"], ["GET", "billing/invoices"]] as const) {
        const res = await t.app.inject({ method, url: `/orgs/${owner.orgId}/${url}`, headers: member.auth, ...(method === "POST" ? { payload: { planId: "pro" } } : {}) });
        assert.equal(res.statusCode, 403, `${method} ${url}: ${res.body}`);
      }
    });

    it("the members limit counts pending invitations: 402 on the invitation beyond it", async () => {
      const small = await register(t, "small");
      const invite = (email: string) => t.app.inject({ method: "POST", url: `/orgs/${small.orgId}/invitations`, headers: small.auth, payload: { email, role: "member" } });
      assert.equal((await invite("first@example.test")).statusCode, 201);
      const res = await invite("second@example.test");
      assert.equal(res.statusCode, 402);
      assert.equal(res.json().limit, "members");
      assert.equal(res.json().plan, "free");
    });
  });
});

describe("billing: not configured", () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => t.close());

  it("the webhook answers 503 (Stripe retries) and records nothing; checkout says billing is off", async () => {
    const e = stripeEvent("invoice.paid", { id: "in_x", object: "invoice" }, now());
    const res = await t.app.inject({ method: "POST", url: "/billing/webhook", headers: { "content-type": "application/json", "stripe-signature": sign(e.payload, { secret: WEBHOOK_SECRET }) }, payload: e.payload });
    assert.equal(res.statusCode, 503);
    assert.match(res.json().message, /STRIPE_WEBHOOK_SECRET/);
    assert.equal((await t.pool.query("SELECT count(*)::int AS n FROM stripe_events WHERE id = $1", [e.id])).rows[0].n, 0);
    const u = await register(t, "nobilling");
    const checkout = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/billing/checkout`, headers: u.auth, payload: { planId: "pro" } });
    assert.equal(checkout.statusCode, 400);
    assert.match(checkout.json().message, /none configured/);
    // Without BILLING_PLANS nothing is limited.
    for (let i = 0; i < 4; i++) assert.equal((await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/projects`, headers: u.auth, payload: { name: `p${i}` } })).statusCode, 201);
  });
});
