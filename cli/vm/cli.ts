/**
 * Local VM runner CLI (`npm run vm -- ...`).
 *
 *   npm run vm -- --stack NAME [--with-bucket] [--no-release] [options]
 *       render Pulumi.NAME.yaml for the local VM (its exact user-data, the run dir's SSH key
 *       added, machine kind qemu), build/reuse the image, boot, wait for SSH and cloud-init,
 *       build and ship the app release, wait for /health through nginx; print URL and SSH.
 *       --with-bucket: run an S3 server (s3rver, TLS) on the host and point the stack's
 *       backups at it, so `sudo backup now` works in the VM (otherwise backups go to the
 *       stack's cloud bucket, which the VM has no keys for).
 *   npm run vm -- stop    [--stack NAME]     power the VM off (and its local bucket)
 *   npm run vm -- status  [--stack NAME]
 *   npm run vm -- ssh     [--stack NAME] [-- command ...]
 *   npm run vm -- key     [--stack NAME]     print the run dir's SSH public key
 *   npm run vm -- image   [--packages FILE] [--rebuild]
 *   npm run vm -- start --user-data FILE [--name NAME]   boot any cloud-config (no release)
 *
 * start options: --memory MiB (the stack's server type; 2048 without a stack) --cpus N (2) --data-disk GiB (4) --root-disk GiB (10)
 *                --accel tcg|kvm (tcg; also SAAS_VPS_VM_ACCEL) --rebuild-image
 *                --name NAME (run dir .vm/NAME; default: the stack name, else "default")
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  DEFAULT_PACKAGES, REPO_ROOT, Vm, bootVm, elapsed, ensureImage, ensureSshKey, freePorts, loadVm, sshArgs,
  sshCommandLine, stopVm,
} from "./qemu";
import { spawnS3Bucket, stopS3Bucket, trustBucketCaInGuest } from "./s3";
import { listStacks, renderStackForVm, shipRelease, stackFilePath, waitForHealth } from "./stack";

function usage(msg?: string): never {
  if (msg) process.stderr.write(`vm: ${msg}\n`);
  const text = fs.readFileSync(__filename, "utf8").split("*/")[0].replace(/^\/\*\*?|^ \* ?/gm, "");
  process.stderr.write(text + "\n");
  process.exit(msg ? 2 : 0);
}

const BUCKET_NAME = "saas-vps-vm-backups";

async function main(argv: string[]): Promise<number> {
  const commands = ["start", "stop", "status", "key", "ssh", "image"];
  let command = "start";
  if (argv[0] && commands.includes(argv[0])) command = argv.shift()!;
  const known = ["user-data", "name", "stack", "run-dir", "memory", "cpus", "data-disk", "root-disk", "accel",
                 "rebuild-image", "packages", "rebuild", "with-bucket", "no-release"];
  const flags = ["rebuild", "rebuild-image", "with-bucket", "no-release"];
  const opts: Record<string, string | boolean> = {};
  let rest: string[] = [];
  while (argv.length) {
    const a = argv.shift()!;
    if (a === "--") { rest = argv; break; }
    if (a === "-h" || a === "--help") usage();
    if (!a.startsWith("--")) usage(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (!known.includes(name)) usage(`unknown option ${a}`);
    if (flags.includes(name)) opts[name] = true;
    else {
      const v = argv.shift();
      if (v === undefined || v.startsWith("--")) usage(`${a} needs a value`);
      opts[name] = v;
    }
  }
  const stack = opts.stack === undefined ? undefined : String(opts.stack);
  const name = String(opts.name ?? stack ?? "default");
  const runDir = path.resolve(String(opts["run-dir"] ?? path.join(REPO_ROOT, ".vm", name)));
  const bucketDir = path.join(runDir, "bucket");
  const t0 = Date.now();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const step = (m: string) => log(`[vm ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}`);
  const num = (k: string) => {
    if (opts[k] === undefined) return undefined;
    const n = Number(opts[k]);
    if (!Number.isInteger(n) || n <= 0) usage(`--${k} must be a positive whole number; got ${opts[k]}`);
    return n;
  };
  const stopHint = `npm run vm -- stop${stack ? ` --stack ${stack}` : ""}${opts.name ? ` --name ${name}` : ""}`;

  switch (command) {
    case "start": {
      if (!opts["user-data"] && !stack) usage("give --stack NAME (render that stack) or --user-data FILE");
      if (stack && !fs.existsSync(stackFilePath(stack))) {
        throw new Error(`no stack file Pulumi.${stack}.yaml in ${REPO_ROOT}; stacks here: ${listStacks().join(", ") || "none"}`);
      }
      if (opts["with-bucket"] && opts["user-data"]) usage("--with-bucket needs --stack (the bucket goes into the stack's config)");
      if (process.getuid && process.getuid() !== 0) {
        log("vm: building the image needs root (mmdebstrap); a cached image is reused if present");
      }
      const accel = opts.accel as "tcg" | "kvm" | undefined;
      if (accel && accel !== "tcg" && accel !== "kvm") usage("--accel is tcg or kvm");
      const running = loadVm(runDir);
      if (running) throw new Error(`a VM is already running from ${runDir} (pid ${running.pid}); stop it first: ${stopHint}`);

      let userDataFile = opts["user-data"] ? path.resolve(String(opts["user-data"])) : "";
      let memoryMiB = num("memory");
      let bucketCert: string | undefined;
      let bucketLine = "";
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
        const rendered = await renderStackForVm({ stack, publicKey: key.publicKey, bucket, outDir: path.join(runDir, "render") });
        userDataFile = rendered.userDataFile;
        // The render tunes PostgreSQL for the stack's server type: give the VM that much memory
        // (prod's 8 GiB plan asks shared_buffers = 2 GiB, which a 2 GiB VM cannot map).
        if (memoryMiB === undefined) memoryMiB = rendered.serverMemoryMiB;
        else if (memoryMiB < rendered.serverMemoryMiB) {
          log(`vm: WARNING: --memory ${memoryMiB} is less than the ${rendered.serverMemoryMiB} MiB of the stack's server type; ` +
            "PostgreSQL is tuned for the latter and may not start");
        }
        step(`rendered stack ${stack} for the local VM: ${path.relative(REPO_ROOT, userDataFile)} ` +
          `(${Buffer.byteLength(rendered.userData)} bytes, ${rendered.files.size} files; changed: ${Object.keys(rendered.overrides).join(", ")})`);
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
        if (stack && !opts["no-release"]) {
          if (bucketCert) {
            // LOCAL-VM-ONLY: the local bucket's certificate is self-signed (cli/vm/s3.ts).
            await trustBucketCaInGuest(vm, bucketCert);
          }
          const rel = await shipRelease(vm, { stack, log });
          const h = await waitForHealth(vm, { timeoutMs: 120000, log });
          healthLine = `  app:     release ${rel.id}; GET /health through nginx 200 after ${h.seconds.toFixed(1)} s (since QEMU start)`;
        } else if (bucketCert) {
          await trustBucketCaInGuest(vm, bucketCert);
        }
        process.stdout.write([
          "",
          `VM ${name} is up (${vm.accel}, ${stack ? `stack ${stack}` : path.relative(process.cwd(), userDataFile)}), run dir ${runDir}`,
          `  http:    http://127.0.0.1:${vm.ports.http}/${stack && !opts["no-release"] ? "health" : ""}`,
          `  https:   https://127.0.0.1:${vm.ports.https}/  (only with a domain in the stack)`,
          ...lines,
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
      if (opts.packages) packages = fs.readFileSync(String(opts.packages), "utf8").replace(/#.*/g, "").split(/\s+/).filter(Boolean);
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
