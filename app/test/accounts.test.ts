import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import type pg from "pg";
import { captureLogger, databaseUrl, from, login, register, runMailTask, SECRET, startTestApp, tokenIn, uniqueAddress, uniqueEmail, type TestApp } from "./helpers/app.js";
import { startSmtp, type TestSmtp } from "./helpers/smtp.js";
import { waitFor } from "./helpers/wait.js";
import { REGISTER_ANSWER, RESET_ANSWER } from "../src/auth/auth.routes.js";
import { HashGate, passwordHashGate } from "../src/auth/hash-gate.js";
import { ServiceUnavailableError } from "../src/core/errors.js";
import { createPool } from "../src/db/pool.js";
import { createMailer } from "../src/jobs/mailer.js";
import { startWorker } from "../src/jobs/runner.js";
import { buildTaskList } from "../src/jobs/tasks.js";

const PASSWORD = "correct horse battery";
const TOKEN_SHAPE = /\b(?:vrf|rst|inv)_[A-Za-z0-9_-]{43}\b/;

describe("accounts: verification", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => t.close());

  it("an unverified account may read its profile, resend the link and log out, and nothing else", async () => {
    const u = await register(t, "unverified", PASSWORD, { verified: false });
    const me = await t.app.inject({ method: "GET", url: "/me", headers: u.auth });
    assert.equal(me.statusCode, 200);
    assert.equal(me.json().user.emailVerifiedAt, null);
    const refused = [
      t.app.inject({ method: "GET", url: "/orgs", headers: u.auth }),
      t.app.inject({ method: "GET", url: `/orgs/${u.orgId}/projects`, headers: u.auth }),
      t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/projects`, headers: u.auth, payload: { name: "p" } }),
      t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/invitations`, headers: u.auth, payload: { email: uniqueEmail("x"), role: "member" } }),
      t.app.inject({ method: "POST", url: "/invitations/accept", headers: u.auth, payload: { token: "inv_0123456789" } }),
      t.app.inject({ method: "PATCH", url: "/me", headers: u.auth, payload: { name: "renamed" } }),
      t.app.inject({ method: "POST", url: "/me/password", headers: u.auth, payload: { currentPassword: PASSWORD, newPassword: "a new password" } }),
      t.app.inject({ method: "GET", url: "/auth/sessions", headers: u.auth }),
    ];
    for (const res of await Promise.all(refused)) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().error, "email_unverified");
    }
    const resend = await t.app.inject({ method: "POST", url: "/auth/verification/resend", headers: { ...u.auth, ...from(u.ip) } });
    assert.equal(resend.statusCode, 202);
    const job = await t.pool.query("SELECT payload FROM graphile_worker._private_jobs WHERE key = $1", [`send_verification_email:${u.userId}`]);
    assert.deepEqual(job.rows[0]?.payload, { userId: u.userId, requestId: resend.headers["x-request-id"] });
    assert.equal((await t.app.inject({ method: "POST", url: "/auth/logout", headers: u.auth })).statusCode, 204);
  });

  it("the link verifies once; a used or expired link is refused", async () => {
    const u = await register(t, "verify", PASSWORD, { verified: false });
    const token = tokenIn(await runMailTask(t, "send_welcome_email", { userId: u.userId }));
    const ok = await t.app.inject({ method: "POST", url: "/auth/verify-email", headers: from(u.ip), payload: { token } });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal((await t.app.inject({ method: "GET", url: "/orgs", headers: u.auth })).statusCode, 200, "the same session can act now");
    const reused = await t.app.inject({ method: "POST", url: "/auth/verify-email", headers: from(u.ip), payload: { token } });
    assert.equal(reused.statusCode, 400);
    assert.equal(reused.json().error, "invalid_token");

    const v = await register(t, "expired-link", PASSWORD, { verified: false });
    const late = tokenIn(await runMailTask(t, "send_verification_email", { userId: v.userId }));
    await t.pool.query("UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", [v.userId]);
    const expired = await t.app.inject({ method: "POST", url: "/auth/verify-email", headers: from(v.ip), payload: { token: late } });
    assert.equal(expired.statusCode, 400);
    const still = await t.pool.query("SELECT email_verified_at FROM users WHERE id = $1", [v.userId]);
    assert.equal(still.rows[0].email_verified_at, null);
    // The token is stored as an HMAC only.
    const stored = await t.pool.query("SELECT count(*)::int AS n FROM account_tokens WHERE token_hash = convert_to($1, 'UTF8')", [late]);
    assert.equal(stored.rows[0].n, 0);
  });

  it("signup answers the same for a new and a taken address, pays one hash either way, and mails the owner", async () => {
    const existing = await register(t, "taken");
    const fresh = uniqueEmail("fresh");
    const before = passwordHashGate.started;
    const a = await t.app.inject({ method: "POST", url: "/auth/register", headers: from(uniqueAddress()), payload: { email: fresh, password: PASSWORD, name: "n" } });
    const afterNew = passwordHashGate.started;
    const b = await t.app.inject({ method: "POST", url: "/auth/register", headers: from(uniqueAddress()), payload: { email: existing.email, password: PASSWORD, name: "n" } });
    const afterTaken = passwordHashGate.started;
    assert.deepEqual([a.statusCode, b.statusCode], [202, 202]);
    assert.equal(a.body, b.body);
    assert.deepEqual(a.json(), REGISTER_ANSWER);
    assert.equal(afterNew - before, 1, "a new address costs one scrypt hash");
    assert.equal(afterTaken - afterNew, 1, "a taken address costs one scrypt hash too");
    const notice = await t.pool.query("SELECT payload FROM graphile_worker._private_jobs WHERE key = $1", [`send_registration_notice_email:${existing.userId}`]);
    assert.deepEqual(notice.rows[0]?.payload, { userId: existing.userId, requestId: b.headers["x-request-id"] });
    const mail = await runMailTask(t, "send_registration_notice_email", { userId: existing.userId });
    assert.equal(mail?.to, existing.email);
    assert.doesNotMatch(mail!.text, TOKEN_SHAPE);
  });
});

describe("accounts: password reset", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => t.close());

  const requestReset = (email: string) =>
    t.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(uniqueAddress()), payload: { email } });

  it("answers the same for known and unknown addresses; only a known one gets a job", async () => {
    const u = await register(t, "reset-known");
    const known = await requestReset(u.email);
    const unknown = await requestReset(uniqueEmail("nobody"));
    assert.deepEqual([known.statusCode, unknown.statusCode], [202, 202]);
    assert.equal(known.body, unknown.body);
    assert.deepEqual(known.json(), RESET_ANSWER);
    const jobs = await t.pool.query("SELECT payload FROM graphile_worker._private_jobs WHERE key = $1", [`send_password_reset_email:${u.userId}`]);
    assert.deepEqual(jobs.rows.map((r) => r.payload), [{ userId: u.userId, requestId: known.headers["x-request-id"] }]);
  });

  it("a reset sets the password, revokes every session, works once, and not after it expires", async () => {
    const u = await register(t, "reset");
    const second = await login(t.app, u.email, PASSWORD, u.ip);
    await requestReset(u.email);
    const token = tokenIn(await runMailTask(t, "send_password_reset_email", { userId: u.userId }));
    const reset = await t.app.inject({ method: "POST", url: "/auth/password-reset", headers: from(u.ip), payload: { token, newPassword: "brand new password" } });
    assert.equal(reset.statusCode, 204, reset.body);
    for (const s of [u.token, second]) {
      assert.equal((await t.app.inject({ method: "GET", url: "/me", headers: { authorization: `Bearer ${s}` } })).statusCode, 401);
    }
    const old = await t.app.inject({ method: "POST", url: "/auth/login", headers: from(u.ip), payload: { email: u.email, password: PASSWORD } });
    assert.equal(old.statusCode, 401);
    await login(t.app, u.email, "brand new password", u.ip);
    const again = await t.app.inject({ method: "POST", url: "/auth/password-reset", headers: from(u.ip), payload: { token, newPassword: "third password!" } });
    assert.equal(again.statusCode, 400);
    assert.equal(again.json().error, "invalid_token");

    const late = tokenIn(await runMailTask(t, "send_password_reset_email", { userId: u.userId }));
    await t.pool.query("UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND used_at IS NULL", [u.userId]);
    const expired = await t.app.inject({ method: "POST", url: "/auth/password-reset", headers: from(u.ip), payload: { token: late, newPassword: "third password!" } });
    assert.equal(expired.statusCode, 400);
    await login(t.app, u.email, "brand new password", u.ip);
  });

  it("a reset voids the account's other reset links and verifies the address (the mailbox owner takes it back)", async () => {
    const squatted = await register(t, "squatted", PASSWORD, { verified: false });
    const first = tokenIn(await runMailTask(t, "send_password_reset_email", { userId: squatted.userId }));
    const second = tokenIn(await runMailTask(t, "send_password_reset_email", { userId: squatted.userId }));
    const reset = await t.app.inject({ method: "POST", url: "/auth/password-reset", headers: from(squatted.ip), payload: { token: second, newPassword: "owner's password" } });
    assert.equal(reset.statusCode, 204);
    const other = await t.app.inject({ method: "POST", url: "/auth/password-reset", headers: from(squatted.ip), payload: { token: first, newPassword: "squatter again!" } });
    assert.equal(other.statusCode, 400);
    const owner = await login(t.app, squatted.email, "owner's password", squatted.ip);
    assert.equal((await t.app.inject({ method: "GET", url: "/orgs", headers: { authorization: `Bearer ${owner}` } })).statusCode, 200);
  });
});

describe("accounts: no raw token in job payloads or logs", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  let t: TestApp;
  let smtp: TestSmtp;
  let workerPool: pg.Pool;
  before(async () => {
    t = await startTestApp();
    smtp = await startSmtp();
    workerPool = createPool(databaseUrl(), captureLogger("silent").log, { max: 4 });
  });
  after(async () => {
    await workerPool.end();
    await smtp.close();
    await t.close();
  });

  it("payloads hold ids only; the worker mints the tokens it mails, and they appear in no log line", async () => {
    // Every token-carrying mail, queued through the API while no worker runs.
    const owner = await register(t, "tok-owner");
    const newcomer = uniqueEmail("tok-new");
    const invitee = uniqueEmail("tok-invitee");
    const ip = uniqueAddress();
    const withId = (requestId: string, headers: Record<string, string>) => ({ ...headers, "x-request-id": requestId });
    assert.equal((await t.app.inject({ method: "POST", url: "/auth/register", headers: withId("req-tok-signup", from(ip)), payload: { email: newcomer, password: PASSWORD, name: "n" } })).statusCode, 202);
    assert.equal((await t.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: withId("req-tok-reset", from(ip)), payload: { email: owner.email } })).statusCode, 202);
    const inv = await t.app.inject({ method: "POST", url: `/orgs/${owner.orgId}/invitations`, headers: withId("req-tok-invite", owner.auth), payload: { email: invitee, role: "member" } });
    assert.equal(inv.statusCode, 201);
    const newcomerId = (await t.pool.query("SELECT id FROM users WHERE email = $1", [newcomer])).rows[0].id;
    const keys = [`welcome:${newcomerId}`, `send_password_reset_email:${owner.userId}`, `invitation:${inv.json().invitation.id}`];
    const queued = await t.pool.query("SELECT key, payload FROM graphile_worker._private_jobs WHERE key = ANY($1) ORDER BY key", [keys]);
    assert.deepEqual(
      queued.rows.map((r) => [r.key, r.payload]).sort(),
      [
        // ...and the id of the request that enqueued them, which joins the worker's log lines to it.
        [`invitation:${inv.json().invitation.id}`, { invitationId: inv.json().invitation.id, requestId: "req-tok-invite" }],
        [`send_password_reset_email:${owner.userId}`, { userId: owner.userId, requestId: "req-tok-reset" }],
        [`welcome:${newcomerId}`, { userId: newcomerId, requestId: "req-tok-signup" }],
      ].sort(),
    );

    // The real worker sends them over real SMTP, its logs captured.
    const { log, logs: workerLogs } = captureLogger("trace", "worker");
    const worker = await startWorker({
      pool: workerPool,
      taskList: buildTaskList({ pool: workerPool, mailer: createMailer(smtp.url, "no-reply@app.example.test", log), appUrl: t.config.appUrl, secretKey: SECRET }),
      log,
      reporter: { capture: () => {}, flush: async () => {} },
      concurrency: 2,
      pollIntervalMs: 200,
      shutdownTimeoutMs: 5000,
    });
    try {
      const mails = await waitFor("the three mails", () => {
        // The owner's own welcome job (left queued by the sign-up helper) may arrive too: match subjects.
        const wanted: Array<[string, string]> = [[newcomer, "Welcome!"], [owner.email, "Set a new password"], [invitee, "You are invited"]];
        const got = wanted.map(([to, subject]) => smtp.received.find((m) => m.to.includes(to) && m.raw.includes(`Subject: ${subject}`)));
        return got.every(Boolean) ? got : undefined;
      }, 90000); // the worker starts, then mints and sends every queued mail: slow on a 2-core machine busy with VMs
      // The bodies are quoted-printable: undo soft line breaks and =XX escapes first.
      const body = (raw: string) => raw.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      const tokens = mails.map((m) => TOKEN_SHAPE.exec(body(m!.raw))?.[0]);
      assert.ok(tokens.every(Boolean), `a mail without its token: ${tokens}`);
      // They work: the newcomer verifies with the mailed link.
      const verify = await t.app.inject({ method: "POST", url: "/auth/verify-email", headers: from(ip), payload: { token: tokens[0] } });
      assert.equal(verify.statusCode, 200, verify.body);
      const everyLog = JSON.stringify([...workerLogs, ...t.logs]);
      const payloads = JSON.stringify((await t.pool.query("SELECT payload FROM graphile_worker._private_jobs")).rows);
      for (const token of tokens) {
        assert.ok(!everyLog.includes(token!), "a token in a log line");
        assert.ok(!payloads.includes(token!), "a token in a job payload");
      }
      assert.ok(workerLogs.some((l) => l.message === "job done"), "the worker's log was captured");
      for (const requestId of ["req-tok-signup", "req-tok-reset", "req-tok-invite"]) {
        assert.ok(workerLogs.some((l) => l.message === "job done" && l.request_id === requestId), `no "job done" line with request_id ${requestId}`);
      }
    } finally {
      await worker.stop(5000);
    }
  });

  it("without SMTP_URL the mailer logs the envelope, never the body", async () => {
    const { log, logs } = captureLogger("trace");
    await createMailer(undefined, "no-reply@app.example.test", log).send({ to: "a@example.test", subject: "Set a new password", text: "link #token=rst_secret" });
    assert.equal(logs.length, 1);
    assert.deepEqual(logs[0]!.mail, { from: "no-reply@app.example.test", to: "a@example.test", subject: "Set a new password" });
    assert.match(String(logs[0]!.message), /email logged/);
    assert.ok(!JSON.stringify(logs).includes("rst_secret"));
  });
});

describe("abuse limits", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  let a: TestApp;
  let b: TestApp;
  before(async () => {
    // Two app instances with their own pools on one database: two web processes behind nginx.
    [a, b] = await Promise.all([startTestApp(), startTestApp()]);
  });
  after(async () => Promise.all([a.close(), b.close()]));

  it("failed logins for one account are counted across both instances: 10, then 429 with Retry-After", async function () {
    this.timeout(120000); // 11 scrypt hashes
    const u = await register(a, "target");
    for (let i = 0; i < 10; i++) {
      const app = i % 2 ? b.app : a.app;
      const res = await app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: "wrong password" } });
      assert.equal(res.statusCode, 401, `attempt ${i + 1}: ${res.body}`);
    }
    const before = passwordHashGate.started;
    const blocked = await a.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: u.email, password: PASSWORD } });
    assert.equal(blocked.statusCode, 429);
    assert.equal(blocked.json().error, "too_many_requests");
    assert.match(blocked.json().message, /too many failed logins for this account: try again in \d+ s/);
    const retryAfter = Number(blocked.headers["retry-after"]);
    assert.ok(retryAfter > 0 && retryAfter <= 15 * 60, `Retry-After ${blocked.headers["retry-after"]}`);
    assert.equal(passwordHashGate.started, before, "a blocked login pays no hash");
  });

  it("a successful login does not count toward the failure limit", async function () {
    this.timeout(120000);
    const u = await register(a, "regular");
    for (let i = 0; i < 12; i++) await login(i % 2 ? b.app : a.app, u.email, PASSWORD, uniqueAddress());
  });

  it("per client address: 10 reset requests from one address across both instances, then 429; other addresses unaffected", async () => {
    const ip = uniqueAddress();
    for (let i = 0; i < 10; i++) {
      const res = await (i % 2 ? b : a).app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(ip), payload: { email: uniqueEmail("r") } });
      assert.equal(res.statusCode, 202, `request ${i + 1}`);
    }
    const blocked = await b.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(ip), payload: { email: uniqueEmail("r") } });
    assert.equal(blocked.statusCode, 429);
    assert.ok(Number(blocked.headers["retry-after"]) > 0);
    const other = await b.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(uniqueAddress()), payload: { email: uniqueEmail("r") } });
    assert.equal(other.statusCode, 202);
    // X-Forwarded-For counts only from loopback (nginx): from elsewhere the socket address counts.
    const direct = await a.app.inject({ method: "POST", url: "/auth/password-reset/request", remoteAddress: "192.0.2.77", headers: from(ip), payload: { email: uniqueEmail("r") } });
    assert.equal(direct.statusCode, 202, "a forged X-Forwarded-For from a non-proxy is ignored");
  });

  it("per target address: at most 5 account mails to one inbox an hour, whoever asks", async () => {
    const u = await register(a, "inbox");
    for (let i = 0; i < 4; i++) {
      const res = await (i % 2 ? b : a).app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(uniqueAddress()), payload: { email: u.email } });
      assert.equal(res.statusCode, 202);
    }
    // register() used the first of the five (the welcome mail).
    const blocked = await a.app.inject({ method: "POST", url: "/auth/password-reset/request", headers: from(uniqueAddress()), payload: { email: u.email.toUpperCase() } });
    assert.equal(blocked.statusCode, 429);
    assert.match(blocked.json().message, /too many emails to this address/);
  });

  it("counters live in rate_limits, keyed without any email address", async () => {
    const { rows } = await a.pool.query<{ key: string }>("SELECT key FROM rate_limits");
    assert.ok(rows.length > 0);
    assert.ok(!rows.some((r) => r.key.includes("@")), "an email address in a counter key");
  });
});

describe("password hash cap", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  it("runs at most `concurrency` at once, queues a few, refuses the rest with 503 + Retry-After", async () => {
    const gate = new HashGate(2, 3);
    let running = 0;
    let peak = 0;
    const releases: Array<() => void> = [];
    const work = () =>
      new Promise<void>((resolve) => {
        running++;
        peak = Math.max(peak, running);
        releases.push(() => (running--, resolve()));
      });
    const runs = Array.from({ length: 8 }, () => gate.run(work).then(() => "done", (err: unknown) => err));
    await new Promise((r) => setImmediate(r));
    while (releases.length) {
      releases.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    const outcomes = await Promise.all(runs);
    assert.equal(peak, 2);
    assert.equal(outcomes.filter((o) => o === "done").length, 5, "2 running + 3 waiting");
    const refused = outcomes.filter((o) => o instanceof ServiceUnavailableError) as ServiceUnavailableError[];
    assert.equal(refused.length, 3);
    assert.equal(refused[0]!.retryAfterSeconds, 1);
  });

  it("a login while the process's gate is full gets 503 with Retry-After at once; once it has room, the usual 401", async () => {
    const t = await startTestApp();
    try {
      const hold: Array<() => void> = [];
      const holders = Array.from({ length: passwordHashGate.concurrency + passwordHashGate.maxWaiting }, () =>
        passwordHashGate.run(() => new Promise<void>((resolve) => hold.push(resolve))),
      );
      try {
        await new Promise((r) => setImmediate(r));
        const res = await t.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: uniqueEmail("busy"), password: PASSWORD } });
        assert.equal(res.statusCode, 503);
        assert.equal(res.headers["retry-after"], "1");
        assert.equal(res.json().error, "unavailable");
      } finally {
        while (hold.length || passwordHashGate.peak === 0) {
          hold.shift()?.();
          await new Promise((r) => setImmediate(r));
          if (!hold.length) break;
        }
        await Promise.all(holders);
      }
      assert.ok(passwordHashGate.peak <= passwordHashGate.concurrency);
      // The refusal is not remembered: an unknown address (checked against the dummy hash) gets
      // the usual answer for the usual one hash.
      const before = passwordHashGate.started;
      const later = await t.app.inject({ method: "POST", url: "/auth/login", headers: from(uniqueAddress()), payload: { email: uniqueEmail("later"), password: PASSWORD } });
      assert.equal(later.statusCode, 401, later.body);
      assert.equal(later.json().error, "unauthorized");
      assert.equal(passwordHashGate.started - before, 1, "an unknown address costs one scrypt hash");
    } finally {
      await t.close();
    }
  });
});

describe("uploads: quota per organization and rate limit", function () {
  this.timeout(120000); // several scrypt hashes per test: slow on a busy 2-core machine
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ UPLOAD_QUOTA_BYTES: "100" });
  });
  after(async () => t.close());

  const upload = (u: { auth: object; orgId: string; ip: string }, bytes: number) =>
    t.app.inject({
      method: "POST",
      url: `/orgs/${u.orgId}/files`,
      headers: { ...u.auth, ...from(u.ip), "content-type": "multipart/form-data; boundary=XX" },
      payload: `--XX\r\nContent-Disposition: form-data; name="file"; filename="q.txt"\r\nContent-Type: text/plain\r\n\r\n${"q".repeat(bytes)}\r\n--XX--\r\n`,
    });

  it("refuses a file that would pass the quota with 413 and keeps nothing of it", async () => {
    const u = await register(t, "quota");
    assert.equal((await upload(u, 60)).statusCode, 201);
    const over = await upload(u, 60);
    assert.equal(over.statusCode, 413);
    assert.equal(over.json().error, "quota_exceeded");
    assert.equal(over.json().message, "this organization's upload quota is 100 bytes; 60 are in use and this file needs 60: delete files to make room");
    assert.deepEqual(readdirSync(`${t.config.uploadDir}/${u.orgId}`).length, 1, "the refused file's bytes were removed");
    assert.equal((await upload(u, 40)).statusCode, 201, "exactly up to the quota is fine");
    const full = await upload(u, 1);
    assert.equal(full.statusCode, 413);
    assert.match(full.json().message, /100 are in use: delete files/);
  });

  it("two concurrent uploads cannot both squeeze under the quota", async () => {
    const u = await register(t, "quota-race");
    const results = await Promise.all([upload(u, 60), upload(u, 60), upload(u, 60)]);
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [201, 413, 413]);
    const { rows } = await t.pool.query("SELECT sum(size_bytes)::int AS used FROM files WHERE org_id = $1", [u.orgId]);
    assert.equal(rows[0].used, 60);
  });

  it("limits uploads per account: 60 in 10 minutes, then 429", async () => {
    const u = await register(t, "uploader");
    const other = await startTestApp({ UPLOAD_QUOTA_BYTES: String(10 * 1024 * 1024) });
    try {
      const send = (app: TestApp) =>
        app.app.inject({
          method: "POST",
          url: `/orgs/${u.orgId}/files`,
          headers: { ...u.auth, ...from(uniqueAddress()), "content-type": "multipart/form-data; boundary=XX" },
          payload: `--XX\r\nContent-Disposition: form-data; name="file"; filename="r.txt"\r\nContent-Type: text/plain\r\n\r\nr\r\n--XX--\r\n`,
        });
      for (let i = 0; i < 60; i++) assert.equal((await send(other)).statusCode, 201, `upload ${i + 1}`);
      const blocked = await send(other);
      assert.equal(blocked.statusCode, 429);
      assert.match(blocked.json().message, /too many uploads/);
    } finally {
      await other.close();
    }
  });
});
