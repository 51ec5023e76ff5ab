/**
 * npm run render -- --stack <name> --out <dir> [--set key=value ...]
 * Writes, per server, <dir>/<server>/user-data.yaml and every file it installs under
 * <dir>/<server>/files/<absolute path>; prints each user-data's size against Hetzner's cap.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { USER_DATA_LIMIT_BYTES } from "../provisioning/cloudInit";
import { RenderError } from "../provisioning/errors";
import { ConfigError } from "../config/config";
import type { MachineKind } from "../provisioning/server";
import { readStackFile, renderStack, withOverrides } from "./lib/renderStack";

const USAGE = "usage: npm run render -- --stack <name> --out <dir> [--set key=value ...] [--set-secret key=value ...] [--machine qemu]";

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { stack: { type: "string" }, out: { type: "string" }, set: { type: "string", multiple: true }, "set-secret": { type: "string", multiple: true }, machine: { type: "string" } },
  });
  if (!values.stack || !values.out) {
    console.error(USAGE);
    return 2;
  }
  const projectDir = resolve(__dirname, "..");
  const stackPath = resolve(projectDir, `Pulumi.${values.stack}.yaml`);
  if (!existsSync(stackPath)) {
    const stacks = readdirSync(projectDir).map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1]).filter(Boolean).sort();
    console.error(`error: no stack file Pulumi.${values.stack}.yaml; stacks here: ${stacks.join(", ")}`);
    return 1;
  }
  const pairs = (list: string[] | undefined, flag: string) =>
    Object.fromEntries((list ?? []).map((pair) => {
      const at = pair.indexOf("=");
      if (at < 1) throw new Error(`${flag} ${pair}: expected key=value`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }));
  const overrides = pairs(values.set, "--set");
  const secretOverrides = pairs(values["set-secret"], "--set-secret");
  const started = process.hrtime.bigint();
  if (values.machine !== undefined && values.machine !== "qemu") {
    console.error(`error: --machine must be qemu (the local VM) or left out; got ${JSON.stringify(values.machine)}`);
    return 2;
  }
  const machine = values.machine as MachineKind | undefined;
  const result = await renderStack(values.stack, withOverrides(readStackFile(stackPath), overrides, secretOverrides), machine);
  const out = resolve(values.out);
  for (const server of result.servers) {
    const dir = join(out, server.name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, "files"), { recursive: true });
    writeFileSync(join(dir, "user-data.yaml"), server.userData);
    for (const [path, content] of server.files) {
      const target = join(dir, "files", path);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, content, { mode: 0o600 });
    }
    const bytes = Buffer.byteLength(server.userData);
    const pct = ((bytes / USER_DATA_LIMIT_BYTES) * 100).toFixed(1);
    console.log(`${server.name}: user-data ${bytes} bytes (${pct}% of Hetzner's ${USER_DATA_LIMIT_BYTES}), ${server.files.size} files -> ${dir}`);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(`rendered stack ${values.stack} in ${ms.toFixed(0)} ms`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    if (err?.name === "YAMLParseError") {
      console.error(`error: the stack file is not valid YAML: ${err.message}`);
    } else if (err instanceof ConfigError || err instanceof RenderError) {
      console.error(`error: stack ${process.argv.join(" ").match(/--stack[= ](\S+)/)?.[1] ?? ""} config is invalid:\n${err.message}`);
    } else {
      console.error(err);
    }
    process.exit(1);
  },
);
