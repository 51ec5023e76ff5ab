/** Local VM runner CLI (`npm run vm -- ...`): the commands and options are in USAGE below. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { freePorts } from "../lib/ports";
import { parseCommandLine, usageError } from "../lib/args";
import { missingStackMessage, PROJECT_DIR, stackFilePath } from "../lib/stacks";
import { bootVm } from "./boot";
import { waitForHealth } from "./http";
import { DEFAULT_PACKAGES, ensureImage } from "./image";
import { runPushes } from "./pushes";
import { shipRelease } from "./release";
import { spawnS3Bucket, stopS3Bucket, trustBucketCaInGuest } from "./s3";
import { ensureSshKey, sshArgs, sshCommandLine } from "./ssh";
import { renderStackForVm } from "./stack";
import { type Vm, elapsed, loadVm, stopVm } from "./vm";

const USAGE = `usage:
  npm run vm -- --stack NAME [--with-bucket] [--no-release] [start options]
      render Pulumi.NAME.yaml for the local VM (its exact user-data and day-2 pushes, the run
      dir's SSH key added, machine kind qemu), build/reuse the image, boot, wait for SSH and
      cloud-init, run the day-2 pushes as \`pulumi up\` does, build and ship the app release,
      wait for /health through nginx; print URL and SSH.
      --with-bucket: run an S3 server (s3rver, TLS) on the host and point the stack's backups
      at it, so \`sudo backup now\` works in the VM (otherwise backups go to the stack's cloud
      bucket, which the VM has no keys for).
      --no-release: stop after the day-2 pushes.
  npm run vm -- stop    [--stack NAME]     power the VM off (and its local bucket)
  npm run vm -- status  [--stack NAME]
  npm run vm -- ssh     [--stack NAME] [-- command ...]
  npm run vm -- key     [--stack NAME]     print the run dir's SSH public key
  npm run vm -- image   [--packages FILE] [--rebuild]
  npm run vm -- start --user-data FILE [--name NAME]   boot any cloud-config (no pushes, no release)

start options: --memory MiB (the stack's server type; 2048 without a stack) --cpus N (2)
               --data-disk GiB (4) --root-disk GiB (10) --accel tcg|kvm (tcg; also SAAS_VPS_VM_ACCEL)
               --rebuild-image --name NAME (run dir .vm/NAME; default: the stack name, else "default")
               --run-dir DIR (instead of .vm/NAME)`;

const COMMANDS = ["start", "stop", "status", "key", "ssh", "image"] as const;
type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  "user-data": { type: "string" }, name: { type: "string" }, stack: { type: "string" }, "run-dir": { type: "string" },
  memory: { type: "string" }, cpus: { type: "string" }, "data-disk": { type: "string" }, "root-disk": { type: "string" },
  accel: { type: "string" }, "rebuild-image": { type: "boolean" }, packages: { type: "string" }, rebuild: { type: "boolean" },
  "with-bucket": { type: "boolean" }, "no-release": { type: "boolean" }, help: { type: "boolean", short: "h" },
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

      let userDataFile = opts["user-data"] ? path.resolve(opts["user-data"]) : "";
      let memoryMiB = num("memory");
      let bucketCert: string | undefined;
      let bucketLine = "";
      let rendered: Awaited<ReturnType<typeof renderStackForVm>> | undefined;
      if (stack) {
        const key = ensureSshKey(runDir);
        let bucket;
        if (opts["with-bucket"]) {
          const [port] = await freePorts(1);
          const b = await spawnS3Bucket({ dir: bucketDir, name: BUCKET_NAME, port });
          bucket = { endpoint: b.guestEndpoint, name: b.name, accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey };
          bucketCert = b.certFile;
          bucketLine = `  bucket:  ${b.hostEndpoint}/${b.name} (s3rver, TLS; guest: ${b.guestEndpoint}; data in ${path.join(bucketDir, "data")})`;
          step(`local S3 bucket ${b.name} on ${b.hostEndpoint} (guest sees ${b.guestEndpoint})`);
        }
        rendered = await renderStackForVm({ stack, publicKey: key.publicKey, bucket, outDir: path.join(runDir, "render") });
        userDataFile = rendered.userDataFile;
        // The render tunes PostgreSQL for the stack's server type: give the VM that much memory
        // (prod's 8 GiB plan asks shared_buffers = 2 GiB, which a 2 GiB VM cannot map).
        if (memoryMiB === undefined) memoryMiB = rendered.serverMemoryMiB;
        else if (memoryMiB < rendered.serverMemoryMiB) {
          log(`vm: WARNING: --memory ${memoryMiB} is less than the ${rendered.serverMemoryMiB} MiB of the stack's server type; ` +
            "PostgreSQL is tuned for the latter and may not start");
        }
        step(`rendered stack ${stack} for the local VM: ${path.relative(PROJECT_DIR, userDataFile)} ` +
          `(${Buffer.byteLength(rendered.userData)} bytes, ${rendered.files.size} files, ${rendered.pushes.length} day-2 pushes, ` +
          `${rendered.pushOnly.length} files only by push; changed: ${Object.keys(rendered.overrides).join(", ")})`);
      }
      let vm: Vm | undefined;
      try {
        const r = await bootVm({
          runDir, userDataFile, hostname: stack ? undefined : name === "default" ? undefined : name,
          memoryMiB, cpus: num("cpus"), dataDiskGiB: num("data-disk"), rootDiskGiB: num("root-disk"),
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
        let healthLine = "";
        let pushLine = "";
        if (rendered) {
          const pushed = await runPushes(vm, rendered.pushes, { log });
          pushLine = `  pushes:  ${pushed.count} day-2 pushes in ${pushed.seconds.toFixed(1)} s (${pushed.updated.length} updated, ${pushed.unchanged.length} unchanged)`;
        }
        if (stack && !opts["no-release"]) {
          if (bucketCert) {
            // LOCAL-VM-ONLY: the local bucket's certificate is self-signed (cli/vm/s3.ts).
            await trustBucketCaInGuest(vm, bucketCert);
          }
          const rel = await shipRelease(vm, { stack, log });
          const h = await waitForHealth(vm, { timeoutMs: 120000, log });
          healthLine = `  app:     release ${rel.id} (build ${rel.buildSeconds.toFixed(0)} s, upload + release ${rel.releaseSeconds.toFixed(0)} s); ` +
            `GET /health through nginx 200 after ${h.seconds.toFixed(1)} s (since QEMU start)`;
        } else if (bucketCert) {
          await trustBucketCaInGuest(vm, bucketCert);
        }
        process.stdout.write([
          "",
          `VM ${name} is up (${vm.accel}, ${stack ? `stack ${stack}` : path.relative(process.cwd(), userDataFile)}), run dir ${runDir}`,
          `  http:    http://127.0.0.1:${vm.ports.http}/${stack && !opts["no-release"] ? "health" : ""}`,
          `  https:   https://127.0.0.1:${vm.ports.https}/  (only with a domain in the stack)`,
          ...lines,
          ...(pushLine ? [pushLine] : []),
          ...(healthLine ? [healthLine] : []),
          ...(bucketLine ? [bucketLine, "  backup:  ssh in, then: sudo backup now && sudo backup list && sudo backup drill"] : []),
          ...(stack && !bucketLine ? ["  backups: go to the stack's cloud bucket (unreachable from here); use --with-bucket to test them"] : []),
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
      const how = await stopVm(runDir, { log });
      const bucket = await stopS3Bucket(bucketDir);
      process.stdout.write(`VM ${name}: ${how === "not-running" ? "was not running" : how === "powerdown" ? "powered off" : "killed"}` +
        `${bucket ? "; local bucket stopped" : ""}\n`);
      return 0;
    }
    case "status": {
      const vm = loadVm(runDir);
      if (!vm) { process.stdout.write(`VM ${name}: not running\n`); return 3; }
      process.stdout.write(`VM ${name}: running (pid ${vm.pid}, up ${elapsed(vm).toFixed(0)} s)\n` +
        `  http: http://127.0.0.1:${vm.ports.http}/\n  ssh:  ${sshCommandLine(vm)}\n`);
      return 0;
    }
    case "key": {
      process.stdout.write(`${ensureSshKey(runDir).publicKey}\n`);
      return 0;
    }
    case "ssh": {
      const vm = loadVm(runDir);
      if (!vm) { log(`vm: ${name} is not running (start it: npm run vm -- --stack <name>)`); return 3; }
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

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  process.stderr.write(`vm: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
