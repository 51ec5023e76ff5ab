/**
 * The VM's life: a per-boot qcow2 overlay on the cached image, a blank data disk (virtio serial
 * `saas-data`), a NoCloud seed made from the exact user-data given, QEMU in the background with
 * loopback-only port forwards for SSH/HTTP/HTTPS; then found again (load), and stopped.
 *
 * State lives in a run dir (e.g. `.vm/<stack>/`): `vm.json` (ports, pid, paths), `qemu.pid`,
 * `console.log` (serial console), `qmp.sock`, `id_ed25519{,.pub}` (kept across boots so the
 * public key can go into the stack's sshPublicKeys once), the disks and the seed.
 */
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts } from "../lib/ports";
import type { ImageInfo } from "./image";
import { stderrLog, type VmLogger } from "./log";
import { runTool, sleep } from "./process";
import { qmp } from "./qmp";
import { type PrivateNic, macFor, privateNicArgs, renderNetworkConfig } from "./network";
import { ensureSshKey, HOST_KEY_ALIAS } from "./ssh";
import { parse as parseYaml } from "yaml";

export interface StartVmOptions {
  /** State directory, e.g. `.vm/<stack>`; created if missing. */
  runDir: string;
  /** cloud-config user-data; its bytes go into the seed unchanged. */
  userDataFile: string;
  image: ImageInfo;
  /** meta-data local-hostname (user-data `hostname:` wins). Default: run dir name. */
  hostname?: string;
  memoryMiB?: number;
  cpus?: number;
  /** Virtual size of the root overlay; cloud-init's resizefs grows the filesystem to it. */
  rootDiskGiB?: number;
  /** Blank data volume, seen in the guest as /dev/disk/by-id/virtio-saas-data. */
  dataDiskGiB?: number;
  /** "tcg" (default; /dev/kvm here does not boot stock kernels) or "kvm". */
  accel?: "tcg" | "kvm";
  /** Admin user the user-data creates with the run dir's public key. */
  sshUser?: string;
  log?: VmLogger;
  /**
   * A second NIC on the stack's private network with its planned address (split stages). Its
   * network-config goes into the seed, matching both NICs by MAC; without one the seed has no
   * network-config and cloud-init's fallback (DHCP on the first NIC) applies.
   */
  privateNic?: PrivateNic;
  /** Where the SSH key pair lives (default: the run dir): one key for all VMs of a stack. */
  sshKeyDir?: string;
  /** Called as soon as QEMU runs (ports known), before any waiting: e.g. to start probes. */
  onStart?: (vm: Vm) => void;
  /**
   * A stand-in for the provider's metadata service: a program run for each TCP connection the
   * guest makes to METADATA_STAND_IN_ADDRESS:80 (its stdin and stdout are the connection). It
   * sits on a NIC of its own, whose user-mode network is the metadata address's /24 (QEMU
   * forwards a guest address only inside its network); the guest gives that NIC an address
   * itself (cloud-init's fallback configures only the first NIC).
   */
  metadataStandIn?: string;
}

/** Where providers answer metadata requests; the stand-in NIC's network is its /24. */
export const METADATA_STAND_IN_ADDRESS = "169.254.169.254";
/** The guest's address on the stand-in NIC (a host of that /24, outside QEMU's DHCP range). */
export const METADATA_STAND_IN_GUEST_ADDRESS = "169.254.169.10";

export interface VmPorts { ssh: number; http: number; https: number }

export interface Vm {
  runDir: string;
  pid: number;
  ports: VmPorts;
  sshUser: string;
  sshKeyPath: string;
  consoleLog: string;
  qmpSocket: string;
  /** Date.now() just before QEMU was started: the zero of every "seconds since start". */
  startedAtMs: number;
  imageDir: string;
  accel: string;
  /** The full QEMU command line, for the record. */
  qemuArgs: string[];
  /** The VM's NIC on the stack's private network, if it has one. */
  privateNic?: PrivateNic;
  /**
   * known_hosts with the host key the user-data installs (under HOST_KEY_ALIAS), when it names
   * one: ssh then accepts that key only.
   */
  knownHostsPath?: string;
  /** MAC of the metadata stand-in NIC, when the VM has one. */
  metadataMac?: string;
}

const STATE_FILE = "vm.json";

/** Seconds since the VM was started, one decimal. */
export function elapsed(vm: Vm): number {
  return Math.round((Date.now() - vm.startedAtMs) / 100) / 10;
}

/** Whether `qemu-system-x86_64` exists and runs at all (TCG needs nothing else). */
export function qemuAvailable(): { ok: true; version: string } | { ok: false; reason: string } {
  const r = spawnSync("qemu-system-x86_64", ["-version"], { encoding: "utf8" });
  if (r.error) return { ok: false, reason: `qemu-system-x86_64 cannot be run: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, reason: `qemu-system-x86_64 -version exited ${r.status}: ${r.stderr}` };
  const probe = spawnSync("qemu-system-x86_64",
    ["-accel", "tcg", "-machine", "none", "-display", "none", "-S", "-monitor", "none", "-no-user-config",
     "-nodefaults", "-serial", "none", "-parallel", "none", "-qmp", "stdio"],
    { encoding: "utf8", input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n', timeout: 20000 });
  if (probe.status !== 0) {
    return { ok: false, reason: `qemu-system-x86_64 cannot start a TCG machine (exit ${probe.status}): ${probe.stderr || probe.error}` };
  }
  return { ok: true, version: r.stdout.split("\n")[0] };
}

/** The run dir's VM if its QEMU process is alive, else undefined. */
export function loadVm(runDir: string): Vm | undefined {
  const file = path.join(runDir, STATE_FILE);
  if (!fs.existsSync(file)) return undefined;
  const vm = JSON.parse(fs.readFileSync(file, "utf8")) as Vm;
  return isQemuAlive(vm.pid) ? vm : undefined;
}

export function isQemuAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmdline.includes("qemu-system")) {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      return !/^\d+ \(.*\) Z /.test(stat);
    }
    return false;
  } catch {
    return false;
  }
}

/**
 * Create the seed, overlay and data disk and start QEMU as a detached background process. Resolves once QEMU runs;
 * wait with waitForSsh / waitForCloudInit. Throws if a VM already runs in this run dir.
 */
export async function startVm(opts: StartVmOptions): Promise<Vm> {
  const log = opts.log ?? stderrLog;
  const runDir = path.resolve(opts.runDir);
  fs.mkdirSync(runDir, { recursive: true });
  const running = loadVm(runDir);
  if (running) throw new Error(`a VM is already running from ${runDir} (pid ${running.pid}); stop it first`);

  const userData = fs.readFileSync(opts.userDataFile);
  if (!userData.subarray(0, 200).toString("utf8").startsWith("#cloud-config")) {
    throw new Error(`${opts.userDataFile} does not start with #cloud-config`);
  }
  const key = ensureSshKey(opts.sshKeyDir ?? runDir);
  const hostname = opts.hostname ?? sanitizeHostname(path.basename(runDir));
  const accel = opts.accel ?? ((process.env.SAAS_VPS_VM_ACCEL as "tcg" | "kvm" | undefined) ?? "tcg");

  // Fresh per-boot state (the key pair stays).
  for (const f of ["overlay.qcow2", "data.qcow2", "seed.img", "console.log", "qemu.pid", "qemu.log", STATE_FILE,
                   "user-data", "meta-data", "network-config"]) {
    fs.rmSync(path.join(runDir, f), { force: true });
  }
  const p = (f: string) => path.join(runDir, f);
  fs.writeFileSync(p("user-data"), userData);
  // Pin the host key the user-data installs, as `pulumi up` does.
  const hostPublicKey: unknown = parseYaml(userData.toString("utf8"))?.ssh_keys?.ed25519_public;
  const knownHostsPath = typeof hostPublicKey === "string" ? p("known_hosts") : undefined;
  if (knownHostsPath) fs.writeFileSync(knownHostsPath, `${HOST_KEY_ALIAS} ${String(hostPublicKey).trim()}\n`);
  else fs.rmSync(p("known_hosts"), { force: true });
  const metadataMac = opts.metadataStandIn ? macFor(runDir, "vm", "metadata") : undefined;
  const instanceId = `saas-vps-${hostname}-${crypto.randomBytes(4).toString("hex")}`;
  fs.writeFileSync(p("meta-data"), `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`);
  // Without a private NIC, no network-config: cloud-init's fallback (DHCP on the first NIC) is
  // what works here. With one, both NICs are matched by MAC (cli/vm/network.ts says why not by name).
  const publicMac = opts.privateNic ? macFor(runDir, "vm", "public") : undefined;
  if (opts.privateNic) {
    fs.writeFileSync(p("network-config"), renderNetworkConfig(publicMac!, opts.privateNic));
    runTool("cloud-localds", [`--network-config=${p("network-config")}`, p("seed.img"), p("user-data"), p("meta-data")]);
  } else {
    runTool("cloud-localds", [p("seed.img"), p("user-data"), p("meta-data")]);
  }
  runTool("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", path.resolve(opts.image.disk),
    p("overlay.qcow2"), `${opts.rootDiskGiB ?? 10}G`]);
  runTool("qemu-img", ["create", "-q", "-f", "qcow2", p("data.qcow2"), `${opts.dataDiskGiB ?? 4}G`]);

  let qmpSocket = p("qmp.sock");
  if (qmpSocket.length > 100) qmpSocket = path.join(os.tmpdir(), `saas-vps-qmp-${crypto.randomBytes(4).toString("hex")}.sock`);

  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(3);
    const vmPorts: VmPorts = { ssh: ports[0], http: ports[1], https: ports[2] };
    fs.rmSync(qmpSocket, { force: true });
    const args = [
      "-name", `saas-vps-${hostname},process=saas-vps-${hostname}`,
      "-machine", "q35",
      "-accel", accel === "kvm" ? "kvm" : "tcg,thread=multi",
      "-cpu", accel === "kvm" ? "host" : "max",
      "-m", String(opts.memoryMiB ?? 2048),
      "-smp", String(opts.cpus ?? 2),
      "-kernel", opts.image.kernel,
      "-initrd", opts.image.initrd,
      // no_timer_check: the kernel's early check that the IO-APIC timer ticks fails when the
      // emulated CPU gets too little of the host ("IO-APIC + timer doesn't work", a panic at
      // 0.05 s, seen with four VMs on a busy 2-core host); a virtual machine's timer needs no check.
      "-append", "root=/dev/vda rw console=ttyS0,115200n8 no_timer_check",
      "-drive", `if=none,id=root,file=${p("overlay.qcow2")},format=qcow2,discard=unmap`,
      "-device", "virtio-blk-pci,drive=root",
      "-drive", `if=none,id=data,file=${p("data.qcow2")},format=qcow2,discard=unmap`,
      "-device", "virtio-blk-pci,drive=data,serial=saas-data",
      "-drive", `if=none,id=seed,file=${p("seed.img")},format=raw,readonly=on`,
      "-device", "virtio-blk-pci,drive=seed",
      "-netdev", "user,id=net0," +
        `hostfwd=tcp:127.0.0.1:${vmPorts.ssh}-:22,` +
        `hostfwd=tcp:127.0.0.1:${vmPorts.http}-:80,` +
        `hostfwd=tcp:127.0.0.1:${vmPorts.https}-:443`,
      "-device", `virtio-net-pci,netdev=net0${publicMac ? `,mac=${publicMac}` : ""}`,
      ...(opts.privateNic ? privateNicArgs(opts.privateNic) : []),
      // restrict=on: the stand-in NIC reaches nothing but the forwarded metadata address.
      ...(opts.metadataStandIn
        ? ["-netdev", `user,id=meta0,restrict=on,net=${METADATA_STAND_IN_ADDRESS.replace(/\d+$/, "0")}/24,guestfwd=tcp:${METADATA_STAND_IN_ADDRESS}:80-cmd:${opts.metadataStandIn}`,
           "-device", `virtio-net-pci,netdev=meta0,mac=${metadataMac}`]
        : []),
      "-object", "rng-random,id=rng0,filename=/dev/urandom",
      "-device", "virtio-rng-pci,rng=rng0",
      "-display", "none",
      "-serial", `file:${p("console.log")}`,
      "-monitor", "none",
      "-qmp", `unix:${qmpSocket},server=on,wait=off`,
      "-pidfile", p("qemu.pid"),
    ];
    // Detached child rather than -daemonize, so QEMU's own stderr (warnings, a crash, a port
    // clash) stays readable in qemu.log for the whole life of the VM.
    fs.rmSync(p("qemu.pid"), { force: true });
    const qemuLog = fs.openSync(p("qemu.log"), "w");
    const startedAtMs = Date.now();
    const child = spawn("qemu-system-x86_64", args, { detached: true, stdio: ["ignore", qemuLog, qemuLog] });
    if (child.pid) setSessionNice(child.pid, os.getPriority());
    fs.closeSync(qemuLog);
    let exitCode: number | null | undefined;
    child.on("exit", (code, signal) => { exitCode = code ?? (signal ? 128 : 0); });
    child.on("error", () => { exitCode = 127; });
    // QEMU writes the pidfile once the machine is set up (ports bound, disks opened).
    const readyBy = Date.now() + 30000;
    while (exitCode === undefined && !fs.existsSync(p("qemu.pid")) && Date.now() < readyBy) await sleep(100);
    if (exitCode === undefined) await sleep(300); // a failure right after the pidfile
    if (exitCode !== undefined || !fs.existsSync(p("qemu.pid"))) {
      const msg = fs.readFileSync(p("qemu.log"), "utf8").trim();
      if (/host forwarding|Address already in use/i.test(msg) && attempt < 4) {
        log(`[vm] port clash (${msg}); retrying with other ports`);
        continue;
      }
      if (exitCode === undefined) try { process.kill(child.pid!, "SIGKILL"); } catch { /* gone */ }
      throw new Error(`qemu-system-x86_64 failed (exit ${exitCode ?? "none: no pidfile after 30 s"}): ${msg}`);
    }
    child.unref();
    const pid = Number(fs.readFileSync(p("qemu.pid"), "utf8").trim());
    const vm: Vm = {
      runDir, pid, ports: vmPorts, sshUser: opts.sshUser ?? "admin", sshKeyPath: key.privateKeyPath,
      consoleLog: p("console.log"), qmpSocket, startedAtMs, imageDir: opts.image.dir, accel, qemuArgs: args,
      ...(opts.privateNic ? { privateNic: opts.privateNic } : {}),
      ...(knownHostsPath ? { knownHostsPath } : {}),
      ...(metadataMac ? { metadataMac } : {}),
    };
    fs.writeFileSync(p(STATE_FILE), JSON.stringify(vm, null, 2) + "\n");
    opts.onStart?.(vm);
    log(`[vm] QEMU started (pid ${pid}, ${accel}, ${opts.memoryMiB ?? 2048} MiB, ${opts.cpus ?? 2} vCPU); ` +
        `ssh 127.0.0.1:${vmPorts.ssh}, http 127.0.0.1:${vmPorts.http}, https 127.0.0.1:${vmPorts.https}; ` +
        (opts.privateNic ? `private ${opts.privateNic.address} (${opts.privateNic.mac}); ` : "") +
        `console ${vm.consoleLog}`);
    return vm;
  }
}

/**
 * QEMU runs in a session of its own (spawned detached, so it outlives the runner). Under the
 * kernel's autogroup scheduling each session is a group that gets an equal share of the CPU
 * whatever its processes' nice values, so a runner started with `nice` would still give each of
 * its VMs a full share: this gives the session's group the runner's nice value (`nice npm test`
 * leaves the machine's other work its share, VMs included). Returns false where there is no autogroup.
 */
export function setSessionNice(pid: number, nice: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    return true;
  } catch {
    return false;
  }
}

/** Last non-empty lines of the serial console, for progress and failure messages. */
export function consoleTail(vm: Vm, lines = 1): string {
  try {
    const text = fs.readFileSync(vm.consoleLog, "utf8").replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
    return text.split("\n").map((l) => l.trim()).filter(Boolean).slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/**
 * Shut the VM down: ACPI powerdown over QMP, wait up to `timeoutMs` (default 90 s), then
 * SIGTERM, then SIGKILL. Returns how it ended.
 */
export async function stopVm(runDir: string, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<"not-running" | "powerdown" | "killed"> {
  const log = opts.log ?? stderrLog;
  const file = path.join(path.resolve(runDir), STATE_FILE);
  if (!fs.existsSync(file)) return "not-running";
  const vm = JSON.parse(fs.readFileSync(file, "utf8")) as Vm;
  if (!isQemuAlive(vm.pid)) {
    fs.rmSync(vm.qmpSocket, { force: true });
    return "not-running";
  }
  const t0 = Date.now();
  log(`[vm] ACPI powerdown (pid ${vm.pid})`);
  try {
    await qmp(vm.qmpSocket, ["system_powerdown"]);
  } catch (e) {
    log(`[vm] QMP powerdown failed: ${(e as Error).message}`);
  }
  const deadline = t0 + (opts.timeoutMs ?? 90000);
  while (Date.now() < deadline) {
    if (!isQemuAlive(vm.pid)) {
      log(`[vm] powered off in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      fs.rmSync(vm.qmpSocket, { force: true });
      return "powerdown";
    }
    await sleep(500);
  }
  log(`[vm] no powerdown after ${((Date.now() - t0) / 1000).toFixed(0)} s; killing pid ${vm.pid}`);
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    try { process.kill(vm.pid, sig); } catch { /* gone */ }
    for (let i = 0; i < 20 && isQemuAlive(vm.pid); i++) await sleep(250);
    if (!isQemuAlive(vm.pid)) break;
  }
  fs.rmSync(vm.qmpSocket, { force: true });
  return "killed";
}

function sanitizeHostname(name: string): string {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  return h || "saas-vps-vm";
}
