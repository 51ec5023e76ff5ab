/**
 * The provider's load balancer of stage scaled, stood in for on the host: HAProxy from Debian in
 * a network namespace of its own, on the stack's private network at the plan's balancer address,
 * forwarding TCP with the PROXY protocol to each app server and checking each one's health
 * listener, as Hetzner's and DigitalOcean's balancers are configured (plan/scaled.ts).
 *
 * How the namespace joins the private network: the VMs' private NICs are a QEMU multicast socket
 * segment on the host's loopback (cli/vm/network.ts), on which the host has no interface. A
 * guestless QEMU (`-machine none`) is the bridge: one hub with two ports, the segment's socket
 * and a TAP device. QEMU makes the TAP in the host's namespace (it must: the segment's socket is
 * on the host's loopback, so the QEMU runs there); the TAP then moves into the balancer's
 * namespace, where it gets the balancer's private address. The host's own routing never sees the
 * private network.
 *
 * The client side: a veth pair between the host and the namespace on a link-local /30
 * (169.254/16, LINK_NETWORK_BASE): the host reaches HAProxy's frontends at the namespace's end,
 * and the address the app servers' nginx logs as the client (from the PROXY header) is the host's
 * end. Link-local so it cannot clash with the stack's private network (privateNetworkCidr must be
 * RFC 1918) nor with the host's own networks (this host's uplink, for one, is in 192.0.2.0/24);
 * 169.254.169.0/24 is left out, where providers answer metadata requests.
 *
 * State lives in `<stackDir>/balancer/` (balancer.json, haproxy.cfg, the stats socket, logs).
 */
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type { LoadBalancerPlan } from "../../plan/scaled";
import { stderrLog, type VmLogger } from "./log";
import type { PrivateSegment } from "./network";
import { sleep } from "./process";
import { setSessionNice } from "./vm";

/** An app server behind the balancer: its plan name and private address. */
export interface BalancerTarget {
  name: string;
  address: string;
}

/**
 * HAProxy's config for the plan's balancer (the local VMs' stand-in, and the release and drain
 * tests' in network namespaces): TCP mode, one frontend per port on `bindAddress`,
 * each forwarding with the PROXY protocol (send-proxy) to every target's private address and the
 * same port, and an HTTP check of the health listener (its port and path, with the PROXY header
 * both providers' checks send: check-send-proxy, as HAProxy sends none to a check port of its own
 * otherwise) with the plan's interval, timeout and thresholds.
 * Backends are named `<balancer name>-<port>`, servers by their plan names.
 */
export function renderHaproxyConfig(opts: {
  balancer: Pick<LoadBalancerPlan, "name" | "targets" | "ports" | "healthCheck">; targets: BalancerTarget[]; bindAddress: string; statsSocket: string;
}): string {
  const { balancer, targets } = opts;
  if (targets.length === 0) throw new Error(`load balancer ${balancer.name}: no targets`);
  const names = new Set(balancer.targets);
  const unknown = targets.filter((t) => !names.has(t.name)).map((t) => t.name);
  if (unknown.length > 0) throw new Error(`load balancer ${balancer.name}: ${unknown.join(", ")} not among the plan's targets (${balancer.targets.join(", ")})`);
  const check = balancer.healthCheck;
  const lines = [
    "global",
    `  stats socket ${opts.statsSocket} mode 600 level admin`,
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 60s",
    "  timeout server 60s",
    // A provider's balancer does not resend a connection a target failed: neither does the stand-in.
    "  retries 0",
  ];
  for (const port of balancer.ports) {
    const backend = backendName(balancer, port);
    lines.push(
      `frontend ${balancer.name}-in-${port}`,
      `  bind ${opts.bindAddress}:${port}`,
      `  default_backend ${backend}`,
      `backend ${backend}`,
      `  option httpchk GET ${check.path}`,
      "  http-check expect status 200",
      // Milliseconds: the tests check faster than any provider can (fractions of a second).
      `  timeout check ${Math.round(check.timeoutSeconds * 1000)}ms`,
      `  default-server inter ${Math.round(check.intervalSeconds * 1000)}ms fall ${check.unhealthyThreshold} rise ${check.healthyThreshold} check port ${check.port} check-send-proxy send-proxy`,
      ...targets.map((t) => `  server ${t.name} ${t.address}:${port}`),
    );
  }
  return lines.join("\n") + "\n";
}

/** The backend of one forwarded port (its servers' states are what `show servers state` reports). */
export function backendName(balancer: Pick<LoadBalancerPlan, "name">, port: number): string {
  return `${balancer.name}-${port}`;
}

/** The first octet pair of the link networks: 169.254.<n>.<4k>/30, n in 1..254 but not 169. */
const LINK_NETWORK_BASE = "169.254";

/** The host's and the namespace's ends of a link /30 (host .1, namespace .2 of the /30). */
export interface LinkNetwork {
  cidr: string;
  host: string;
  balancer: string;
}

/**
 * The link /30 for the n-th candidate (n ≥ 0): 169.254.x.y/30 with x in 1..254 but not 169 (the
 * metadata address's /24). The namespace's and the interfaces' names come from the stack dir, and
 * so does the starting candidate, so two stacks side by side take different ones.
 */
export function linkNetwork(n: number): LinkNetwork {
  const thirds = Array.from({ length: 254 }, (_, i) => i + 1).filter((x) => x !== 169);
  const perThird = 64;
  const i = ((n % (thirds.length * perThird)) + thirds.length * perThird) % (thirds.length * perThird);
  const third = thirds[Math.floor(i / perThird)]!;
  const base = (i % perThird) * 4;
  const at = (host: number) => `${LINK_NETWORK_BASE}.${third}.${base + host}`;
  return { cidr: `${at(0)}/30`, host: at(1), balancer: at(2) };
}

/** Names of one stack's balancer pieces: the namespace and three interfaces (≤ 15 characters each). */
export function balancerNames(stackDir: string): { namespace: string; tap: string; hostVeth: string; nsVeth: string; tag: number } {
  const h = crypto.createHash("sha256").update(path.resolve(stackDir)).digest();
  const id = h.subarray(0, 3).toString("hex");
  return { namespace: `saas-vps-lb-${id}`, tap: `slb${id}t`, hostVeth: `slb${id}h`, nsVeth: `slb${id}n`, tag: h.readUInt16BE(3) };
}

export interface BalancerState {
  namespace: string;
  tap: string;
  hostVeth: string;
  nsVeth: string;
  link: LinkNetwork;
  /** The balancer's private address with the network's prefix, e.g. 10.20.0.5/16. */
  privateAddress: string;
  ports: number[];
  backends: string[];
  targets: BalancerTarget[];
  bridgePid: number;
  haproxyPid: number;
  statsSocket: string;
  dir: string;
}

export interface StartBalancerOptions {
  stackDir: string;
  balancer: LoadBalancerPlan;
  /** The stack's private network CIDR (the balancer's address gets its prefix). */
  networkCidr: string;
  segment: PrivateSegment;
  targets: BalancerTarget[];
  log?: VmLogger;
}

const STATE_FILE = "balancer.json";

function balancerDir(stackDir: string): string {
  return path.join(path.resolve(stackDir), "balancer");
}

/** Run `ip` (or any tool); throws with its stderr. */
function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function linkExists(name: string, namespace?: string): boolean {
  return spawnSync("ip", [...(namespace ? ["-n", namespace] : []), "link", "show", name], { stdio: "ignore" }).status === 0;
}

function namespaceExists(namespace: string): boolean {
  return run("ip", ["netns", "list"]).split("\n").some((l) => l.split(" ")[0] === namespace);
}

/** Whether pid is alive and its command line contains `what` (so a reused pid is not taken for ours). */
function aliveAs(pid: number, what: string): boolean {
  if (!pid) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return cmdline.includes(what) && !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** The first link /30 from the stack's own candidate on that no host address or route is in. */
function freeLinkNetwork(tag: number): LinkNetwork {
  for (let n = tag; n < tag + 64; n++) {
    const link = linkNetwork(n);
    const addrs = run("ip", ["-4", "-o", "address", "show", "to", link.cidr]).trim();
    const routes = run("ip", ["-4", "route", "show", "match", link.host]).split("\n").filter((r) => r && !r.startsWith("default "));
    if (addrs === "" && routes.length === 0) return link;
  }
  throw new Error(`no free link network in ${LINK_NETWORK_BASE}.0.0/16 near candidate ${tag}`);
}

/** QEMU's arguments for the guestless bridge: the segment's socket and the TAP on one hub. */
export function bridgeQemuArgs(segment: PrivateSegment, tap: string, pidFile: string, name: string): string[] {
  return [
    "-name", `${name},process=${name}`,
    // No guest at all: no machine, no default devices, no display, monitor or serial.
    "-machine", "none", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
    "-netdev", `socket,id=seg,mcast=${segment.group}:${segment.port},localaddr=127.0.0.1`,
    "-netdev", `tap,id=lb,ifname=${tap},script=no,downscript=no`,
    "-netdev", "hubport,id=p1,hubid=0,netdev=seg",
    "-netdev", "hubport,id=p2,hubid=0,netdev=lb",
    "-pidfile", pidFile,
  ];
}

/**
 * Start a guestless QEMU joining `segment` and a new TAP `tap` on one hub, then move the TAP into
 * `namespace` (which must exist) with `address` (ip/prefix). Returns QEMU's pid. Used by the
 * balancer and by the bridge's own test.
 */
export async function startSegmentBridge(opts: { segment: PrivateSegment; tap: string; namespace: string; address: string; dir: string; name: string }): Promise<number> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const pidFile = path.join(opts.dir, `${opts.tap}.pid`);
  const logFile = path.join(opts.dir, `${opts.tap}.log`);
  fs.rmSync(pidFile, { force: true });
  const out = fs.openSync(logFile, "w");
  const child = spawn("qemu-system-x86_64", bridgeQemuArgs(opts.segment, opts.tap, pidFile, opts.name), { detached: true, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  // As for the VMs (cli/vm/vm.ts): the bridge's session gets the runner's nice value.
  if (child.pid) setSessionNice(child.pid, os.getPriority());
  let exited: number | null | undefined;
  child.on("exit", (code) => { exited = code ?? 128; });
  child.on("error", () => { exited = 127; });
  const by = Date.now() + 20000;
  while (exited === undefined && !(fs.existsSync(pidFile) && linkExists(opts.tap)) && Date.now() < by) await sleep(100);
  if (exited !== undefined || !linkExists(opts.tap)) {
    if (exited === undefined && child.pid) try { process.kill(child.pid, "SIGKILL"); } catch { /* gone */ }
    throw new Error(`the private network's bridge (QEMU) did not start (exit ${exited ?? "none, no TAP after 20 s"}): ${fs.readFileSync(logFile, "utf8").trim()}`);
  }
  child.unref();
  run("ip", ["link", "set", opts.tap, "netns", opts.namespace]);
  run("ip", ["-n", opts.namespace, "address", "add", opts.address, "dev", opts.tap]);
  run("ip", ["-n", opts.namespace, "link", "set", opts.tap, "up"]);
  return child.pid!;
}

/**
 * Start (or restart: whatever ran before is stopped first) the balancer stand-in for the stack.
 * Needs root (namespaces, TAP), qemu-system-x86_64 and haproxy.
 */
export async function startBalancer(opts: StartBalancerOptions): Promise<BalancerState> {
  const log = opts.log ?? stderrLog;
  await stopBalancer(opts.stackDir, { log: () => {} });
  const dir = balancerDir(opts.stackDir);
  fs.mkdirSync(dir, { recursive: true });
  const names = balancerNames(opts.stackDir);
  const prefix = opts.networkCidr.split("/")[1];
  const privateAddress = `${opts.balancer.privateIp}/${prefix}`;
  const statsSocket = path.join(dir, "haproxy.sock");
  const state: BalancerState = {
    namespace: names.namespace, tap: names.tap, hostVeth: names.hostVeth, nsVeth: names.nsVeth,
    link: freeLinkNetwork(names.tag), privateAddress, ports: opts.balancer.ports,
    backends: opts.balancer.ports.map((p) => backendName(opts.balancer, p)), targets: opts.targets,
    bridgePid: 0, haproxyPid: 0, statsSocket, dir,
  };
  // Written before anything is made, so a stop after a failed start finds every piece.
  const save = () => fs.writeFileSync(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + "\n");
  save();
  run("ip", ["netns", "add", state.namespace]);
  run("ip", ["-n", state.namespace, "link", "set", "lo", "up"]);
  state.bridgePid = await startSegmentBridge({ segment: opts.segment, tap: state.tap, namespace: state.namespace, address: privateAddress, dir, name: `saas-vps-lb-bridge` });
  save();
  run("ip", ["link", "add", state.hostVeth, "type", "veth", "peer", "name", state.nsVeth]);
  run("ip", ["link", "set", state.nsVeth, "netns", state.namespace]);
  const bits = state.link.cidr.split("/")[1];
  run("ip", ["address", "add", `${state.link.host}/${bits}`, "dev", state.hostVeth]);
  run("ip", ["link", "set", state.hostVeth, "up"]);
  run("ip", ["-n", state.namespace, "address", "add", `${state.link.balancer}/${bits}`, "dev", state.nsVeth]);
  run("ip", ["-n", state.namespace, "link", "set", state.nsVeth, "up"]);

  const config = path.join(dir, "haproxy.cfg");
  fs.writeFileSync(config, renderHaproxyConfig({ balancer: opts.balancer, targets: opts.targets, bindAddress: state.link.balancer, statsSocket }));
  const check = spawnSync("haproxy", ["-c", "-q", "-f", config], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`haproxy -c ${config}: ${check.stdout}${check.stderr}`);
  const out = fs.openSync(path.join(dir, "haproxy.log"), "w");
  // `ip netns exec` execs HAProxy in the namespace: the child's pid is HAProxy's.
  const child = spawn("ip", ["netns", "exec", state.namespace, "haproxy", "-db", "-f", config], { detached: true, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  if (child.pid) setSessionNice(child.pid, os.getPriority());
  child.unref();
  state.haproxyPid = child.pid ?? 0;
  save();
  const by = Date.now() + 10000;
  while (!fs.existsSync(statsSocket) && Date.now() < by) await sleep(100);
  if (!aliveAs(state.haproxyPid, "haproxy") || !fs.existsSync(statsSocket)) {
    throw new Error(`HAProxy did not start in ${state.namespace}: ${fs.readFileSync(path.join(dir, "haproxy.log"), "utf8").trim()}`);
  }
  log(`[lb] balancer stand-in up: HAProxy in netns ${state.namespace} at ${privateAddress} on the private network (bridge pid ${state.bridgePid}), ` +
    `frontends ${state.ports.map((p) => `${state.link.balancer}:${p}`).join(", ")} (host side ${state.link.host}), ` +
    `targets ${opts.targets.map((t) => `${t.name} ${t.address}`).join(", ")}`);
  return state;
}

/** The stack's balancer state as last started, or undefined. */
export function loadBalancerState(stackDir: string): BalancerState | undefined {
  const file = path.join(balancerDir(stackDir), STATE_FILE);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as BalancerState) : undefined;
}

/** Stop HAProxy and the bridge, delete the namespace (and with it the TAP and the veth pair). Returns whether anything ran. */
export async function stopBalancer(stackDir: string, opts: { log?: VmLogger } = {}): Promise<boolean> {
  const log = opts.log ?? stderrLog;
  const state = loadBalancerState(stackDir);
  if (!state) return false;
  let found = false;
  for (const [pid, what] of [[state.haproxyPid, "haproxy"], [state.bridgePid, "qemu-system"]] as const) {
    if (!aliveAs(pid, what)) continue;
    found = true;
    try { process.kill(pid, "SIGTERM"); } catch { /* gone */ }
    for (let i = 0; i < 40 && aliveAs(pid, what); i++) await sleep(100);
    if (aliveAs(pid, what)) try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
  if (namespaceExists(state.namespace)) {
    found = true;
    run("ip", ["netns", "del", state.namespace]);
  }
  // A veth end left in the host's namespace (a start stopped between its two steps).
  if (linkExists(state.hostVeth)) run("ip", ["link", "del", state.hostVeth]);
  if (linkExists(state.tap)) run("ip", ["link", "del", state.tap]);
  fs.rmSync(state.statsSocket, { force: true });
  fs.rmSync(path.join(balancerDir(stackDir), STATE_FILE), { force: true });
  if (found) log(`[lb] balancer stand-in stopped (netns ${state.namespace} deleted)`);
  return found;
}

/** Each backend's servers as HAProxy sees them: `{ "lb-80": { app: "UP", "app-2": "DOWN" } }`. */
export async function balancerServerStates(statsSocket: string): Promise<Record<string, Record<string, "UP" | "DOWN" | "MAINT">>> {
  const out = await statsCommand(statsSocket, "show servers state");
  const states: Record<string, Record<string, "UP" | "DOWN" | "MAINT">> = {};
  for (const line of out.split("\n")) {
    // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... (op state 2 = running).
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || !/^\d+$/.test(f[0]!)) continue;
    (states[f[1]!] ??= {})[f[3]!] = f[6] !== "0" ? "MAINT" : f[5] === "2" ? "UP" : "DOWN";
  }
  return states;
}

/** One command on HAProxy's runtime API (one command per connection). */
export function statsCommand(statsSocket: string, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const socket = net.connect(statsSocket, () => socket.end(`${command}\n`));
    const timer = setTimeout(() => socket.destroy(new Error(`HAProxy's stats socket: no answer to "${command}" in ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", (d) => (out += d));
    socket.on("error", (e) => { clearTimeout(timer); reject(e); });
    socket.on("close", () => { clearTimeout(timer); resolve(out); });
  });
}

export interface BalancerStatus {
  running: boolean;
  state?: BalancerState;
  /** What is down, when something is. */
  problems: string[];
  servers?: Record<string, Record<string, string>>;
}

/** Whether the stand-in's pieces all run, and HAProxy's view of each server. */
export async function balancerStatus(stackDir: string): Promise<BalancerStatus> {
  const state = loadBalancerState(stackDir);
  if (!state) return { running: false, problems: ["not started"] };
  const problems = [
    ...(aliveAs(state.bridgePid, "qemu-system") ? [] : [`bridge (QEMU pid ${state.bridgePid}) not running`]),
    ...(aliveAs(state.haproxyPid, "haproxy") ? [] : [`HAProxy (pid ${state.haproxyPid}) not running`]),
    ...(namespaceExists(state.namespace) ? [] : [`netns ${state.namespace} missing`]),
  ];
  const servers = problems.length === 0 ? await balancerServerStates(state.statsSocket).catch(() => undefined) : undefined;
  return { running: problems.length === 0, state, problems, ...(servers ? { servers } : {}) };
}
