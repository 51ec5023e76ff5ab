/**
 * The servers `npm run ops` talks to, and how ssh reaches each: a deployed stack's (its stack
 * outputs sshTargets and sshHostKeys, the host key pinned), or the local VMs' (cli/vm: the run
 * dir's key and pinned host key, exactly as `npm run vm -- ssh` logs in).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { OpsUsageError } from "./opsArgs";
import { PROJECT_DIR } from "./stacks";
import { sshArgs } from "../vm/ssh";
import { serverRunDir, startedServers } from "../vm/stackVms";
import { loadVm } from "../vm/vm";

export interface OpsTarget {
  server: string;
  /** Where it is, for headings: admin@<ip>, or the VM's run dir. */
  label: string;
  /** ssh's arguments up to and including the destination; `extra` options go before it. */
  sshArgs(extra?: string[]): string[];
}

/** A problem finding the servers (not a bad command line): exit 3. */
export class OpsTargetError extends Error {}

/** The app server first (a release there gates the worker's), then the worker, then the rest by name. */
const SERVER_ORDER = ["app", "worker", "db"];
export function serverOrder(a: string, b: string): number {
  const rank = (s: string) => (SERVER_ORDER.includes(s) ? SERVER_ORDER.indexOf(s) : SERVER_ORDER.length);
  return rank(a) - rank(b) || a.localeCompare(b);
}

export interface StackServer {
  server: string;
  /** admin@<IPv4> */
  destination: string;
  /** The OpenSSH public host key the server presents (ssh-ed25519 ...). */
  hostKey: string;
}

/** Every server of a deployed stack, from `pulumi stack output --json`. */
export function stackServersFromOutputs(stack: string, outputs: unknown): StackServer[] {
  const o = (outputs ?? {}) as Record<string, unknown>;
  const targets = o.sshTargets as Record<string, unknown> | undefined;
  const keys = o.sshHostKeys as Record<string, unknown> | undefined;
  if (!targets || typeof targets !== "object" || !keys || typeof keys !== "object") {
    throw new OpsTargetError(`stack ${stack} has no outputs sshTargets and sshHostKeys: run pulumi up with this version of the program first`);
  }
  return Object.keys(targets).sort(serverOrder).map((server) => {
    const destination = targets[server];
    const hostKey = keys[server];
    if (typeof destination !== "string" || !/^[a-z_][a-z0-9_-]*@[0-9.]+$/.test(destination)) {
      throw new OpsTargetError(`stack ${stack}: output sshTargets.${server} is not user@IPv4; got ${JSON.stringify(destination)}`);
    }
    if (typeof hostKey !== "string" || !/^ssh-ed25519 [A-Za-z0-9+/=]+$/.test(hostKey)) {
      throw new OpsTargetError(`stack ${stack}: output sshHostKeys.${server} is not an ssh-ed25519 public key; got ${JSON.stringify(hostKey)}`);
    }
    return { server, destination, hostKey };
  });
}

/** known_hosts lines pinning each server's key to its address. */
export function knownHostsFor(servers: StackServer[]): string {
  return servers.map((s) => `${s.destination.split("@")[1]} ${s.hostKey}\n`).join("");
}

/** ssh reaching a stack's server: batch mode, only the pinned host key. */
export function stackTarget(server: StackServer, knownHostsFile: string): OpsTarget {
  return {
    server: server.server,
    label: server.destination,
    sshArgs: (extra = []) => [
      "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHostsFile}`,
      "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", ...extra, server.destination,
    ],
  };
}

/** The local VM run dir the options name, as `npm run vm` resolves it. */
export function vmRunDir(opts: { stack?: string; name?: string; runDir?: string }): string {
  return path.resolve(opts.runDir ?? path.join(PROJECT_DIR, ".vm", opts.name ?? opts.stack ?? "default"));
}

/** The running VMs of a run dir: a stack's servers, or the one VM of a `start --user-data` / test run dir. */
export function vmTargets(runDir: string): OpsTarget[] {
  if (!fs.existsSync(runDir)) throw new OpsTargetError(`no local VM run dir ${runDir} (start one: npm run vm -- --stack <name>)`);
  const servers = startedServers(runDir);
  const dirs = servers.length === 0 ? [{ server: path.basename(runDir), dir: runDir }] : servers.map((s) => ({ server: s, dir: serverRunDir(runDir, s) }));
  return dirs.sort((a, b) => serverOrder(a.server, b.server)).map(({ server, dir }) => {
    const vm = loadVm(dir);
    if (!vm) throw new OpsTargetError(`the VM ${server} (${dir}) is not running (start it: npm run vm -- --stack <name>)`);
    return { server, label: dir, sshArgs: (extra = []) => sshArgs(vm, extra) };
  });
}

/** Only --server's, when given; an unknown one is a bad command line naming those there are. */
export function pickServer(targets: OpsTarget[], server: string | undefined): OpsTarget[] {
  if (server === undefined) return targets;
  const picked = targets.filter((t) => t.server === server);
  if (picked.length === 0) throw new OpsUsageError(`--server ${server}: no such server; there are ${targets.map((t) => t.server).join(", ")}`);
  return picked;
}
