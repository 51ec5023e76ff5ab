/**
 * Who gets into PostgreSQL on the db server of stage separated, proven on a real cluster: the
 * example stack's rendered settings, pg_hba, logins SQL and first-boot network steps, in network
 * namespaces that stand for the db server and its neighbours at their planned private addresses
 * (app 10.20.0.10, worker 10.20.0.20, and a stranger inside the same network). The app's own
 * driver (node-postgres from app/node_modules) connects with the exact DATABASE_URLs the servers
 * get, TLS against the server's self-signed certificate; the app's real migrations and
 * graphile-worker run with the logins the release and the worker use. PostgreSQL starts while the
 * private address is missing, as after a reboot, under the rendered sysctl.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseStackConfig } from "../../config/config";
import { projectConfigOf } from "../../config/keysFromPulumi";
import { readStackFile } from "../../cli/lib/renderStack";
import { databaseUrl } from "../../plan/database";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { renderServer, type RenderedServer } from "../../provisioning/server";
import { tempDir, userIds } from "../support/tools";
import { bridgeNamespaces, ip } from "../support/netns";
import { renderedContent } from "../support/rendered";

const ROOT = join(__dirname, "..", "..");
const APP_DIR = join(ROOT, "app");

const inNs = (ns: string, cmd: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}) =>
  spawnSync("ip", ["netns", "exec", ns, ...cmd], { encoding: "utf8", timeout: 120_000, ...options, env: options.env ?? process.env });

/**
 * One node-postgres session with a URL running statements one after another (each on its own, so
 * one refused does not stop the next): prints one line per statement, its rows as JSON or
 * "ERROR <code> <message>"; a refused connection answers every statement with its error.
 */
const SESSION = `
const pg = require(process.argv[1]);
const statements = JSON.parse(process.argv[3]);
const failed = (e) => "ERROR " + (e.code || "-") + " " + e.message.replace(/\\n/g, " ");
(async () => {
  const client = new pg.Client({ connectionString: process.argv[2], connectionTimeoutMillis: 5000 });
  try { await client.connect(); } catch (e) { for (const _ of statements) console.log(failed(e)); return; }
  for (const sql of statements) {
    try { console.log(JSON.stringify((await client.query(sql)).rows)); } catch (e) { console.log(failed(e)); }
  }
  await client.end();
})();
`;

/** Runs [sql, values] pairs with bind parameters (the extended protocol, as the app's queries); errors are expected. */
const PARAMETER_SESSION = `
const pg = require(process.argv[1]);
(async () => {
  const client = new pg.Client({ connectionString: process.argv[2], connectionTimeoutMillis: 5000 });
  await client.connect();
  for (const [text, values] of JSON.parse(process.argv[3])) {
    try { await client.query({ text, values }); console.log("ok"); } catch (e) { console.log("ERROR " + e.code); }
  }
  await client.end();
})();
`;


const urlIn = (envFile: string) => /^DATABASE_URL=(.+)$/m.exec(envFile)![1];

describe("@real PostgreSQL on the db server: TLS, pg_hba and least-privilege logins over a private network", function () {
  this.timeout(300_000);
  const id = randomBytes(3).toString("hex");
  const ns = { db: `pgd-${id}`, app: `pga-${id}`, worker: `pgw-${id}`, other: `pgo-${id}` };
  const addr = { app: "10.20.0.10", worker: "10.20.0.20", db: "10.20.0.30", other: "10.20.0.99" };
  let dir: string;
  let bindir: string;
  let urls: { owner: string; web: string; worker: string };
  let started = false;
  let serverLog: () => string;
  let runLogins: () => ReturnType<typeof inNs>;

  const session = (from: keyof typeof ns, url: string, statements: string[]): string[] => {
    const r = inNs(ns[from], ["node", "-e", SESSION, join(APP_DIR, "node_modules", "pg"), url, JSON.stringify(statements)]);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, statements.length, `${from}: ${r.stdout}${r.stderr}`);
    return lines;
  };
  const query = (from: keyof typeof ns, url: string, sql: string): string => session(from, url, [sql])[0];
  const parsed = (from: string, sql: string, out: string): Array<Record<string, unknown>> => {
    assert.ok(!out.startsWith("ERROR"), `${from}: ${sql}: ${out}`);
    return JSON.parse(out);
  };
  const rows = (from: keyof typeof ns, url: string, sql: string) => parsed(from, sql, query(from, url, sql));
  const asPostgres = (cmd: string[], env: NodeJS.ProcessEnv = process.env) => inNs(ns.db, ["runuser", "-u", "postgres", "--", ...cmd], { env });

  before(async function () {
    const missing = [["ip", "-V"], ["openssl", "version"], ["runuser", "--version"]].filter(([c, a]) => spawnSync(c, [a]).status !== 0).map(([c]) => c);
    bindir = spawnSync("bash", ["-c", "printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"], { encoding: "utf8" }).stdout.trim();
    if (process.getuid?.() !== 0 || missing.length > 0 || spawnSync(join(bindir, "postgres"), ["--version"]).status !== 0) {
      const why = `needs root, ip netns, openssl and PostgreSQL's server binaries (npm run setup)${missing.length ? `; missing: ${missing.join(", ")}` : ""}`;
      if (process.env.CI) throw new Error(`the PostgreSQL access test ${why}`);
      console.log(`      SKIPPED LOUDLY: ${why}`);
      this.skip();
    }

    // The example stack at stage separated, as the program plans it (placeholder secrets).
    const config = parseStackConfig(projectConfigOf(readStackFile(join(ROOT, "Pulumi.separated.yaml")).config));
    const plan = planStack(config);
    const server = (name: string) => plan.servers.find((s) => s.name === name)!;
    const input = (name: string) => buildServerInput(config, server(name), { machine: config.provider, ...PLACEHOLDER_CONTEXT }, plan);
    const db = renderServer(input("db"));
    const app = renderServer(input("app"));
    assert.deepEqual([server("app").privateIp, server("worker").privateIp, server("db").privateIp], [addr.app, addr.worker, addr.db]);
    // The worker server does not render yet (its release command), but its input names its login.
    const workerDb = input("worker").app!.database;
    urls = { owner: urlIn(renderedContent(app, "/etc/saas-vps/app.env")), web: urlIn(renderedContent(app, "/etc/saas-vps/web.env")), worker: databaseUrl(workerDb.endpoint, workerDb.credentials.worker!) };

    // The server's files under a test root: /etc/saas-vps and /run/saas-vps move into dir.
    dir = tempDir("pg-access");
    chmodSync(dir, 0o755);
    const local = (text: string) => text.replaceAll("/etc/saas-vps/", `${dir}/etc/`).replaceAll("/run/saas-vps/", `${dir}/run/`);
    mkdirSync(join(dir, "etc"), { recursive: true });
    for (const path of ["/etc/saas-vps/postgresql.conf", "/etc/saas-vps/pg_hba.conf", "/etc/saas-vps/bootstrap.env"]) {
      writeFileSync(local(path), local(renderedContent(db, path)));
    }
    const sql = join(dir, "postgresql-logins.sql");
    writeFileSync(sql, renderedContent(db, "/usr/local/lib/saas-vps/postgresql-logins.sql"));
    for (const step of ["15-private-network", "17-postgresql-network"]) {
      writeFileSync(join(dir, step), renderedContent(db, `/usr/local/lib/saas-vps/bootstrap.d/${step}`), { mode: 0o755 });
    }

    // The db server's namespace holds a bridge (its address comes below); each neighbour is one veth away.
    bridgeNamespaces(ns, "db", { app: addr.app, worker: addr.worker, other: addr.other }, 16, `v${id}`);

    // First boot on the db server: 15-private-network finds the address (it comes late, as on a
    // provider), 17-postgresql-network writes the listen file and makes the certificate.
    const env = { ...process.env, BOOTSTRAP_ENV: join(dir, "etc", "bootstrap.env") };
    const late = setTimeout(() => ip("-n", ns.db, "addr", "add", `${addr.db}/16`, "dev", "br0"), 1500);
    const found = await new Promise<ReturnType<typeof inNs>>((resolve) => {
      const child = require("node:child_process").spawn("ip", ["netns", "exec", ns.db, join(dir, "15-private-network")], { env });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b: Buffer) => (stdout += b));
      child.stderr.on("data", (b: Buffer) => (stderr += b));
      child.on("close", (status: number) => resolve({ status, stdout, stderr } as ReturnType<typeof inNs>));
    });
    clearTimeout(late);
    assert.equal(found.status, 0, found.stdout + found.stderr);
    assert.match(found.stdout, /^private network 10\.20\.0\.0\/16: this server is 10\.20\.0\.30 \(waited [1-9]\d* s\)$/m);
    assert.equal(readFileSync(join(dir, "run", "private-ipv4"), "utf8"), `${addr.db}\n`);
    const network = inNs(ns.db, [join(dir, "17-postgresql-network")], { env });
    assert.equal(network.status, 0, network.stdout + network.stderr);
    assert.equal(readFileSync(join(dir, "etc", "postgresql-listen.conf"), "utf8"), `listen_addresses = 'localhost,${addr.db}'\n`);
    assert.equal(statSync(join(dir, "etc", "postgresql-tls", "server.key")).mode & 0o777, 0o600);

    // A cluster like 20-postgresql's, with our settings included last (as conf.d is).
    const data = join(dir, "data");
    const sock = join(dir, "sock");
    for (const d of [data, sock]) {
      mkdirSync(d);
      chownSync(d, ...userIds("postgres"));
    }
    const init = asPostgres([join(bindir, "initdb"), "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
    assert.equal(init.status, 0, init.stderr);
    writeFileSync(
      join(data, "postgresql.conf"),
      readFileSync(join(data, "postgresql.conf"), "utf8") +
        `\ninclude '${dir}/etc/postgresql.conf'\n` +
        // The test box is no 8 GiB server: only the memory settings are scaled down.
        `unix_socket_directories = '${sock}'\nshared_buffers = 64MB\neffective_cache_size = 256MB\nfsync = off\n`,
    );
    // As after a reboot: PostgreSQL starts before the private interface has its address again.
    // With the rendered sysctl it binds the address anyway and serves it once it is up.
    ip("-n", ns.db, "addr", "del", `${addr.db}/16`, "dev", "br0");
    const sysctlFile = join(dir, "60-saas-vps-postgresql.conf");
    writeFileSync(sysctlFile, renderedContent(db, "/etc/sysctl.d/60-saas-vps-postgresql.conf"));
    const sysctl = inNs(ns.db, ["sysctl", "-q", "-p", sysctlFile]);
    assert.equal(sysctl.status, 0, sysctl.stderr);
    const start = asPostgres([join(bindir, "pg_ctl"), "-D", data, "-l", join(sock, "server.log"), "-w", "-t", "60", "start"]);
    started = start.status === 0;
    const log = () => readFileSync(join(sock, "server.log"), "utf8");
    serverLog = log;
    assert.ok(started, `${start.stderr}\n${log()}`);
    assert.match(log(), /listening on IPv4 address "10\.20\.0\.30", port 5432/);
    assert.match(log(), /listening on IPv4 address "127\.0\.0\.1", port 5432/);
    ip("-n", ns.db, "addr", "add", `${addr.db}/16`, "dev", "br0");

    // The logins SQL as 20-postgresql runs it: as postgres over the socket, passwords from db.env.
    const passwords = Object.fromEntries(renderedContent(db, "/etc/saas-vps/db.env").split("\n").filter((l) => l.startsWith("DB_")).map((l) => l.split("=") as [string, string]));
    const logins = () => asPostgres(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", sock, "-d", "postgres", "-f", sql, "-v", "db=app", "-v", "owner=app", "-v", "web=app_web", "-v", "worker=app_worker"], { ...process.env, ...passwords });
    runLogins = logins;
    const first = logins();
    assert.equal(first.status, 0, first.stderr);
    const again = logins();
    assert.equal(again.status, 0, `the logins SQL must be re-runnable (bootstrap re-runs): ${again.stderr}`);
  });

  after(() => {
    if (started) spawnSync("ip", ["netns", "exec", ns.db, "runuser", "-u", "postgres", "--", join(bindir, "pg_ctl"), "-D", join(dir, "data"), "-m", "immediate", "-w", "stop"]);
    for (const n of Object.values(ns)) spawnSync("ip", ["netns", "del", n]);
  });

  it("each login gets in from its server over TCP with TLS (node-postgres, the URLs as rendered, a self-signed certificate)", () => {
    for (const [from, url, user] of [["app", urls.owner, "app"], ["app", urls.web, "app_web"], ["worker", urls.worker, "app_worker"]] as const) {
      assert.match(url, new RegExp(`^postgres://${user}:[^@]+@10\\.20\\.0\\.30:5432/app\\?sslmode=require&uselibpqcompat=true$`));
      const [row] = rows(from, url, "SELECT current_user AS user, ssl, host(inet_client_addr()) AS client FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      assert.deepEqual(row, { user, ssl: true, client: addr[from] });
    }
  });

  // PostgreSQL logs a slow statement's parameters in full by default (log_parameter_max_length -1).
  it("logs a slow or failing statement without its bind parameters (they can be passwords)", () => {
    const secret = `pw-${randomBytes(6).toString("hex")}`;
    const r = inNs(ns.app, ["node", "-e", PARAMETER_SESSION, join(APP_DIR, "node_modules", "pg"), urls.web,
      JSON.stringify([["SELECT $1::text AS v, pg_sleep(1.2)", [secret]], ["SELECT $1::text AS v, 1/0", [secret]]])]);
    assert.deepEqual(r.stdout.trim().split("\n"), ["ok", "ERROR 22012"], r.stdout + r.stderr);
    const log = serverLog();
    assert.match(log, /duration: \d+\.\d+ ms\s+execute [^:]*: SELECT \$1::text AS v, pg_sleep\(1\.2\)/, "the slow statement is logged");
    assert.match(log, /ERROR:  division by zero/);
    assert.ok(!log.includes(secret), `the server log shows the parameter:\n${log.split("\n").filter((l) => l.includes(secret)).join("\n")}`);
  });

  it("node-postgres without uselibpqcompat verifies the certificate and fails: the flag is what makes sslmode=require work", () => {
    const out = query("app", urls.web.replace("&uselibpqcompat=true", ""), "SELECT 1");
    assert.match(out, /^ERROR DEPTH_ZERO_SELF_SIGNED_CERT self-signed certificate$/);
  });

  it("refuses a connection without TLS, even from an allowed server and login", () => {
    const out = query("app", urls.web.replace("sslmode=require&uselibpqcompat=true", "sslmode=disable"), "SELECT 1");
    assert.match(out, /^ERROR 28000 no pg_hba\.conf entry for host "10\.20\.0\.10", user "app_web", database "app", no encryption$/);
  });

  it("refuses an address the plan does not name, and a login from a server it does not belong to", () => {
    assert.match(query("other", urls.web, "SELECT 1"), /^ERROR 28000 no pg_hba\.conf entry for host "10\.20\.0\.99", user "app_web", database "app", SSL encryption$/);
    assert.match(query("worker", urls.web, "SELECT 1"), /^ERROR 28000 no pg_hba\.conf entry for host "10\.20\.0\.20", user "app_web"/);
    assert.match(query("worker", urls.owner, "SELECT 1"), /^ERROR 28000 no pg_hba\.conf entry for host "10\.20\.0\.20", user "app"/);
    // A wrong password is refused by scram (the line matches, the proof does not).
    assert.match(query("app", urls.web.replace(/:[^:@]+@/, ":wrong-password-0000@"), "SELECT 1"), /^ERROR 28P01 password authentication failed for user "app_web"$/);
  });

  it("the web and worker logins cannot change the schema; the owner can, and what it creates later is theirs to use", () => {
    rows("app", urls.owner, "CREATE TABLE later_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL)");
    rows("app", urls.owner, "CREATE TABLE later_serial (id serial PRIMARY KEY, body text)");
    for (const [from, url, user] of [["app", urls.web, "app_web"], ["worker", urls.worker, "app_worker"]] as const) {
      const refused = [
        ["CREATE TABLE mine (id int)", /^ERROR 42501 permission denied for schema public$/],
        ["ALTER TABLE later_notes ADD COLUMN x int", /^ERROR 42501 must be owner of table later_notes$/],
        ["DROP TABLE later_notes", /^ERROR 42501 must be owner of table later_notes$/],
        ["CREATE SCHEMA mine", /^ERROR 42501 permission denied for database app$/],
        ["TRUNCATE later_notes", /^ERROR 42501 permission denied for table later_notes$/],
      ] as const;
      // Data rights on tables made after the grants: insert (identity and serial), select, update, delete.
      const allowed = [
        "INSERT INTO later_notes (body) VALUES ('hello')",
        "INSERT INTO later_serial (body) VALUES ('via a sequence')",
        "UPDATE later_notes SET body = 'edited' WHERE body = 'hello'",
        "SELECT body FROM later_notes WHERE body = 'edited' FOR UPDATE SKIP LOCKED",
        "DELETE FROM later_notes WHERE body = 'edited'",
      ];
      const out = session(from, url, [...refused.map(([sql]) => sql), ...allowed]);
      refused.forEach(([sql, expected], i) => assert.match(out[i], expected, `${user}: ${sql}`));
      allowed.forEach((sql, i) => parsed(user, sql, out[refused.length + i]));
      assert.deepEqual(JSON.parse(out[refused.length + 3]), [{ body: "edited" }]);
    }
  });

  it("the app's real migrations run as the owner, and graphile-worker's queue works for web (enqueue) and worker (run) with their logins", () => {
    const env = (url: string) => ({ ...process.env, DATABASE_URL: url, SECRET_KEY: "x".repeat(40), APP_URL: "http://192.0.2.10", LOG_LEVEL: "error" });
    const migrate = inNs(ns.app, [join(APP_DIR, "node_modules", ".bin", "tsx"), "src/migrate.ts"], { cwd: APP_DIR, env: env(urls.owner) });
    assert.equal(migrate.status, 0, migrate.stdout + migrate.stderr);
    // Web enqueues as the app does (graphile_worker.add_job on its own connection) and reads the queue.
    rows("app", urls.web, "SELECT graphile_worker.add_job('noop', '{}'::json)");
    assert.deepEqual(rows("app", urls.web, "SELECT count(*)::int AS n FROM graphile_worker.jobs"), [{ n: 1 }]);
    // The worker runs it with graphile-worker itself (its startup migration check, the job fetch
    // with FOR UPDATE SKIP LOCKED, the completion), then nothing is left.
    const runOnce = `require(process.argv[1]).runOnce({ connectionString: process.argv[2], taskList: { noop: async () => {} }, logger: new (require(process.argv[1]).Logger)(() => () => {}) })
      .then(() => process.exit(0), (e) => { console.log("ERROR " + e.message); process.exit(1); });`;
    const worked = inNs(ns.worker, ["node", "-e", runOnce, join(APP_DIR, "node_modules", "graphile-worker"), urls.worker]);
    assert.equal(worked.status, 0, worked.stdout + worked.stderr);
    assert.deepEqual(rows("app", urls.web, "SELECT count(*)::int AS n FROM graphile_worker.jobs"), [{ n: 0 }]);
    // Neither may touch the migrations' bookkeeping structure.
    assert.match(query("worker", urls.worker, "ALTER TABLE graphile_worker._private_jobs ADD COLUMN x int"), /^ERROR 42501 must be owner of table _private_jobs$/);
    assert.match(query("app", urls.web, "CREATE TABLE graphile_worker.mine (id int)"), /^ERROR 42501 permission denied for schema graphile_worker$/);
  });

  it("the audit log is append-only for web and worker, even after the logins SQL grants them DML on every table again; retention goes through the owner's function", () => {
    const again = runLogins();
    assert.equal(again.status, 0, again.stderr);
    for (const [from, url, user] of [["app", urls.web, "app_web"], ["worker", urls.worker, "app_worker"]] as const) {
      const granted = rows(from, url, "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) AS p FROM information_schema.role_table_grants WHERE table_name = 'audit_events' AND grantee = current_user");
      assert.deepEqual(granted, [{ p: "DELETE,INSERT,SELECT,UPDATE" }], "the grants alone would allow it");
      const out = session(from, url, [
        "INSERT INTO audit_events (kind) VALUES ('auth.login') RETURNING kind",
        "UPDATE audit_events SET kind = 'auth.forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "SELECT prune_audit_events(1)",
        "SELECT prune_audit_events(30) AS removed",
        "SELECT count(*) > 0 AS kept FROM audit_events",
      ]);
      assert.deepEqual(JSON.parse(out[0]), [{ kind: "auth.login" }]);
      assert.match(out[1], new RegExp(`^ERROR 42501 audit_events is append-only: UPDATE is not allowed for ${user}$`));
      assert.match(out[2], new RegExp(`^ERROR 42501 audit_events is append-only: DELETE is not allowed for ${user}$`));
      assert.match(out[3], /^ERROR 42501 permission denied for table audit_events$/);
      assert.match(out[4], /^ERROR 22023 prune_audit_events: keep_days must be at least 30, got 1$/);
      assert.deepEqual(JSON.parse(out[5]), [{ removed: "0" }]);
      assert.deepEqual(JSON.parse(out[6]), [{ kept: true }]);
    }
  });
});
