// VALKEY_URL: what several app servers share goes to a real valkey-server (TLS, password), and
// the app keeps answering while it is away.
import assert from "node:assert/strict";
import { addressKey, emailKey, VALKEY_LIMIT_PREFIX } from "../src/auth/rate-limits.js";
import { processStripeEvent } from "../src/billing/process.js";
import { ENTITLEMENT_TTL_SECONDS, entitlementKey } from "../src/billing/limits.js";
import { CACHE_PREFIX, sharedCache } from "../src/core/shared-cache.js";
import { createValkey, VALKEY_COMMAND_TIMEOUT_MS } from "../src/core/valkey.js";
import { captureLogger, from, register, startTestApp, testEnv, uniqueAddress, uniqueEmail, type TestApp } from "./helpers/app.js";
import { freePort, startEntrypoint } from "./helpers/proc.js";
import { sign, stripeEnv, stripeEvent, subscriptionObject } from "./helpers/stripe.js";
import { startValkeyServer, type ValkeyServer } from "./helpers/valkey.js";
import { waitFor } from "./helpers/wait.js";

const PASSWORD = "correct horse battery";
const PLANS = JSON.stringify([
  { id: "free", name: "Free", limits: { projects: 2, members: 2 } },
  { id: "pro", name: "Pro", stripePriceId: "price_pro", limits: { projects: null, members: 10 } },
]);

const ready = (t: TestApp) => waitFor("the app's Valkey client ready", () => t.valkey!.client.status === "ready", 10000);
const warnings = (t: TestApp) => t.logs.filter((l) => l.message === "valkey unavailable: abuse limits count per process, the shared cache is off, until it is back");

describe("Valkey (VALKEY_URL)", function () {
  this.timeout(120000); // scrypt hashes on a busy 2-core machine
  let server: ValkeyServer;
  let a: TestApp;
  let b: TestApp;
  let plain: TestApp;
  before(async () => {
    server = await startValkeyServer();
    // Two app instances, each with its own pool and its own Valkey client: two app servers.
    // `plain` has no VALKEY_URL: the one-server stages.
    [a, b, plain] = await Promise.all([
      startTestApp({ VALKEY_URL: server.url, ...stripeEnv(undefined, PLANS) }),
      startTestApp({ VALKEY_URL: server.url, ...stripeEnv(undefined, PLANS) }),
      startTestApp(stripeEnv(undefined, PLANS)),
    ]);
    await Promise.all([ready(a), ready(b)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close(), plain?.close()]);
    await server?.close();
  });

  it("abuse limits: two instances count one account's failed logins in one Valkey counter (10, then 429), not in PostgreSQL", async () => {
    const u = await register(a, "shared");
    for (let i = 0; i < 10; i++) {
      const res = await (i % 2 ? b : a).app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: "wrong password" } });
      assert.equal(res.statusCode, 401, `attempt ${i + 1}: ${res.body}`);
    }
    // Each instance saw 5: a counter per process would not trip yet.
    const blocked = await a.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: PASSWORD } });
    assert.equal(blocked.statusCode, 429, blocked.body);
    assert.match(blocked.json().message, /too many failed logins for this account/);

    const key = `${VALKEY_LIMIT_PREFIX}login_failures_account:${emailKey(u.email)}`;
    const inspect = server.inspect();
    assert.equal(await inspect.get(key), "11", "ten failures and the blocked attempt");
    const ttl = await inspect.pttl(key);
    assert.ok(ttl > 0 && ttl <= 15 * 60 * 1000, `expiry ${ttl} ms`);
    const { rowCount } = await a.pool.query("SELECT 1 FROM rate_limits WHERE key = $1", [`login_failures_account:${emailKey(u.email)}`]);
    assert.equal(rowCount, 0, "the counter is not in PostgreSQL");
    assert.deepEqual(warnings(a), [], "no outage was logged");
  });

  it("an org's plan is cached in Valkey for every instance, and forgotten when the worker writes its subscription", async () => {
    const owner = await register(a, "cached");
    const billing = async (t: TestApp) => {
      const res = await t.app.inject({ method: "GET", url: `/orgs/${owner.orgId}/billing`, headers: owner.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as { plan: { id: string }; subscription: { status: string } | null };
    };
    const inspect = server.inspect();
    const key = CACHE_PREFIX + entitlementKey(owner.orgId);

    // A miss: read from the database, kept for the next reads.
    assert.equal((await billing(a)).plan.id, "free");
    assert.equal(await inspect.get(key), "null", "no subscription, cached as such");
    const ttl = await inspect.ttl(key);
    assert.ok(ttl > 0 && ttl <= ENTITLEMENT_TTL_SECONDS, `TTL ${ttl} s`);

    // A write the app does not see (SQL by hand): b, which never read this org, answers from the
    // cache a read on a filled; the instance without Valkey reads the table, as before.
    await a.pool.query(
      `INSERT INTO subscriptions (stripe_subscription_id, org_id, stripe_customer_id, status, price_id, plan_id, cancel_at_period_end, stripe_event_created)
       VALUES ('sub_by_hand', $1, 'cus_by_hand', 'active', 'price_pro', 'pro', false, now())`,
      [owner.orgId],
    );
    assert.equal((await billing(b)).plan.id, "free", "a hit: the cached entitlement");
    assert.equal((await billing(plain)).plan.id, "pro", "without VALKEY_URL every read goes to the database");
    await a.pool.query(`DELETE FROM subscriptions WHERE stripe_subscription_id = 'sub_by_hand'`);

    // The real write: Stripe's event through the webhook, applied as the worker does (its cache
    // is the worker process's own client on the same Valkey). The next read, on either instance, has it.
    const e = stripeEvent("customer.subscription.created", subscriptionObject({ id: "sub_cached", customer: "cus_cached", status: "active", priceId: "price_pro", orgId: owner.orgId }), Math.floor(Date.now() / 1000));
    const delivered = await b.app.inject({ method: "POST", url: "/billing/webhook", headers: { "content-type": "application/json", "stripe-signature": sign(e.payload) }, payload: e.payload });
    assert.equal(delivered.statusCode, 200, delivered.body);
    const { log } = captureLogger("silent", "worker");
    const workerValkey = await createValkey(server.url, log, "saas-app-worker");
    try {
      await waitFor("worker's Valkey client ready", () => workerValkey.client.status === "ready");
      const outcome = await processStripeEvent({ pool: a.pool, plans: a.config.plans, stripe: undefined, log, cache: sharedCache(workerValkey) }, e.id);
      assert.equal(outcome, "applied");
    } finally {
      await workerValkey.close();
    }
    assert.equal(await inspect.exists(key), 0, "forgotten once the write committed");
    const after = await billing(b);
    assert.equal(after.plan.id, "pro");
    assert.equal(after.subscription?.status, "active");
    assert.equal(JSON.parse((await inspect.get(key))!).priceId, "price_pro", "cached again, now the new row");
    // The plan the cache gives is the one the limits use: the free plan allowed 2 projects.
    for (const name of ["p1", "p2", "p3"]) {
      const res = await a.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/projects`, headers: owner.auth, payload: { name } });
      assert.equal(res.statusCode, 201, `${name}: ${res.body}`);
    }
  });

  it("a stuck Valkey (frozen: connected, answering nothing) holds a login no longer than the command timeouts", async () => {
    const email = uniqueEmail("stuck");
    server.freeze();
    try {
      const t0 = Date.now();
      const res = await a.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email, password: "whatever pw" } });
      const ms = Date.now() - t0;
      assert.equal(res.statusCode, 401, res.body);
      // Three commands wait at most VALKEY_COMMAND_TIMEOUT_MS each (two counts, one refund), plus one scrypt hash.
      assert.ok(ms >= VALKEY_COMMAND_TIMEOUT_MS, `answered in ${ms} ms: Valkey was not asked?`);
      assert.ok(ms < 3 * VALKEY_COMMAND_TIMEOUT_MS + 4000, `answered in ${ms} ms`);
      assert.equal(warnings(a).length, 1, "one warning for the outage, not one per command");
    } finally {
      server.thaw();
    }
    // The stuck connection was dropped; the new one says Valkey is back.
    await ready(a);
    await waitFor("a logs that Valkey is back", () => a.logs.some((l) => l.message === "valkey back: abuse limits and the cache are shared again"));
  });

  it("Valkey stopped mid-test: logins still answer, limits count per process, and all is shared again once it is back", async () => {
    const u = await register(a, "outage");
    const before = warnings(a).length;
    await server.stop();
    await waitFor("a's client sees Valkey gone", () => a.valkey!.client.status !== "ready");

    const ok = await a.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: PASSWORD } });
    assert.equal(ok.statusCode, 200, ok.body);
    const wrong = await b.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: "wrong password" } });
    assert.equal(wrong.statusCode, 401, wrong.body);
    // The cache misses: the plan is read from the database.
    const plan = await a.app.inject({ method: "GET", url: `/orgs/${u.orgId}/billing`, headers: u.auth });
    assert.equal(plan.statusCode, 200, plan.body);

    // Limits still hold, per process: 10 reset requests from one address on a, then 429 there;
    // b has counted none of them (the documented cost of the outage).
    const ip = uniqueAddress();
    for (let i = 0; i < 10; i++) {
      const res = await a.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(ip), payload: { email: uniqueEmail("r") } });
      assert.equal(res.statusCode, 202, `request ${i + 1}: ${res.body}`);
    }
    assert.equal((await a.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(ip), payload: { email: uniqueEmail("r") } })).statusCode, 429);
    assert.equal((await b.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(ip), payload: { email: uniqueEmail("r") } })).statusCode, 202);

    assert.equal(warnings(a).length, before + 1, "one warning for the outage, however many requests");
    const logged = JSON.stringify([...a.logs, ...b.logs]);
    assert.ok(!logged.includes(emailKey(u.email)) && !logged.includes(addressKey(ip)), "no counter key in the log");
    assert.ok(!logged.includes(server.password) && !logged.includes(encodeURIComponent(server.password)), "no password in the log");

    await server.start();
    await Promise.all([ready(a), ready(b)]);
    assert.equal(a.logs.filter((l) => l.message === "valkey back: abuse limits and the cache are shared again").length, 2, "after the stall and after this outage");
    const back = uniqueAddress();
    const again = await b.app.inject({ method: "POST", url: "/auth/login", headers: from(back), payload: { email: u.email, password: PASSWORD } });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(await server.inspect().get(`${VALKEY_LIMIT_PREFIX}login_ip:${addressKey(back)}`), "1", "counted in Valkey again");
  });
});

describe("Valkey: a connection that cannot work says why, never with the password", function () {
  this.timeout(60000);
  let server: ValkeyServer;
  before(async () => {
    server = await startValkeyServer();
  });
  after(async () => server?.close());

  it("a wrong password: web starts (limits per process), logs that Valkey refused VALKEY_URL's password, and stops cleanly", async () => {
    const secret = "not-the-password-4f2a";
    const port = await freePort();
    const web = startEntrypoint("web", { ...testEnv(), PORT: String(port), VALKEY_URL: `rediss://default:${secret}@127.0.0.1:${server.port}` });
    try {
      const line = JSON.parse(await web.waitForLog("valkey unavailable", 30000));
      assert.equal(line.level, "warn");
      assert.match(line.reason, /WRONGPASS .*\(Valkey refused VALKEY_URL's user or password\)/);
      await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 30000, 100);
      const login = await fetch(`http://127.0.0.1:${port}/auth/login`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: uniqueEmail("wrongpass"), password: "whatever pw" }),
      });
      assert.equal(login.status, 401, "a login is answered, not a 500");
    } finally {
      web.child.kill("SIGTERM");
    }
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
    const output = web.output.join("\n");
    assert.ok(!output.includes(secret), "the password is not in the output");
    assert.equal(web.output.filter((l) => l.includes("valkey unavailable")).length, 1, "logged once, not at every reconnect");
  });

  it("plain TCP (redis://) to the TLS port: the log says to use rediss://, without the password", async () => {
    const { log, logs } = captureLogger("info");
    const valkey = await createValkey(server.url.replace(/^rediss:/, "redis:"), log, "saas-app-test");
    try {
      const warn = await waitFor("a warning", () => logs.find((l) => l.message?.toString().startsWith("valkey unavailable")));
      assert.match(String(warn.reason), /plain TCP: a Valkey that only speaks TLS closes such connections; use rediss:\/\//);
      assert.ok(!JSON.stringify(logs).includes(encodeURIComponent(server.password)) && !JSON.stringify(logs).includes(server.password));
    } finally {
      await valkey.close();
    }
  });
});
