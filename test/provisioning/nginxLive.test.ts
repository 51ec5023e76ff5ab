/**
 * The rendered nginx site, served by real nginx on loopback in front of two small upstream
 * servers: failover, request ids, JSON access log, security headers, gzip, body limit.
 * nginx runs as root here with its own prefix, pid and logs in a temp folder.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:net";
import {
  AUTH_BURST, AUTH_RETRY_AFTER_SECONDS, AUTH_ROUTES, CLIENT_TIMEOUT_SECONDS, NGINX_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS, renderNginxSite,
} from "../../provisioning/nginx";
import { RenderError } from "../../provisioning/errors";
import { freePort, tempDir } from "../support/tools";

/**
 * An upstream that answers with its own name and echoes the request id it received; under /slow
 * it answers after SLOW_MS, so that concurrent requests are in flight at the upstream together.
 */
async function upstream(name: string, port: number): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url?.startsWith("/slow")) await new Promise((r) => setTimeout(r, SLOW_MS));
    if (req.method === "POST") {
      req.resume();
      req.on("end", () => res.end("ok"));
      return;
    }
    res.setHeader("content-type", "application/json");
    res.setHeader("x-upstream", name);
    res.setHeader("x-seen-request-id", String(req.headers["x-request-id"] ?? ""));
    res.setHeader("x-seen-forwarded-host", String(req.headers["x-forwarded-host"] ?? ""));
    // As the app does: answer with the id it got. The client must still see the header once.
    res.setHeader("x-request-id", String(req.headers["x-request-id"] ?? ""));
    res.end(JSON.stringify({ name, padding: "x".repeat(4096) }));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

const SLOW_MS = 100;

describe("rendered nginx site under real nginx", function () {
  this.timeout(30_000);
  let dir: string;
  let nginx: ChildProcess;
  let port: number;
  const upstreams: Server[] = [];

  before(async () => {
    dir = tempDir("nginx-live");
    const ports = [await freePort(), await freePort()];
    port = await freePort();
    upstreams.push(await upstream("a", ports[0]), await upstream("b", ports[1]));
    const site = renderNginxSite({ webPorts: ports, httpPort: port, listenAddress: "127.0.0.1", accessLog: join(dir, "access.log"), maxBodyMiB: 1 });
    writeFileSync(join(dir, "site.conf"), site);
    writeFileSync(
      join(dir, "nginx.conf"),
      `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log; events {} http { include /etc/nginx/mime.types; client_body_temp_path ${dir}; proxy_temp_path ${dir}; include ${dir}/site.conf; }\n`,
    );
    nginx = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "inherit" });
    for (let i = 0; i < 50; i++) {
      if (await fetch(`http://127.0.0.1:${port}/health`).then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nginx did not start; see ${dir}/error.log (rerun with KEEP_TMP=1 to keep it)`);
  });

  after(async () => {
    nginx?.kill("SIGQUIT");
    await Promise.all(upstreams.map((s) => new Promise((r) => s.close(r))));
  });

  it("spreads requests over every web instance", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add((await fetch(`http://127.0.0.1:${port}/x`)).headers.get("x-upstream")!);
    assert.deepEqual([...seen].sort(), ["a", "b"]);
  });

  // A burst of more requests in flight than the keepalive cache holds made nginx close the surplus
  // upstream connections after each answer and open new ones for the next wave (`keepalive 32`:
  // about 68 per wave of 100); bench/proxy.ts measures what that costs the instances.
  it("reuses its upstream connections through waves of 100 concurrent requests", async () => {
    const opened = () => Promise.all(upstreams.map((s) => new Promise<number>((r) => s.getConnections((_e, n) => r(n)))));
    let connects = 0;
    const count = () => connects++;
    for (const s of upstreams) s.on("connection", count);
    try {
      const wave = async () => {
        const statuses = await Promise.all(Array.from({ length: 100 }, () => fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.arrayBuffer().then(() => r.status))));
        assert.deepEqual([...new Set(statuses)], [200]);
      };
      await wave();
      const afterFirst = connects;
      for (let i = 0; i < 3; i++) await wave();
      const later = connects - afterFirst;
      assert.ok(later <= 5, `nginx opened ${later} new upstream connections in 3 more waves of 100 (${afterFirst} in the first; ` +
        `open now: ${(await opened()).join(" + ")})`);
    } finally {
      for (const s of upstreams) s.off("connection", count);
    }
  });

  // The app must never close an idle connection nginx may be writing a POST onto (a 502 nginx does
  // not retry); so nginx closes them first. Node's own default would close at 5 s (+1 s) idle.
  it("closes an idle upstream keep-alive connection itself, after keepalive_timeout", async function () {
    this.timeout(15_000);
    const closed = new Promise<{ by: string; ms: number }>((resolve) => {
      const watch = (req: IncomingMessage, res: ServerResponse) => {
        const socket = req.socket; // res lets go of it once finished
        res.once("finish", () => {
          const idleSince = Date.now();
          // "end" on the upstream's side is nginx's FIN; a "close" without it is the upstream's own timeout.
          socket.once("end", () => resolve({ by: "nginx", ms: Date.now() - idleSince }));
          socket.once("close", () => resolve({ by: "the upstream", ms: Date.now() - idleSince }));
        });
      };
      for (const s of upstreams) s.once("request", watch);
    });
    assert.equal((await fetch(`http://127.0.0.1:${port}/x`)).status, 200);
    const { by, ms } = await closed;
    const limit = NGINX_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS * 1000;
    assert.equal(by, "nginx", `the idle connection was closed by ${by} after ${ms} ms`);
    assert.ok(ms >= limit - 500 && ms < limit + 1500, `nginx closed the idle upstream connection after ${ms} ms (keepalive_timeout ${limit} ms)`);
  });

  it("keeps a caller's X-Request-Id, makes one otherwise, and returns it once", async () => {
    const given = await fetch(`http://127.0.0.1:${port}/x`, { headers: { "x-request-id": "req-123" } });
    assert.equal(given.headers.get("x-seen-request-id"), "req-123");
    assert.equal(given.headers.get("x-request-id"), "req-123");
    const made = await fetch(`http://127.0.0.1:${port}/x`);
    assert.match(made.headers.get("x-seen-request-id")!, /^[0-9a-f]{32}$/);
    assert.equal(made.headers.get("x-request-id"), made.headers.get("x-seen-request-id"));
  });

  it("sends security headers and gzips JSON", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { "accept-encoding": "gzip" } });
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("x-frame-options"), "DENY");
    assert.equal(res.headers.get("referrer-policy"), "strict-origin-when-cross-origin");
    assert.equal(res.headers.get("server"), "nginx", "server_tokens off hides the version");
    // fetch decodes the gzip body itself but keeps the header that says it was compressed.
    assert.equal(res.headers.get("content-encoding"), "gzip");
    assert.match(await res.text(), /"name":"[ab]"/);
  });

  it("rejects a body over the limit with 413", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/upload`, { method: "POST", body: Buffer.alloc(2 * 1024 * 1024) });
    assert.equal(res.status, 413);
  });

  it("fails over to the other instance when one is down, with no error to the client", async () => {
    await new Promise((r) => upstreams[0].close(r));
    upstreams[0].closeAllConnections();
    const statuses: number[] = [];
    const names = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/x`);
      statuses.push(res.status);
      names.add(res.headers.get("x-upstream")!);
    }
    assert.deepEqual([...new Set(statuses)], [200]);
    assert.deepEqual([...names], ["b"]);
  });

  it("replaces a caller's X-Request-Id that does not look like an id (too long, or characters outside [A-Za-z0-9._-])", async () => {
    for (const bad of ["x".repeat(65), "id with spaces", "id\"quote", "a:b"]) {
      const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { "x-request-id": bad } });
      assert.match(res.headers.get("x-seen-request-id")!, /^[0-9a-f]{32}$/, `the app was handed ${JSON.stringify(bad)}`);
      assert.equal(res.headers.get("x-request-id"), res.headers.get("x-seen-request-id"));
    }
    const longest = "a".repeat(64);
    assert.equal((await fetch(`http://127.0.0.1:${port}/x`, { headers: { "x-request-id": longest } })).headers.get("x-seen-request-id"), longest);
  });

  it("hands the app its own X-Forwarded-Host (the Host it serves), never the caller's", async () => {
    // fetch sends Host itself (127.0.0.1:<port>); $host is its name without the port.
    const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { "x-forwarded-host": "evil.example" } });
    assert.equal(res.headers.get("x-seen-forwarded-host"), "127.0.0.1");
  });

  it("sends a CSP and a Permissions-Policy for a JSON API", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/x`);
    assert.equal(res.headers.get("content-security-policy"), "default-src 'none'; frame-ancestors 'none'");
    assert.match(res.headers.get("permissions-policy")!, /^(?:[a-z-]+=\(\), )*[a-z-]+=\(\)$/);
    assert.match(res.headers.get("permissions-policy")!, /camera=\(\)/);
  });

  // The flood through the real app is test/release/rateLimit.test.ts; here, what nginx answers.
  it("refuses auth requests beyond the burst with a JSON 429 and Retry-After; other routes are not limited", async () => {
    const route = AUTH_ROUTES[0];
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < AUTH_BURST + 5; i++) {
      const res = await fetch(`http://127.0.0.1:${port}${route}`, { method: "POST", body: "{}" });
      statuses.push(res.status);
      if (res.status === 429) refused = res;
      else await res.arrayBuffer();
    }
    assert.ok(refused, `no 429 in ${AUTH_BURST + 5} requests at once: ${statuses.join(" ")}`);
    assert.ok(statuses.filter((s) => s === 429).length >= 4, `statuses: ${statuses.join(" ")}`);
    assert.equal(refused.headers.get("content-type"), "application/json");
    assert.equal(refused.headers.get("retry-after"), String(AUTH_RETRY_AFTER_SECONDS));
    assert.equal(refused.headers.get("x-content-type-options"), "nosniff", "the 429 carries the security headers too");
    assert.deepEqual(Object.keys((await refused.json()) as object), ["error", "message"]);
    // The budget is shared: the other auth routes are refused too, the rest of the site is not.
    assert.equal((await fetch(`http://127.0.0.1:${port}${AUTH_ROUTES[1]}`, { method: "POST", body: "{}" })).status, 429);
    for (let i = 0; i < 20; i++) assert.equal((await fetch(`http://127.0.0.1:${port}/x`)).status, 200);
  });

  it(`closes a connection whose request header does not arrive within ${CLIENT_TIMEOUT_SECONDS} s (slowloris)`, async function () {
    this.timeout((CLIENT_TIMEOUT_SECONDS + 20) * 1000);
    const closed = await new Promise<{ ms: number; got: string }>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      let got = "";
      const t0 = Date.now();
      socket.on("connect", () => socket.write("GET /x HTTP/1.1\r\nHost: x\r\n"));
      socket.on("data", (d) => (got += d));
      socket.on("close", () => resolve({ ms: Date.now() - t0, got }));
      socket.on("error", () => undefined);
      setTimeout(() => socket.destroy(), (CLIENT_TIMEOUT_SECONDS + 15) * 1000);
    });
    // nginx's default would keep it 60 s; the test's own limit closes it at CLIENT_TIMEOUT_SECONDS + 15.
    assert.ok(closed.ms < (CLIENT_TIMEOUT_SECONDS + 15) * 1000 - 500, `the half-sent request was still open after ${closed.ms} ms`);
    assert.doesNotMatch(closed.got, /HTTP\/1\.1 200/);
  });

  it("writes one JSON object per request to the access log, with the request id", () => {
    const lines = readFileSync(join(dir, "access.log"), "utf8").trim().split("\n");
    const entries = lines.map((line) => JSON.parse(line));
    const tagged = entries.find((e) => e.request_id === "req-123");
    assert.ok(tagged, "no log line carries the caller's request id");
    assert.equal(tagged.method, "GET");
    assert.equal(tagged.status, 200);
    assert.equal(typeof tagged.duration, "number");
    assert.ok(!entries.some((e) => e.uri === "/health"), "health checks are not logged");
  });

  it("refuses options that would break the file, naming the field (a precondition: the config layer validates user input)", () => {
    assert.throws(() => renderNginxSite({ webPorts: [3001, 3001] }), (err: unknown) => {
      assert.ok(err instanceof Error && !(err instanceof RenderError), "a programming error, not a user-facing RenderError");
      assert.equal(err.message, "nginx: web port 3001 is listed twice; each instance needs its own port");
      return true;
    });
    assert.throws(() => renderNginxSite({ webPorts: [5432] }), /nginx: web port 5432 clashes with a reserved port/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], domain: "a b.example.com" }), /nginx: domain "a b.example.com" must be a bare hostname/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], httpPort: 3001 }), /nginx: listen port 3001 clashes with a web instance port/);
    const balancer = { trustedCidr: "10.0.0.0/16", drainFile: "/run/saas-vps/lb-drain", healthPort: 8081 };
    assert.throws(() => renderNginxSite({ webPorts: [3001], listenAddress: "127.0.0.1", balancer }), /nginx: balancer and listenAddress exclude each other/);
    for (const trustedCidr of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/16; allow all", "0.0.0/8", "fd00::/129"]) {
      assert.throws(() => renderNginxSite({ webPorts: [3001], balancer: { ...balancer, trustedCidr } }), /nginx: balancer\.trustedCidr must be an address range/, trustedCidr);
    }
    assert.doesNotThrow(() => renderNginxSite({ webPorts: [3001], balancer: { ...balancer, trustedCidr: "fd00::/8" } }));
    assert.throws(() => renderNginxSite({ webPorts: [3001], balancer: { ...balancer, drainFile: "/run/x; return 200" } }), /nginx: balancer\.drainFile must be an absolute path/);
    assert.throws(() => renderNginxSite({ webPorts: [8081], balancer }), /nginx: balancer\.healthPort 8081 clashes with a web instance port/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], domain: "app.example.com", balancer: { ...balancer, healthPort: 443 } }), /nginx: balancer\.healthPort 443 clashes with a public listen port/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], balancer: { ...balancer, connectionSeconds: 0 } }), /nginx: balancer\.connectionSeconds must be a whole number of seconds/);
  });

  it("behind the balancer: PROXY listeners on the wildcard addresses beside plain loopback ones, the client's address believed from the private network only, the drain on the health listener alone", () => {
    const site = renderNginxSite({ webPorts: [3001], balancer: { trustedCidr: "10.0.0.0/16", drainFile: "/run/saas-vps/lb-drain", healthPort: 8081 } });
    const servers = site.split(/^server \{$/m).slice(1);
    assert.equal(servers.length, 2);
    const [app, health] = servers as [string, string];
    assert.deepEqual(app.match(/^ {4}listen .*$/gm)!.map((l) => l.trim()), [
      "listen 80 default_server proxy_protocol;", "listen [::]:80 default_server proxy_protocol;", "listen 127.0.0.1:80 default_server;", "listen [::1]:80 default_server;",
    ]);
    assert.match(app, /^ {4}set_real_ip_from 10\.0\.0\.0\/16;\n {4}real_ip_header proxy_protocol;\n {4}keepalive_time 60s;\n {4}include \/etc\/nginx\/saas-vps-denied\/\*\.conf;$/m);
    assert.match(app, /location = \/health \{\n {8}access_log off;\n {8}proxy_pass http:\/\/saas_web;\n {4}\}/);
    assert.deepEqual(health.match(/^ {4}listen .*$/gm)!.map((l) => l.trim()), ["listen 8081 proxy_protocol;", "listen [::]:8081 proxy_protocol;"]);
    // The check's header is read (the providers send one) but not believed: nothing there uses the client's address.
    assert.doesNotMatch(health, /real_ip_header|set_real_ip_from/);
    assert.match(health, /location = \/health \{\n {8}access_log off;\n {8}if \(-f \/run\/saas-vps\/lb-drain\) \{ return 503; \}\n {8}proxy_pass http:\/\/saas_web;\n {4}\}/);
    assert.match(health, /location \/ \{\n {8}return 404;\n {4}\}/);
    assert.equal(site.match(/lb-drain/g)!.length, 1, "the drain answers on the health listener only");
  });
});
