/**
 * npm run render -- --stack <name> --out <dir> [--set key=value ...]
 * Writes, per server, <dir>/<server>/user-data.yaml and every file the server gets (from the
 * user-data and from the day-2 pushes `pulumi up` runs right after creating it) under
 * <dir>/<server>/files/<absolute path>; prints each user-data's size against Hetzner's cap and
 * which files arrive only by push.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { USER_DATA_LIMIT_BYTES } from "../provisioning/cloudInit";
import { RenderError } from "../provisioning/errors";
import { ConfigError, configWarnings, parseStackConfig } from "../config/config";
import { projectConfigOf } from "../config/keysFromPulumi";
import type { MachineKind } from "../provisioning/server";
import { parseCommandLine, USAGE_EXIT } from "./lib/args";
import { readStackFile, renderStack, withOverrides } from "./lib/renderStack";
import { missingStackMessage, stackFilePath } from "./lib/stacks";
import { writeServerRender } from "./lib/writeRender";

const USAGE = "usage: npm run render -- --stack <name> --out <dir> [--set key=value ...] [--set-secret key=value ...] [--machine qemu]";

const OPTIONS = {
  stack: { type: "string" }, out: { type: "string" }, set: { type: "string", multiple: true },
  "set-secret": { type: "string", multiple: true }, machine: { type: "string" },
} as const;

/** `key=value` pairs of a repeated flag; a pair without `=` is an error naming the flag. */
function pairs(list: string[] | undefined, flag: string): Record<string, string> {
  return Object.fromEntries((list ?? []).map((pair) => {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`${flag} ${pair}: expected key=value`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  }));
}

async function main(): Promise<number> {
  const { values } = parseCommandLine("render", USAGE, { options: OPTIONS });
  if (!values.stack || !values.out) {
    console.error(USAGE);
    return USAGE_EXIT;
  }
  if (!existsSync(stackFilePath(values.stack))) {
    console.error(`error: ${missingStackMessage(values.stack)}`);
    return 1;
  }
  if (values.machine !== undefined && values.machine !== "qemu") {
    console.error(`error: --machine must be qemu (the local VM) or left out; got ${JSON.stringify(values.machine)}`);
    return USAGE_EXIT;
  }
  const overrides = pairs(values.set, "--set");
  const secretOverrides = pairs(values["set-secret"], "--set-secret");
  const started = process.hrtime.bigint();
  const machine = values.machine as MachineKind | undefined;
  const file = withOverrides(readStackFile(stackFilePath(values.stack)), overrides, secretOverrides);
  const result = await renderStack(values.stack, file, machine);
  const out = resolve(values.out);
  for (const server of result.servers) {
    const dir = writeServerRender(out, server);
    const bytes = Buffer.byteLength(server.userData);
    const pct = ((bytes / USER_DATA_LIMIT_BYTES) * 100).toFixed(1);
    console.log(`${server.name}: user-data ${bytes} bytes (${pct}% of Hetzner's ${USER_DATA_LIMIT_BYTES}), ${server.files.size} files, ` +
      `${server.pushes.length} day-2 pushes -> ${dir}`);
    console.log(`${server.name}: only by push: ${server.pushOnly.length ? server.pushOnly.join(" ") : "none"}`);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(`rendered stack ${values.stack} in ${ms.toFixed(0)} ms`);
  // Last, so it is what stays on screen.
  for (const warning of configWarnings(parseStackConfig(projectConfigOf(file.config)))) console.error(`WARNING: ${warning}`);
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
