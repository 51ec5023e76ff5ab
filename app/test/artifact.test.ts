// The release artifact as a server gets it: built by scripts/build.mjs into a temp dir, unpacked,
// and run through its bin/ wrappers against a fresh database of the test PostgreSQL.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pg from "pg";
import { databaseUrl, register, SECRET, startTestApp, tmpDir, uniqueAddress } from "./helpers/app.js";
import { freePort, pickMetricsPorts, startProcess, type Proc } from "./helpers/proc.js";
import { startValkeyServer } from "./helpers/valkey.js";
import { waitFor } from "./helpers/wait.js";

const appRoot = fileURLToPath(new URL("..", import.meta.url));

/** Runs the build into `outDir`; returns the tarball it printed last. */
function build(outDir: string): string {
  const stdout = execFileSync(process.execPath, [path.join(appRoot, "scripts", "build.mjs"), "--out-dir", outDir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return stdout.trim().split("\n").pop()!;
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/** The package directories esbuild names in its "// node_modules/<pkg>/<file>" comments. */
function bundledPackageDirs(dist: string): Set<string> {
  const dirs = new Set<string>();
  for (const f of filesUnder(dist).filter((f) => f.endsWith(".js"))) {
    for (const m of readFileSync(path.join(dist, f), "utf8").matchAll(/^\/\/ ((?:node_modules\/(?:@[^/\n]+\/)?[^/\n]+\/)+)/gm)) {
      dirs.add(m[1]!.replace(/\/$/, ""));
    }
  }
  return dirs;
}

/** A database URL like the test one, naming another database. */
function urlFor(database: string): string {
  const u = new URL(databaseUrl());
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = databaseUrl()): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

describe("release artifact (scripts/build.mjs)", function () {
  this.timeout(180_000);
  let out: string;
  let tarball: string;
  let release: string;
  let id: string;
  const database = `artifact_${randomBytes(4).toString("hex")}`;
  const procs: Proc[] = [];

  before(async () => {
    out = tmpDir("artifact");
    tarball = build(path.join(out, "build"));
    release = path.join(out, "release");
    execFileSync("mkdir", ["-p", release]);
    execFileSync("tar", ["-xzf", tarball, "-C", release]);
    id = JSON.parse(readFileSync(path.join(release, "manifest.json"), "utf8")).id;
    await admin((c) => c.query(`CREATE DATABASE ${database}`));
  });
  after(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
  });

  it("is named by its manifest id and holds the layout the release tool and units run", () => {
    assert.match(id, /^[0-9a-f]{16}$/);
    assert.equal(path.basename(tarball), `saas-app-${id}.tar.gz`);
    for (const bin of ["web", "worker", "migrate"]) {
      assert.ok(statSync(path.join(release, "bin", bin)).mode & 0o111, `bin/${bin} is executable`);
      assert.ok(existsSync(path.join(release, "dist", `${bin}.js`)), `dist/${bin}.js`);
    }
    assert.ok(existsSync(path.join(release, "migrations", "001_init.sql")));
    assert.equal(JSON.parse(readFileSync(path.join(release, "package.json"), "utf8")).type, "module");
  });

  it("ships no node_modules, no source maps and only production dependencies", () => {
    const files = filesUnder(release);
    assert.deepEqual(files.filter((f) => f.split(path.sep).includes("node_modules")), []);
    assert.deepEqual(files.filter((f) => f.endsWith(".map")), []);
    const js = files.filter((f) => f.endsWith(".js"));
    assert.deepEqual(js.filter((f) => /sourceMappingURL|sourcesContent/.test(readFileSync(path.join(release, f), "utf8"))), []);

    const lock = JSON.parse(readFileSync(path.join(appRoot, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
    const bundled = bundledPackageDirs(path.join(release, "dist"));
    for (const dep of ["fastify", "pg", "pino", "graphile-worker", "node-pg-migrate", "nodemailer"]) {
      assert.ok(bundled.has(`node_modules/${dep}`), `${dep} is in the bundle`);
    }
    const notProduction = [...bundled].filter((dir) => !lock.packages[dir] || lock.packages[dir].dev);
    assert.deepEqual(notProduction, [], "bundled packages that package-lock.json does not install for production");
    const licenses = readFileSync(path.join(release, "THIRD_PARTY_LICENSES.txt"), "utf8");
    for (const dir of bundled) {
      const { name, version } = JSON.parse(readFileSync(path.join(appRoot, dir, "package.json"), "utf8"));
      assert.ok(licenses.includes(`\n${name} ${version} — `), `THIRD_PARTY_LICENSES.txt names ${name} ${version}`);
    }
  });

  it("holds ASCII-only JavaScript (V8 keeps a file with any other character as two-byte source)", () => {
    const js = filesUnder(path.join(release, "dist")).filter((f) => f.endsWith(".js"));
    assert.ok(js.length > 3);
    const notAscii = js.filter((f) => /[^\x00-\x7f]/.test(readFileSync(path.join(release, "dist", f), "utf8")));
    assert.deepEqual(notAscii, []);
  });

  it("is byte-identical when built again from the same sources", () => {
    const again = build(path.join(out, "again"));
    assert.equal(path.basename(again), path.basename(tarball));
    assert.equal(sha256(again), sha256(tarball));
  });

  it("bin/migrate creates the schema in an empty database, then finds it up to date", async () => {
    const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "info" };
    const first = startProcess(path.join(release, "bin", "migrate"), [], env, "/");
    procs.push(first);
    assert.deepEqual(await first.exited, { code: 0, signal: null }, first.output.join("\n"));
    // Every migration the artifact ships, in order.
    const shipped = readdirSync(path.join(release, "migrations")).filter((f) => f.endsWith(".sql")).sort().map((f) => f.replace(/\.sql$/, ""));
    assert.ok(shipped.length > 0 && first.output.some((l) => l.includes(`"applied":${JSON.stringify(shipped)}`)), first.output.join("\n"));
    const tables = await admin((c) => c.query<{ users: string | null; jobs: string | null }>(
      "SELECT to_regclass('public.users')::text AS users, to_regclass('graphile_worker._private_jobs')::text AS jobs",
    ), urlFor(database));
    assert.deepEqual(tables.rows[0], { users: "users", jobs: "graphile_worker._private_jobs" });
    const second = startProcess(path.join(release, "bin", "migrate"), [], env, "/");
    procs.push(second);
    assert.deepEqual(await second.exited, { code: 0, signal: null }, second.output.join("\n"));
    assert.ok(second.output.some((l) => l.includes("schema up to date")), second.output.join("\n"));
  });

  it("bin/web answers /health as its release and bin/worker runs the job a signup enqueues; both exit 0 on SIGTERM", async () => {
    const port = await freePort();
    const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "info", PORT: String(port), UPLOAD_DIR: tmpDir("artifact-uploads") };
    const web = startProcess(path.join(release, "bin", "web"), [], env, "/");
    const worker = startProcess(path.join(release, "bin", "worker"), [], env, "/");
    procs.push(web, worker);
    const health = await waitFor("/health 200", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      return res?.status === 200 ? res : undefined;
    }, 60_000, 100);
    assert.equal(health.headers.get("x-app-release"), id);
    assert.deepEqual(await health.json(), { status: "ok" });

    const signup = await fetch(`http://127.0.0.1:${port}/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "artifact@example.test", password: "a long password", name: "Artifact" }),
    });
    // Signup answers 202 (the address is verified by the link in the mail the worker sends).
    assert.equal(signup.status, 202, await signup.text());
    const done = JSON.parse(await worker.waitForLog('"message":"job done"', 30_000));
    assert.equal(done.task, "send_welcome_email");

    web.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
    assert.deepEqual(await worker.exited, { code: 0, signal: null }, worker.output.join("\n"));
  });

  it("loads prom-client only with METRICS_PORT_OFFSET: from its own chunk, and bin/web and bin/worker then serve metrics", async () => {
    const entries = ["web.js", "worker.js", "migrate.js"].map((f) => readFileSync(path.join(release, "dist", f), "utf8"));
    assert.ok(entries.every((code) => !code.includes("// node_modules/prom-client/")), "prom-client is in an entry bundle");
    assert.ok(bundledPackageDirs(path.join(release, "dist")).has("node_modules/prom-client"), "prom-client is in a chunk");
    const { web: [port], workerId, offset } = await pickMetricsPorts();
    const env = {
      DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "info",
      PORT: String(port), WORKER_ID: String(workerId), METRICS_PORT_OFFSET: String(offset), UPLOAD_DIR: tmpDir("artifact-uploads"),
    };
    const web = startProcess(path.join(release, "bin", "web"), [], env, "/");
    const worker = startProcess(path.join(release, "bin", "worker"), [], env, "/");
    procs.push(web, worker);
    await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 60_000, 100);
    await worker.waitForLog('"message":"worker started"', 60_000);
    const webMetrics = await (await fetch(`http://127.0.0.1:${port + offset}/metrics`)).text();
    assert.match(webMetrics, /^http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\} 1$/m);
    assert.match(webMetrics, /^jobs_oldest_ready_age_seconds \d/m);
    const workerMetrics = await (await fetch(`http://127.0.0.1:${workerId + offset}/metrics`)).text();
    assert.match(workerMetrics, /^db_pool_max_connections 4$/m);
    web.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
    assert.deepEqual(await worker.exited, { code: 0, signal: null }, worker.output.join("\n"));
  });

  it("runs with VALKEY_URL: bin/web and bin/worker connect over TLS, loading iovalkey from its own chunk, and web counts limits there", async () => {
    const entries = ["web.js", "worker.js", "migrate.js"].map((f) => readFileSync(path.join(release, "dist", f), "utf8"));
    assert.ok(entries.every((code) => !code.includes("// node_modules/iovalkey/")), "iovalkey is in an entry bundle");
    const valkey = await startValkeyServer();
    try {
      const port = await freePort();
      const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "info", PORT: String(port), UPLOAD_DIR: tmpDir("artifact-uploads"), VALKEY_URL: valkey.url };
      const web = startProcess(path.join(release, "bin", "web"), [], env, "/");
      const worker = startProcess(path.join(release, "bin", "worker"), [], env, "/");
      procs.push(web, worker);
      await web.waitForLog('"message":"valkey connected"', 60_000);
      await worker.waitForLog('"message":"valkey connected"', 60_000);
      await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 60_000, 100);
      const ip = uniqueAddress();
      const res = await fetch(`http://127.0.0.1:${port}/auth/login`, {
        method: "POST", headers: { "content-type": "application/json", "x-forwarded-for": ip }, body: JSON.stringify({ email: "nobody@example.test", password: "whatever pw" }),
      });
      assert.equal(res.status, 401, `${await res.text()}\n${web.output.join("\n")}`);
      assert.equal(await valkey.inspect().get(`rl:login_ip:${ip}`), "1", "the login was counted in Valkey");
      web.child.kill("SIGTERM");
      worker.child.kill("SIGTERM");
      assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
      assert.deepEqual(await worker.exited, { code: 0, signal: null }, worker.output.join("\n"));
      assert.ok(![...web.output, ...worker.output].some((l) => l.includes(valkey.password) || l.includes(encodeURIComponent(valkey.password))), "no password in the output");
    } finally {
      await valkey.close();
    }
  });

  it("bin/web, with nothing optional configured, is healthy having loaded only its static chunks, and not fetch, https or http2", async () => {
    // A module hook (in Node's loader thread) appends every file URL loaded; at exit the process
    // writes which of Node's built-in modules it loaded (Node loads each on first use; fetch is undici).
    const dir = tmpDir("artifact-load-probe");
    const loadedFile = path.join(dir, "loaded.txt");
    const builtinsFile = path.join(dir, "builtins.json");
    writeFileSync(path.join(dir, "hooks.mjs"), [
      'import { appendFileSync } from "node:fs";',
      "let file;",
      "export async function initialize(data) { file = data.file; }",
      'export async function load(url, context, next) { if (url.startsWith("file:")) appendFileSync(file, `${url}\\n`); return next(url, context); }',
    ].join("\n"));
    writeFileSync(path.join(dir, "probe.mjs"), [
      'import { register } from "node:module";',
      'import { writeFileSync } from "node:fs";',
      `register(${JSON.stringify(pathToFileURL(path.join(dir, "hooks.mjs")).href)}, { data: { file: ${JSON.stringify(loadedFile)} } });`,
      `process.on("exit", () => writeFileSync(${JSON.stringify(builtinsFile)}, JSON.stringify(process.moduleLoadList)));`,
    ].join("\n"));
    const port = await freePort();
    const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "warn", PORT: String(port), UPLOAD_DIR: tmpDir("artifact-uploads") };
    const web = startProcess(process.execPath, ["--import", pathToFileURL(path.join(dir, "probe.mjs")).href, path.join(release, "dist", "web.js")], env, "/");
    procs.push(web);
    await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 60_000, 100);
    web.child.kill("SIGTERM");
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));

    const dist = path.join(release, "dist");
    const loaded = new Set(readFileSync(loadedFile, "utf8").trim().split("\n").filter((u) => u.startsWith(pathToFileURL(dist).href)).map((u) => path.relative(dist, fileURLToPath(u))));
    assert.ok(loaded.has("web.js"), [...loaded].join(", "));
    const holding = (pkg: string) => filesUnder(dist).filter((f) => readFileSync(path.join(dist, f), "utf8").includes(`// node_modules/${pkg}/`));
    for (const pkg of ["stripe", "@sentry/core", "prom-client", "graphile-worker", "nodemailer", "iovalkey"]) {
      assert.ok(holding(pkg).length > 0, `${pkg} is in the bundle`);
      assert.deepEqual(holding(pkg).filter((f) => loaded.has(f)), [], `${pkg} was loaded by a start that does not use it`);
    }
    const builtins = JSON.parse(readFileSync(builtinsFile, "utf8")) as string[];
    assert.ok(builtins.includes("NativeModule net"), "the probe saw the built-ins");
    // fetch (undici) came with pg's Cloudflare probe, https and http2 with Fastify (build.mjs: SOURCE_PATCHES).
    assert.deepEqual(builtins.filter((m) => /undici|^NativeModule (https|http2)$/.test(m)), [], "built-ins a start does not use");
  });

  it("bin/web bundles no schema compiler: Ajv, fast-json-stringify and light-my-request are left out", () => {
    // Each left-out package is a stub that throws; its code is not in the bundle web parses.
    const web = readFileSync(path.join(release, "dist", "web.js"), "utf8");
    for (const dir of ["node_modules/ajv/dist/core.js", "node_modules/fast-json-stringify/index.js", "node_modules/light-my-request/index.js", "node_modules/@fastify/ajv-compiler/index.js"]) {
      assert.ok(!web.includes(`// ${dir}\n`), `${dir} is in dist/web.js`);
    }
    assert.match(web, /@fastify\/ajv-compiler is not in the release bundle/);
  });

  it("bin/web's precompiled validators and serializers answer exactly as the sources' run-time compiled ones", async () => {
    const port = await freePort();
    const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "warn", PORT: String(port), UPLOAD_DIR: tmpDir("artifact-uploads") };
    const web = startProcess(path.join(release, "bin", "web"), [], env, "/");
    procs.push(web);
    // The sources' app (Fastify compiles every schema at start) on the same database and secret.
    const t = await startTestApp({ DATABASE_URL: urlFor(database) });
    try {
      await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 60_000, 100);
      const u = await register(t, "precompiled");
      const created = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/projects`, headers: u.auth, payload: { name: "Compared" } });
      assert.equal(created.statusCode, 201, created.body);
      const projectId: string = created.json().project.id;
      const orgs = `/orgs/${u.orgId}`;
      const cases: Array<[string, string, object | string | undefined]> = [
        // Request validators: body, params, querystring; formats, lengths, patterns, unknown properties, coercion.
        ["POST", "/auth/register", { email: "not-an-email", password: "long enough pw", name: "x" }],
        ["POST", "/auth/register", { email: "a@example.test", password: "short", name: "x" }],
        ["POST", "/auth/register", { email: "a@example.test", password: "long enough pw" }],
        ["POST", "/auth/register", { email: "a@example.test", password: "long enough pw", name: "x", admin: true }],
        ["POST", "/auth/login", undefined],
        ["POST", "/auth/login", "{not json"],
        ["POST", `${orgs}/projects`, { name: "" }],
        ["POST", `${orgs}/projects`, { name: "   " }],
        ["PATCH", `${orgs}/projects/${projectId}`, {}],
        ["GET", `${orgs}/projects?limit=1000`, undefined],
        ["GET", `${orgs}/projects?limit=abc`, undefined],
        ["GET", `${orgs}/projects/123`, undefined],
        ["POST", `${orgs}/invitations`, { email: "b@example.test", role: "owner" }],
        ["PATCH", `${orgs}/members/${u.userId}`, { role: "god" }],
        // Reply serializers (nullable fields: an inlined validator picks the branch).
        ["GET", `${orgs}/projects?limit=5`, undefined],
        ["GET", `${orgs}/projects/${projectId}`, undefined],
        ["GET", `${orgs}/events?limit=5`, undefined],
      ];
      for (const [method, url, body] of cases) {
        const headers = { ...u.auth, "x-forwarded-for": uniqueAddress(), ...(body === undefined ? {} : { "content-type": "application/json" }) };
        const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
        const expected = await t.app.inject({ method: method as "GET", url, headers, payload });
        const res = await fetch(`http://127.0.0.1:${port}${url}`, { method, headers, body: payload });
        const what = `${method} ${url}`;
        assert.equal(res.status, expected.statusCode, `${what}: ${expected.body}`);
        assert.equal(await res.text(), expected.body, what);
      }
    } finally {
      await t.close();
    }
    web.child.kill("SIGTERM");
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
  });

  it("bin/web gives each password hash's 16 MiB back to the system (RSS does not keep them)", async () => {
    // Under glibc's dynamic mmap threshold, every libuv thread that has run a hash keeps 16 MiB
    // resident for good: two hashes at a time on four threads are 32-64 MiB after a few logins.
    const port = await freePort();
    const env = { DATABASE_URL: urlFor(database), SECRET_KEY: SECRET, APP_URL: "http://app.example.test", LOG_LEVEL: "warn", PORT: String(port), UPLOAD_DIR: tmpDir("artifact-uploads") };
    const web = startProcess(path.join(release, "bin", "web"), [], env, "/");
    procs.push(web);
    await waitFor("/health 200", async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200 || undefined, 60_000, 100);
    // bin/web execs node: the child's pid is the web process.
    const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${web.child.pid}/status`, "utf8"))![1]) / 1024;
    const before = rssMiB();
    for (let round = 0; round < 4; round++) {
      const statuses = await Promise.all([0, 1, 2, 3].map(async (i) => {
        const res = await fetch(`http://127.0.0.1:${port}/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email: `nobody-${round}-${i}@example.test`, password: "a long password" }),
        });
        return res.status;
      }));
      // 401: each unknown address paid a full hash (verifyAgainstDummy), none refused by a limit.
      assert.deepEqual(statuses, [401, 401, 401, 401]);
    }
    const grown = rssMiB() - before;
    assert.ok(grown < 24, `RSS grew ${grown.toFixed(1)} MiB over 16 password hashes (from ${before.toFixed(1)} MiB)`);
    web.child.kill("SIGTERM");
    assert.deepEqual(await web.exited, { code: 0, signal: null }, web.output.join("\n"));
  });
});
