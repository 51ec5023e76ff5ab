import assert from "node:assert/strict";
import { captureLogger, databaseUrl, register, SECRET, startTestApp, uniqueEmail, type TestApp } from "./helpers/app.js";
import { startSmtp, type TestSmtp } from "./helpers/smtp.js";
import { startEntrypoint, type Proc } from "./helpers/proc.js";
import { waitFor } from "./helpers/wait.js";
import { createPool } from "../src/db/pool.js";
import { createMailer } from "../src/jobs/mailer.js";
import { enqueueWelcomeEmail, findJob } from "../src/jobs/queue.js";
import { startWorker, type RunningWorker } from "../src/jobs/runner.js";
import { buildTaskList } from "../src/jobs/tasks.js";
import { hashPassword } from "../src/auth/password.js";
import { insertUser } from "../src/users/users.repository.js";
import type pg from "pg";

const mailTo = (smtp: TestSmtp, email: string) => smtp.received.find((m) => m.to.includes(email));

describe("jobs: welcome email through the worker", () => {
  let t: TestApp;
  let smtp: TestSmtp;
  let workerPool: pg.Pool;
  let worker: RunningWorker;
  let workerLogs: Array<Record<string, unknown>>;
  const reported: Array<Record<string, unknown> | undefined> = [];

  before(async () => {
    t = await startTestApp();
    smtp = await startSmtp();
    const { log, logs } = captureLogger("info", "worker");
    workerLogs = logs;
    workerPool = createPool(databaseUrl(), log, { max: 4 });
    const mailer = createMailer(smtp.url, "no-reply@app.example.test", log);
    worker = await startWorker({
      pool: workerPool,
      taskList: buildTaskList({ pool: workerPool, mailer, appUrl: "http://app.example.test", secretKey: SECRET }),
      log,
      reporter: { capture: (_err, context) => void reported.push(context), flush: async () => {} },
      concurrency: 2,
      pollIntervalMs: 200,
      shutdownTimeoutMs: 5000,
    });
  });
  after(async () => {
    await worker.stop(5000);
    await workerPool.end();
    await smtp.close();
    await t.close();
  });

  it("signup enqueues the welcome email and the worker sends it over SMTP", async () => {
    const u = await register(t, "welcome");
    const mail = await waitFor("welcome email", () => mailTo(smtp, u.email), 10000);
    assert.match(mail.raw, /Subject: Welcome!/);
    assert.match(mail.raw, /From: no-reply@app\.example\.test/);
    assert.match(mail.raw, /http:\/\/app\.example\.test/);
  });

  it("retries with backoff after a temporary failure, and lands permanent failures in the failed list", async function () {
    this.timeout(20000);
    // flaky-*: refused once with 451, then accepted. doomed-*: always refused with 550; 2 attempts.
    // Both jobs enqueued directly: a full sign-up (verify, log in) can outlast the first retry.
    const flaky = await insertUser(t.pool, uniqueEmail("flaky"), "flaky", await hashPassword("irrelevant pw"));
    const doomedUser = await insertUser(t.pool, uniqueEmail("doomed"), "doomed", await hashPassword("irrelevant pw"));
    const doomedJob = await enqueueWelcomeEmail(t.pool, { userId: doomedUser.id }, { maxAttempts: 2, jobKey: `test-doomed:${doomedUser.id}`, requestId: "req-doomed" });
    const flakyJob = await enqueueWelcomeEmail(t.pool, { userId: flaky.id });

    // First attempt fails and is rescheduled exp(1) ≈ 2.7 s later.
    const failedOnce = await waitFor("flaky job's first failure", async () => {
      const j = await findJob(t.pool, flakyJob);
      return j && j.attempts === 1 && j.lastError && !j.lockedAt ? j : undefined;
    });
    assert.match(failedOnce.lastError!, /451/);
    const backoffMs = failedOnce.runAt.getTime() - failedOnce.updatedAt.getTime();
    assert.ok(backoffMs > 2000 && backoffMs < 3500, `backoff was ${backoffMs} ms`);
    assert.equal(mailTo(smtp, flaky.email), undefined);

    // Second attempt succeeds: the email arrives and the job is gone.
    await waitFor("flaky email after retry", () => mailTo(smtp, flaky.email), 8000);
    await waitFor("flaky job removed", async () => (await findJob(t.pool, flakyJob)) === undefined, 3000);

    // The doomed job ran out of attempts and is listed for platform admins.
    const dead = await waitFor("doomed job out of attempts", async () => {
      const j = await findJob(t.pool, doomedJob);
      return j && j.attempts === 2 && !j.lockedAt ? j : undefined;
    }, 8000);
    assert.match(dead.lastError!, /550/);

    const admin = await register(t, "platform-admin");
    const plain = await register(t, "plain");
    await t.pool.query("UPDATE users SET is_platform_admin = true WHERE id = $1", [admin.userId]);
    assert.equal((await t.app.inject({ method: "GET", url: "/admin/jobs/failed", headers: plain.auth })).statusCode, 403);
    const list = await t.app.inject({ method: "GET", url: "/admin/jobs/failed", headers: admin.auth });
    assert.equal(list.statusCode, 200);
    const listed = list.json().jobs.find((j: { id: string }) => j.id === doomedJob);
    assert.ok(listed, "doomed job is in the failed list");
    assert.equal(listed.task, "send_welcome_email");
    assert.equal(listed.attempts, 2);
    assert.ok(!list.json().jobs.some((j: { id: string }) => j.id === flakyJob));
    const line = workerLogs.find((l) => l.message === "job permanently failed" && l.jobId === doomedJob);
    assert.equal(line?.level, "error", "logged at error level");
    assert.equal(line?.request_id, "req-doomed", "with the id of the request that enqueued it");
    assert.deepEqual(reported.find((c) => c?.jobId === doomedJob), { jobId: doomedJob, task: "send_welcome_email", requestId: "req-doomed" }, "reported with it");

    // An admin can give it a fresh set of attempts.
    const retry = await t.app.inject({ method: "POST", url: `/admin/jobs/${doomedJob}/retry`, headers: admin.auth });
    assert.equal(retry.statusCode, 200);
    const again = await t.app.inject({ method: "POST", url: `/admin/jobs/${flakyJob}/retry`, headers: admin.auth });
    assert.equal(again.statusCode, 404, "only permanently failed jobs can be retried");
    await t.pool.query("SELECT graphile_worker.permanently_fail_jobs(ARRAY[$1::bigint], 'test cleanup')", [doomedJob]);
  });
});

describe("jobs: worker process shutdown", () => {
  let smtp: TestSmtp;
  let pool: pg.Pool;
  let worker: Proc | undefined;
  afterEach(() => {
    if (worker && worker.child.exitCode === null) worker.child.kill("SIGKILL");
  });
  before(async () => {
    smtp = await startSmtp();
    pool = createPool(databaseUrl(), captureLogger("silent").log);
  });
  after(async () => {
    await pool.end();
    await smtp.close();
  });

  const env = (extra: Record<string, string>) => ({
    DATABASE_URL: databaseUrl(),
    SECRET_KEY: SECRET,
    APP_URL: "http://app.example.test",
    SMTP_URL: smtp.url,
    WORKER_CONCURRENCY: "1",
    ...extra,
  });

  async function enqueueFor(tag: string): Promise<{ email: string; jobId: string }> {
    const user = await insertUser(pool, uniqueEmail(tag), tag, "scrypt$1$1$1$x$y");
    const jobId = await enqueueWelcomeEmail(pool, { userId: user.id }, { jobKey: `test-${tag}:${user.id}` });
    return { email: user.email, jobId };
  }

  it("finishes the job in flight on SIGTERM, then exits 0", async function () {
    this.timeout(20000);
    // Drain leftovers of other tests first, so our job is the one in flight.
    worker = startEntrypoint("worker", env({ SHUTDOWN_TIMEOUT_MS: "10000" }));
    await worker.waitForLog("worker started");
    const due = "SELECT id, task_identifier, attempts, locked_at, last_error FROM graphile_worker.jobs WHERE attempts < max_attempts AND run_at <= now()";
    await waitFor("queue drained", async () => (await pool.query(due)).rows.length === 0, 10000).catch(async (err) => {
      throw new Error(`${err.message}: ${JSON.stringify((await pool.query(due)).rows)}`);
    });

    smtp.dataDelayMs = 1500;
    const { email, jobId } = await enqueueFor("slow");
    await new Promise<void>((resolve) => (smtp.onDataStart = (to) => to.includes(email) && resolve()));
    worker.child.kill("SIGTERM");
    const exit = await worker.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, worker.output.join("\n"));
    assert.ok(mailTo(smtp, email), "the in-flight email was delivered");
    assert.equal(await findJob(pool, jobId), undefined, "the job completed");
    assert.ok(worker.output.some((l) => l.includes("current jobs finished")));
  });

  it("releases the job back to the queue when it cannot finish in time, then exits 0", async function () {
    this.timeout(20000);
    smtp.dataDelayMs = 15000;
    worker = startEntrypoint("worker", env({ SHUTDOWN_TIMEOUT_MS: "500" }));
    await worker.waitForLog("worker started");
    const { email, jobId } = await enqueueFor("stuck");
    await new Promise<void>((resolve) => (smtp.onDataStart = (to) => to.includes(email) && resolve()));
    const t0 = Date.now();
    worker.child.kill("SIGTERM");
    const exit = await worker.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 8000, "bounded shutdown");
    const job = await findJob(pool, jobId);
    assert.ok(job, "the job is still queued");
    assert.equal(job.lockedAt, null, `and unlocked, so another worker can take it\n${worker.output.join("\n")}`);
    assert.equal(job.attempts, 1);
    assert.match(job.lastError ?? "", /aborted: worker shutting down/);
    assert.ok(job.runAt.getTime() > Date.now(), "retried later, with backoff");
    assert.ok(worker.output.some((l) => l.includes("current jobs released back to the queue")));
    await pool.query("SELECT graphile_worker.permanently_fail_jobs(ARRAY[$1::bigint], 'test cleanup')", [jobId]);
  });
});
