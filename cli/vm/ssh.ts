/** SSH into the VM as the admin user: the run dir's key pair, one-off commands, scp, and a multiplexed connection. */
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runTool } from "./process";
import type { Vm } from "./vm";

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
    runTool("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "saas-vps-vm", "-f", privateKeyPath]);
  }
  fs.chmodSync(privateKeyPath, 0o600);
  return { privateKeyPath, publicKeyPath, publicKey: fs.readFileSync(publicKeyPath, "utf8").trim() };
}

export interface SshResult { code: number; stdout: string; stderr: string }

/** The name the VM's pinned host key is filed under in its known_hosts (its SSH port changes per boot). */
export const HOST_KEY_ALIAS = "saas-vps-vm";

/**
 * Host-key options: the key the user-data installed and nothing else when the VM knows it
 * (vm.knownHostsPath); otherwise (user-data without a host key) no check.
 */
function hostKeyOptions(vm: Vm): string[] {
  if (!vm.knownHostsPath) return ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"];
  return ["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${vm.knownHostsPath}`, "-o", `HostKeyAlias=${HOST_KEY_ALIAS}`, "-o", "HostKeyAlgorithms=ssh-ed25519"];
}

/** ssh's arguments up to the command: options (the run dir's key, the pinned host key), then admin@VM; `extra` options go before the target. */
export function sshArgs(vm: Vm, extra: string[] = []): string[] {
  return [
    "-F", "/dev/null",
    "-i", vm.sshKeyPath,
    "-p", String(vm.ports.ssh),
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    ...hostKeyOptions(vm),
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=6",
    ...extra,
    `${vm.sshUser}@127.0.0.1`,
  ];
}

/** The ssh command a person would type to reach the VM. */
export function sshCommandLine(vm: Vm): string {
  return `ssh -i ${vm.sshKeyPath} -p ${vm.ports.ssh} ${hostKeyOptions(vm).join(" ")} ${vm.sshUser}@127.0.0.1`;
}

export interface SshOptions {
  timeoutMs?: number;
  /** Sent on the command's stdin. */
  input?: string;
  /** Run over this already open connection (openSshMaster) instead of a new one. */
  master?: SshMaster;
}

/** Run a shell command in the guest as the admin user. Never throws on a non-zero exit. */
export function ssh(vm: Vm, command: string, opts: SshOptions = {}): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", [...sshArgs(vm, opts.master ? muxClientOptions(opts.master) : []), command], { stdio: ["pipe", "pipe", "pipe"] });
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

/** One SSH connection that later ssh() calls share (OpenSSH multiplexing). */
export interface SshMaster {
  /** The master's control socket. */
  controlPath: string;
  /** Ends the master connection (`ssh -O exit`). */
  close(): void;
}

/** The options that make an ssh client use the master's connection, and fail rather than open its own. */
function muxClientOptions(master: SshMaster): string[] {
  return ["-o", `ControlPath=${master.controlPath}`, "-o", "ControlMaster=no"];
}

/**
 * Open one SSH connection to the VM and keep it for later ssh() calls with `{ master }`: each
 * then costs a channel on it, not a TCP connection, key exchange and login (seconds under
 * emulation). The control socket lives in the run dir; ControlPersist ends the master by itself
 * if it is left idle (e.g. this process dies before close()).
 */
export function openSshMaster(vm: Vm, opts: { idleSeconds?: number } = {}): SshMaster {
  let controlPath = path.join(vm.runDir, "ssh-control.sock");
  // A unix socket path must fit in 108 bytes; OpenSSH adds a random suffix while it binds.
  if (controlPath.length > 80) controlPath = path.join(os.tmpdir(), `saas-vps-ssh-${crypto.randomBytes(4).toString("hex")}.sock`);
  fs.rmSync(controlPath, { force: true });
  const options = ["-o", "ControlMaster=yes", "-o", `ControlPath=${controlPath}`, "-o", `ControlPersist=${opts.idleSeconds ?? 120}`];
  // -f -N: background once logged in, no command. No pipes: a backgrounded master must not hold
  // one of this process's pipes open (the call would never see it close); its stderr goes to a file.
  const logFile = path.join(vm.runDir, "ssh-master.log");
  const logFd = fs.openSync(logFile, "w");
  let r;
  try {
    r = spawnSync("ssh", ["-f", "-N", ...sshArgs(vm, options)], { stdio: ["ignore", "ignore", logFd], timeout: 60000 });
  } finally {
    fs.closeSync(logFd);
  }
  if (r.status !== 0) {
    throw new Error(`cannot open the SSH master connection to the VM (exit ${r.status}): ${fs.readFileSync(logFile, "utf8").trim() || r.error}`);
  }
  const target = sshArgs(vm).pop()!;
  return {
    controlPath,
    close: () => {
      spawnSync("ssh", ["-o", `ControlPath=${controlPath}`, "-O", "exit", target], { stdio: "ignore", timeout: 10000 });
      fs.rmSync(controlPath, { force: true });
    },
  };
}
