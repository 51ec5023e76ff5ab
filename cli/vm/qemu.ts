/**
 * Local Debian 13 VM runner: a cached mmdebstrap image (cli/vm/build-image.sh), a per-boot
 * qcow2 overlay, a blank data disk (virtio serial `saas-data`), a NoCloud seed made from the
 * exact user-data given, QEMU in the background with loopback-only port forwards for SSH/HTTP/HTTPS.
 *
 * State lives in a run dir (e.g. `.vm/<stack>/`): `vm.json` (ports, pid, paths), `qemu.pid`,
 * `console.log` (serial console), `qmp.sock`, `id_ed25519{,.pub}` (kept across boots so the
 * public key can go into the stack's sshPublicKeys once), the disks and the seed.
 */
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";

export type VmLogger = (message: string) => void;

/** Packages pre-installed in the image when the user-data has no `packages:` list. */
export const DEFAULT_PACKAGES = [
  "nginx", "postgresql", "nodejs", "restic", "age", "unattended-upgrades", "certbot",
  "python3-certbot-nginx", "fail2ban", "curl", "ca-certificates",
];

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
export const BUILD_IMAGE_SCRIPT = path.join(__dirname, "build-image.sh");

const defaultLog: VmLogger = (m) => process.stderr.write(`${m}\n`);

// ---------------------------------------------------------------------------------------------
// Image

export interface ImageInfo {
  dir: string;
  /** ext4 root filesystem as qcow2 (no partition table: root=/dev/vda). */
  disk: string;
  kernel: string;
  initrd: string;
  key: string;
  packages: string[];
  /** Seconds the build took (from build.json; the cached build's figure on a cache hit). */
  buildSeconds?: number;
  diskBytes?: number;
  /** True when this call built the image, false on a cache hit. */
  built: boolean;
}

/**
 * The `packages:` list of a cloud-config document, in apt syntax (`[name, version]` entries
 * become `name=version`). Returns undefined when the document has no `packages:` key.
 */
export function packagesFromUserData(userData: string): string[] | undefined {
  const doc = parseYaml(userData) as Record<string, unknown> | null;
  if (!doc || typeof doc !== "object" || !("packages" in doc)) return undefined;
  const list = doc.packages;
  if (!Array.isArray(list)) throw new Error("user-data: `packages` is not a list");
  return list.map((entry) => {
    if (typeof entry === "string") return entry;
    if (Array.isArray(entry) && entry.length === 2) return `${entry[0]}=${entry[1]}`;
    throw new Error(`user-data: unsupported packages entry ${JSON.stringify(entry)}`);
  });
}

/**
 * Build the image for this package list, or reuse the cached one (key = hash of the list and
 * of build-image.sh). Needs root. Progress lines go to `log`.
 */
export async function ensureImage(opts: {
  packages?: string[];
  rebuild?: boolean;
  log?: VmLogger;
} = {}): Promise<ImageInfo> {
  const log = opts.log ?? defaultLog;
  const packages = opts.packages ?? DEFAULT_PACKAGES;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-pkgs-"));
  const listFile = path.join(tmp, "packages.txt");
  fs.writeFileSync(listFile, packages.join("\n") + "\n");
  const args = [BUILD_IMAGE_SCRIPT, "--packages", listFile];
  if (opts.rebuild) args.push("--rebuild");
  let built = false;
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      const child = spawn("bash", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      const tail: string[] = [];
      child.stdout.on("data", (d) => { out += d; });
      let buf = "";
      child.stderr.on("data", (d) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          tail.push(line);
          if (tail.length > 40) tail.shift();
          if (line.includes("building image")) built = true;
          // mmdebstrap is chatty: show our own progress lines and a heartbeat of apt's.
          if (!line.startsWith("[mmdebstrap]") || /^\[mmdebstrap\] (I:|E:|W:)/.test(line)) log(line);
        }
      });
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve(out);
        else reject(new Error(`build-image.sh exited ${code}; last output:\n${tail.join("\n")}`));
      });
    });
    const m = /^IMAGE_DIR=(.+)$/m.exec(stdout);
    if (!m) throw new Error(`build-image.sh printed no IMAGE_DIR: ${stdout}`);
    return readImage(m[1].trim(), built);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function readImage(dir: string, built: boolean): ImageInfo {
  const info = JSON.parse(fs.readFileSync(path.join(dir, "build.json"), "utf8"));
  return {
    dir,
    disk: path.join(dir, "disk.qcow2"),
    kernel: path.join(dir, "vmlinuz"),
    initrd: path.join(dir, "initrd.img"),
    key: info.key,
    packages: fs.readFileSync(path.join(dir, "packages.txt"), "utf8").split("\n").filter(Boolean),
    buildSeconds: info.buildSeconds,
    diskBytes: info.diskBytes,
    built,
  };
}

// ---------------------------------------------------------------------------------------------
// SSH key

export interface SshKeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
  /** One-line OpenSSH public key (`ssh-ed25519 AAAA... saas-vps-vm`). */
  publicKey: string;
}

/** The run dir's ed25519 key pair, generated on first use and kept across boots. */
export function ensureSshKey(runDir: string): SshKeyPair {
  fs.mkdirSync(runDir, { recursive: true });
  const privateKeyPath = path.resolve(runDir, "id_ed25519");
  const publicKeyPath = `${privateKeyPath}.pub`;
  if (!fs.existsSync(privateKeyPath) || !fs.existsSync(publicKeyPath)) {
    fs.rmSync(privateKeyPath, { force: true });
    fs.rmSync(publicKeyPath, { force: true });
    run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "saas-vps-vm", "-f", privateKeyPath]);
  }
  fs.chmodSync(privateKeyPath, 0o600);
  return { privateKeyPath, publicKeyPath, publicKey: fs.readFileSync(publicKeyPath, "utf8").trim() };
}

// ---------------------------------------------------------------------------------------------
// VM lifecycle

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
  /** Called as soon as QEMU runs (ports known), before any waiting: e.g. to start probes. */
  onStart?: (vm: Vm) => void;
}

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

function isQemuAlive(pid: number): boolean {
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
  const log = opts.log ?? defaultLog;
  const runDir = path.resolve(opts.runDir);
  fs.mkdirSync(runDir, { recursive: true });
  const running = loadVm(runDir);
  if (running) throw new Error(`a VM is already running from ${runDir} (pid ${running.pid}); stop it first`);

  const userData = fs.readFileSync(opts.userDataFile);
  if (!userData.subarray(0, 200).toString("utf8").startsWith("#cloud-config")) {
    throw new Error(`${opts.userDataFile} does not start with #cloud-config`);
  }
  const key = ensureSshKey(runDir);
  const hostname = opts.hostname ?? sanitizeHostname(path.basename(runDir));
  const accel = opts.accel ?? ((process.env.SAAS_VPS_VM_ACCEL as "tcg" | "kvm" | undefined) ?? "tcg");

  // Fresh per-boot state (the key pair stays).
  for (const f of ["overlay.qcow2", "data.qcow2", "seed.img", "console.log", "qemu.pid", "qemu.log", STATE_FILE,
                   "user-data", "meta-data", "network-config"]) {
    fs.rmSync(path.join(runDir, f), { force: true });
  }
  const p = (f: string) => path.join(runDir, f);
  fs.writeFileSync(p("user-data"), userData);
  const instanceId = `saas-vps-${hostname}-${crypto.randomBytes(4).toString("hex")}`;
  fs.writeFileSync(p("meta-data"), `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`);
  // No network-config: cloud-init's fallback (DHCP on the first NIC) is what works here. A v2
  // network-config with `match: {name: "e*"}` is rendered by cloud-init 25's networkd renderer as
  // `Name=<id>`, which matches nothing and leaves the guest offline (seen, not guessed).
  run("cloud-localds", [p("seed.img"), p("user-data"), p("meta-data")]);
  run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", path.resolve(opts.image.disk),
    p("overlay.qcow2"), `${opts.rootDiskGiB ?? 10}G`]);
  run("qemu-img", ["create", "-q", "-f", "qcow2", p("data.qcow2"), `${opts.dataDiskGiB ?? 4}G`]);

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
      "-append", "root=/dev/vda rw console=ttyS0,115200n8",
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
      "-device", "virtio-net-pci,netdev=net0",
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
    };
    fs.writeFileSync(p(STATE_FILE), JSON.stringify(vm, null, 2) + "\n");
    opts.onStart?.(vm);
    log(`[vm] QEMU started (pid ${pid}, ${accel}, ${opts.memoryMiB ?? 2048} MiB, ${opts.cpus ?? 2} vCPU); ` +
        `ssh 127.0.0.1:${vmPorts.ssh}, http 127.0.0.1:${vmPorts.http}, https 127.0.0.1:${vmPorts.https}; ` +
        `console ${vm.consoleLog}`);
    return vm;
  }
}

export interface SshResult { code: number; stdout: string; stderr: string }

export function sshArgs(vm: Vm): string[] {
  return [
    "-F", "/dev/null",
    "-i", vm.sshKeyPath,
    "-p", String(vm.ports.ssh),
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=6",
    `${vm.sshUser}@127.0.0.1`,
  ];
}

/** The ssh command a person would type to reach the VM. */
export function sshCommandLine(vm: Vm): string {
  return `ssh -i ${vm.sshKeyPath} -p ${vm.ports.ssh} -o StrictHostKeyChecking=no ` +
    `-o UserKnownHostsFile=/dev/null ${vm.sshUser}@127.0.0.1`;
}

/** Run a shell command in the guest as the admin user. Never throws on a non-zero exit. */
export function ssh(vm: Vm, command: string, opts: { timeoutMs?: number; input?: string } = {}): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", [...sshArgs(vm), command], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      stderr += `\n[ssh timed out after ${opts.timeoutMs} ms]`;
    }, opts.timeoutMs ?? 120000);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 255 : 0), stdout, stderr });
    });
    // ssh may exit before reading stdin (guest gone, connection refused): that is its exit code's
    // story, not an uncaught EPIPE that would take the whole test run down.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Copy a local file to the guest (scp as the admin user). Throws on failure. */
export function scpToVm(vm: Vm, localPath: string, remotePath: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const args = sshArgs(vm);
  const target = args.pop()!; // user@host
  const portAt = args.indexOf("-p");
  args[portAt] = "-P"; // scp spells the port option -P
  return new Promise((resolve, reject) => {
    const child = spawn("scp", ["-q", ...args, localPath, `${target}:${remotePath}`], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300000);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`scp ${localPath} -> ${remotePath} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}

/**
 * Take `<runDir>/.lock` so two processes (mocha runs, the benchmark) never drive or stop the
 * same VM. Waits while a live owner holds it; takes over a dead owner's lock and stops its
 * orphaned VM. Returns the release function.
 */
export async function lockRunDir(runDir: string, log: VmLogger = defaultLog): Promise<() => void> {
  fs.mkdirSync(runDir, { recursive: true });
  const lockFile = path.join(runDir, ".lock");
  for (let waited = 0; ; waited += 5) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: "wx" });
      return () => {
        try {
          if (fs.readFileSync(lockFile, "utf8").trim() === String(process.pid)) fs.rmSync(lockFile, { force: true });
        } catch { /* gone */ }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = Number(fs.readFileSync(lockFile, "utf8").trim());
    let alive = false;
    try { process.kill(owner, 0); alive = owner !== process.pid; } catch { alive = false; }
    if (!alive) {
      fs.rmSync(lockFile, { force: true });
      await stopVm(runDir, { log: () => {} }); // its VM, orphaned
      continue;
    }
    if (waited % 30 === 0) log(`[vm] another process (pid ${owner}) is using ${runDir}; waiting`);
    await sleep(5000);
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

function ensureAlive(vm: Vm, what: string): void {
  if (!isQemuAlive(vm.pid)) {
    throw new Error(`QEMU (pid ${vm.pid}) exited while waiting for ${what}; console tail:\n${consoleTail(vm, 30)}`);
  }
}

/** Poll until `ssh true` succeeds. Resolves with seconds since VM start. */
export async function waitForSsh(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<number> {
  const log = opts.log ?? defaultLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 600000);
  let lastReport = 0;
  for (;;) {
    ensureAlive(vm, "SSH");
    const r = await ssh(vm, "true", { timeoutMs: 30000 });
    if (r.code === 0) {
      const s = elapsed(vm);
      log(`[vm ${s.toFixed(1).padStart(6)} s] SSH is up (${vm.sshUser}@127.0.0.1:${vm.ports.ssh})`);
      return s;
    }
    if (Date.now() > deadline) {
      throw new Error(`no SSH after ${elapsed(vm)} s (last: ${r.stderr.trim()}); console tail:\n${consoleTail(vm, 30)}`);
    }
    if (Date.now() - lastReport > 10000) {
      lastReport = Date.now();
      log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] waiting for SSH; console: ${consoleTail(vm).slice(0, 110)}`);
    }
    await sleep(2000);
  }
}

export interface CloudInitResult {
  /** `status` of `cloud-init status --format json`: done, error, ... */
  status: string;
  extendedStatus: string;
  errors: string[];
  /** Warnings/deprecations by level, e.g. { WARNING: [...] }. */
  recoverableErrors: Record<string, string[]>;
  /** Seconds since VM start when cloud-init was seen finished. */
  seconds: number;
  raw: Record<string, unknown>;
}

/** Poll `cloud-init status --format json` over SSH until it is no longer running. */
export async function waitForCloudInit(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<CloudInitResult> {
  const log = opts.log ?? defaultLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 1200000);
  let lastDetail = "";
  for (;;) {
    ensureAlive(vm, "cloud-init");
    const r = await ssh(vm, "cloud-init status --format json", { timeoutMs: 60000 });
    let raw: Record<string, unknown> | undefined;
    try {
      raw = JSON.parse(r.stdout);
    } catch {
      raw = undefined;
    }
    if (raw) {
      const status = String(raw.status ?? "");
      const detail = `${status}: ${String(raw.detail ?? "").replace(/\s+/g, " ")}`;
      if (detail !== lastDetail) {
        lastDetail = detail;
        log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] cloud-init ${detail.slice(0, 120)}`);
      }
      if (status !== "running" && status !== "not started" && status !== "not run") {
        return {
          status,
          extendedStatus: String(raw.extended_status ?? status),
          errors: (raw.errors as string[] | undefined) ?? [],
          recoverableErrors: (raw.recoverable_errors as Record<string, string[]> | undefined) ?? {},
          seconds: elapsed(vm),
          raw,
        };
      }
    } else if (r.code !== 0 && Date.now() - deadline > -5000) {
      log(`[vm] cloud-init status failed: ${r.stderr.trim()}`);
    }
    if (Date.now() > deadline) throw new Error(`cloud-init not finished after ${elapsed(vm)} s (${lastDetail})`);
    await sleep(3000);
  }
}

/**
 * Shut the VM down: ACPI powerdown over QMP, wait up to `timeoutMs` (default 90 s), then
 * SIGTERM, then SIGKILL. Returns how it ended.
 */
export async function stopVm(runDir: string, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<"not-running" | "powerdown" | "killed"> {
  const log = opts.log ?? defaultLog;
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

/** Send QMP commands (after the capabilities handshake); resolves with their replies. */
export function qmp(socketPath: string, commands: string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const replies: unknown[] = [];
    const queue = ["qmp_capabilities", ...commands];
    let buf = "";
    const timer = setTimeout(() => { sock.destroy(); reject(new Error("QMP timeout")); }, 10000);
    sock.on("error", (e) => { clearTimeout(timer); reject(e); });
    sock.on("data", (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.QMP || "return" in msg || "error" in msg) {
          if (!msg.QMP) replies.push(msg);
          const next = queue.shift();
          if (next) sock.write(JSON.stringify({ execute: next }) + "\n");
          else { clearTimeout(timer); sock.end(); resolve(replies.slice(1)); }
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// helpers

/** Ask the kernel for `n` distinct free TCP ports on 127.0.0.1. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((res, rej) => { s.once("error", rej); s.listen(0, "127.0.0.1", () => res()); });
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((res) => s.close(() => res(undefined)))));
  }
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function sanitizeHostname(name: string): string {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  return h || "saas-vps-vm";
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// One call for callers (`npm run vm`, tests)

export interface BootResult {
  vm: Vm;
  image: ImageInfo;
  /** Seconds from VM start to the first successful SSH login. */
  sshSeconds: number;
  cloudInit: CloudInitResult;
}

/**
 * Image (cached) → seed/overlay/data disk → QEMU → SSH → cloud-init finished. The image's
 * package list is the user-data's `packages:` (DEFAULT_PACKAGES when it has none). Does not
 * throw when cloud-init ends in error: check `cloudInit.status`. On any other failure the VM
 * is left running for inspection (stopVm(runDir) ends it).
 */
export async function bootVm(opts: Omit<StartVmOptions, "image"> & { rebuildImage?: boolean }): Promise<BootResult> {
  const log = opts.log ?? defaultLog;
  const userData = fs.readFileSync(opts.userDataFile, "utf8");
  const packages = packagesFromUserData(userData) ?? DEFAULT_PACKAGES;
  const t0 = Date.now();
  const image = await ensureImage({ packages, rebuild: opts.rebuildImage, log });
  log(`[vm] image ${image.key} ${image.built ? `built in ${((Date.now() - t0) / 1000).toFixed(0)} s` : "from cache"}`);
  const vm = await startVm({ ...opts, image });
  const sshSeconds = await waitForSsh(vm, { log });
  const cloudInit = await waitForCloudInit(vm, { log });
  log(`[vm ${cloudInit.seconds.toFixed(1).padStart(6)} s] cloud-init finished: ${cloudInit.extendedStatus}` +
      (cloudInit.errors.length ? ` (${cloudInit.errors.length} errors)` : ""));
  return { vm, image, sshSeconds, cloudInit };
}
