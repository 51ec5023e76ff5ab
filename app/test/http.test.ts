import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { register, startTestApp, tmpDir, type TestApp } from "./helpers/app.js";
import { createErrorReporter } from "../src/core/sentry.js";
import { readReleaseId } from "../src/core/release.js";
import { precompiledCompilers } from "../src/api/schema-compilers.js";

async function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

describe("health", () => {
  it("answers 200 {status: ok} when the database answers", async () => {
    const t = await startTestApp();
    try {
      const res = await t.app.inject({ method: "GET", url: "/health" });
      assert.equal(res.statusCode, 200);
      assert.equal(res.body, '{"status":"ok"}');
    } finally {
      await t.close();
    }
  });

  it("answers 503 when nothing listens on the database port", async () => {
    const closed = createTcpServer();
    const port = await listen(closed);
    await new Promise((r) => closed.close(r));
    const t = await startTestApp({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres` });
    try {
      const res = await t.app.inject({ method: "GET", url: "/health" });
      assert.equal(res.statusCode, 503);
      assert.deepEqual(res.json(), { status: "unavailable" });
    } finally {
      await t.close();
    }
  });

  it("answers 503 within its time bound when the database hangs", async () => {
    // Accepts TCP connections and never says a word: a hung server, the worst case for a probe.
    const sockets: Socket[] = [];
    const blackhole = createTcpServer((s) => sockets.push(s));
    const port = await listen(blackhole);
    const t = await startTestApp({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres` }, { healthTimeoutMs: 300 });
    try {
      const t0 = Date.now();
      const res = await t.app.inject({ method: "GET", url: "/health" });
      assert.equal(res.statusCode, 503);
      assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      await t.close().catch(() => {});
      blackhole.close();
    }
  });
});

describe("http conventions", () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({}, { releaseId: "0123456789abcdef" });
  });
  after(async () => t.close());

  it("stamps every response, even 404s and 400s, with X-App-Release", async () => {
    for (const url of ["/health", "/nope", "/orgs/not-a-uuid/projects"]) {
      const res = await t.app.inject({ method: "GET", url });
      assert.equal(res.headers["x-app-release"], "0123456789abcdef", url);
    }
  });

  it("writes exactly one JSON log line per request, with the request id from X-Request-Id", async () => {
    t.logs.length = 0;
    const res = await t.app.inject({ method: "GET", url: "/health?probe=1", headers: { "x-request-id": "nginx-abc-123" } });
    assert.equal(res.headers["x-request-id"], "nginx-abc-123");
    await t.app.inject({ method: "GET", url: "/nope" });
    assert.equal(t.logs.length, 2, JSON.stringify(t.logs));
    const [first, second] = t.logs as Array<Record<string, unknown>>;
    // The shape every line has: level, service, request_id, path, status, message.
    assert.equal(first!.level, "info");
    assert.equal(first!.service, "web");
    assert.equal(first!.message, "request");
    assert.equal(first!.request_id, "nginx-abc-123");
    assert.equal(first!.method, "GET");
    assert.equal(first!.path, "/health");
    assert.equal(first!.status, 200);
    assert.equal(typeof first!.durationMs, "number");
    assert.equal(second!.status, 404);
    assert.match(String(second!.request_id), /^[0-9a-f-]{36}$/, "generated when absent");
  });

  it("does not trust a malformed X-Request-Id", async () => {
    const res = await t.app.inject({ method: "GET", url: "/health", headers: { "x-request-id": "bad id\nwith newline" } });
    assert.match(String(res.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  });

  it("validates bodies, params and queries with a 400 that names the problem", async () => {
    const u = await register(t, "validator");
    const cases: Array<[string, string, object | undefined, RegExp]> = [
      ["POST", "/auth/register", { email: "not-an-email", password: "long enough pw", name: "x" }, /^body\/email must match format "email"$/],
      ["POST", "/auth/register", { email: "a@example.test", password: "short", name: "x" }, /^body\/password must NOT have fewer than 10 characters$/],
      ["POST", "/auth/register", { email: "a@example.test", password: "long enough pw" }, /^body\/name is required$/],
      ["POST", "/auth/register", { email: "a@example.test", password: "long enough pw", name: "x", admin: true }, /^body has unknown property "admin"$/],
      ["POST", "/auth/login", undefined, /body/i],
      ["POST", `/orgs/${u.orgId}/projects`, { name: "" }, /^body\/name must NOT have fewer than 1 characters$/],
      ["POST", `/orgs/${u.orgId}/projects`, { name: "   " }, /^body\/name must match pattern/],
      ["PATCH", `/orgs/${u.orgId}/projects/${u.orgId}`, {}, /^body must NOT have fewer than 1 properties$/],
      ["GET", `/orgs/${u.orgId}/projects?limit=1000`, undefined, /^querystring\/limit must be <= 100$/],
      ["GET", `/orgs/${u.orgId}/projects/123`, undefined, /^params\/projectId must match format "uuid"$/],
      ["POST", `/orgs/${u.orgId}/invitations`, { email: "b@example.test", role: "owner" }, /^body\/role must be equal to constant/],
      ["PATCH", `/orgs/${u.orgId}/members/${u.userId}`, { role: "god" }, /^body\/role/],
    ];
    for (const [method, url, payload, message] of cases) {
      const res = await t.app.inject({ method: method as "GET", url, headers: u.auth, ...(payload ? { payload } : {}) });
      assert.equal(res.statusCode, 400, `${method} ${url}: ${res.body}`);
      assert.match(res.json().message, message, `${method} ${url}`);
    }
    const raw = await t.app.inject({ method: "POST", url: "/auth/login", headers: { "content-type": "application/json" }, payload: "{not json" });
    assert.equal(raw.statusCode, 400);
    const projects = await t.pool.query("SELECT count(*)::int AS n FROM projects WHERE org_id = $1", [u.orgId]);
    assert.equal(projects.rows[0].n, 0, "nothing was written by rejected requests");
  });

  it("refuses to start when a route schema has no precompiled validator (a release never runs a route unvalidated)", async () => {
    // As a release would be if the build had seen none of the routes.
    const compiled = { validators: {}, serializers: {} };
    await assert.rejects(
      startTestApp({}, { schemaController: precompiledCompilers(compiled) }),
      /Failed building the validation schema for [A-Z]+: \/\S*, due to error no precompiled validator for [A-Z]+ \/\S* (body|params|querystring): the build \(scripts\/build\.mjs\) registers every route once/,
    );
  });

  it("reads the release id from manifest.json at the package root, else 'dev'", () => {
    const root = tmpDir("release");
    assert.equal(readReleaseId(root), "dev");
    writeFileSync(path.join(root, "manifest.json"), JSON.stringify({ id: "feedfacecafebeef", name: "saas-app" }));
    assert.equal(readReleaseId(root), "feedfacecafebeef");
  });
});

describe("error reporting", () => {
  it("sends unhandled errors to Sentry when SENTRY_DSN is set, with release, environment and request id", async () => {
    const envelopes: Array<{ url: string; body: string }> = [];
    const sentry = createHttpServer((req: IncomingMessage, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        envelopes.push({ url: req.url ?? "", body });
        res.writeHead(200).end("{}");
      });
    });
    const sentryPort = await listen(sentry);
    const dsn = `http://publickey@127.0.0.1:${sentryPort}/42`;
    // A database that is down makes the authenticated route fail with a 500.
    const closed = createTcpServer();
    const dbPort = await listen(closed);
    await new Promise((r) => closed.close(r));
    const reporter = await createErrorReporter(dsn, "test-release", "web", "stack-prod");
    const t = await startTestApp({ DATABASE_URL: `postgres://postgres@127.0.0.1:${dbPort}/postgres`, SENTRY_DSN: dsn }, { reporter });
    try {
      const res = await t.app.inject({ method: "GET", url: "/me", headers: { authorization: "Bearer sess_whatever", "x-request-id": "req-sentry-1" } });
      assert.equal(res.statusCode, 500);
      await reporter.flush(3000);
      assert.equal(envelopes.length, 1);
      assert.match(envelopes[0]!.url, /^\/api\/42\/envelope\/\?.*sentry_key=publickey/);
      assert.match(envelopes[0]!.body, /ECONNREFUSED/);
      const event = JSON.parse(envelopes[0]!.body.split("\n")[2]!) as { release: string; environment: string; tags: Record<string, string> };
      assert.equal(event.release, "test-release");
      assert.equal(event.environment, "stack-prod", "SENTRY_ENVIRONMENT: the stack");
      assert.deepEqual(event.tags, { component: "web", request_id: "req-sentry-1" });
    } finally {
      await t.close();
      sentry.close();
    }
  });
});
