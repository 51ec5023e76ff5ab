/**
 * `npm run ops -- <command>`: day-2 operations over SSH on a stack's servers or the local VMs
 * (status, logs, release, backup); OPS_USAGE in cli/lib/opsArgs.ts lists them.
 * Exit: 0 done (status: no FAIL), 1 a FAIL / the server's command failed (its own exit status
 * for release and backup), 2 a bad command line, 3 the servers could not be found.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { USAGE_EXIT, usageError } from "./lib/args";
import { OPS_USAGE, OpsUsageError, parseOpsArgs, type OpsArgs } from "./lib/opsArgs";
import { logsCommand, NOT_HERE, passThroughCommand } from "./lib/opsRemote";
import { formatStatus, serverStatus } from "./lib/opsStatus";
import { knownHostsFor, OpsTargetError, type OpsTarget, pickServer, stackServersFromOutputs, stackTarget, vmRunDir, vmTargets } from "./lib/opsTargets";
import { missingStackMessage, PROJECT_DIR, stackFilePath } from "./lib/stacks";

const STATUS_SCRIPT = path.join(__dirname, "ops", "status.sh");

interface Run { code: number; stdout: string; stderr: string }

function runSsh(target: OpsTarget, command: string, input = ""): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", [...target.sshArgs(), command], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 255 : 0), stdout, stderr }));
    child.stdin.on("error", () => {}); // ssh gone before reading: its exit code tells
    child.stdin.end(input);
  });
}

/** The servers: the VM's, or the deployed stack's from `pulumi stack output` (host keys pinned in a private known_hosts). */
function targetsOf(args: OpsArgs, tmp: string): OpsTarget[] {
  if (args.vm) return pickServer(vmTargets(vmRunDir(args)), args.server);
  const stack = args.stack!;
  if (!fs.existsSync(stackFilePath(stack))) throw new OpsUsageError(missingStackMessage(stack));
  const out = spawnSync("pulumi", ["stack", "output", "--stack", stack, "--json"], { cwd: PROJECT_DIR, encoding: "utf8" });
  if (out.error || out.status !== 0) {
    throw new OpsTargetError(`pulumi stack output --stack ${stack} failed: ${out.error?.message ?? out.stderr.trim()}`);
  }
  const servers = stackServersFromOutputs(stack, JSON.parse(out.stdout));
  const knownHosts = path.join(tmp, "known_hosts");
  fs.writeFileSync(knownHosts, knownHostsFor(servers), { mode: 0o600 });
  return pickServer(servers.map((s) => stackTarget(s, knownHosts)), args.server);
}

async function status(targets: OpsTarget[]): Promise<number> {
  const script = fs.readFileSync(STATUS_SCRIPT, "utf8");
  const results = await Promise.all(targets.map((t) => runSsh(t, "sudo bash -s", script)));
  let fails = 0;
  targets.forEach((t, i) => {
    const lines = serverStatus(results[i]);
    fails += lines.filter((l) => l.level === "FAIL").length;
    process.stdout.write(formatStatus(`${t.server} (${t.label})`, lines));
  });
  return fails > 0 ? 1 : 0;
}

async function logs(targets: OpsTarget[], unit: string | undefined): Promise<number> {
  const command = logsCommand(unit);
  if (targets.length === 1) {
    // One server: its terminal, so Ctrl-C reaches journalctl there.
    const tty = process.stdin.isTTY ? ["-t"] : [];
    const r = spawnSync("ssh", [...targets[0].sshArgs(tty), command], { stdio: "inherit" });
    return r.status ?? 0;
  }
  // Several: side by side, each line prefixed with its server, until Ctrl-C.
  const codes = await Promise.all(targets.map((t) => new Promise<number>((resolve) => {
    const child = spawn("ssh", [...t.sshArgs(), command], { stdio: ["ignore", "pipe", "pipe"] });
    readline.createInterface({ input: child.stdout }).on("line", (l) => process.stdout.write(`${t.server}: ${l}\n`));
    readline.createInterface({ input: child.stderr }).on("line", (l) => process.stderr.write(`${t.server}: ${l}\n`));
    child.on("close", (code) => resolve(code ?? 0));
  })));
  return codes.find((c) => c !== 0) ?? 0;
}

async function passThrough(targets: OpsTarget[], command: "release" | "backup", words: string[]): Promise<number> {
  let ran = 0;
  for (const t of targets) {
    process.stderr.write(`== ${t.server} (${t.label}): sudo ${command} ${words.join(" ")}\n`);
    const r = spawnSync("ssh", [...t.sshArgs(), passThroughCommand(command, words)], { stdio: "inherit" });
    const code = r.status ?? 255;
    if (code === NOT_HERE) { process.stderr.write(`   (no ${command} command on ${t.server})\n`); continue; }
    ran++;
    if (code !== 0) {
      process.stderr.write(`ops: ${command} exited ${code} on ${t.server}; stopping here\n`);
      return code;
    }
  }
  if (ran === 0) {
    process.stderr.write(`ops: no server here has the ${command} command (${targets.map((t) => t.server).join(", ")})\n`);
    return 2;
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let args: OpsArgs;
  try {
    args = parseOpsArgs(argv);
  } catch (err) {
    if (err instanceof OpsUsageError) usageError("ops", OPS_USAGE, err.message);
    throw err;
  }
  if (args.help) {
    process.stdout.write(`${OPS_USAGE}\n`);
    return 0;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-ops-"));
  try {
    const targets = targetsOf(args, tmp);
    switch (args.command) {
      case "status": return await status(targets);
      case "logs": return await logs(targets, args.unit);
      case "release":
      case "backup": return await passThrough(targets, args.command, args.passThrough);
    }
  } catch (err) {
    if (err instanceof OpsUsageError) {
      process.stderr.write(`ops: ${err.message}\n${OPS_USAGE}\n`);
      return USAGE_EXIT;
    }
    if (err instanceof OpsTargetError) {
      process.stderr.write(`ops: ${err.message}\n`);
      return 3;
    }
    throw err;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  process.stderr.write(`ops: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
