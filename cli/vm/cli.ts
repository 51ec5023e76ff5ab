/** Local VM runner CLI (`npm run vm -- ...`): the commands and options are in USAGE below. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { freePorts } from "../lib/ports";
import { parseCommandLine, usageError } from "../lib/args";
import { missingStackMessage, PROJECT_DIR, stackFilePath } from "../lib/stacks";
import { balancerStatus, stopBalancer } from "./balancer";
import { bootVm } from "./boot";
import { DEFAULT_PACKAGES, ensureImage } from "./image";
import { spawnS3Bucket, stopS3Bucket } from "./s3";
import { ensureSshKey, sshArgs, sshCommandLine } from "./ssh";
import { planOfStack, type VmBucketOverride } from "./stack";
import { type StackVms, serverRunDir, startStackVms, startedServers } from "./stackVms";
import { type Vm, elapsed, loadVm, stopVm } from "./vm";

const USAGE = `usage:
  npm run vm -- --stack NAME [--with-bucket] [--no-release] [start options]
      render Pulumi.NAME.yaml for the local VMs (every server's exact user-data and day-2
      pushes, the stack dir's SSH key added, machine kind qemu), build/reuse each server's image,
      boot every server at once (a split stage's servers on one private network), wait for SSH
      and cloud-init, run each server's day-2 pushes as \`pulumi up\` does, build and ship the
      app release to the servers that run the app, wait for /health through nginx; print URLs
      and SSH.
      --with-bucket: run an S3 server (s3rver, TLS) on the host and point the stack's backups
      (and uploads, when the stack keeps them in a bucket) at it, so \`sudo backup now\` works
      in the VM (otherwise they go to the stack's cloud buckets, which the VMs have no keys for).
      --no-release: stop after the day-2 pushes.
      --servers A,B,...: boot only these of the stack's servers (the others are rendered, not
      started), e.g. --servers app,app-2,db for stage scaled's balanced part on fewer cores.
      A stack whose plan has a load balancer (stage scaled) also gets its stand-in on the host:
      HAProxy in a network namespace on the private network (needs root), targeting the booted
      app servers; /health is awaited through it as well.
  npm run vm -- stop    [--stack NAME] [--server S]   power the VMs (or server S's) off, and the local bucket and balancer
  npm run vm -- status  [--stack NAME] [--server S]
  npm run vm -- ssh     [--stack NAME] [--server S] [-- command ...]   (--server when the stack has several)
  npm run vm -- key     [--stack NAME]     print the stack dir's SSH public key
  npm run vm -- image   [--packages FILE] [--rebuild]
  npm run vm -- start --user-data FILE [--name NAME]   boot any cloud-config (no pushes, no release)

start options: --memory MiB (every VM; default: a server with PostgreSQL its server type's, others
               at most 1024; 2048 without a stack) --cpus N (2) --accel tcg|kvm (tcg; also
               SAAS_VPS_VM_ACCEL) --rebuild-image --name NAME (stack dir .vm/NAME; default: the
               stack name, else "default") --run-dir DIR (instead of .vm/NAME)
               with --user-data only: --data-disk GiB (4) --root-disk GiB (10)`;

const COMMANDS = ["start", "stop", "status", "key", "ssh", "image"] as const;
type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  "user-data": { type: "string" }, name: { type: "string" }, stack: { type: "string" }, "run-dir": { type: "string" },
  memory: { type: "string" }, cpus: { type: "string" }, "data-disk": { type: "string" }, "root-disk": { type: "string" },
  accel: { type: "string" }, "rebuild-image": { type: "boolean" }, packages: { type: "string" }, rebuild: { type: "boolean" },
  "with-bucket": { type: "boolean" }, server: { type: "string" }, servers: { type: "string" }, "no-release": { type: "boolean" }, help: { type: "boolean", short: "h" },
} as const;

const fail = (message: string): never => usageError("vm", USAGE, message);

/**
 * The command (first word, default start), the options, and for `ssh` the words after `--`.
 * Only the command may stand before `--`; only `ssh` takes words after it.
 */
function parseVmArgs(argv: string[]) {
  const { values, tokens } = parseCommandLine("vm", USAGE, { args: argv, options: OPTIONS, allowPositionals: true, tokens: true });
  const terminator = tokens.find((t) => t.kind === "option-terminator")?.index ?? argv.length;
  const before = tokens.filter((t) => t.kind === "positional" && t.index < terminator).map((t) => (t as { value: string }).value);
  const rest = argv.slice(terminator + 1);
  let command: Command = "start";
  if (before.length > 0 && (COMMANDS as readonly string[]).includes(before[0]) && tokens[0]?.kind === "positional") {
    command = before.shift() as Command;
  }
  if (before.length > 0) fail(`unexpected argument ${before[0]}`);
  if (rest.length > 0 && command !== "ssh") fail(`only ssh takes a command after --; got ${rest.join(" ")}`);
  return { command, values, rest };
}

/** A positive whole number option, or undefined when not given. */
function positiveInt(values: Record<string, unknown>, key: string): number | undefined {
  if (values[key] === undefined) return undefined;
  const n = Number(values[key]);
  if (!Number.isInteger(n) || n <= 0) fail(`--${key} must be a positive whole number; got ${JSON.stringify(values[key])}`);
  return n;
}

const BUCKET_NAME = "saas-vps-vm-backups";
const UPLOADS_BUCKET_NAME = "saas-vps-vm-uploads";

async function main(argv: string[]): Promise<number> {
  const { command, values: opts, rest } = parseVmArgs(argv);
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const stack = opts.stack;
  const name = opts.name ?? stack ?? "default";
  const runDir = path.resolve(opts["run-dir"] ?? path.join(PROJECT_DIR, ".vm", name));
  const bucketDir = path.join(runDir, "bucket");
  const t0 = Date.now();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const step = (m: string) => log(`[vm ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}`);
  const num = (k: string) => positiveInt(opts, k);
  const stopHint = `npm run vm -- stop${stack ? ` --stack ${stack}` : ""}${opts.name ? ` --name ${name}` : ""}`;

  switch (command) {
    case "start": {
      if (!opts["user-data"] && !stack) fail("give --stack NAME (render that stack) or --user-data FILE");
      if (opts["user-data"] && stack) fail("give --stack NAME or --user-data FILE, not both");
      if (stack && !fs.existsSync(stackFilePath(stack))) throw new Error(missingStackMessage(stack));
      if (opts["with-bucket"] && opts["user-data"]) fail("--with-bucket needs --stack (the bucket goes into the stack's config)");
      if (process.getuid && process.getuid() !== 0) {
        log("vm: building the image needs root (mmdebstrap); a cached image is reused if present");
      }
      const accel = opts.accel as "tcg" | "kvm" | undefined;
      if (accel && accel !== "tcg" && accel !== "kvm") fail(`--accel is tcg or kvm; got ${JSON.stringify(accel)}`);
      const running = loadVm(runDir);
      if (running) throw new Error(`a VM is already running from ${runDir} (pid ${running.pid}); stop it first: ${stopHint}`);

      if (stack) return startStack(stack, runDir, opts, { accel, memoryMiB: num("memory"), cpus: num("cpus"), log, step, stopHint });
      if (opts.server) fail("--server is for a stack's VMs (with --stack)");
      if (opts.servers) fail("--servers is for a stack's VMs (with --stack)");

      const userDataFile = path.resolve(opts["user-data"]!);
      let vm: Vm | undefined;
      try {
        const r = await bootVm({
          runDir, userDataFile, hostname: name === "default" ? undefined : name,
          memoryMiB: num("memory"), cpus: num("cpus"), dataDiskGiB: num("data-disk"), rootDiskGiB: num("root-disk"),
          accel, rebuildImage: Boolean(opts["rebuild-image"]), log,
        });
        vm = r.vm;
        const ci = r.cloudInit;
        const lines = [
          `  ssh:     ${sshCommandLine(vm)}`,
          `  console: ${vm.consoleLog}`,
          `  SSH after ${r.sshSeconds.toFixed(1)} s, cloud-init ${ci.extendedStatus} after ${ci.seconds.toFixed(1)} s (since QEMU start)`,
          ...ci.errors.map((e) => `  cloud-init error: ${e}`),
          ...Object.entries(ci.recoverableErrors).flatMap(([lvl, list]) => list.map((e) => `  cloud-init ${lvl}: ${e}`)),
        ];
        if (ci.status !== "done") {
          process.stdout.write(["", `VM ${name}: cloud-init ended with status ${ci.status}; the VM is left running to inspect:`,
            ...lines, `  look:    npm run vm -- ssh --name ${name} -- sudo cloud-init status --long`, `  stop:    ${stopHint}`, ""].join("\n"));
          return 1;
        }
        process.stdout.write([
          "",
          `VM ${name} is up (${vm.accel}, ${path.relative(process.cwd(), userDataFile)}), run dir ${runDir}`,
          `  http:    http://127.0.0.1:${vm.ports.http}/`,
          ...lines,
          `  stop:    ${stopHint}`,
          `  total:   ${((Date.now() - t0) / 1000).toFixed(0)} s`,
          "",
        ].join("\n"));
        return 0;
      } catch (e) {
        const where = vm ? `\nThe VM is left running to inspect: ${sshCommandLine(vm)}\nStop it with: ${stopHint}` :
          loadVm(runDir) ? `\nStop the VM with: ${stopHint}` : "";
        throw new Error(`${(e as Error).message}${where}`);
      }
    }
    case "stop": {
      const dirs = vmDirs(runDir, opts.server);
      const ended = await Promise.all(dirs.map(({ dir }) => stopVm(dir, { log })));
      const bucket = opts.server ? false : await stopS3Bucket(bucketDir);
      const balancer = opts.server ? false : await stopBalancer(runDir, { log });
      dirs.forEach(({ label }, i) => {
        const how = ended[i];
        process.stdout.write(`VM ${label}: ${how === "not-running" ? "was not running" : how === "powerdown" ? "powered off" : "killed"}\n`);
      });
      if (bucket) process.stdout.write(`${name}: local bucket stopped\n`);
      if (balancer) process.stdout.write(`${name}: load balancer stand-in stopped\n`);
      return 0;
    }
    case "status": {
      let down = 0;
      for (const { dir, label } of vmDirs(runDir, opts.server)) {
        const vm = loadVm(dir);
        if (!vm) { process.stdout.write(`VM ${label}: not running\n`); down++; continue; }
        process.stdout.write(`VM ${label}: running (pid ${vm.pid}, up ${elapsed(vm).toFixed(0)} s)\n` +
          `  http: http://127.0.0.1:${vm.ports.http}/\n  ssh:  ${sshCommandLine(vm)}\n` +
          (vm.privateNic ? `  private network: ${vm.privateNic.address}\n` : ""));
      }
      if (!opts.server) {
        const lb = await balancerStatus(runDir);
        if (lb.state) {
          const servers = Object.entries(lb.servers ?? {}).map(([backend, s]) => `${backend}: ${Object.entries(s).map(([n, st]) => `${n} ${st}`).join(", ")}`);
          process.stdout.write(`load balancer stand-in: ${lb.running ? "running" : `NOT running (${lb.problems.join("; ")})`}, ` +
            `netns ${lb.state.namespace}, private ${lb.state.privateAddress}\n` +
            lb.state.ports.map((p) => `  frontend: http://${lb.state!.link.balancer}:${p}/\n`).join("") +
            servers.map((l) => `  ${l}\n`).join(""));
          if (!lb.running) down++;
        }
      }
      return down > 0 ? 3 : 0;
    }
    case "key": {
      process.stdout.write(`${ensureSshKey(runDir).publicKey}\n`);
      return 0;
    }
    case "ssh": {
      const dirs = vmDirs(runDir, opts.server);
      if (dirs.length > 1) fail(`${name} has several VMs (${dirs.map((d) => d.label).join(", ")}); choose one with --server NAME`);
      const vm = loadVm(dirs[0].dir);
      if (!vm) { log(`vm: ${dirs[0].label} is not running (start it: npm run vm -- --stack <name>)`); return 3; }
      const args = sshArgs(vm);
      if (rest.length === 0) args.unshift("-t");
      const r = spawnSync("ssh", [...args, ...rest], { stdio: "inherit" });
      return r.status ?? 255;
    }
    case "image": {
      let packages = DEFAULT_PACKAGES;
      if (opts.packages) packages = fs.readFileSync(opts.packages, "utf8").replace(/#.*/g, "").split(/\s+/).filter(Boolean);
      const image = await ensureImage({ packages, rebuild: Boolean(opts.rebuild), log });
      process.stdout.write(`${image.dir}\n`);
      return 0;
    }
  }
  return 2;
}

/**
 * The VM run dirs a command acts on: a stack's servers (its dir lists them), or just `--server`'s;
 * a run dir with no server list is one VM (`start --user-data`).
 */
function vmDirs(runDir: string, server: string | undefined): { dir: string; label: string }[] {
  const servers = startedServers(runDir);
  const name = path.basename(runDir);
  if (servers.length === 0) {
    if (server) fail(`--server ${server}: ${name} has no stack's VMs (none started from ${runDir})`);
    return [{ dir: runDir, label: name }];
  }
  if (server && !servers.includes(server)) fail(`--server must be one of ${servers.join(", ")} (the servers of ${name}); got ${JSON.stringify(server)}`);
  return (server ? [server] : servers).map((s) => ({ dir: serverRunDir(runDir, s), label: `${name}/${s}` }));
}

/** `npm run vm -- --stack NAME`: every server of the stack (cli/vm/stackVms.ts), then what to type next. */
async function startStack(stack: string, stackDir: string, opts: ReturnType<typeof parseVmArgs>["values"], o: {
  accel?: "tcg" | "kvm"; memoryMiB?: number; cpus?: number; log: (m: string) => void; step: (m: string) => void; stopHint: string;
}): Promise<number> {
  if (opts.server) fail("--server is for ssh, status and stop; start boots the stack's servers (--servers A,B,... some of them)");
  const servers = opts.servers === undefined ? undefined : opts.servers.split(",").map((n) => n.trim());
  if (servers?.some((n) => n === "")) fail(`--servers is a comma-separated list of server names; got ${JSON.stringify(opts.servers)}`);
  if (servers) {
    // Before anything starts (the bucket, a render): the plan's server names.
    const planned = planOfStack(stack).servers.map((s) => s.name);
    const unknown = servers.filter((n) => !planned.includes(n));
    if (unknown.length > 0) fail(`--servers: no server ${unknown.join(", ")} in stack ${stack}; its servers are ${planned.join(", ")}`);
  }
  if (opts["data-disk"] || opts["root-disk"]) fail("--data-disk and --root-disk are for start --user-data; a stack's VMs use the defaults");
  const t0 = Date.now();
  const bucketDir = path.join(stackDir, "bucket");
  let bucket: (VmBucketOverride & { certFile: string }) | undefined;
  let bucketLine = "";
  if (opts["with-bucket"]) {
    const [port] = await freePorts(1);
    const b = await spawnS3Bucket({ dir: bucketDir, name: BUCKET_NAME, port, uploads: UPLOADS_BUCKET_NAME });
    bucket = {
      endpoint: b.guestEndpoint, name: b.name, accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey, certFile: b.certFile,
      uploads: { name: b.uploads!.name, accessKeyId: b.uploads!.accessKeyId, secretAccessKey: b.uploads!.secretAccessKey },
    };
    bucketLine = `  bucket:  ${b.hostEndpoint}/${b.name} (s3rver, TLS; guest: ${b.guestEndpoint}; data in ${path.join(bucketDir, "data")}); ` +
      `uploads, if the stack keeps them in a bucket: ${b.uploads!.name}`;
    o.step(`local S3 bucket ${b.name} on ${b.hostEndpoint} (guest sees ${b.guestEndpoint})`);
  }
  let started: StackVms;
  try {
    started = await startStackVms({
      stack, stackDir, bucket, release: !opts["no-release"], servers, cpus: o.cpus, memoryMiB: o.memoryMiB, accel: o.accel,
      rebuildImage: Boolean(opts["rebuild-image"]), log: o.log,
      onRender: (render) => {
        for (const s of render.servers) {
          o.step(`rendered ${s.server} (${s.roles.join(", ")}): ${path.relative(PROJECT_DIR, s.userDataFile)} ` +
            `(${Buffer.byteLength(s.userData)} bytes, ${s.files.size} files, ${s.pushes.length} day-2 pushes, ` +
            `${s.pushOnly.length} files only by push${s.privateAddress ? `; private ${s.privateAddress}` : ""})`);
          if (o.memoryMiB !== undefined && s.roles.includes("db") && o.memoryMiB < s.serverMemoryMiB) {
            o.log(`vm: WARNING: --memory ${o.memoryMiB} is less than the ${s.serverMemoryMiB} MiB of ${s.server}'s server type; ` +
              "PostgreSQL is tuned for the latter and may not start");
          }
        }
        o.step(`changed for the local VMs: ${Object.keys(render.servers[0].overrides).join(", ")}`);
      },
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}\nThe VMs are left running to inspect (npm run vm -- status --stack ${stack}); stop them with: ${o.stopHint}`);
  }
  const lines = [""];
  for (const s of started.servers) {
    const vm = s.boot!.vm;
    lines.push(
      `VM ${stack}/${s.render.server} is up (${vm.accel}, ${vm.qemuArgs[vm.qemuArgs.indexOf("-m") + 1]} MiB, ${s.render.roles.join(" + ")}), run dir ${s.runDir}`,
      ...(s.render.roles.includes("web") ? [`  http:    http://127.0.0.1:${vm.ports.http}/${s.release ? "health" : ""}`,
        `  https:   https://127.0.0.1:${vm.ports.https}/  (only with a domain in the stack)`] : []),
      `  ssh:     npm run vm -- ssh --stack ${stack} --server ${s.render.server}   (${sshCommandLine(vm)})`,
      ...(vm.privateNic ? [`  private: ${vm.privateNic.address}`] : []),
      `  since start: SSH ${s.at.ssh} s, cloud-init done ${s.at.cloudInitDone} s, ${s.pushes!.count} day-2 pushes done ${s.at.pushed} s ` +
        `(${s.pushes!.updated.length} updated, ${s.pushes!.unchanged.length} unchanged)` +
        (s.release ? `, release ${s.release.id} ${s.at.released} s` : "") + (s.at.healthy ? `, GET /health 200 ${s.at.healthy} s` : ""),
    );
  }
  if (started.balancer) {
    const lb = started.balancer;
    lines.push(
      `load balancer stand-in (HAProxy in netns ${lb.namespace}, ${lb.privateAddress} on the private network; targets ${lb.targets.map((t) => `${t.name} ${t.address}`).join(", ")})`,
      `  http:    http://${lb.link.balancer}/${started.balancerHealthyAt ? "health" : ""}   (from this host; the app servers see ${lb.link.host} as the client)`,
      ...(started.balancerHealthyAt ? [`  GET /health through it 200 ${started.balancerHealthyAt} s since start`] : []),
      `  state:   npm run vm -- status --stack ${stack}   (each server UP or DOWN in HAProxy; its runtime API: ${lb.statsSocket})`,
    );
  }
  lines.push(
    ...(bucketLine ? [bucketLine, "  backup:  ssh into the server with the db role, then: sudo backup now && sudo backup list && sudo backup drill"] : []),
    ...(!bucketLine ? ["  backups: go to the stack's cloud bucket (unreachable from here); use --with-bucket to test them"] : []),
    `  stop:    ${o.stopHint}`,
    `  total:   ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    "",
  );
  process.stdout.write(lines.join("\n"));
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  process.stderr.write(`vm: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
