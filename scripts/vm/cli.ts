/**
 * Local VM runner CLI.
 *
 *   tsx scripts/vm/cli.ts [start] --user-data FILE [--name NAME | --run-dir DIR] [options]
 *   tsx scripts/vm/cli.ts stop    [--name NAME | --run-dir DIR]
 *   tsx scripts/vm/cli.ts status  [--name NAME | --run-dir DIR]
 *   tsx scripts/vm/cli.ts key     [--name NAME | --run-dir DIR]   print the SSH public key
 *   tsx scripts/vm/cli.ts ssh     [--name NAME | --run-dir DIR] [-- command ...]
 *   tsx scripts/vm/cli.ts image   [--packages FILE] [--rebuild]
 *
 * start options: --memory MiB (2048) --cpus N (2) --data-disk GiB (4) --root-disk GiB (10)
 *                --accel tcg|kvm (tcg; also SAAS_VPS_VM_ACCEL) --rebuild-image
 * The run dir defaults to .vm/<name> in the repository (name: "default"; --stack is an alias).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  DEFAULT_PACKAGES, REPO_ROOT, bootVm, elapsed, ensureImage, ensureSshKey, loadVm, sshArgs,
  sshCommandLine, stopVm,
} from "./qemu";

function usage(msg?: string): never {
  if (msg) process.stderr.write(`vm: ${msg}\n`);
  const text = fs.readFileSync(__filename, "utf8").split("*/")[0].replace(/^\/\*\*?|^ \* ?/gm, "");
  process.stderr.write(text + "\n");
  process.exit(msg ? 2 : 0);
}

async function main(argv: string[]): Promise<number> {
  const commands = ["start", "stop", "status", "key", "ssh", "image"];
  let command = "start";
  if (argv[0] && commands.includes(argv[0])) command = argv.shift()!;
  const known = ["user-data", "name", "run-dir", "memory", "cpus", "data-disk", "root-disk", "accel",
                 "rebuild-image", "packages", "rebuild"];
  const opts: Record<string, string | boolean> = {};
  let rest: string[] = [];
  while (argv.length) {
    const a = argv.shift()!;
    if (a === "--") { rest = argv; break; }
    if (a === "-h" || a === "--help") usage();
    if (!a.startsWith("--")) usage(`unexpected argument ${a}`);
    const name = a.slice(2) === "stack" ? "name" : a.slice(2); // --stack is an alias of --name
    if (!known.includes(name)) usage(`unknown option ${a}`);
    if (["rebuild", "rebuild-image"].includes(name)) opts[name] = true;
    else {
      const v = argv.shift();
      if (v === undefined) usage(`${a} needs a value`);
      opts[name] = v;
    }
  }
  const name = String(opts.name ?? "default");
  const runDir = path.resolve(String(opts["run-dir"] ?? path.join(REPO_ROOT, ".vm", name)));
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const num = (k: string) => (opts[k] === undefined ? undefined : Number(opts[k]));

  switch (command) {
    case "start": {
      if (!opts["user-data"]) usage("start needs --user-data FILE");
      if (process.getuid && process.getuid() !== 0) {
        log("vm: building the image needs root (mmdebstrap); a cached image is reused if present");
      }
      const accel = opts.accel as "tcg" | "kvm" | undefined;
      if (accel && accel !== "tcg" && accel !== "kvm") usage("--accel is tcg or kvm");
      const r = await bootVm({
        runDir, userDataFile: String(opts["user-data"]), hostname: name === "default" ? undefined : name,
        memoryMiB: num("memory"), cpus: num("cpus"), dataDiskGiB: num("data-disk"), rootDiskGiB: num("root-disk"),
        accel, rebuildImage: Boolean(opts["rebuild-image"]), log,
      });
      const ci = r.cloudInit;
      process.stdout.write([
        "",
        `VM ${name} is up (${r.vm.accel}), run dir ${runDir}`,
        `  http:    http://127.0.0.1:${r.vm.ports.http}/`,
        `  https:   https://127.0.0.1:${r.vm.ports.https}/`,
        `  ssh:     ${sshCommandLine(r.vm)}`,
        `  console: ${r.vm.consoleLog}`,
        `  SSH after ${r.sshSeconds.toFixed(1)} s, cloud-init ${ci.extendedStatus} after ${ci.seconds.toFixed(1)} s`,
        ...ci.errors.map((e) => `  cloud-init error: ${e}`),
        ...Object.entries(ci.recoverableErrors).flatMap(([lvl, list]) => list.map((e) => `  cloud-init ${lvl}: ${e}`)),
        `  stop:    npm run vm -- stop${name === "default" ? "" : ` --name ${name}`}  (or tsx scripts/vm/cli.ts stop)`,
        "",
      ].join("\n"));
      return ci.status === "done" ? 0 : 1;
    }
    case "stop": {
      const how = await stopVm(runDir, { log });
      process.stdout.write(`VM ${name}: ${how === "not-running" ? "was not running" : how === "powerdown" ? "powered off" : "killed"}\n`);
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
      if (!vm) { log(`vm: ${name} is not running`); return 3; }
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
