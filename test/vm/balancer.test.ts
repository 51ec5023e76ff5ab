/**
 * (no VM) The load balancer's stand-in for the local VMs (cli/vm/balancer.ts):
 *  - its HAProxy config from the plan's LoadBalancerPlan, checked by Debian's haproxy;
 *  - the bridge: two network namespaces, each joined to one QEMU multicast segment through a
 *    guestless QEMU of its own, reach each other (frames cross the segment as they do between VMs);
 *  - the whole stand-in (namespace, bridge, veth, HAProxy) in front of a stand-in app server in a
 *    namespace on the same segment: the host's request arrives with a PROXY header naming the
 *    host's veth address, the health listener decides UP and DOWN, stop removes every piece.
 * The last two need root, ip netns, qemu-system-x86_64 and haproxy; without them they skip
 * loudly (with CI=true they fail).
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { balancerNames, balancerServerStates, balancerStatus, linkNetwork, renderHaproxyConfig, startBalancer, startSegmentBridge, stopBalancer } from "../../cli/vm/balancer";
import { ensurePrivateSegment } from "../../cli/vm/network";
import { sleep } from "../../cli/vm/process";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import type { LoadBalancerPlan } from "../../plan/scaled";
import { minimalRaw, scaledRaw, withDomain } from "../support/fixtures";
import { tempDir } from "../support/tools";

/** The plan's balancer for a Hetzner stack at stage scaled (with a domain: ports 80 and 443). */
function plannedBalancer(domain: boolean, appServers = 2): LoadBalancerPlan {
  const raw = { ...minimalRaw("hetzner"), ...scaledRaw("hetzner", appServers, false) };
  const plan = planStack(parseStackConfig(domain ? withDomain(raw) : raw));
  assert.ok(plan.loadBalancer);
  return plan.loadBalancer;
}

function haproxyCheck(config: string): { status: number | null; output: string } {
  const dir = tempDir("haproxy-cfg");
  fs.writeFileSync(path.join(dir, "haproxy.cfg"), config);
  const r = spawnSync("haproxy", ["-c", "-f", path.join(dir, "haproxy.cfg")], { encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const hasHaproxy = spawnSync("sh", ["-c", "command -v haproxy"]).status === 0;

describe("local VMs: the load balancer's stand-in (HAProxy config)", function () {
  it("one TCP frontend per planned port, each to every target's private address and the same port with send-proxy; the plan's HTTP check on the health port", function () {
    // Timings unlike the defaults, so each setting is seen to come from the plan.
    const balancer = { ...plannedBalancer(true, 3), healthCheck: { port: 8089, path: "/healthz", intervalSeconds: 7, timeoutSeconds: 4, unhealthyThreshold: 3, healthyThreshold: 5 } };
    assert.deepEqual(balancer.ports, [80, 443]);
    const targets = [{ name: "app", address: "10.20.0.10" }, { name: "app-2", address: "10.20.0.11" }, { name: "app-3", address: "10.20.0.12" }];
    const config = renderHaproxyConfig({ balancer, targets, bindAddress: "169.254.3.2", statsSocket: "/run/x/haproxy.sock" });
    const sections = config.split(/\n(?=\S)/);
    assert.match(sections.find((s) => s.startsWith("defaults\n"))!, /\n  mode tcp\n/);
    for (const port of [80, 443]) {
      const frontend = sections.find((s) => s.startsWith(`frontend lb-in-${port}\n`));
      assert.ok(frontend, `no frontend for ${port}:\n${config}`);
      assert.match(frontend, new RegExp(`\\n  bind 169\\.254\\.3\\.2:${port}\\n`));
      assert.match(frontend, new RegExp(`default_backend lb-${port}$`, "m"));
      const backend = sections.find((s) => s.startsWith(`backend lb-${port}\n`))!;
      assert.ok(backend, config);
      assert.match(backend, /option httpchk GET \/healthz$/m);
      assert.match(backend, /http-check expect status 200$/m);
      assert.match(backend, /timeout check 4000ms$/m);
      assert.match(backend, /default-server inter 7000ms fall 3 rise 5 check port 8089 check-send-proxy send-proxy$/m);
      assert.deepEqual(backend.split("\n").filter((l) => l.trim().startsWith("server ")).map((l) => l.trim()),
        targets.map((t) => `server ${t.name} ${t.address}:${port}`));
    }
    assert.equal(sections.filter((s) => s.startsWith("frontend ")).length, 2);
    assert.match(config, /stats socket \/run\/x\/haproxy\.sock mode 600 level admin/);
    if (hasHaproxy) {
      const check = haproxyCheck(config);
      assert.equal(check.status, 0, check.output);
    }
  });

  it("without a domain only port 80; Debian's haproxy accepts it", function () {
    const balancer = plannedBalancer(false);
    const config = renderHaproxyConfig({ balancer, targets: [{ name: "app", address: "10.20.0.10" }], bindAddress: "169.254.3.2", statsSocket: "/tmp/x.sock" });
    assert.deepEqual(config.match(/^frontend .*$/gm), ["frontend lb-in-80"]);
    assert.doesNotMatch(config, /:443/);
    if (!hasHaproxy) return void console.log("      (haproxy not installed: config not checked by it)");
    const check = haproxyCheck(config);
    assert.equal(check.status, 0, check.output);
  });

  it("refuses no targets, and a target the plan does not name", function () {
    const balancer = plannedBalancer(false);
    assert.throws(() => renderHaproxyConfig({ balancer, targets: [], bindAddress: "169.254.3.2", statsSocket: "/tmp/x.sock" }), /load balancer lb: no targets/);
    assert.throws(() => renderHaproxyConfig({ balancer, targets: [{ name: "db", address: "10.20.0.30" }], bindAddress: "169.254.3.2", statsSocket: "/tmp/x.sock" }),
      /load balancer lb: db not among the plan's targets \(app, app-2\)/);
  });

  it("the link /30s: link-local, aligned, never in 169.254.169.0/24 (metadata), distinct across candidates", function () {
    const seen = new Set<string>();
    for (let n = 0; n < 254 * 64; n += 7) {
      const l = linkNetwork(n);
      const [a, b, c, d] = l.cidr.split("/")[0]!.split(".").map(Number);
      assert.deepEqual([a, b], [169, 254]);
      assert.notEqual(c, 169, l.cidr);
      assert.ok(c! >= 1 && c! <= 254, l.cidr);
      assert.equal(d! % 4, 0, l.cidr);
      assert.equal(l.host, `169.254.${c}.${d! + 1}`);
      assert.equal(l.balancer, `169.254.${c}.${d! + 2}`);
      assert.ok(!seen.has(l.cidr), `${l.cidr} twice`);
      seen.add(l.cidr);
    }
    const names = balancerNames("/x/.vm/scaled");
    for (const n of [names.tap, names.hostVeth, names.nsVeth]) assert.ok(n.length <= 15, n);
    assert.notEqual(balancerNames("/x/.vm/other").namespace, names.namespace);
  });
});

/** Skips loudly without root, ip netns, QEMU or haproxy; with CI=true that is a failure. */
function needsNetns(ctx: Mocha.Context): void {
  const missing = ["ip", "qemu-system-x86_64", "haproxy"].filter((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0);
  if (process.getuid?.() === 0 && missing.length === 0 && fs.existsSync("/dev/net/tun")) return;
  const why = `needs root, /dev/net/tun and ${missing.join(", ") || "ip, qemu-system-x86_64, haproxy"}`;
  if (process.env.CI) throw new Error(`the balancer's namespace test ${why}`);
  console.log(`      SKIPPED LOUDLY: ${why}`);
  ctx.skip();
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/**
 * A stand-in app server in a namespace: on `port` it reads the PROXY header line, records it and
 * answers 200; on `healthPort` a check that opens with a PROXY header gets 200 until told otherwise
 * (SIGUSR1 flips it), one without gets no answer (as nginx's health listener).
 */
const SERVER = `
const net = require("node:net"); const http = require("node:http"); const fs = require("node:fs");
const [addr, port, healthPort, record] = process.argv.slice(1);
let healthy = true;
process.on("SIGUSR1", () => { healthy = !healthy; });
net.createServer((s) => {
  let buf = "";
  s.on("data", (d) => {
    buf += d;
    if (!buf.includes("\\r\\n\\r\\n")) return;
    fs.appendFileSync(record, buf.split("\\r\\n")[0] + "\\n");
    s.end("HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\nok");
  });
}).listen(Number(port), addr);
net.createServer((s) => {
  let buf = "";
  s.on("error", () => {}); // HAProxy may reset a check's connection once it has the answer
  s.on("data", (d) => {
    buf += d;
    if (!buf.includes("\\r\\n\\r\\n")) return;
    // The check opens with a PROXY header, as the providers' do; without one it gets no answer, as from nginx.
    if (!buf.startsWith("PROXY ")) return s.destroy();
    s.end(healthy ? "HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n" : "HTTP/1.1 503 Unavailable\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n");
  });
}).listen(Number(healthPort), addr);
`;

describe("local VMs: the load balancer's stand-in in real namespaces (no VM)", function () {
  this.timeout(120000);
  const procs: ChildProcess[] = [];
  const namespaces: string[] = [];
  const bridges: number[] = [];
  let stackDir = "";

  after(async () => {
    for (const p of procs) p.kill("SIGTERM");
    for (const pid of bridges) try { process.kill(pid, "SIGTERM"); } catch { /* gone */ }
    if (stackDir) await stopBalancer(stackDir, { log: () => {} });
    for (const n of namespaces) spawnSync("ip", ["netns", "del", n]);
  });

  it("two namespaces, each bridged to one multicast segment by a guestless QEMU, reach each other over TCP (and no third address)", async function () {
    needsNetns(this);
    const dir = tempDir("lb-bridge");
    const segment = ensurePrivateSegment(dir);
    const id = crypto.randomBytes(2).toString("hex");
    const ends = [{ ns: `saas-vps-brt-a-${id}`, tap: `sbt${id}a`, address: "10.77.0.2" }, { ns: `saas-vps-brt-b-${id}`, tap: `sbt${id}b`, address: "10.77.0.3" }];
    for (const e of ends) {
      ip("netns", "add", e.ns);
      namespaces.push(e.ns);
      bridges.push(await startSegmentBridge({ segment, tap: e.tap, namespace: e.ns, address: `${e.address}/24`, dir, name: `saas-vps-brt-${id}` }));
    }
    // A TCP listener in each namespace that answers with its namespace's name; each connects to the other's.
    for (const e of ends) {
      procs.push(spawn("ip", ["netns", "exec", e.ns, process.execPath, "-e", `require("net").createServer((s) => s.end(${JSON.stringify(e.ns)})).listen(7777, ${JSON.stringify(e.address)})`], { stdio: "inherit" }));
    }
    const connect = (ns: string, to: string) => spawnSync("ip", ["netns", "exec", ns, process.execPath, "-e",
      `const s = require("net").connect(7777, ${JSON.stringify(to)}); s.on("data", (d) => { process.stdout.write(d); process.exit(0); }); ` +
      "s.on(\"error\", (e) => { console.error(e.message); process.exit(1); }); setTimeout(() => process.exit(2), 4000);"], { encoding: "utf8" });
    let r = connect(ends[0]!.ns, ends[1]!.address);
    for (let i = 0; i < 5 && r.stdout !== ends[1]!.ns; i++) { await sleep(500); r = connect(ends[0]!.ns, ends[1]!.address); }
    assert.equal(r.stdout, ends[1]!.ns, r.stderr);
    assert.equal(connect(ends[1]!.ns, ends[0]!.address).stdout, ends[0]!.ns);
    // Nothing answers an address no namespace has: the connection above crossed the segment, not a shortcut.
    assert.notEqual(connect(ends[0]!.ns, "10.77.0.9").status, 0);
    // The host has no address or route in the segment's network.
    assert.equal(spawnSync("ip", ["-4", "-o", "address", "show", "to", "10.77.0.0/24"], { encoding: "utf8" }).stdout.trim(), "");
  });

  it("startBalancer: the host's request reaches the server through HAProxy with a PROXY header naming the host's veth address; the health listener takes it DOWN and UP; stop removes every piece", async function () {
    needsNetns(this);
    stackDir = tempDir("lb-stack");
    const segment = ensurePrivateSegment(stackDir);
    const balancer = { ...plannedBalancer(false, 2), privateIp: "10.78.0.5", healthCheck: { port: 8081, path: "/health", intervalSeconds: 1, timeoutSeconds: 1, unhealthyThreshold: 2, healthyThreshold: 2 } };
    const id = crypto.randomBytes(2).toString("hex");
    const serverNs = `saas-vps-lbt-s-${id}`;
    ip("netns", "add", serverNs);
    namespaces.push(serverNs);
    ip("-n", serverNs, "link", "set", "lo", "up");
    bridges.push(await startSegmentBridge({ segment, tap: `slt${id}s`, namespace: serverNs, address: "10.78.0.10/16", dir: stackDir, name: `saas-vps-lbt-${id}` }));
    const record = path.join(stackDir, "proxy-lines");
    fs.writeFileSync(record, "");
    const server = spawn("ip", ["netns", "exec", serverNs, process.execPath, "-e", SERVER, "10.78.0.10", "80", "8081", record], { stdio: "inherit" });
    procs.push(server);

    const state = await startBalancer({ stackDir, balancer, networkCidr: "10.78.0.0/16", segment, targets: [{ name: "app", address: "10.78.0.10" }], log: () => {} });
    // Idempotent: a second start replaces the first (same namespace, no leftovers).
    const again = await startBalancer({ stackDir, balancer, networkCidr: "10.78.0.0/16", segment, targets: [{ name: "app", address: "10.78.0.10" }], log: () => {} });
    assert.equal(again.namespace, state.namespace);
    assert.notEqual(again.haproxyPid, state.haproxyPid);
    const waitState = async (want: string) => {
      const t0 = Date.now();
      for (;;) {
        const s = (await balancerServerStates(again.statsSocket).catch(() => ({})) as Record<string, Record<string, string>>)["lb-80"]?.app;
        if (s === want) return Date.now() - t0;
        if (Date.now() - t0 > 30000) throw new Error(`app never ${want} in HAProxy (last ${s})`);
        await sleep(200);
      }
    };
    await waitState("UP");
    const curl = spawnSync("curl", ["-sS", "-m", "10", `http://${again.link.balancer}/x`], { encoding: "utf8" });
    assert.equal(curl.stdout, "ok", curl.stderr);
    const lines = fs.readFileSync(record, "utf8").trim().split("\n");
    assert.match(lines.at(-1)!, new RegExp(`^PROXY TCP4 ${again.link.host.replace(/\./g, "\\.")} ${again.link.balancer.replace(/\./g, "\\.")} \\d+ 80$`));
    // The host's own routing: nothing in the private network.
    assert.equal(spawnSync("ip", ["-4", "-o", "address", "show", "to", "10.78.0.0/16"], { encoding: "utf8" }).stdout.trim(), "");
    // The health listener decides.
    server.kill("SIGUSR1");
    await waitState("DOWN");
    server.kill("SIGUSR1");
    await waitState("UP");
    const status = await balancerStatus(stackDir);
    assert.equal(status.running, true, status.problems.join("; "));
    assert.deepEqual(status.servers, { "lb-80": { app: "UP" } });

    assert.equal(await stopBalancer(stackDir, { log: () => {} }), true);
    const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    assert.doesNotMatch(list, new RegExp(again.namespace));
    assert.notEqual(spawnSync("ip", ["link", "show", again.hostVeth]).status, 0, "the host's veth end is gone");
    for (const pid of [again.haproxyPid, again.bridgePid]) assert.ok(!fs.existsSync(`/proc/${pid}/cmdline`) || !fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").match(/haproxy|qemu/), `pid ${pid} still runs`);
    assert.equal((await balancerStatus(stackDir)).running, false);
    assert.equal(await stopBalancer(stackDir, { log: () => {} }), false, "a second stop finds nothing");
  });
});
