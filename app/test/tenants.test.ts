import assert from "node:assert/strict";
import { register, runMailTask, startTestApp, tokenIn, type Registered, type TestApp } from "./helpers/app.js";

// Two tenants: Alice owns org A (with a project and a file), Bob owns org B. Bob must not be
// able to see or change anything of A's, whichever door he tries.
describe("tenant isolation", () => {
  let t: TestApp;
  let alice: Registered;
  let bob: Registered;
  let projectA: string;
  let fileA: string;

  before(async () => {
    t = await startTestApp();
    [alice, bob] = await Promise.all([register(t, "alice"), register(t, "bob")]);
    const p = await t.app.inject({ method: "POST", url: `/orgs/${alice.orgId}/projects`, headers: alice.auth, payload: { name: "A secret", description: "alice only" } });
    assert.equal(p.statusCode, 201);
    projectA = p.json().project.id;
    const f = await t.app.inject({
      method: "POST",
      url: `/orgs/${alice.orgId}/files`,
      headers: { ...alice.auth, "content-type": "multipart/form-data; boundary=XX" },
      payload: `--XX\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nalice's file\r\n--XX--\r\n`,
    });
    assert.equal(f.statusCode, 201, f.body);
    fileA = f.json().file.id;
    await t.app.inject({ method: "POST", url: `/orgs/${bob.orgId}/projects`, headers: bob.auth, payload: { name: "B stuff" } });
  });
  after(async () => t.close());

  const asBob = (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object) =>
    t.app.inject({ method, url, headers: bob.auth, ...(payload ? { payload } : {}) });

  it("hides org A behind 404 on every org-scoped route", async () => {
    const attempts = [
      asBob("GET", `/orgs/${alice.orgId}`),
      asBob("PATCH", `/orgs/${alice.orgId}`, { name: "pwned" }),
      asBob("GET", `/orgs/${alice.orgId}/members`),
      asBob("GET", `/orgs/${alice.orgId}/projects`),
      asBob("POST", `/orgs/${alice.orgId}/projects`, { name: "planted" }),
      asBob("GET", `/orgs/${alice.orgId}/projects/${projectA}`),
      asBob("PATCH", `/orgs/${alice.orgId}/projects/${projectA}`, { name: "pwned" }),
      asBob("DELETE", `/orgs/${alice.orgId}/projects/${projectA}`),
      asBob("GET", `/orgs/${alice.orgId}/files`),
      asBob("GET", `/orgs/${alice.orgId}/files/${fileA}`),
      asBob("GET", `/orgs/${alice.orgId}/files/${fileA}/content`),
      asBob("DELETE", `/orgs/${alice.orgId}/files/${fileA}`),
      asBob("POST", `/orgs/${alice.orgId}/invitations`, { email: "bob2@example.test", role: "admin" }),
      asBob("DELETE", `/orgs/${alice.orgId}/members/${alice.userId}`),
      asBob("GET", `/orgs/${alice.orgId}/billing`),
      asBob("GET", `/orgs/${alice.orgId}/billing/invoices`),
      asBob("POST", `/orgs/${alice.orgId}/billing/checkout`, { planId: "pro" }),
      asBob("POST", `/orgs/${alice.orgId}/billing/portal`),
      asBob("GET", `/orgs/${alice.orgId}/events`),
    ];
    for (const res of await Promise.all(attempts)) {
      assert.equal(res.statusCode, 404, `${res.statusCode} ${res.body}`);
      assert.equal(res.json().message, "organization not found");
    }
  });

  it("does not find A's project or file through Bob's own org either", async () => {
    const attempts = [
      asBob("GET", `/orgs/${bob.orgId}/projects/${projectA}`),
      asBob("PATCH", `/orgs/${bob.orgId}/projects/${projectA}`, { name: "pwned" }),
      asBob("DELETE", `/orgs/${bob.orgId}/projects/${projectA}`),
      asBob("GET", `/orgs/${bob.orgId}/files/${fileA}`),
      asBob("GET", `/orgs/${bob.orgId}/files/${fileA}/content`),
      asBob("DELETE", `/orgs/${bob.orgId}/files/${fileA}`),
    ];
    for (const res of await Promise.all(attempts)) assert.equal(res.statusCode, 404, `${res.statusCode} ${res.body}`);
    // Attaching an upload to A's project from org B is refused too.
    const up = await t.app.inject({
      method: "POST",
      url: `/orgs/${bob.orgId}/files?projectId=${projectA}`,
      headers: { ...bob.auth, "content-type": "multipart/form-data; boundary=XX" },
      payload: `--XX\r\nContent-Disposition: form-data; name="file"; filename="b.txt"\r\nContent-Type: text/plain\r\n\r\nbob\r\n--XX--\r\n`,
    });
    assert.equal(up.statusCode, 404);
    assert.equal(up.json().message, "project not found");
  });

  it("left A's data exactly as it was", async () => {
    const p = await t.pool.query("SELECT name, description FROM projects WHERE org_id = $1", [alice.orgId]);
    assert.deepEqual(p.rows, [{ name: "A secret", description: "alice only" }]);
    const o = await t.pool.query("SELECT name FROM organizations WHERE id = $1", [alice.orgId]);
    assert.equal(o.rows[0].name, "alice's organization");
    const f = await t.pool.query("SELECT count(*)::int AS n FROM files WHERE org_id = $1", [alice.orgId]);
    assert.equal(f.rows[0].n, 1);
    const m = await t.pool.query("SELECT count(*)::int AS n FROM memberships WHERE org_id = $1", [alice.orgId]);
    assert.equal(m.rows[0].n, 1);
    const content = await t.app.inject({ method: "GET", url: `/orgs/${alice.orgId}/files/${fileA}/content`, headers: alice.auth });
    assert.equal(content.body, "alice's file");
  });

  it("lists only the caller's own orgs and projects", async () => {
    const orgs = (await asBob("GET", "/orgs")).json().organizations;
    assert.deepEqual(orgs.map((o: { id: string }) => o.id), [bob.orgId]);
    const projects = (await asBob("GET", `/orgs/${bob.orgId}/projects`)).json().projects;
    assert.deepEqual(projects.map((p: { name: string }) => p.name), ["B stuff"]);
  });

  it("keeps billing rows and audit events per organization", async () => {
    // A's subscription and invoice, and an event in each org.
    await t.pool.query(
      `INSERT INTO subscriptions (stripe_subscription_id, org_id, stripe_customer_id, status, price_id, stripe_event_created)
       VALUES ($1, $2, 'cus_iso_a', 'active', 'price_x', now())`,
      [`sub_iso_${alice.orgId.slice(0, 8)}`, alice.orgId],
    );
    await t.pool.query(
      `INSERT INTO invoices (stripe_invoice_id, org_id, currency, amount_due, amount_paid, status, created_at, stripe_event_created)
       VALUES ($1, $2, 'eur', 100, 100, 'paid', now(), now())`,
      [`in_iso${alice.orgId.slice(0, 8)}`, alice.orgId],
    );
    await t.pool.query("INSERT INTO audit_events (org_id, kind, data) VALUES ($1, 'member.role_changed', '{\"secret\": \"alice\"}'), ($2, 'member.role_changed', '{}')", [alice.orgId, bob.orgId]);
    const billing = (await asBob("GET", `/orgs/${bob.orgId}/billing`)).json();
    assert.equal(billing.subscription, null);
    assert.equal(billing.plan.id, "free");
    assert.deepEqual((await asBob("GET", `/orgs/${bob.orgId}/billing/invoices`)).json().invoices, []);
    const events = (await asBob("GET", `/orgs/${bob.orgId}/events?limit=100`)).json().events;
    assert.ok(events.length >= 1);
    assert.ok(events.every((e: { orgId: string }) => e.orgId === bob.orgId), JSON.stringify(events));
    // And Alice does see hers.
    const mine = await t.app.inject({ method: "GET", url: `/orgs/${alice.orgId}/billing/invoices`, headers: alice.auth });
    assert.equal(mine.json().invoices.length, 1);
  });

  it("refuses at the database level a file row that links to another org's project", async () => {
    await assert.rejects(
      t.pool.query("INSERT INTO files (org_id, project_id, storage_key, filename, content_type, size_bytes) VALUES ($1, $2, 'x/y', 'f', 'text/plain', 1)", [bob.orgId, projectA]),
      /violates foreign key constraint/,
    );
  });
});

describe("memberships, roles and invitations", () => {
  let t: TestApp;
  let owner: Registered;
  let carol: Registered;
  let orgId: string;

  before(async () => {
    t = await startTestApp();
    [owner, carol] = await Promise.all([register(t, "owner"), register(t, "carol")]);
    orgId = owner.orgId;
  });
  after(async () => t.close());

  it("invites by email; only the invited address can accept, once", async () => {
    const inv = await t.app.inject({ method: "POST", url: `/orgs/${orgId}/invitations`, headers: owner.auth, payload: { email: carol.email, role: "member" } });
    assert.equal(inv.statusCode, 201);
    assert.equal(inv.json().token, undefined, "only the invitee's mailbox gets the token");
    const mail = await runMailTask(t, "send_invitation_email", { invitationId: inv.json().invitation.id });
    assert.equal(mail?.to, carol.email);
    const token = tokenIn(mail);
    const outsider = await register(t, "outsider");
    const wrong = await t.app.inject({ method: "POST", url: "/invitations/accept", headers: outsider.auth, payload: { token } });
    assert.equal(wrong.statusCode, 403);
    const ok = await t.app.inject({ method: "POST", url: "/invitations/accept", headers: carol.auth, payload: { token } });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().organizationId, orgId);
    const again = await t.app.inject({ method: "POST", url: "/invitations/accept", headers: carol.auth, payload: { token } });
    assert.equal(again.statusCode, 404);
    const job = await t.pool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'send_invitation_email' AND key = $1", [`invitation:${inv.json().invitation.id}`]);
    assert.equal(job.rows[0].n, 1, "the invitation email was queued");
  });

  it("lets a member read and create, but not manage", async () => {
    const auth = carol.auth;
    assert.equal((await t.app.inject({ method: "GET", url: `/orgs/${orgId}/projects`, headers: auth })).statusCode, 200);
    const mine = await t.app.inject({ method: "POST", url: `/orgs/${orgId}/projects`, headers: auth, payload: { name: "carol's" } });
    assert.equal(mine.statusCode, 201);
    const ownersProject = (await t.app.inject({ method: "POST", url: `/orgs/${orgId}/projects`, headers: owner.auth, payload: { name: "owner's" } })).json().project.id;
    assert.equal((await t.app.inject({ method: "PATCH", url: `/orgs/${orgId}/projects/${mine.json().project.id}`, headers: auth, payload: { name: "renamed" } })).statusCode, 200);
    assert.equal((await t.app.inject({ method: "PATCH", url: `/orgs/${orgId}/projects/${ownersProject}`, headers: auth, payload: { name: "nope" } })).statusCode, 403);
    assert.equal((await t.app.inject({ method: "DELETE", url: `/orgs/${orgId}/projects/${ownersProject}`, headers: auth })).statusCode, 403);
    assert.equal((await t.app.inject({ method: "POST", url: `/orgs/${orgId}/invitations`, headers: auth, payload: { email: "x@example.test", role: "member" } })).statusCode, 403);
    assert.equal((await t.app.inject({ method: "PATCH", url: `/orgs/${orgId}/members/${owner.userId}`, headers: auth, payload: { role: "member" } })).statusCode, 403);
  });

  it("lets the owner promote, and keeps at least one owner", async () => {
    const promote = await t.app.inject({ method: "PATCH", url: `/orgs/${orgId}/members/${carol.userId}`, headers: owner.auth, payload: { role: "admin" } });
    assert.equal(promote.statusCode, 200);
    const members = (await t.app.inject({ method: "GET", url: `/orgs/${orgId}/members`, headers: carol.auth })).json().members;
    assert.deepEqual(members.map((m: { userId: string; role: string }) => [m.userId, m.role]).sort(), [[owner.userId, "owner"], [carol.userId, "admin"]].sort());
    // An admin cannot remove the owner; the sole owner cannot leave or demote themself.
    assert.equal((await t.app.inject({ method: "DELETE", url: `/orgs/${orgId}/members/${owner.userId}`, headers: carol.auth })).statusCode, 403);
    const leave = await t.app.inject({ method: "DELETE", url: `/orgs/${orgId}/members/${owner.userId}`, headers: owner.auth });
    assert.equal(leave.statusCode, 400);
    assert.match(leave.json().message, /at least one owner/);
    assert.equal((await t.app.inject({ method: "PATCH", url: `/orgs/${orgId}/members/${owner.userId}`, headers: owner.auth, payload: { role: "member" } })).statusCode, 400);
    // Carol leaves on her own; her access ends immediately.
    assert.equal((await t.app.inject({ method: "DELETE", url: `/orgs/${orgId}/members/${carol.userId}`, headers: carol.auth })).statusCode, 204);
    assert.equal((await t.app.inject({ method: "GET", url: `/orgs/${orgId}/projects`, headers: carol.auth })).statusCode, 404);
  });
});
