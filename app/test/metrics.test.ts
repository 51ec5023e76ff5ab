// Metrics and request correlation, on the real entrypoints as systemd runs them: two web
// instances and a worker sharing one METRICS_PORT_OFFSET, on the test database.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, createServer } from "node:net";
import pg from "pg";
import { Registry } from "prom-client";
import { captureLogger, databaseUrl, SECRET, tmpDir, uniqueAddress, uniqueEmail } from "./helpers/app.js";
import { createPool } from "../src/db/pool.js";
import { jobQueueMetrics, poolMetrics } from "../src/metrics/collectors.js";
import { pickMetricsPorts as pickPorts, startEntrypoint, type MetricsPorts, type Proc } from "./helpers/proc.js";
import { waitFor } from "./helpers/wait.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format, sample lines only (`name{a="b",...} value`). */
function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

async function scrape(port: number, host = "127.0.0.1"): Promise<Sample[]> {
  const res = await fetch(`http://${host}:${port}/metrics`, { headers: { connection: "close" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseSamples(await res.text());
}

/** "connected", or the connect error's code. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once("connect", () => (socket.destroy(), resolve("connected")));
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe("metrics and request correlation (web and worker processes)", function () {
  this.timeout(120000); // three processes start, and a sign-up pays a password hash: slow on a busy 2-core machine
  const procs: Proc[] = [];
  let ports: MetricsPorts;
  let webs: [Proc, Proc];
  let worker: Proc;
  let db: pg.Pool;

  const base = () => ({ DATABASE_URL: databaseUrl(), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", METRICS_PORT_OFFSET: String(ports.offset) });
  const webMetricsPort = (i: 0 | 1) => ports.web[i] + ports.offset;

  before(async () => {
    ports = await pickPorts();
    db = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    // HOST=0.0.0.0: the public listener on every address, so a refused metrics connect on
    // another loopback address can only mean the metrics listener is bound to 127.0.0.1.
    webs = ports.web.map((port) => startEntrypoint("web", { ...base(), PORT: String(port), HOST: "0.0.0.0", UPLOAD_DIR: tmpDir("metrics-uploads") })) as [Proc, Proc];
    // No SMTP_URL: the mailer logs each mail's envelope, a line written inside the job.
    worker = startEntrypoint("worker", { ...base(), WORKER_ID: String(ports.workerId) });
    procs.push(...webs, worker);
    await Promise.all([...webs.map((w) => w.waitForLog('"message":"web listening"', 60000)), worker.waitForLog('"message":"worker started"', 60000)]);
  });
  after(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill("SIGTERM");
    const exits = await Promise.all(procs.map((p) => p.exited));
    await db.end();
    for (const [i, e] of exits.entries()) assert.deepEqual(e, { code: 0, signal: null }, `process ${i} stopped cleanly:\n${procs[i]!.output.join("\n")}`);
  });

  it("serves metrics on 127.0.0.1 at offset + instance number, each instance its own port", async () => {
    for (const [i, w] of webs.entries()) {
      const line = JSON.parse(await w.waitForLog('"message":"metrics listening"'));
      assert.deepEqual([line.host, line.port], ["127.0.0.1", webMetricsPort(i as 0 | 1)]);
    }
    const workerLine = JSON.parse(await worker.waitForLog('"message":"metrics listening"'));
    assert.equal(workerLine.port, ports.offset + ports.workerId);
    for (const port of [webMetricsPort(0), webMetricsPort(1), ports.offset + ports.workerId]) {
      const samples = await scrape(port);
      assert.ok(valueOf(samples, "process_resident_memory_bytes")! > 0, `process metrics on ${port}`);
    }
  });

  it("counts requests by route pattern, method and status; the raw URL never becomes a label", async () => {
    const pub = `http://127.0.0.1:${ports.web[0]}`;
    const orgId = randomUUID();
    const statuses = [];
    for (const url of ["/health", `/orgs/${orgId}/projects`, `/orgs/${orgId}/projects`, `/no-such-page/${orgId}`]) {
      statuses.push((await fetch(`${pub}${url}`, { headers: { connection: "close" } })).status);
    }
    assert.deepEqual(statuses, [200, 401, 401, 404]);
    const text = await (await fetch(`http://127.0.0.1:${webMetricsPort(0)}/metrics`)).text();
    assert.ok(!text.includes(orgId), "a raw URL made it into a label");
    const samples = parseSamples(text);
    const count = (route: string, status: string) =>
      valueOf(samples, "http_request_duration_seconds_count", { method: "GET", route, status_code: status });
    assert.equal(count("/health", "200"), 1);
    assert.equal(count("/orgs/:orgId/projects", "401"), 2);
    assert.equal(count("unmatched", "404"), 1);
    assert.ok(valueOf(samples, "http_request_duration_seconds_sum", { route: "/orgs/:orgId/projects" })! > 0);
    assert.equal(valueOf(samples, "http_request_duration_seconds_bucket", { route: "/orgs/:orgId/projects", le: "+Inf" }), 2);
    // The other instance counts its own requests only.
    assert.equal(valueOf(await scrape(webMetricsPort(1)), "http_request_duration_seconds_count", { route: "/health" }), undefined);
  });

  it("never serves metrics publicly: not on the app's port, not on any address but 127.0.0.1", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.web[0]}/metrics`, { headers: { connection: "close" } });
    assert.equal(res.status, 404);
    assert.doesNotMatch(await res.text(), /http_request_duration_seconds/);
    // 127.0.0.2 is this machine too (all of 127/8 is loopback): the app answers there, metrics do not.
    assert.equal(await tryConnect("127.0.0.2", ports.web[0]), "connected", "the public listener answers on 127.0.0.2 (else the next check proves nothing)");
    assert.equal(await tryConnect("127.0.0.2", webMetricsPort(0)), "ECONNREFUSED");
    const other = await fetch(`http://127.0.0.1:${webMetricsPort(0)}/health`, { headers: { connection: "close" } });
    assert.equal(other.status, 404, "the metrics listener serves /metrics only");
  });

  it("reports the database pool's counts", async () => {
    const samples = await scrape(webMetricsPort(0));
    assert.equal(valueOf(samples, "db_pool_max_connections"), 10, "web's pool size (createPool's default)");
    const total = valueOf(samples, "db_pool_connections")!;
    const idle = valueOf(samples, "db_pool_idle_connections")!;
    assert.ok(total >= 1, "the health check opened a connection, and the pool keeps it 30 s");
    assert.ok(idle <= total);
    assert.equal(valueOf(samples, "db_pool_waiting_clients"), 0);
    assert.equal(valueOf(await scrape(ports.offset + ports.workerId), "db_pool_max_connections"), 4, "the worker's: WORKER_CONCURRENCY (2) + 2");
  });

  it("reports the job queue by task and state, and how long the oldest due job has waited", async () => {
    // A task no worker knows, so its jobs stay where they are put.
    const task = `metrics_probe_${randomUUID().slice(0, 8)}`;
    const add = async (runAt: string) => (await db.query<{ id: string }>(`SELECT id FROM graphile_worker.add_job($1, '{}'::json, run_at => ${runAt})`, [task])).rows[0]!.id;
    const ids = [await add("now() - interval '1 hour'"), await add("now() - interval '1 minute'"), await add("now() + interval '1 hour'"), await add("now()")];
    await db.query("SELECT graphile_worker.permanently_fail_jobs(ARRAY[$1::bigint], 'probe')", [ids[3]]);
    try {
      const samples = await scrape(webMetricsPort(1));
      const jobs = (state: string) => valueOf(samples, "jobs_in_queue", { task, state });
      assert.deepEqual([jobs("ready"), jobs("scheduled"), jobs("running"), jobs("failed")], [2, 1, 0, 1]);
      assert.ok(valueOf(samples, "jobs_oldest_ready_age_seconds")! >= 3600);
    } finally {
      await db.query("SELECT graphile_worker.complete_jobs($1::bigint[])", [ids]);
    }
    assert.equal(valueOf(await scrape(webMetricsPort(1)), "jobs_in_queue", { task, state: "ready" }), undefined, "gone with its jobs");
  });

  it("puts a request's id on its web log line, on the job it enqueued, and on the worker's lines for that job", async () => {
    const requestId = `corr-${randomUUID()}`;
    const email = uniqueEmail("corr");
    const res = await fetch(`http://127.0.0.1:${ports.web[1]}/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": requestId, "x-forwarded-for": uniqueAddress(), connection: "close" },
      body: JSON.stringify({ email, password: "a long password", name: "Corr" }),
    });
    assert.equal(res.status, 202, await res.text());

    const webLine = JSON.parse(await webs[1].waitForLog(requestId));
    assert.deepEqual(
      { level: webLine.level, service: webLine.service, request_id: webLine.request_id, path: webLine.path, status: webLine.status, message: webLine.message },
      { level: "info", service: "web", request_id: requestId, path: "/auth/register", status: 202, message: "request" },
    );

    // Written inside the job (the mailer's), and by the worker about the job.
    const mailLine = JSON.parse(await worker.waitForLog(email, 60000));
    assert.equal(mailLine.message, "SMTP_URL not set; email logged (without its body), not sent");
    assert.equal(mailLine.request_id, requestId);
    assert.equal(mailLine.service, "worker");
    assert.equal(mailLine.task, "send_welcome_email");
    const done = await waitFor("the worker's job done line", () =>
      worker.output.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === "job done" && l.jobId === mailLine.jobId),
    );
    assert.equal(done.request_id, requestId);
    assert.equal(done.task, "send_welcome_email");

    const succeeded = await waitFor("the worker's success counter", async () =>
      valueOf(await scrape(ports.offset + ports.workerId), "worker_jobs_total", { task: "send_welcome_email", outcome: "success" }),
    );
    assert.ok(succeeded >= 1);
    // No WORKER_TASKS_ONLY / _EXCEPT: a worker of every task.
    const kinds = (await scrape(ports.offset + ports.workerId)).filter((s) => s.name === "worker_tasks_info");
    assert.deepEqual(kinds.map((s) => [s.labels.tasks, s.value]), [["all", 1]]);
  });
});

describe("metrics port taken", function () {
  this.timeout(60000);
  for (const kind of ["web", "worker"] as const) {
    it(`${kind} does not start when its metrics port is taken`, async () => {
      const { web, workerId, offset } = await pickPorts();
      const taken = createServer();
      const metricsAt = offset + (kind === "web" ? web[0] : workerId);
      await new Promise<void>((resolve) => taken.listen(metricsAt, "127.0.0.1", resolve));
      // A job the worker would take at once, were it running: it must stay untouched (a job taken
      // by a process that then exits stays locked until graphile-worker's stale-lock recovery).
      const db = new pg.Pool({ connectionString: databaseUrl(), max: 1 });
      const job = (await db.query<{ id: string }>("SELECT id FROM graphile_worker.add_job('send_welcome_email', json_build_object('userId', $1::text))", [randomUUID()])).rows[0]!.id;
      try {
        const proc = startEntrypoint(kind, {
          DATABASE_URL: databaseUrl(), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", METRICS_PORT_OFFSET: String(offset),
          PORT: String(web[0]), WORKER_ID: String(workerId), UPLOAD_DIR: tmpDir("metrics-uploads"),
        });
        const exit = await proc.exited;
        assert.notEqual(exit.code, 0, proc.output.join("\n"));
        assert.match(proc.output.join("\n"), new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${metricsAt}`));
        assert.ok(!proc.output.some((l) => /"(web listening|worker started)"/.test(l)), "it never got to serve or take jobs");
        const after = (await db.query("SELECT attempts, locked_at AS \"lockedAt\" FROM graphile_worker.jobs WHERE id = $1", [job])).rows[0];
        assert.deepEqual(after, { attempts: 0, lockedAt: null }, "no job was taken");
      } finally {
        await db.query("SELECT graphile_worker.complete_jobs(ARRAY[$1::bigint])", [job]);
        await db.end();
        await new Promise((r) => taken.close(r));
      }
    });
  }
});

describe("job queue metrics while the database does not answer", () => {
  it("a scrape still completes, without the queue's figures, and says why in the log", async () => {
    const { log, logs } = captureLogger("warn");
    const pool = createPool(databaseUrl(), log, { max: 2 });
    const registry = new Registry();
    poolMetrics(registry, pool);
    jobQueueMetrics(registry, pool, log);
    // Another session holds the job table locked: the gauge's query waits on it like on a hung server.
    const locker = new pg.Client({ connectionString: databaseUrl() });
    await locker.connect();
    try {
      await locker.query("BEGIN; LOCK TABLE graphile_worker._private_jobs IN ACCESS EXCLUSIVE MODE");
      const during = parseSamples(await registry.metrics());
      assert.ok(Number.isNaN(valueOf(during, "jobs_oldest_ready_age_seconds")), "NaN: unknown, neither stale nor made up");
      assert.deepEqual(during.filter((x) => x.name === "jobs_in_queue"), []);
      assert.equal(valueOf(during, "db_pool_max_connections"), 2, "the rest of the scrape is there");
      assert.deepEqual(logs.map((l) => [l.level, l.message, l.err]), [["warn", "metrics: reading the job queue failed", "Query read timeout"]]);
      await locker.query("ROLLBACK");
      const after = parseSamples(await registry.metrics());
      assert.ok(valueOf(after, "jobs_oldest_ready_age_seconds")! >= 0, "back once the table answers");
      assert.equal(valueOf(after, "db_pool_waiting_clients"), 0);
    } finally {
      await locker.end();
      await pool.end();
    }
  });
});
