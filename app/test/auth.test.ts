import assert from "node:assert/strict";
import { from, register, runMailTask, startTestApp, uniqueAddress, uniqueEmail, type TestApp } from "./helpers/app.js";
import { REGISTER_ANSWER } from "../src/auth/auth.routes.js";

describe("auth", () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => t.close());

  it("registers a user with an owned organization and a working session", async () => {
    const u = await register(t, "alice");
    const me = await t.app.inject({ method: "GET", url: "/me", headers: u.auth });
    assert.equal(me.statusCode, 200);
    const body = me.json();
    assert.equal(body.user.email, u.email);
    assert.deepEqual(body.organizations.map((o: { id: string; role: string }) => [o.id, o.role]), [[u.orgId, "owner"]]);
  });

  it("stores a memory-hard hash, never the password, and only an HMAC of the token", async () => {
    const u = await register(t, "hash", "a very secret passphrase");
    const { rows } = await t.pool.query("SELECT password_hash FROM users WHERE id = $1", [u.userId]);
    assert.match(rows[0].password_hash, /^scrypt\$16384\$8\$5\$/);
    assert.ok(!rows[0].password_hash.includes("a very secret passphrase"));
    const s = await t.pool.query("SELECT count(*)::int AS n FROM sessions WHERE user_id = $1 AND token_hash = convert_to($2, 'UTF8')", [u.userId, u.token]);
    assert.equal(s.rows[0].n, 0);
  });

  it("creates no second account for a taken email (case-insensitively) and tells its owner, not the caller", async () => {
    const u = await register(t, "dup");
    const res = await t.app.inject({ method: "POST", url: "/auth/register", headers: from(uniqueAddress()), payload: { email: u.email.toUpperCase(), password: "another password", name: "x" } });
    assert.equal(res.statusCode, 202);
    assert.deepEqual(res.json(), REGISTER_ANSWER);
    const users = await t.pool.query("SELECT count(*)::int AS n FROM users WHERE email = $1", [u.email]);
    assert.equal(users.rows[0].n, 1);
    const notice = await runMailTask(t, "send_registration_notice_email", { userId: u.userId });
    assert.equal(notice?.to, u.email);
    assert.match(notice!.text, /someone tried to create an account with this email address/);
  });

  it("logs in with the right password only, with the same answer for unknown emails", async () => {
    const u = await register(t, "login", "right password!");
    const wrong = await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: u.email, password: "wrong password!" } });
    const unknown = await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: uniqueEmail("nobody"), password: "right password!" } });
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(unknown.json(), wrong.json());
    const ok = await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: u.email, password: "right password!" } });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.json().token, /^sess_/);
    assert.notEqual(ok.json().token, u.token);
  });

  it("rejects a logged-out (revoked) session and keeps the others", async () => {
    const u = await register(t, "logout", "right password!");
    const second = (await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: u.email, password: "right password!" } })).json().token;
    const out = await t.app.inject({ method: "POST", url: "/auth/logout", headers: u.auth });
    assert.equal(out.statusCode, 204);
    const after = await t.app.inject({ method: "GET", url: "/me", headers: u.auth });
    assert.equal(after.statusCode, 401);
    assert.match(after.json().message, /revoked/);
    const other = await t.app.inject({ method: "GET", url: "/me", headers: { authorization: `Bearer ${second}` } });
    assert.equal(other.statusCode, 200);
  });

  it("revokes another of my sessions by id, but not someone else's", async () => {
    const u = await register(t, "sessions", "right password!");
    const stranger = await register(t, "stranger");
    const second = (await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: u.email, password: "right password!" } })).json().token;
    const list = (await t.app.inject({ method: "GET", url: "/auth/sessions", headers: u.auth })).json().sessions;
    assert.equal(list.length, 2);
    const target = list.find((s: { current: boolean }) => !s.current);
    const foreign = await t.app.inject({ method: "DELETE", url: `/auth/sessions/${target.id}`, headers: stranger.auth });
    assert.equal(foreign.statusCode, 404);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: { authorization: `Bearer ${second}` } })).statusCode, 200);
    const del = await t.app.inject({ method: "DELETE", url: `/auth/sessions/${target.id}`, headers: u.auth });
    assert.equal(del.statusCode, 204);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: { authorization: `Bearer ${second}` } })).statusCode, 401);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: u.auth })).statusCode, 200);
  });

  it("changing the password revokes every session", async () => {
    const u = await register(t, "pw", "old password!!");
    const res = await t.app.inject({ method: "POST", url: "/me/password", headers: u.auth, payload: { currentPassword: "old password!!", newPassword: "new password!!" } });
    assert.equal(res.statusCode, 204);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: u.auth })).statusCode, 401);
    const login = await t.app.inject({ method: "POST", url: "/auth/login", payload: { email: u.email, password: "new password!!" } });
    assert.equal(login.statusCode, 200);
  });

  it("rejects missing, malformed and expired tokens", async () => {
    assert.equal((await t.app.inject({ method: "GET", url: "/me" })).statusCode, 401);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: { authorization: "Basic abc" } })).statusCode, 401);
    const u = await register(t, "expired");
    await t.pool.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1", [u.userId]);
    assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: u.auth })).statusCode, 401);
  });

  it("writes nothing when signup fails halfway (one transaction)", async () => {
    // Make the organization insert (the 2nd statement of signup) fail for one name.
    await t.pool.query("ALTER TABLE organizations ADD CONSTRAINT test_block CHECK (name <> 'BLOCKED ORG')");
    try {
      const jobsBefore = await t.pool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs");
      const email = uniqueEmail("half");
      const res = await t.app.inject({ method: "POST", url: "/auth/register", payload: { email, password: "long enough pw", name: "h", organizationName: "BLOCKED ORG" } });
      assert.equal(res.statusCode, 500);
      assert.match(res.json().message, /^internal server error \(request id /);
      const users = await t.pool.query("SELECT count(*)::int AS n FROM users WHERE email = $1", [email]);
      assert.equal(users.rows[0].n, 0, "the user row was rolled back");
      const jobsAfter = await t.pool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs");
      assert.equal(jobsAfter.rows[0].n, jobsBefore.rows[0].n, "no welcome email was enqueued");
    } finally {
      await t.pool.query("ALTER TABLE organizations DROP CONSTRAINT test_block");
    }
  });
});
