import assert from "node:assert/strict";
import type { Task, TaskList } from "graphile-worker";
import type pg from "pg";
import { captureLogger, databaseUrl, SECRET, testEnv, uniqueEmail } from "./helpers/app.js";
import { startSmtp, type TestSmtp } from "./helpers/smtp.js";
import { startEntrypoint } from "./helpers/proc.js";
import { waitFor } from "./helpers/wait.js";
import { ConfigError, parseConfig, type WorkerTaskFilter } from "../src/core/config.js";
import { createPool } from "../src/db/pool.js";
import { createMailer } from "../src/jobs/mailer.js";
import { enqueue, enqueueAccountEmail, TASKS } from "../src/jobs/queue.js";
import { startWorker, type RunningWorker } from "../src/jobs/runner.js";
import { crontabFor, selectTasks } from "../src/jobs/selection.js";
import { buildTaskList } from "../src/jobs/tasks.js";
import { insertUser } from "../src/users/users.repository.js";

/** A task only this test has: a job that holds a worker slot for a while, like a big import. */
const SLOW = "test_slow_job";
const SLOW_MS = 1000;
const slowTask: Task = async () => {
  await new Promise((r) => setTimeout(r, SLOW_MS));
};
const CRITICAL = Object.values(TASKS);

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail("expected a ConfigError");
}

describe("worker task selection (WORKER_TASKS_ONLY / WORKER_TASKS_EXCEPT)", () => {
  const fake: TaskList = { a_task: async () => {}, b_task: async () => {}, c_task: async () => {} };

  it("parses either variable into a filter, and neither into all tasks", () => {
    assert.deepEqual(parseConfig(testEnv()).workerTasks, { mode: "all" });
    assert.deepEqual(parseConfig(testEnv({ WORKER_TASKS_ONLY: "a_task, b_task,a_task" })).workerTasks, { mode: "only", tasks: ["a_task", "b_task"] });
    assert.deepEqual(parseConfig(testEnv({ WORKER_TASKS_EXCEPT: "c_task" })).workerTasks, { mode: "except", tasks: ["c_task"] });
  });

  it("refuses both variables at once, and names that are not task names", () => {
    const both = problemsOf(() => parseConfig(testEnv({ WORKER_TASKS_ONLY: "a_task", WORKER_TASKS_EXCEPT: "b_task" })));
    assert.equal(both.length, 1);
    assert.match(both[0]!, /^env\/WORKER_TASKS_ONLY must not be set together with WORKER_TASKS_EXCEPT/);
    const shape = problemsOf(() => parseConfig(testEnv({ WORKER_TASKS_EXCEPT: "a_task,,b task" })));
    assert.match(shape[0]!, /^env\/WORKER_TASKS_EXCEPT must be task names separated by commas .* "", "b task" is not one/);
  });

  it("keeps only the listed tasks, or all but them", () => {
    assert.deepEqual(Object.keys(selectTasks(fake, { mode: "only", tasks: ["b_task"] })), ["b_task"]);
    assert.deepEqual(Object.keys(selectTasks(fake, { mode: "except", tasks: ["b_task"] })), ["a_task", "c_task"]);
    assert.deepEqual(Object.keys(selectTasks(fake, { mode: "all" })), ["a_task", "b_task", "c_task"]);
  });

  it("fails on a name the app does not have, listing the known ones, and on a filter that leaves nothing", () => {
    const unknown = problemsOf(() => selectTasks(fake, { mode: "only", tasks: ["a_task", "b_tsak"] }));
    assert.deepEqual(unknown, ['env/WORKER_TASKS_ONLY must name tasks this app has; "b_tsak" is not one (known tasks: a_task, b_task, c_task)']);
    const none = problemsOf(() => selectTasks(fake, { mode: "except", tasks: ["a_task", "b_task", "c_task"] }));
    assert.match(none[0]!, /^env\/WORKER_TASKS_EXCEPT must leave this worker at least one task/);
  });

  it("gives each crontab entry to the worker that runs its task only", () => {
    const entries = [
      { schedule: "15 4 * * *", task: "a_task", options: "?max=3" },
      { schedule: "25 4 * * *", task: "c_task", options: "" },
    ];
    assert.equal(crontabFor(entries, selectTasks(fake, { mode: "except", tasks: ["c_task"] })), "15 4 * * * a_task ?max=3");
    assert.equal(crontabFor(entries, selectTasks(fake, { mode: "only", tasks: ["c_task"] })), "25 4 * * * c_task");
    assert.equal(crontabFor(entries, selectTasks(fake, { mode: "only", tasks: ["b_task"] })), undefined);
  });

  it("the worker entrypoint refuses to start on an unknown task name, naming the variable and the known tasks", async function () {
    this.timeout(30000);
    const proc = startEntrypoint("worker", testEnv({ WORKER_TASKS_ONLY: "send_welcome_emial" }));
    const { code } = await proc.exited;
    assert.equal(code, 78, proc.output.join("\n"));
    const line = proc.output.find((l) => l.includes("env/WORKER_TASKS_ONLY"));
    assert.ok(line, proc.output.join("\n"));
    assert.match(line, /"send_welcome_emial" is not one \(known tasks: .*send_welcome_email.*process_stripe_event.*prune_audit_events/);
  });
});

describe("isolated critical workers: a flood of slow jobs does not delay the mail", function () {
  this.timeout(60000);
  let smtp: TestSmtp;
  let pool: pg.Pool;
  const workers: RunningWorker[] = [];
  /** Task identifiers each worker took, by worker. */
  const ran = { critical: [] as string[], rest: [] as string[] };

  async function start(kind: keyof typeof ran, filter: WorkerTaskFilter): Promise<void> {
    const { log } = captureLogger("warn", "worker");
    const mailer = createMailer(smtp.url, "no-reply@app.example.test", log);
    const all: TaskList = { ...buildTaskList({ pool, mailer, appUrl: "http://app.example.test", secretKey: SECRET }), [SLOW]: slowTask };
    const worker = await startWorker({
      pool,
      taskList: selectTasks(all, filter),
      log,
      reporter: { capture: () => {}, flush: async () => {} },
      concurrency: 2,
      pollIntervalMs: 200,
      shutdownTimeoutMs: 3000,
    });
    worker.runner.events.on("job:start", ({ job }) => void ran[kind].push(job.task_identifier));
    workers.push(worker);
  }

  before(async () => {
    smtp = await startSmtp();
    pool = createPool(databaseUrl(), captureLogger("warn", "worker").log, { max: 10 });
    await start("critical", { mode: "only", tasks: CRITICAL });
    await start("rest", { mode: "except", tasks: CRITICAL });
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.stop(3000)));
    // What the flood left behind must not reach later tests' workers.
    await pool.query(`SELECT graphile_worker.complete_jobs(array(SELECT id FROM graphile_worker.jobs WHERE task_identifier = $1 AND locked_at IS NULL))`, [SLOW]);
    await pool.end();
    await smtp.close();
  });

  it("sends a password reset enqueued behind 30 slow jobs within 3 s, while the flood still runs, and no worker takes the other kind's jobs", async () => {
    const flood = 30;
    for (let i = 0; i < flood; i++) await enqueue(pool, SLOW, { i });
    // The flood is under way on the other worker before the critical job arrives.
    await waitFor("the flood to start", () => ran.rest.includes(SLOW), 10000);
    const user = await insertUser(pool, uniqueEmail("reset"), "Reset", "not-a-hash");
    const enqueuedAt = Date.now();
    await enqueueAccountEmail(pool, TASKS.passwordResetEmail, { userId: user.id });
    await waitFor("the password reset mail", () => smtp.received.some((m) => m.to.includes(user.email)), 10000, 20);
    const latencyMs = Date.now() - enqueuedAt;
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = $1`, [SLOW]);
    // Two slots on the other worker, 1 s a job: most of the flood is still waiting.
    assert.ok(rows[0]!.n > flood / 2, `only ${rows[0]!.n} slow jobs were left when the mail went out`);
    assert.ok(latencyMs < 3000, `the critical job took ${latencyMs} ms`);
    assert.ok(ran.critical.includes(TASKS.passwordResetEmail));
    assert.deepEqual(ran.critical.filter((t) => !CRITICAL.includes(t as never)), [], "the critical worker ran a job of another task");
    assert.deepEqual(ran.rest.filter((t) => CRITICAL.includes(t as never)), [], "the other worker ran a critical job");
  });
});
