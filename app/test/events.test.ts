import assert from "node:assert/strict";
import type pg from "pg";
import { captureLogger, databaseUrl, register, runMailTask, startTestApp, tokenIn, type Registered, type TestApp } from "./helpers/app.js";
import { waitFor } from "./helpers/wait.js";
import { createPool } from "../src/db/pool.js";
import { enqueue } from "../src/jobs/queue.js";
import { startWorker } from "../src/jobs/runner.js";
import { eventsTaskList, EVENTS_TASKS } from "../src/events/tasks.js";

interface Row {
  kind: string;
  orgId: string | null;
  actor: string | null;
  requestId: string | null;
  data: Record<string, unknown>;
}

describe("audit events", function () {
  this.timeout(120000); // scrypt hashes for every sign-up and login: slow on a busy 2-core machine
  let t: TestApp;
  let owner: Registered;
  let carol: Registered;
  let orgId: string;

  /** Events recorded since `sinceId`, oldest first. */
  const eventsSince = async (sinceId: number): Promise<Row[]> =>
    (await t.pool.query<Row>(`SELECT kind, org_id AS "orgId", actor_user_id AS actor, request_id AS "requestId", data FROM audit_events WHERE id > $1 ORDER BY id`, [sinceId])).rows;
  const lastId = async () => Number((await t.pool.query("SELECT coalesce(max(id), 0) AS id FROM audit_events")).rows[0].id);
  const call = (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, who: Registered | undefined, requestId: string, payload?: object) =>
    t.app.inject({ method, url, headers: { ...(who?.auth ?? {}), "x-request-id": requestId }, ...(payload ? { payload } : {}) });

  before(async () => {
    t = await startTestApp();
    [owner, carol] = await Promise.all([register(t, "auditowner"), register(t, "auditcarol")]);
    orgId = owner.orgId;
  });
  after(async () => t.close());

  it("records login and failed login with the request id (and the user when the email exists)", async () => {
    const since = await lastId();
    assert.equal((await call("POST", "/auth/login", undefined, "req-login-ok", { email: owner.email, password: "correct horse battery" })).statusCode, 200);
    assert.equal((await call("POST", "/auth/login", undefined, "req-login-bad", { email: owner.email.toUpperCase(), password: "wrong password" })).statusCode, 401);
    assert.equal((await call("POST", "/auth/login", undefined, "req-login-nobody", { email: "nobody@example.test", password: "wrong password" })).statusCode, 401);
    assert.deepEqual(await eventsSince(since), [
      { kind: "auth.login", orgId: null, actor: owner.userId, requestId: "req-login-ok", data: {} },
      { kind: "auth.login_failed", orgId: null, actor: owner.userId, requestId: "req-login-bad", data: { email: owner.email } },
      { kind: "auth.login_failed", orgId: null, actor: null, requestId: "req-login-nobody", data: { email: "nobody@example.test" } },
    ]);
  });

  it("records invitations, joining, role changes and removal, each with actor, org and request id", async () => {
    const since = await lastId();
    const inv = await call("POST", `/orgs/${orgId}/invitations`, owner, "req-inv", { email: carol.email, role: "member" });
    assert.equal(inv.statusCode, 201);
    const invitationId = inv.json().invitation.id;
    const other = await call("POST", `/orgs/${orgId}/invitations`, owner, "req-inv2", { email: "dropped@example.test", role: "admin" });
    const otherId = other.json().invitation.id;
    assert.equal((await call("DELETE", `/orgs/${orgId}/invitations/${otherId}`, owner, "req-revoke")).statusCode, 204);
    // The inviter never sees the token: it exists only in the invitee's mail, minted when it is sent.
    const token = tokenIn(await runMailTask(t, "send_invitation_email", { invitationId }));
    assert.equal((await call("POST", "/invitations/accept", carol, "req-accept", { token })).statusCode, 200);
    assert.equal((await call("PATCH", `/orgs/${orgId}/members/${carol.userId}`, owner, "req-role", { role: "admin" })).statusCode, 200);
    // The same role again is no change and no event.
    assert.equal((await call("PATCH", `/orgs/${orgId}/members/${carol.userId}`, owner, "req-role-same", { role: "admin" })).statusCode, 200);
    assert.equal((await call("DELETE", `/orgs/${orgId}/members/${carol.userId}`, owner, "req-remove")).statusCode, 204);
    assert.deepEqual(await eventsSince(since), [
      { kind: "invitation.created", orgId, actor: owner.userId, requestId: "req-inv", data: { invitationId, email: carol.email, role: "member" } },
      { kind: "invitation.created", orgId, actor: owner.userId, requestId: "req-inv2", data: { invitationId: otherId, email: "dropped@example.test", role: "admin" } },
      { kind: "invitation.revoked", orgId, actor: owner.userId, requestId: "req-revoke", data: { invitationId: otherId } },
      { kind: "member.joined", orgId, actor: carol.userId, requestId: "req-accept", data: { userId: carol.userId, role: "member", invitationId } },
      { kind: "member.role_changed", orgId, actor: owner.userId, requestId: "req-role", data: { userId: carol.userId, from: "member", to: "admin" } },
      { kind: "member.removed", orgId, actor: owner.userId, requestId: "req-remove", data: { userId: carol.userId, role: "admin", left: false } },
    ]);
  });

  it("records nothing when the change is refused (same transaction)", async () => {
    const since = await lastId();
    assert.equal((await call("DELETE", `/orgs/${orgId}/members/${owner.userId}`, owner, "req-last-owner")).statusCode, 400);
    assert.deepEqual(await eventsSince(since), []);
  });

  it("records a platform admin's action; admins read every org's events, others get 403", async () => {
    const admin = await register(t, "platformadmin");
    await t.pool.query("UPDATE users SET is_platform_admin = true WHERE id = $1", [admin.userId]);
    // A permanently failed job of a task no worker here runs.
    const { rows } = await t.pool.query("SELECT id::text FROM graphile_worker.add_job('audit_test_noop', '{}'::json, max_attempts => 1)");
    const jobId = rows[0].id as string;
    await t.pool.query("UPDATE graphile_worker._private_jobs SET attempts = max_attempts WHERE id = $1", [jobId]);
    const since = await lastId();
    assert.equal((await call("POST", `/admin/jobs/${jobId}/retry`, admin, "req-admin-retry")).statusCode, 200);
    assert.deepEqual(await eventsSince(since), [{ kind: "admin.job_retried", orgId: null, actor: admin.userId, requestId: "req-admin-retry", data: { jobId } }]);
    await t.pool.query("DELETE FROM graphile_worker._private_jobs WHERE id = $1", [jobId]);

    const all = await call("GET", "/admin/events?limit=100", admin, "r1");
    assert.equal(all.statusCode, 200);
    const orgs = new Set(all.json().events.map((e: { orgId: string | null }) => e.orgId));
    assert.ok(orgs.has(orgId) && orgs.has(null), "every org's and user-level events");
    const one = (await call("GET", `/admin/events?orgId=${orgId}`, admin, "r2")).json().events;
    assert.ok(one.length > 0 && one.every((e: { orgId: string }) => e.orgId === orgId));
    assert.equal((await call("GET", "/admin/events", owner, "r3")).statusCode, 403);
    const bad = await call("GET", "/admin/events?orgId=nope", admin, "r4");
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /querystring\/orgId must match format "uuid"/);
  });

  it("owners read their org's events newest first, in pages; admins of the org get 403, outsiders 404", async () => {
    // Ids of different lengths in one org (the sequence jumps to the next power of ten), so a
    // listing ordered by the id's text instead of its number ("9" after "10") shows.
    const { rows: [{ maxId }] } = await t.pool.query("SELECT max(id)::bigint AS \"maxId\" FROM audit_events WHERE org_id = $1", [orgId]);
    assert.ok(Number(maxId) > 0, "the org has events from the tests above");
    await t.pool.query("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), $1)", [10 ** String(maxId).length]);
    const newer = await call("POST", `/orgs/${orgId}/invitations`, owner, "p0", { email: "later@example.test", role: "member" });
    assert.equal(newer.statusCode, 201, newer.body);
    const page1 = await call("GET", `/orgs/${orgId}/events?limit=2`, owner, "p1");
    assert.equal(page1.statusCode, 200);
    const first = page1.json();
    assert.equal(first.events.length, 2);
    assert.ok(Number(first.events[0].id) > Number(first.events[1].id));
    assert.equal(first.nextBefore, first.events[1].id);
    const page2 = (await call("GET", `/orgs/${orgId}/events?limit=100&before=${first.nextBefore}`, owner, "p2")).json();
    const ids = [...first.events, ...page2.events].map((e: { id: string }) => e.id);
    const expected = (await t.pool.query("SELECT id FROM audit_events WHERE org_id = $1 ORDER BY id DESC", [orgId])).rows.map((r) => String(r.id));
    assert.deepEqual(ids, expected);
    assert.ok(ids.some((id) => id.length !== ids[0]!.length), `ids of one length only: ${ids}`);
    assert.equal(page2.nextBefore, null);

    const admin = await register(t, "orgadmin");
    await t.pool.query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'admin')", [orgId, admin.userId]);
    assert.equal((await call("GET", `/orgs/${orgId}/events`, admin, "p3")).statusCode, 403);
    assert.equal((await call("GET", `/orgs/${orgId}/events`, carol, "p4")).statusCode, 404);
    for (const [query, message] of [["limit=0", /querystring\/limit must be >= 1/], ["before=abc", /querystring\/before must match pattern/], ["foo=1", /querystring has unknown property "foo"/]] as const) {
      const res = await call("GET", `/orgs/${orgId}/events?${query}`, owner, "p5");
      assert.equal(res.statusCode, 400, query);
      assert.match(res.json().message, message);
    }
  });
});

// The app's web and worker logins have SELECT, INSERT, UPDATE and DELETE on every table (the
// platform's default privileges, docs/ARCHITECTURE.md decision 11). A role with exactly those
// grants, and TRUNCATE on top, stands in for them here; the provisioning suite checks the real logins.
describe("audit events: append-only in the database", () => {
  let pool: pg.Pool;
  const probe = `audit_probe_${process.pid}`;

  before(async () => {
    pool = createPool(databaseUrl(), captureLogger().log, { max: 2 });
    await pool.query(`CREATE ROLE ${probe} NOLOGIN`);
    await pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_events TO ${probe}`);
  });
  after(async () => {
    await pool.query(`REVOKE ALL ON audit_events FROM ${probe}`);
    await pool.query(`DROP ROLE ${probe}`);
    await pool.end();
  });

  /** Runs `sql` as the probe role in a transaction that is always rolled back. */
  async function asProbe<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      await c.query(`SET LOCAL ROLE ${probe}`);
      return await fn(c);
    } finally {
      await c.query("ROLLBACK");
      c.release();
    }
  }

  it("lets the app's login insert and read", async () => {
    await asProbe(async (c) => {
      const { rows } = await c.query("INSERT INTO audit_events (kind, data) VALUES ('auth.login', '{}') RETURNING id");
      const read = await c.query("SELECT kind FROM audit_events WHERE id = $1", [rows[0].id]);
      assert.equal(read.rows[0].kind, "auth.login");
    });
  });

  for (const [op, sql] of [
    ["UPDATE", "UPDATE audit_events SET kind = 'auth.forged' WHERE id = (SELECT min(id) FROM audit_events)"],
    ["DELETE", "DELETE FROM audit_events WHERE id = (SELECT min(id) FROM audit_events)"],
    ["TRUNCATE", "TRUNCATE audit_events"],
  ] as const) {
    it(`refuses ${op} by the app's login, grants notwithstanding`, async () => {
      await pool.query("INSERT INTO audit_events (kind) VALUES ('auth.login')");
      await asProbe(async (c) => {
        await assert.rejects(c.query(sql), (err: Error & { code?: string }) => {
          assert.equal(err.code, "42501");
          assert.match(err.message, new RegExp(`audit_events is append-only: ${op} is not allowed for ${probe}`));
          return true;
        });
      });
    });
  }

  it("prunes only through prune_audit_events, which keeps at least 30 days", async () => {
    await pool.query("INSERT INTO audit_events (kind, occurred_at) VALUES ('auth.login', now() - interval '40 days'), ('auth.login', now() - interval '20 days')");
    await asProbe(async (c) => {
      await assert.rejects(c.query("SELECT prune_audit_events(7)"), /keep_days must be at least 30, got 7/);
    });
    await asProbe(async (c) => {
      const before = (await c.query("SELECT count(*)::int AS n FROM audit_events WHERE occurred_at < now() - interval '30 days'")).rows[0].n;
      assert.ok(before >= 1);
      const removed = Number((await c.query("SELECT prune_audit_events(30) AS n")).rows[0].n);
      assert.equal(removed, before);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM audit_events WHERE occurred_at < now() - interval '30 days'")).rows[0].n, 0);
      assert.ok((await c.query("SELECT count(*)::int AS n FROM audit_events WHERE occurred_at < now() - interval '19 days'")).rows[0].n >= 1, "the 20-day-old event stays");
    });
  });

  it("the worker's retention job removes events older than AUDIT_RETENTION_DAYS", async () => {
    const { rows } = await pool.query(
      "INSERT INTO audit_events (kind, occurred_at) VALUES ('auth.login', now() - interval '100 days'), ('auth.login', now() - interval '50 days') RETURNING id",
    );
    const [old, recent] = rows.map((r) => r.id as string);
    const { log } = captureLogger("warn");
    const worker = await startWorker({
      pool,
      taskList: eventsTaskList({ pool, retentionDays: 60 }),
      log,
      reporter: { capture: () => {}, flush: async () => {} },
      concurrency: 1,
      pollIntervalMs: 200,
      shutdownTimeoutMs: 5000,
    });
    try {
      const job = await enqueue(pool, EVENTS_TASKS.pruneAuditEvents, {});
      await waitFor("prune job done", async () => (await pool.query("SELECT 1 FROM graphile_worker.jobs WHERE id = $1", [job])).rowCount === 0);
    } finally {
      await worker.stop(5000);
    }
    const left = (await pool.query("SELECT id::text FROM audit_events WHERE id = ANY($1)", [[old, recent]])).rows.map((r) => r.id);
    assert.deepEqual(left, [recent]);
  });
});
