/**
 * Every server of a stack in local VMs, the way `pulumi up` creates them: each VM boots from its
 * server's exact user-data, the servers of a split stage share the stack's private network
 * (cli/vm/network.ts), all boot at once, then each gets its day-2 pushes; the app release goes
 * to every server that runs the app, and /health is awaited through nginx on the web server.
 * A stack with a load balancer in its plan (stage scaled) gets its stand-in on the host
 * (cli/vm/balancer.ts), joined to the private network once the segment exists; /health is then
 * awaited through it too.
 *
 * Layout of the stack's dir (`.vm/<name>/`): `id_ed25519` (one key for all its VMs, added to
 * the stack's sshPublicKeys), `render/<server>/` (user-data + files), `<server>/` (one VM's run
 * dir: disks, seed, console, QMP), `servers.json` (the servers last started, for stop/status/ssh),
 * `private-network.json` (the segment), `bucket/` (the local S3 server, with --with-bucket),
 * `balancer/` (the load balancer's stand-in, stage scaled).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type BalancerState, type BalancerTarget, startBalancer, stopBalancer } from "./balancer";
import { type BootResult, bootVm } from "./boot";
import { waitForHealth, waitForHealthAt, waitForHealthInGuest } from "./http";
import { DEFAULT_PACKAGES, ensureImage, packagesFromUserData } from "./image";
import { stderrLog, type VmLogger } from "./log";
import { ensurePrivateSegment, macFor } from "./network";
import { type PushRun, runPushes } from "./pushes";
import { type ShippedRelease, buildApp, shipRelease } from "./release";
import { trustBucketCaInGuest } from "./s3";
import { ensureSshKey } from "./ssh";
import { type VmBucketOverride, type VmRender, type VmStackRender, renderStackServersForVm, vmMemoryFor } from "./stack";
import { type Vm, consoleTail, loadVm, stopVm } from "./vm";
import { GuestPanicError } from "./wait";

const SERVERS_FILE = "servers.json";

/** One server's VM run dir inside the stack's dir. */
export function serverRunDir(stackDir: string, server: string): string {
  return path.join(stackDir, server);
}

/** The servers last started from this stack dir (empty when none was). */
export function startedServers(stackDir: string): string[] {
  const file = path.join(stackDir, SERVERS_FILE);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as string[]) : [];
}

export interface ServerVm {
  render: VmRender;
  runDir: string;
  vm?: Vm;
  boot?: BootResult;
  pushes?: PushRun;
  release?: ShippedRelease;
  /** Why booting or pushing failed (with the console tail); the VM is left running. */
  error?: Error;
  /** Guest kernel panics before SSH that made it boot again. */
  panicsBeforeSsh?: number;
  /** Seconds since the stack's start (the first QEMU of the stack is ~0 s). */
  at: { qemuStarted?: number; ssh?: number; cloudInitDone?: number; pushed?: number; released?: number; healthy?: number };
}

export interface StackVms {
  render: VmStackRender;
  servers: ServerVm[];
  /** Date.now() when booting began: the zero of every `at`. */
  startedAtMs: number;
  log: VmLogger;
  /** The load balancer's stand-in (stage scaled), once started. */
  balancer?: BalancerState;
  /** Seconds since the start when /health first answered through the balancer's stand-in (port 80). */
  balancerHealthyAt?: number;
  /** Why the balancer's stand-in could not start (the VMs go on without it). */
  balancerError?: Error;
  /** The stack's servers left out on purpose (StartStackOptions.servers), in the plan's order. */
  notBooted: string[];
  /**
   * The servers booting in the background (StartStackOptions.later), not in `servers` yet:
   * joinLaterServers waits for them and adds them.
   */
  later?: Promise<ServerVm[]>;
}

export interface StartStackOptions {
  stack: string;
  /** `.vm/<name>/`. */
  stackDir: string;
  bucket?: VmBucketOverride & { certFile: string };
  /** Stack settings changed on purpose (short keys; null removes one), e.g. a test's process counts. */
  settings?: Record<string, string | null>;
  /** Ship the app release and wait for /health (default true). */
  release?: boolean;
  /**
   * Boot only these of the stack's servers (default: every one). The rest are rendered but not
   * started, and the balancer's stand-in targets the booted app servers only: what the machine's
   * cores allow (five emulated VMs at once on two cores take about 20 minutes to boot).
   */
  servers?: string[];
  /**
   * Of the servers booted, these start once the others are booted and pushed, and bootStackVms
   * returns without waiting for them (StackVms.later): their boot then overlaps what the caller
   * does with the others instead of slowing the others' boot (emulated VMs share the host's
   * cores). Only a server nothing else waits for at first boot: not an app server (the first
   * release and the balancer need those), e.g. the read replica, whose clone waits for db.
   */
  later?: string[];
  /**
   * vCPUs of every VM (default 2, bootVm's). One each was slower for five VMs on 2 cores: SSH at
   * 437–684 s against 378–616 s, and no cloud-init done by 850 s against 708–887 s.
   */
  cpus?: number;
  /** Overrides every VM's memory (default: vmMemoryFor each server). */
  memoryMiB?: number;
  accel?: "tcg" | "kvm";
  rebuildImage?: boolean;
  /**
   * How long each VM may take to answer SSH (default 15 min: three emulated VMs booting at once
   * on two shared cores have taken more than waitForSsh's default 10).
   */
  sshTimeoutMs?: number;
  /** How long each VM's cloud-init may take once SSH is up (default 20 min, waitForCloudInit's). */
  cloudInitTimeoutMs?: number;
  log?: VmLogger;
  /** Called with the render before any VM starts (e.g. to print it). */
  onRender?: (render: VmStackRender) => void;
}

/**
 * Render, boot every server concurrently, push, release, wait for health (what `npm run vm --
 * --stack` does). Throws on the first failure with the failing servers' names and console
 * tails; every VM is left running to inspect (stopStackVms ends them).
 */
export async function startStackVms(opts: StartStackOptions): Promise<StackVms> {
  const vms = await bootStackVms(opts);
  const failed = vms.servers.filter((s) => s.error);
  if (failed.length > 0) throw new Error(failed.map((s) => s.error!.message).join("\n\n"));
  if (opts.bucket) await trustBucketInStackVms(vms, opts.bucket.certFile);
  if (opts.release !== false) await releaseStackVms(vms, { stack: opts.stack, log: opts.log });
  return vms;
}

/**
 * Render every server, then boot them all at once (those in `later` once the others are pushed,
 * in the background), each from its exact user-data, and run each one's day-2 pushes as soon as
 * its first boot is done. A server that fails keeps its error (with its console tail) in `error`;
 * the others go on.
 */
export async function bootStackVms(opts: StartStackOptions): Promise<StackVms> {
  const log = opts.log ?? stderrLog;
  const stackDir = path.resolve(opts.stackDir);
  const key = ensureSshKey(stackDir);
  let render = await renderStackServersForVm({
    stack: opts.stack, publicKey: key.publicKey, outDir: path.join(stackDir, "render"), settings: opts.settings,
    ...(opts.bucket ? { bucket: opts.bucket } : {}),
  });
  const booting = bootedPart(render, opts.servers);
  if (booting.notBooted.length > 0) log(`[vm] booting ${booting.render.servers.map((s) => s.server).join(", ")}; not booted: ${booting.notBooted.join(", ")}`);
  render = booting.render;
  const laterNames = checkLater(render, opts.later ?? []);
  opts.onRender?.(render);
  for (const s of render.servers) {
    const running = loadVm(serverRunDir(stackDir, s.server));
    if (running) throw new Error(`server ${s.server}'s VM is already running (pid ${running.pid}); stop it first`);
  }
  fs.writeFileSync(path.join(stackDir, SERVERS_FILE), JSON.stringify(render.servers.map((s) => s.server)) + "\n");
  // Every server's image first (builds take turns on one lock, and a cached image's lookup waits
  // for a build in progress), so the VMs then start together and their times share one zero.
  const tImages = Date.now();
  const images = await Promise.all(render.servers.map((s) =>
    ensureImage({ packages: packagesFromUserData(s.userData) ?? DEFAULT_PACKAGES, rebuild: opts.rebuildImage, log })));
  log(`[vm] images ${images.map((im, i) => `${render.servers[i].server} ${im.key}${im.built ? " (built)" : ""}`).join(", ")} ` +
    `ready in ${((Date.now() - tImages) / 1000).toFixed(0)} s`);
  const segment = render.networkCidr ? ensurePrivateSegment(stackDir) : undefined;
  const startedAtMs = Date.now();
  const vms: StackVms = { render, servers: [], startedAtMs, log, notBooted: booting.notBooted };
  const all: ServerVm[] = render.servers.map((r) => ({ render: r, runDir: serverRunDir(stackDir, r.server), at: {} }));
  const later = all.filter((s) => laterNames.includes(s.render.server));
  vms.servers = all.filter((s) => !later.includes(s));
  // The balancer joins the segment before the VMs boot: its checks mark each server UP once it serves.
  if (render.loadBalancer && segment && render.networkCidr) {
    try {
      vms.balancer = await startBalancer({
        stackDir, balancer: render.loadBalancer, networkCidr: render.networkCidr, segment, targets: balancerTargets(render), log,
      });
    } catch (e) {
      vms.balancerError = new Error(`the load balancer's stand-in: ${(e as Error).message}`);
      log(`[lb] ${vms.balancerError.message}`);
    }
  }

  const bootOne = async (s: ServerVm): Promise<void> => {
    const name = s.render.server;
    const slog = serverLog(vms, name);
    try {
      const boot = () => bootVm({
        runDir: s.runDir, userDataFile: s.render.userDataFile, hostname: name, sshKeyDir: stackDir,
        memoryMiB: opts.memoryMiB ?? vmMemoryFor(s.render), cpus: opts.cpus, accel: opts.accel, sshTimeoutMs: opts.sshTimeoutMs ?? 15 * 60000,
        cloudInitTimeoutMs: opts.cloudInitTimeoutMs, log: slog, onStart: (vm) => { s.vm = vm; s.at.qemuStarted = sinceStart(vms); },
        ...(s.render.privateAddress && segment
          ? { privateNic: { segment, mac: macFor(stackDir, name, "private"), address: s.render.privateAddress } }
          : {}),
      });
      try {
        s.boot = await boot();
      } catch (e) {
        // A kernel that panicked before SSH ran none of the user-data: booting again is the same
        // first boot (seen under TCG on a starved host: "Fatal exception in interrupt"). Once.
        if (!(e instanceof GuestPanicError && e.what === "SSH")) throw e;
        slog(`[vm] the guest kernel panicked before SSH; booting it again once (${e.message.split("\n").find((l) => /Kernel panic/.test(l))?.trim() ?? ""})`);
        s.panicsBeforeSsh = (s.panicsBeforeSsh ?? 0) + 1;
        await stopVm(s.runDir, { timeoutMs: 1000, log: slog });
        s.boot = await boot();
      }
      s.at.ssh = round(s.at.qemuStarted! + s.boot.sshSeconds);
      const ci = s.boot.cloudInit;
      if (ci.status !== "done") {
        throw new Error(`cloud-init ended ${ci.extendedStatus}${ci.errors.length ? `: ${ci.errors.join("; ")}` : ""}`);
      }
      s.at.cloudInitDone = round(s.at.qemuStarted! + ci.seconds);
      s.pushes = await runPushes(s.boot.vm, s.render.pushes, { log: slog });
      s.at.pushed = sinceStart(vms);
    } catch (e) {
      s.error = failureOf(name, s.vm, e);
      slog(`[vm] ${s.error.message}`);
    }
  };
  await Promise.all(vms.servers.map(bootOne));
  if (later.length > 0) {
    log(`[vm] booting ${later.map((s) => s.render.server).join(", ")} now, in the background`);
    // bootOne keeps each failure in its server's `error`: this never rejects.
    vms.later = Promise.all(later.map(async (s) => { await bootOne(s); return s; }));
  }
  return vms;
}

/**
 * Waits for the servers booting in the background (StartStackOptions.later) and adds them to
 * `servers`, in the plan's order; returns them (each with its `error` if it failed).
 */
export async function joinLaterServers(vms: StackVms): Promise<ServerVm[]> {
  if (!vms.later) return [];
  const joined = await vms.later;
  vms.later = undefined;
  const order = vms.render.servers.map((r) => r.server);
  vms.servers = [...vms.servers, ...joined].sort((a, b) => order.indexOf(a.render.server) - order.indexOf(b.render.server));
  return joined;
}

/**
 * The part of the render to boot: the named servers (every one when `names` is undefined), and
 * the balancer's targets among them. Throws naming any name the stack has no server for.
 */
export function bootedPart(render: VmStackRender, names?: string[]): { render: VmStackRender; notBooted: string[] } {
  if (names === undefined) return { render, notBooted: [] };
  const all = render.servers.map((s) => s.server);
  const unknown = names.filter((n) => !all.includes(n));
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(`servers to boot: ${unknown.length ? `no server ${unknown.join(", ")} in` : "none given for"} stack ${render.stack}; its servers are ${all.join(", ")}`);
  }
  const lb = render.loadBalancer;
  return {
    render: {
      ...render,
      servers: render.servers.filter((s) => names.includes(s.server)),
      // No app server booted: nothing for a balancer's stand-in to check.
      loadBalancer: lb && lb.targets.some((t) => names.includes(t)) ? { ...lb, targets: lb.targets.filter((t) => names.includes(t)) } : undefined,
    },
    notBooted: all.filter((n) => !names.includes(n)),
  };
}

/**
 * The servers to boot later (StartStackOptions.later), checked against the part booted: each
 * among its servers, none running the app, and not all of them. Throws naming the offenders.
 */
export function checkLater(render: VmStackRender, names: string[]): string[] {
  const booted = render.servers.map((s) => s.server);
  const unplaced = names.filter((n) => !booted.includes(n));
  if (unplaced.length > 0) throw new Error(`servers to boot later: ${unplaced.join(", ")} not among the servers booted (${booted.join(", ")})`);
  const app = render.servers.filter((s) => names.includes(s.server) && s.runsApp).map((s) => s.server);
  if (app.length > 0) throw new Error(`servers to boot later: ${app.join(", ")} run the app; the first release and the balancer need them booted with the others`);
  if (names.length > 0 && names.length === booted.length) throw new Error(`servers to boot later: all of ${booted.join(", ")}; nothing would boot first`);
  return names;
}

/** The plan's balancer targets with their planned private addresses. */
export function balancerTargets(render: VmStackRender): BalancerTarget[] {
  const targets = render.loadBalancer?.targets ?? [];
  return targets.map((name) => {
    const s = render.servers.find((x) => x.server === name);
    if (!s?.privateAddress) throw new Error(`load balancer target ${name}: no such server with a private address in the stack's render`);
    return { name, address: s.privateAddress.split("/")[0]! };
  });
}

/** LOCAL-VM-ONLY: every VM trusts the local bucket's self-signed certificate (cli/vm/s3.ts). */
export async function trustBucketInStackVms(vms: StackVms, certFile: string): Promise<void> {
  await Promise.all(vms.servers.map((s) => trustBucketCaInGuest(s.boot!.vm, certFile)));
}

/**
 * The app release on every server that runs the app, one after the other (the first runs the
 * migrations, the next find them done), then /health through nginx on every web server, and
 * with a load balancer through its stand-in's frontend on port 80 from the host.
 */
export async function releaseStackVms(vms: StackVms, opts: { stack: string; log?: VmLogger }): Promise<void> {
  const appServers = vms.servers.filter((s) => s.render.runsApp);
  if (appServers.length === 0) return;
  const artifact = await buildApp({ stack: opts.stack, log: opts.log ?? vms.log });
  for (const s of appServers) {
    try {
      s.release = await shipRelease(s.boot!.vm, { stack: opts.stack, artifact, log: serverLog(vms, s.render.server) });
      s.at.released = sinceStart(vms);
    } catch (e) {
      throw failureOf(s.render.server, s.vm, e);
    }
  }
  for (const s of vms.servers.filter((x) => x.render.roles.includes("web"))) {
    try {
      // Behind a balancer the forwarded port is shut (PROXY header, firewall): ask from inside.
      const wait = vms.render.loadBalancer ? waitForHealthInGuest : waitForHealth;
      await wait(s.boot!.vm, { timeoutMs: 120000, log: serverLog(vms, s.render.server) });
      s.at.healthy = sinceStart(vms);
    } catch (e) {
      throw failureOf(s.render.server, s.vm, e);
    }
  }
  if (vms.render.loadBalancer) {
    if (!vms.balancer) throw vms.balancerError ?? new Error("the load balancer's stand-in did not start");
    // Its checks need `rise` passes in a row after the server's health listener answers.
    const { ms, release } = await waitForHealthAt(vms.balancer.link.balancer, 80, { timeoutMs: 180000, what: "through the load balancer's stand-in" });
    vms.balancerHealthyAt = sinceStart(vms);
    vms.log(`[lb] GET /health through the balancer (http://${vms.balancer.link.balancer}/health): 200 after ${(ms / 1000).toFixed(1)} s more ` +
      `(X-App-Release ${release}), ${vms.balancerHealthyAt} s since start`);
  }
}

/** Seconds since the stack's VMs began to boot, one decimal. */
export function sinceStart(vms: StackVms): number {
  return round((Date.now() - vms.startedAtMs) / 1000);
}

/** The stack's log with `[<server>` in place of `[vm`, so interleaved lines say whose they are. */
function serverLog(vms: StackVms, server: string): VmLogger {
  return (m) => vms.log(m.replace(/^\[vm/, `[${server}`));
}

/** Power off every VM of the stack dir (or one server's), and with the whole stack its balancer's stand-in; returns how each VM ended. */
export async function stopStackVms(stackDir: string, opts: { server?: string; log?: VmLogger } = {}): Promise<Record<string, string>> {
  const names = opts.server ? [opts.server] : startedServers(stackDir);
  const ended = await Promise.all(names.map((n) => stopVm(serverRunDir(stackDir, n), { log: opts.log })));
  if (!opts.server) await stopBalancer(stackDir, { log: opts.log });
  return Object.fromEntries(names.map((n, i) => [n, ended[i]]));
}

function failureOf(server: string, vm: Vm | undefined, e: unknown): Error {
  const tail = vm ? `\n--- ${server}: console tail ---\n${consoleTail(vm, 25)}` : "";
  return new Error(`server ${server}: ${(e as Error).message}${tail}`);
}

function round(s: number): number {
  return Math.round(s * 10) / 10;
}
