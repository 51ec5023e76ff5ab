// Benchmark (not a test): requests/s and p99 latency of GET /health, of an authenticated read
// (GET /orgs/:orgId/projects) and of the Stripe webhook (a newly signed event per request:
// signature check, one insert, one job), next to a plain Fastify hello-world measured in the same
// run (the ratio is what to compare across machines); then the read again while another client
// address floods POST /auth/login (the abuse limits' cost to everyone else: its p99 flooded vs
// idle); then the resident memory of one web and one worker process. Everything on loopback
// against a scratch PostgreSQL; client addresses are set with X-Forwarded-For, which the app
// trusts from loopback exactly as from nginx. Web and worker run from the release artifact
// (scripts/build.mjs), started by its bin/ launchers as the server's units start them; with
// --plain-node they run as `node dist/<entry>.js`, without the launchers' memory settings, to
// measure what those cost and save.
//   npm run bench [-- --duration 5 --connections 10] [--plain-node]
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { freePort } from "../test/helpers/proc.js";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon, { type Request as CannonRequest } from "autocannon";
import pg from "pg";
import Stripe from "stripe";
import { pino } from "pino";
import { migrateUp } from "../src/db/migrate.js";

const appRoot = fileURLToPath(new URL("..", import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const DURATION = arg("duration", 5);
const CONNECTIONS = arg("connections", 10);
const PLAIN_NODE = process.argv.includes("--plain-node");
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) { // up to 60 s: a busy machine starts slowly
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not come up`);
}

function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return Math.round((kb / 1024) * 10) / 10;
}

async function run(title: string, url: string, headers: Record<string, string> = {}, requests?: CannonRequest[]) {
  // Short warm-up so the JIT and the pool are warm for every contender alike.
  await autocannon({ url, headers, connections: CONNECTIONS, duration: 1, ...(requests ? { requests } : {}) });
  const r = await autocannon({ url, headers, connections: CONNECTIONS, duration: DURATION, ...(requests ? { requests } : {}) });
  if (r.errors > 0) throw new Error(`${title}: ${r.errors} errors`);
  // Non-2xx answers are counted, not fatal: on a loaded machine /health may answer 503 (its
  // database round trip is bounded at 2 s), and the figure is still worth seeing beside the count.
  return { title, reqPerSec: Math.round(r.requests.average), p99Ms: r.latency.p99, non2xx: r.non2xx };
}

const WEBHOOK_SECRET = "whsec_bench0123456789abcdef";
const signer = new Stripe("sk_test_bench0123456789");
let eventSeq = 0;
/** Each request a new invoice.paid event, signed now, as Stripe sends them. */
const webhookRequest: CannonRequest = {
  method: "POST",
  setupRequest: (req) => {
    const id = `evt_bench_${process.pid}_${++eventSeq}`;
    const created = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ id, object: "event", created, type: "invoice.paid", livemode: false, pending_webhooks: 1, data: { object: { id: `in_bench${eventSeq}`, object: "invoice", customer: "cus_bench", status: "paid", currency: "eur", amount_due: 1900, amount_paid: 1900, created } } });
    const signature = signer.webhooks.generateTestHeaderString({ payload: body, secret: WEBHOOK_SECRET });
    return { ...req, body, headers: { ...req.headers, "content-type": "application/json; charset=utf-8", "stripe-signature": signature } };
  },
};

const tmp = mkdtempSync(path.join(os.tmpdir(), "saas-app-bench-"));
const pgDir = path.join(tmp, "pg");
const pgScratch = path.join(appRoot, "..", "cli", "pg-scratch.sh");
const children: ChildProcess[] = [];
try {
  execFileSync("chmod", ["755", tmp]);
  const databaseUrl = execFileSync("bash", [pgScratch, "start", pgDir], { encoding: "utf8" }).trim();
  await migrateUp(databaseUrl, pino({ level: "silent" }));

  say("building the release artifact (the processes run it as a server does)");
  const tarball = execFileSync(process.execPath, [path.join(appRoot, "scripts", "build.mjs"), "--out-dir", path.join(tmp, "build")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
    .trim().split("\n").pop()!;
  const release = path.join(tmp, "release");
  execFileSync("mkdir", ["-p", release]);
  execFileSync("tar", ["-xzf", tarball, "-C", release]);

  const [webPort, helloPort] = [await freePort(), await freePort()];
  const env = {
    PATH: process.env.PATH,
    DATABASE_URL: databaseUrl,
    SECRET_KEY: "bench-secret-key-0123456789abcdef-xyz",
    APP_URL: "http://bench.example.test",
    UPLOAD_DIR: path.join(tmp, "uploads"),
    LOG_LEVEL: "info",
    // Billing on: the webhook verifies signatures; the worker applies the events (to no known org).
    STRIPE_SECRET_KEY: "sk_test_bench0123456789",
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  };
  const start = (file: string, args: string[], extra: Record<string, string>) => {
    const c = spawn(file, args, { env: { ...env, ...extra }, stdio: ["ignore", "ignore", "inherit"] });
    children.push(c);
    return c;
  };
  // bin/<entry> execs node, so the pid is node's either way (its RSS is what is read below).
  const entry = (name: string): [string, string[]] =>
    PLAIN_NODE ? [process.execPath, [path.join(release, "dist", `${name}.js`)]] : [path.join(release, "bin", name), []];
  say(PLAIN_NODE ? "web and worker: node dist/<entry>.js (no launcher settings)" : "web and worker: the artifact's bin/web and bin/worker");
  const hello = start(process.execPath, [path.join(appRoot, "bench", "hello.mjs")], { PORT: String(helloPort) });
  const web = start(...entry("web"), { PORT: String(webPort) });
  const worker = start(...entry("worker"), {});
  const base = `http://127.0.0.1:${webPort}`;
  await Promise.all([waitHttp(`http://127.0.0.1:${helloPort}/`), waitHttp(`${base}/health`)]);

  // One tenant with 20 projects; its owner's token reads them (the page has 20 rows). Signup
  // answers 202; the address is confirmed with SQL (the token is only in the mail), then login.
  const normalUser = { "x-forwarded-for": "10.0.0.2" };
  const reg = await fetch(`${base}/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json", ...normalUser },
    body: JSON.stringify({ email: "bench@example.test", password: "long enough pw", name: "bench" }),
  });
  if (reg.status !== 202) throw new Error(`register: ${reg.status} ${await reg.text()}`);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await db.query("UPDATE users SET email_verified_at = now() WHERE email = 'bench@example.test'");
  const orgRow = await db.query<{ id: string }>("SELECT m.org_id AS id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'bench@example.test'");
  await db.end();
  const organization = { id: orgRow.rows[0]!.id };
  const login = await fetch(`${base}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", ...normalUser },
    body: JSON.stringify({ email: "bench@example.test", password: "long enough pw" }),
  });
  const { token } = (await login.json()) as { token: string };
  const auth = { authorization: `Bearer ${token}`, ...normalUser };
  for (let i = 0; i < 20; i++) {
    await fetch(`${base}/orgs/${organization.id}/projects`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ name: `project ${i}`, description: "x".repeat(200) }),
    });
  }

  say(`autocannon: ${CONNECTIONS} connections, ${DURATION} s per run`);
  const baseline = await run("fastify hello-world (baseline)", `http://127.0.0.1:${helloPort}/`);
  const health = await run("GET /health", `${base}/health`);
  const projects = await run("GET /orgs/:orgId/projects (auth, 20 rows)", `${base}/orgs/${organization.id}/projects`, auth);
  const webhook = await run("POST /billing/webhook (signed, new event)", `${base}/billing/webhook`, {}, [webhookRequest]);
  const recorded = execFileSync("psql", ["-X", "-A", "-t", "-c", "SELECT count(*) FROM stripe_events", databaseUrl], { encoding: "utf8" }).trim();
  say(`webhook: ${recorded} events recorded (one per request answered, warm-up included)`);

  // The flood: one address, 4x the connections, a new email each request (so the per-address
  // limit is the one that holds, not the per-account one), during a second run of the read.
  let n = 0;
  const flood = autocannon({
    url: `${base}/auth/login`,
    method: "POST",
    connections: CONNECTIONS * 4,
    duration: DURATION + 1,
    headers: { "content-type": "application/json", "x-forwarded-for": "10.0.0.66" },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ email: `flood-${n++}@example.test`, password: "guessing away" }) }) }],
  });
  const floodedRead = await run("  same read, during a login flood", `${base}/orgs/${organization.id}/projects`, auth);
  const f = await flood;
  const floodStatus = Object.entries(f.statusCodeStats ?? {}).map(([code, v]) => `${code}: ${(v as { count: number }).count}`).join(", ");

  const rows = [baseline, health, projects, webhook, floodedRead].map((r) => ({
    ...r,
    ratio: `${Math.round((r.reqPerSec / baseline.reqPerSec) * 100)}%`,
  }));
  console.log(`\n${"endpoint".padEnd(44)}${"req/s".padStart(9)}${"p99 ms".padStart(9)}${"vs baseline".padStart(13)}${"non-2xx".padStart(9)}`);
  for (const r of rows) console.log(`${r.title.padEnd(44)}${String(r.reqPerSec).padStart(9)}${String(r.p99Ms).padStart(9)}${r.ratio.padStart(13)}${String(r.non2xx).padStart(9)}`);
  console.log(`\nlogin flood from one address: ${Math.round(f.requests.average)} req/s answered (${floodStatus}); ` +
    `the other address's read p99 ${floodedRead.p99Ms} ms flooded vs ${projects.p99Ms} ms idle (${(floodedRead.p99Ms / Math.max(projects.p99Ms, 1)).toFixed(1)}x)`);
  const webRss = rssMb(web.pid!);
  const workerRss = rssMb(worker.pid!);
  console.log(`\nRSS after the run (${PLAIN_NODE ? "plain node" : "bin/ launchers"}): web ${webRss} MB, worker ${workerRss} MB (target < 120 MB each)`);
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  hello.kill();
} finally {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  execFileSync("bash", [pgScratch, "stop", pgDir]);
  rmSync(tmp, { recursive: true, force: true });
}
