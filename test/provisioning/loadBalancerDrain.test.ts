/**
 * App servers behind the load balancer (stage scaled), with real tools in network namespaces that
 * stand for the machines: HAProxy from Debian as the stand-in for the provider's balancer,
 * forwarding TCP with the PROXY protocol (mode tcp, send-proxy; TLS passes through) and checking
 * each server's health listener over HTTP without it, as decided for Hetzner's and DigitalOcean's
 * balancers; two app servers on the private network, each the rendered nginx site in front of
 * its own stand-in app instance; a client on the balancer's public side, with an address of its
 * own. Once without a domain (the app on port 80) and once with one (HTTPS on 443).
 *
 * Under a steady GET and POST load from the client through the balancer, each server in turn is
 * drained, its instance stopped and started again (what a release does to it), and undrained: no
 * request may fail. The client keeps its connections alive, as browsers do, and the balancer
 * forwards connections, not requests: those it sent to a server before taking it out stay there
 * until nginx ends them (keepalive_time), so the drain waits for them as a release must. The app
 * and nginx's access log see the client's address, never the balancer's.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIRST_WEB_PORT, LB_HEALTH_PORT } from "../../provisioning/layout";
import { renderNginxSite } from "../../provisioning/nginx";
import { standInHaproxyConfig, waitHaproxyState } from "../support/haproxy";
import { forHostNginx } from "../support/nginx";
import { bridgeNamespaces, ip, linkNamespaces } from "../support/netns";
import { tempDir } from "../support/tools";

/**
 * The stand-in's health-check timing: 500 ms apart, 2 failures to take a server out, 2 successes
 * to put it back; a check may take 3 s (the providers' intervals are seconds, with timeouts of
 * seconds: at 200 ms with the interval as the timeout, a busy test machine failed both servers'
 * checks at once and the balancer had no server).
 */
const CHECK = { interMs: 500, fall: 2, rise: 2, timeoutMs: 3000 };
/** keepalive_time here, so that a drain waits seconds for the pinned connections, not the minute a server gives them. */
const CONNECTION_SECONDS = 3;
/** The private network (the servers and the balancer's private side) and the balancer's public side with the client on it. */
const PRIVATE = { cidr: "10.77.0.0/16", lb: "10.77.0.1", a: "10.77.0.2", b: "10.77.0.3" };
const PUBLIC = { lb: "203.0.113.1", client: "203.0.113.10" };
/** A second range on the private network's wire, outside the trusted one: a PROXY header from it is not believed. */
const OUTSIDE = { lb: "192.168.77.1", a: "192.168.77.2" };
const DOMAIN = "app.test";
/** What the client claims in X-Forwarded-For (and an untrusted PROXY header claims): the app must not take it for the client. */
const FORGED = "198.51.100.66";

/**
 * The stand-in app instance, run in its server's namespace and driven over IPC: it answers with
 * the server's name and the client address headers nginx sent, and counts what it served.
 */
const INSTANCE = `
const http = require("node:http");
const [name, port] = process.argv.slice(1);
let server, served = 0;
const realIps = {};
function start(done) {
  server = http.createServer((req, res) => {
    const client = { realIp: req.headers["x-real-ip"], forwardedFor: req.headers["x-forwarded-for"] };
    if (req.url !== "/health") {
      served++;
      realIps[client.realIp] = (realIps[client.realIp] || 0) + 1;
    }
    const answer = () => {
      res.setHeader("content-type", "application/json");
      res.setHeader("x-server", name);
      res.end(JSON.stringify({ server: name, ...client }));
    };
    if (req.method === "POST") { req.resume(); req.on("end", answer); } else answer();
  });
  server.listen(Number(port), "127.0.0.1", done);
}
process.on("disconnect", () => process.exit(0));
process.on("message", ({ id, cmd }) => {
  const reply = (result) => process.send({ id, result });
  if (cmd === "start") start(() => reply(true));
  // Stops accepting and lets in-flight requests finish, as the app's graceful shutdown does.
  else if (cmd === "stop") { server.close(() => reply(true)); server.closeIdleConnections(); }
  else if (cmd === "count") reply({ served, realIps });
});
process.send({ id: 0, result: "ready" });
`;

/**
 * The load's pause between two requests of one loop. Without it a connection carried 1000
 * requests (nginx's keepalive_requests) in about 2 s and that limit, not keepalive_time, ended the
 * connections; at ~90 requests a second per connection keepalive_time is the one that does.
 */
const PAUSE_MS = 10;

/**
 * The load, run in the client's namespace: 4 loops, GET and POST in turn, over keep-alive
 * connections (closed by the client after 5 s idle, before nginx's 20 s, so that nginx never
 * closes one under a request), each answer's server and the client address the app saw counted.
 */
const LOAD = `
const [base, servername, caFile] = process.argv.slice(1);
const https = base.startsWith("https:");
const mod = require(https ? "node:https" : "node:http");
const agent = new mod.Agent({ keepAlive: true, timeout: 5000, ...(https ? { ca: require("node:fs").readFileSync(caFile), servername } : {}) });
const results = { ok: 0, failed: [], byServer: {}, appSaw: {}, connections: 0 };
const sockets = new WeakSet();
let running = true;
const once = (i) => new Promise((resolve) => {
  const post = i % 2 === 1;
  const req = mod.request(base + "/api/thing", { method: post ? "POST" : "GET", agent, headers: { host: servername, "x-forwarded-for": "${FORGED}" } }, (res) => {
    if (!sockets.has(res.socket)) { sockets.add(res.socket); results.connections++; }
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d) => (body += d));
    res.on("end", () => {
      if (res.statusCode === 200) {
        const seen = JSON.parse(body);
        results.ok++;
        results.byServer[seen.server] = (results.byServer[seen.server] || 0) + 1;
        const key = seen.realIp + " | " + seen.forwardedFor;
        results.appSaw[key] = (results.appSaw[key] || 0) + 1;
      } else results.failed.push(res.statusCode + " " + body.slice(0, 80));
      resolve();
    });
    res.on("error", (err) => { results.failed.push(String(err)); resolve(); });
  });
  req.on("error", (err) => { results.failed.push(String(err)); resolve(); });
  req.end(post ? "x".repeat(512) : undefined);
});
const loops = Array.from({ length: 4 }, async () => {
  for (let i = 0; running; i++) {
    await once(i);
    await new Promise((r) => setTimeout(r, ${PAUSE_MS}));
  }
});
process.on("disconnect", () => process.exit(0));
process.on("message", async ({ id, cmd }) => {
  if (cmd === "stop") { running = false; await Promise.all(loops); process.send({ id, result: results }); }
});
process.send({ id: 0, result: "ready" });
`;

/** A child node process in a namespace, driven by commands over IPC; resolves once it says it is ready. */
async function nodeIn(ns: string, code: string, args: string[]): Promise<{ proc: ChildProcess; call: <T>(cmd: string) => Promise<T> }> {
  const proc = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", code, ...args], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiting = new Map<number, (result: unknown) => void>();
  let next = 1;
  proc.on("message", ({ id, result }: { id: number; result: unknown }) => {
    waiting.get(id)?.(result);
    waiting.delete(id);
  });
  await new Promise<void>((resolve, reject) => {
    waiting.set(0, () => resolve());
    proc.once("exit", (code) => reject(new Error(`node in ${ns} exited with ${code} before it was ready`)));
  });
  const call = <T>(cmd: string) =>
    new Promise<T>((resolve) => {
      const id = next++;
      waiting.set(id, resolve as (result: unknown) => void);
      proc.send({ id, cmd });
    });
  return { proc, call };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const domain of [undefined, DOMAIN]) {
  const scheme = domain ? "https" : "http";
  const appPort = domain ? 443 : 80;

  describe(`@real load balancer, ${domain ? "with a domain (TLS passes through)" : "without a domain"}: the PROXY protocol brings the client's address, the health listener drains a server out of a real balancer (HAProxy) and back, with zero failed requests`, function () {
    this.timeout(180_000);
    const id = randomBytes(3).toString("hex");
    const ns = { lb: `lbl-${id}`, a: `lba-${id}`, b: `lbb-${id}`, client: `lbc-${id}` };
    let dir: string;
    const procs: ChildProcess[] = [];
    interface Server { name: "a" | "b"; address: string; drainFile: string; accessLog: string; errorLog: string; instance: (cmd: string) => Promise<unknown> }
    const servers: Server[] = [];
    let statsSocket: string;

    const inNs = (where: string, cmd: string[]) => spawnSync("ip", ["netns", "exec", where, ...cmd], { encoding: "utf8", timeout: 30_000 });
    const count = async (s: Server) => (await s.instance("count")) as { served: number; realIps: Record<string, number> };
    /** curl from a namespace: exit status, and the HTTP status (or 000 without an answer). */
    const curl = (where: string, args: string[]) => {
      const r = inNs(where, ["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", ...args]);
      return { status: r.status, code: r.stdout.trim(), stderr: r.stderr.trim() };
    };

    /** Until the balancer has `name` in rotation on every port ("up") or on none ("down"); the milliseconds that took. */
    const waitState = (name: string, want: "up" | "down"): Promise<number> => waitHaproxyState(statsSocket, name, want, 20_000);
    /** Client connections (through the balancer) still open on a server's public port, as the server itself sees them. */
    const publicConnections = (s: Server) => inNs(ns[s.name], ["ss", "-Htn", "state", "established", `( sport = :${appPort} )`]).stdout.trim().split("\n").filter(Boolean).length;
    const waitNoConnections = async (s: Server): Promise<number> => {
      const t0 = Date.now();
      while (publicConnections(s) > 0) {
        if (Date.now() - t0 > CONNECTION_SECONDS * 1000 + 10_000) throw new Error(`${s.name} still has ${publicConnections(s)} client connections ${Date.now() - t0} ms after it left rotation`);
        await sleep(20);
      }
      return Date.now() - t0;
    };

    before(async function () {
      const missing = ["haproxy", "nginx", "curl", "ss", "openssl"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
      if (process.getuid?.() !== 0 || missing.length > 0) {
        const why = `needs root, ip netns and ${missing.length ? missing.join(", ") : "haproxy, nginx"} (npm run setup installs them)`;
        if (process.env.CI) throw new Error(`the load balancer test ${why}`);
        console.log(`      SKIPPED LOUDLY: ${why}`);
        this.skip();
      }
      dir = tempDir("lb-drain");
      // nginx's workers run as nobody: they stat the drain file in here.
      chmodSync(dir, 0o755);

      // The private network: a bridge in the balancer's namespace, with its private address, each
      // server one veth away; the balancer's public side a network of its own with the client.
      bridgeNamespaces(ns, "lb", { a: PRIVATE.a, b: PRIVATE.b }, 16, `l${id}`);
      ip("-n", ns.lb, "addr", "add", `${PRIVATE.lb}/16`, "dev", "br0");
      linkNamespaces({ ns: ns.lb, address: PUBLIC.lb }, { ns: ns.client, address: PUBLIC.client }, 24, [`l${id}p`, `l${id}pc`]);
      ip("-n", ns.lb, "addr", "add", `${OUTSIDE.lb}/24`, "dev", "br0");
      ip("-n", ns.a, "addr", "add", `${OUTSIDE.a}/24`, "dev", `l${id}a`);

      if (domain) {
        const made = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", `/CN=${domain}`,
          "-addext", `subjectAltName=DNS:${domain}`, "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { encoding: "utf8" });
        assert.equal(made.status, 0, made.stderr);
      }
      for (const name of ["a", "b"] as const) {
        const s = { name, address: PRIVATE[name], drainFile: join(dir, `drain-${name}`), accessLog: join(dir, `access-${name}.log`), errorLog: join(dir, `error-${name}.log`) };
        const instance = await nodeIn(ns[name], INSTANCE, [name, String(FIRST_WEB_PORT)]);
        procs.push(instance.proc);
        await instance.call("start");
        // As on a server: ports 80, 443 and the health port on every address, the instance on loopback.
        const site = renderNginxSite({
          webPorts: [FIRST_WEB_PORT],
          domain,
          accessLog: s.accessLog,
          tlsCertificate: join(dir, "cert.pem"),
          tlsCertificateKey: join(dir, "key.pem"),
          balancer: { trustedCidr: PRIVATE.cidr, drainFile: s.drainFile, healthPort: LB_HEALTH_PORT, connectionSeconds: CONNECTION_SECONDS },
        });
        writeFileSync(join(dir, `site-${name}.conf`), forHostNginx(site));
        writeFileSync(join(dir, `nginx-${name}.conf`),
          `daemon off; pid ${dir}/nginx-${name}.pid; error_log ${s.errorLog} info; events {} http { include /etc/nginx/mime.types; client_body_temp_path ${dir}; proxy_temp_path ${dir}; include ${dir}/site-${name}.conf; }\n`);
        procs.push(spawn("ip", ["netns", "exec", ns[name], "nginx", "-c", join(dir, `nginx-${name}.conf`), "-p", dir], { stdio: "ignore" }));
        servers.push({ ...s, instance: instance.call });
      }

      statsSocket = join(dir, "haproxy.sock");
      // The stand-in's check at this test's pace (CHECK), in the plan's terms.
      const check = { port: LB_HEALTH_PORT, path: "/health", intervalSeconds: CHECK.interMs / 1000, timeoutSeconds: CHECK.timeoutMs / 1000, unhealthyThreshold: CHECK.fall, healthyThreshold: CHECK.rise };
      writeFileSync(join(dir, "haproxy.cfg"), standInHaproxyConfig({ publicAddress: PUBLIC.lb, ports: [80, 443], servers, check, statsSocket }));
      const valid = spawnSync("haproxy", ["-c", "-f", join(dir, "haproxy.cfg")], { encoding: "utf8" });
      assert.equal(valid.status, 0, valid.stdout + valid.stderr);
      procs.push(spawn("ip", ["netns", "exec", ns.lb, "haproxy", "-db", "-f", join(dir, "haproxy.cfg")], { stdio: "ignore" }));
      for (const s of servers) await waitState(s.name, "up");
    });

    after(() => {
      for (const p of procs) p.kill("SIGTERM");
      for (const n of Object.values(ns)) spawnSync("ip", ["netns", "del", n]);
    });

    it("each server in turn: drained, its pinned connections ended, its instance restarted, undrained, under GET and POST load through the balancer; no failed request", async () => {
      const load = await nodeIn(ns.client, LOAD, [`${scheme}://${PUBLIC.lb}`, DOMAIN, domain ? join(dir, "cert.pem") : ""]);
      procs.push(load.proc);
      const figures: Array<Record<string, unknown>> = [];
      await sleep(1000);
      for (const s of servers) {
        const other = servers.find((o) => o !== s)!;
        writeFileSync(s.drainFile, "");
        const outMs = await waitState(s.name, "down");
        // Out of rotation, but the client's connections the balancer sent here before still bring
        // requests, until nginx answers one past keepalive_time with Connection: close.
        const atOut = (await count(s)).served;
        const connectionsAtOut = publicConnections(s);
        const pinnedMs = await waitNoConnections(s);
        const servedWhilePinned = (await count(s)).served - atOut;
        await sleep(300);
        const reachedAfterConnectionsEnded = (await count(s)).served - atOut - servedWhilePinned;
        await s.instance("stop");
        await sleep(500);
        await s.instance("start");
        const otherBefore = (await count(other)).served;
        rmSync(s.drainFile);
        const backMs = await waitState(s.name, "up");
        // Load comes back as the client's connections end on the other server and reconnect.
        const atBack = (await count(s)).served;
        const t0 = Date.now();
        while ((await count(s)).served === atBack) {
          if (Date.now() - t0 > CONNECTION_SECONDS * 1000 + 10_000) assert.fail(`${s.name} serves nothing ${Date.now() - t0} ms after it is back`);
          await sleep(20);
        }
        const servedAgainMs = Date.now() - t0;
        await sleep(500);
        figures.push({ server: s.name, outMs, connectionsAtOut, pinnedMs, servedWhilePinned, reachedAfterConnectionsEnded, otherServedMeanwhile: (await count(other)).served - otherBefore, backMs, servedAgainMs });
      }
      const results = await load.call<{ ok: number; failed: string[]; byServer: Record<string, number>; appSaw: Record<string, number>; connections: number }>("stop");
      console.log(`      drain figures (check every ${CHECK.interMs} ms, fall ${CHECK.fall}, rise ${CHECK.rise}, keepalive_time ${CONNECTION_SECONDS} s): ${JSON.stringify(figures)}; ` +
        `requests ${results.ok} ok over ${results.connections} connections, by server ${JSON.stringify(results.byServer)}`);
      assert.deepEqual(results.failed.slice(0, 5), [], `${results.failed.length} failed requests`);
      assert.ok(results.byServer.a! > 100 && results.byServer.b! > 100, JSON.stringify(results.byServer));
      for (const f of figures) {
        assert.ok((f.otherServedMeanwhile as number) > 0, `the other server served while ${f.server} was out: ${JSON.stringify(f)}`);
        assert.equal(f.reachedAfterConnectionsEnded, 0, `nothing reaches a server out of rotation once its connections ended: ${JSON.stringify(f)}`);
      }

      // The client's address, from the PROXY header: X-Real-IP, and the last X-Forwarded-For hop
      // (the one the app believes from nginx) after what the client itself claimed.
      assert.deepEqual(Object.keys(results.appSaw), [`${PUBLIC.client} | ${FORGED}, ${PUBLIC.client}`]);
      for (const s of servers) {
        assert.deepEqual(Object.keys((await count(s)).realIps), [PUBLIC.client], `${s.name}: the app saw only the client`);
        const logged = readFileSync(s.accessLog, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { remote_addr: string });
        assert.ok(logged.length > 100, `${s.name}: ${logged.length} access log lines`);
        assert.deepEqual([...new Set(logged.map((l) => l.remote_addr))], [PUBLIC.client], `${s.name}: nginx logged only the client`);
      }
    });

    it("port 80 through the balancer answers with the client's address too", () => {
      const before = servers.map((s) => readFileSync(s.accessLog, "utf8").length);
      const r = curl(ns.client, ["-H", `Host: ${DOMAIN}`, `http://${PUBLIC.lb}/some/page`]);
      assert.equal(r.code, domain ? "301" : "200", r.stderr);
      const added = servers.flatMap((s, i) => readFileSync(s.accessLog, "utf8").slice(before[i]).split("\n").filter(Boolean)).map((l) => JSON.parse(l) as { remote_addr: string; uri: string });
      assert.deepEqual(added.map((l) => [l.remote_addr, l.uri]), [[PUBLIC.client, "/some/page"]]);
    });

    it("straight from the private network without a PROXY header, a server's public ports refuse to talk; with a header from outside the private range, nginx keeps the real peer", () => {
      const [a] = servers;
      const brokenBefore = (readFileSync(a!.errorLog, "utf8").match(/broken header/g) ?? []).length;
      for (const port of domain ? [80, 443] : [80]) {
        const url = `${port === 443 ? "https" : "http"}://${a!.address}:${port}/health`;
        const r = curl(ns.lb, ["-k", url]);
        assert.notEqual(r.status, 0, `${url} answered ${r.code} without a PROXY header`);
        assert.equal(r.code, "000");
      }
      assert.equal((readFileSync(a!.errorLog, "utf8").match(/broken header/g) ?? []).length, brokenBefore + (domain ? 2 : 1), "nginx read each request as a broken PROXY header");

      // A header from an address outside the trusted range claims another client: nginx does not believe it.
      const spoof = inNs(ns.lb, [process.execPath, "-e", `
        const s = require("node:net").connect({ host: "${OUTSIDE.a}", port: 80, localAddress: "${OUTSIDE.lb}" }, () =>
          s.write("PROXY TCP4 ${FORGED} ${OUTSIDE.a} 40000 80\\r\\nGET /who HTTP/1.1\\r\\nHost: ${DOMAIN}\\r\\nConnection: close\\r\\n\\r\\n"));
        let out = ""; s.on("data", (d) => (out += d)); s.on("end", () => process.stdout.write(out));`]);
      if (domain) assert.match(spoof.stdout, /^HTTP\/1\.1 301 /, spoof.stderr);
      else assert.match(spoof.stdout, new RegExp(`"realIp":"${OUTSIDE.lb.replaceAll(".", "\\.")}"`), spoof.stdout + spoof.stderr);
      const last = JSON.parse(readFileSync(a!.accessLog, "utf8").trim().split("\n").pop()!) as { remote_addr: string; uri: string };
      assert.deepEqual([last.remote_addr, last.uri], [OUTSIDE.lb, "/who"]);
    });

    it("on the server itself, loopback takes no PROXY header: the watchdog's and the ops script's /health, on 127.0.0.1 and ::1", () => {
      if (domain) {
        // As the watchdog asks: the domain's URL, connected to 127.0.0.1.
        assert.equal(curl(ns.a, ["--insecure", "--connect-to", "::127.0.0.1:", `https://${domain}/health`]).code, "200");
        assert.equal(curl(ns.a, ["--insecure", "--resolve", `${domain}:443:[::1]`, `https://${domain}/health`]).code, "200");
        assert.equal(curl(ns.a, ["http://127.0.0.1/health"]).code, "301");
      } else {
        assert.equal(curl(ns.a, ["http://127.0.0.1/health"]).code, "200");
        assert.equal(curl(ns.a, ["http://[::1]/health"]).code, "200");
      }
      // And a PROXY header there is not taken for one: it is a broken request.
      assert.equal(curl(ns.a, ["--haproxy-protocol", "http://127.0.0.1/health"]).code, "400");
    });

    it("the health listener serves only /health, answers 503 while drained while the public /health still answers for the app, and takes the PROXY header the providers' checks send", () => {
      const [a] = servers;
      const health = `http://${a!.address}:${LB_HEALTH_PORT}`;
      const check = (path: string) => curl(ns.lb, ["--haproxy-protocol", `${health}${path}`]).code;
      const publicHealth = domain ? ["--insecure", "--connect-to", "::127.0.0.1:", `https://${domain}/health`] : ["http://127.0.0.1/health"];
      assert.equal(check("/health"), "200");
      assert.equal(check("/api/thing"), "404");
      // Without the header nginx reads the request line as a broken one and closes: no answer.
      assert.equal(curl(ns.lb, [`${health}/health`]).code, "000");
      writeFileSync(a!.drainFile, "");
      try {
        assert.equal(check("/health"), "503");
        assert.equal(curl(ns.a, publicHealth).code, "200");
      } finally {
        rmSync(a!.drainFile);
      }
      assert.equal(check("/health"), "200");
    });
  });
}
