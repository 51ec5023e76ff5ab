/**
 * Every server of a stack in local VMs, the way `pulumi up` creates them: each VM boots from its
 * server's exact user-data, the servers of a split stage share the stack's private network
 * (cli/vm/network.ts), all boot at once, then each gets its day-2 pushes; the app release goes
 * to every server that runs the app, and /health is awaited through nginx on the web server.
 *
 * Layout of the stack's dir (`.vm/<name>/`): `id_ed25519` (one key for all its VMs, added to
 * the stack's sshPublicKeys), `render/<server>/` (user-data + files), `<server>/` (one VM's run
 * dir: disks, seed, console, QMP), `servers.json` (the servers last started, for stop/status/ssh),
 * `private-network.json` (the segment), `bucket/` (the local S3 server, with --with-bucket).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type BootResult, bootVm } from "./boot";
import { waitForHealth } from "./http";
import { stderrLog, type VmLogger } from "./log";
import { ensurePrivateSegment, macFor } from "./network";
import { type PushRun, runPushes } from "./pushes";
import { type ShippedRelease, buildApp, shipRelease } from "./release";
import { trustBucketCaInGuest } from "./s3";
import { ensureSshKey } from "./ssh";
import { type VmBucketOverride, type VmRender, type VmStackRender, renderStackServersForVm, vmMemoryFor } from "./stack";
import { type Vm, consoleTail, loadVm, stopVm } from "./vm";

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
  /** Seconds since the stack's start (the first QEMU of the stack is ~0 s). */
  at: { qemuStarted?: number; ssh?: number; cloudInitDone?: number; pushed?: number; released?: number; healthy?: number };
}

export interface StackVms {
  render: VmStackRender;
  servers: ServerVm[];
  /** Date.now() when booting began: the zero of every `at`. */
  startedAtMs: number;
}

export interface StartStackOptions {
  stack: string;
  /** `.vm/<name>/`. */
  stackDir: string;
  bucket?: VmBucketOverride & { certFile: string };
  /** Stack settings changed on purpose (short keys), e.g. a test's process counts. */
  settings?: Record<string, string>;
  /** Ship the app release and wait for /health (default true). */
  release?: boolean;
  cpus?: number;
  /** Overrides every VM's memory (default: vmMemoryFor each server). */
  memoryMiB?: number;
  accel?: "tcg" | "kvm";
  rebuildImage?: boolean;
  log?: VmLogger;
  /** Called with the render before any VM starts (e.g. to print it). */
  onRender?: (render: VmStackRender) => void;
}

/**
 * Render, boot every server concurrently, push, release, wait for health. Throws on the first
 * failure with the failing server's name and its console tail; every VM is left running to
 * inspect (stopStackVms ends them). The returned servers carry each step's time.
 */
export async function startStackVms(opts: StartStackOptions): Promise<StackVms> {
  const log = opts.log ?? stderrLog;
  const stackDir = path.resolve(opts.stackDir);
  const key = ensureSshKey(stackDir);
  const render = await renderStackServersForVm({
    stack: opts.stack, publicKey: key.publicKey, outDir: path.join(stackDir, "render"), settings: opts.settings,
    ...(opts.bucket ? { bucket: opts.bucket } : {}),
  });
  opts.onRender?.(render);
  for (const s of render.servers) {
    const running = loadVm(serverRunDir(stackDir, s.server));
    if (running) throw new Error(`server ${s.server}'s VM is already running (pid ${running.pid}); stop it first`);
  }
  fs.writeFileSync(path.join(stackDir, SERVERS_FILE), JSON.stringify(render.servers.map((s) => s.server)) + "\n");
  const segment = render.networkCidr ? ensurePrivateSegment(stackDir) : undefined;
  const startedAtMs = Date.now();
  const since = () => Math.round((Date.now() - startedAtMs) / 100) / 10;
  const servers: ServerVm[] = render.servers.map((r) => ({ render: r, runDir: serverRunDir(stackDir, r.server), at: {} }));
  const tagged = (name: string): VmLogger => (m) => log(m.replace(/^\[vm/, `[${name}`));

  // Boot + pushes, every server at once: each server's step runs as soon as its own VM is ready.
  await allOrFirstError(servers.map(async (s) => {
    const name = s.render.server;
    const slog = tagged(name);
    try {
      s.boot = await bootVm({
        runDir: s.runDir, userDataFile: s.render.userDataFile, hostname: name, sshKeyDir: stackDir,
        memoryMiB: opts.memoryMiB ?? vmMemoryFor(s.render), cpus: opts.cpus, accel: opts.accel, rebuildImage: opts.rebuildImage,
        log: slog, onStart: (vm) => { s.vm = vm; s.at.qemuStarted = since(); },
        ...(s.render.privateAddress && segment
          ? { privateNic: { segment, mac: macFor(stackDir, name, "private"), address: s.render.privateAddress } }
          : {}),
      });
      s.at.ssh = round(s.at.qemuStarted! + s.boot.sshSeconds);
      const ci = s.boot.cloudInit;
      if (ci.status !== "done") {
        throw new Error(`cloud-init ended ${ci.extendedStatus}${ci.errors.length ? `: ${ci.errors.join("; ")}` : ""}`);
      }
      s.at.cloudInitDone = round(s.at.qemuStarted! + ci.seconds);
      s.pushes = await runPushes(s.boot.vm, s.render.pushes, { log: slog });
      s.at.pushed = since();
    } catch (e) {
      throw failureOf(name, s.vm, e);
    }
  }));

  if (opts.bucket) {
    // LOCAL-VM-ONLY: the local bucket's certificate is self-signed (cli/vm/s3.ts).
    await allOrFirstError(servers.map((s) => trustBucketCaInGuest(s.boot!.vm, opts.bucket!.certFile)));
  }
  if (opts.release !== false) {
    const appServers = servers.filter((s) => s.render.runsApp);
    if (appServers.length > 0) {
      const artifact = await buildApp({ stack: opts.stack, log });
      // One server after the other: the first release runs the migrations, the next find them done.
      for (const s of appServers) {
        try {
          s.release = await shipRelease(s.boot!.vm, { stack: opts.stack, artifact, log: tagged(s.render.server) });
          s.at.released = since();
        } catch (e) {
          throw failureOf(s.render.server, s.vm, e);
        }
      }
    }
    for (const s of servers.filter((x) => x.render.roles.includes("web"))) {
      try {
        await waitForHealth(s.boot!.vm, { timeoutMs: 120000, log: tagged(s.render.server) });
        s.at.healthy = since();
      } catch (e) {
        throw failureOf(s.render.server, s.vm, e);
      }
    }
  }
  return { render, servers, startedAtMs };
}

/** Power off every VM of the stack dir (or one server's); returns how each ended. */
export async function stopStackVms(stackDir: string, opts: { server?: string; log?: VmLogger } = {}): Promise<Record<string, string>> {
  const names = opts.server ? [opts.server] : startedServers(stackDir);
  const ended = await Promise.all(names.map((n) => stopVm(serverRunDir(stackDir, n), { log: opts.log })));
  return Object.fromEntries(names.map((n, i) => [n, ended[i]]));
}

/** Waits for every promise; throws the first error only after all have settled (no VM is left mid-step unseen). */
async function allOrFirstError(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    throw new Error(failed.map((f) => (f.reason as Error).message).join("\n\n"));
  }
}

function failureOf(server: string, vm: Vm | undefined, e: unknown): Error {
  const tail = vm ? `\n--- ${server}: console tail ---\n${consoleTail(vm, 25)}` : "";
  return new Error(`server ${server}: ${(e as Error).message}${tail}`);
}

function round(s: number): number {
  return Math.round(s * 10) / 10;
}
