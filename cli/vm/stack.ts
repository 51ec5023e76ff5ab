/**
 * A stack on the local VM: render its exact user-data and day-2 pushes for machine kind `qemu`
 * (what `npm run render -- --stack <name> --machine qemu` writes).
 *
 * The VM's stack config differs from the cloud's only where it must:
 *  - `sshPublicKeys`: the run dir's key is ADDED to the stack's keys (to log in);
 *  - `sshAllowedCidrs`: GUEST_HOST_ADDRESS/32 is ADDED, because QEMU's user networking hands
 *    every forwarded connection to the guest from that address (the host firewall would drop
 *    the runner's SSH otherwise);
 *  - machine kind `qemu`: the data volume is /dev/disk/by-id/virtio-saas-data;
 *  - optionally the backup bucket (`backupBucketProvider=s3` + endpoint/name/keys) pointing
 *    at a local s3rver, because the cloud bucket's provider API is not there.
 * Secret keys given as overrides (backupSecretAccessKey) are marked secret, which is what
 * `pulumi config set --secret` does; `npm run render --set` cannot do that (it would reject
 * the key as a plaintext credential), hence the programmatic render here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SECRET_KEYS, parseStackConfig } from "../../config/config";
import { projectConfigOf, projectKeyOf, qualifyKey } from "../../config/keysFromPulumi";
import { type RecordedPush, readStackFile, renderStack, withOverrides } from "../lib/renderStack";
import { missingStackMessage, stackFilePath } from "../lib/stacks";
import { writeServerRender } from "../lib/writeRender";

/** The host as the guest sees it under QEMU user networking; forwarded connections come from it. */
export const GUEST_HOST_ADDRESS = "10.0.2.2";

export interface VmBucketOverride {
  endpoint: string;
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface VmRender {
  stack: string;
  /** Server name in the stack (stage mvp: "app"). */
  server: string;
  /** <outDir>/<server>/user-data.yaml: the exact bytes the VM boots with. */
  userDataFile: string;
  userData: string;
  /** Every file the server gets (the user-data's and the pushed ones): absolute path → content. */
  files: Map<string, string>;
  /** Paths that arrive only by a day-2 push. */
  pushOnly: string[];
  /** The day-2 pushes `pulumi up` runs right after creating the server, in its order. */
  pushes: RecordedPush[];
  /** The overrides applied to the stack file (fully qualified keys). */
  overrides: Record<string, string>;
  secretOverrides: string[];
  /** Memory of the stack's serverType: the render (PostgreSQL settings) is tuned for it. */
  serverMemoryMiB: number;
}

/** Memory of the stack's server type, from its config (the parser applies the defaults). */
function serverMemoryOf(config: Record<string, string>): number {
  return parseStackConfig(projectConfigOf(config)).serverMemoryMiB;
}

/** The overrides a stack needs on the local VM (see the module comment). */
export function vmOverrides(stackConfig: Record<string, string>, publicKey: string, bucket?: VmBucketOverride): Record<string, string> {
  const withAdded = (key: string, value: string) => {
    const list = jsonList(stackConfig[qualifyKey(key)]);
    return JSON.stringify(list.includes(value) ? list : [...list, value]);
  };
  const overrides: Record<string, string> = {
    [qualifyKey("sshPublicKeys")]: withAdded("sshPublicKeys", publicKey),
    [qualifyKey("sshAllowedCidrs")]: withAdded("sshAllowedCidrs", `${GUEST_HOST_ADDRESS}/32`),
  };
  if (bucket) {
    Object.assign(overrides, {
      [qualifyKey("backupBucketProvider")]: "s3",
      [qualifyKey("backupBucketEndpoint")]: bucket.endpoint,
      [qualifyKey("backupBucketName")]: bucket.name,
      [qualifyKey("backupAccessKeyId")]: bucket.accessKeyId,
      [qualifyKey("backupSecretAccessKey")]: bucket.secretAccessKey,
    });
  }
  return overrides;
}

/** A JSON list from a stack file as strings; [] when absent or malformed (the parser reports that). */
function jsonList(text: string | undefined): string[] {
  try {
    const parsed = JSON.parse(text ?? "[]");
    return Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    return [];
  }
}

/** Render the stack for the local VM and write <outDir>/<server>/user-data.yaml + files/. */
export async function renderStackForVm(opts: {
  stack: string;
  publicKey: string;
  bucket?: VmBucketOverride;
  outDir: string;
  /** Stack settings (short keys) changed on purpose by the caller, e.g. a test's process counts. */
  settings?: Record<string, string>;
}): Promise<VmRender> {
  const file = stackFilePath(opts.stack);
  if (!fs.existsSync(file)) throw new Error(missingStackMessage(opts.stack));
  const stackFile = readStackFile(file);
  const overrides = {
    ...Object.fromEntries(Object.entries(opts.settings ?? {}).map(([k, v]) => [qualifyKey(k), v])),
    ...vmOverrides(stackFile.config, opts.publicKey, opts.bucket),
  };
  const withVm = withOverrides(stackFile, overrides);
  // Overridden credentials are secrets, as `pulumi config set --secret` would make them.
  const secretOverrides = Object.keys(overrides).filter((k) => SECRET_KEYS.has(projectKeyOf(k) ?? ""));
  withVm.secretKeys = [...new Set([...withVm.secretKeys, ...secretOverrides])];
  const result = await renderStack(opts.stack, withVm, "qemu");
  if (result.servers.length !== 1) {
    throw new Error(`stack ${opts.stack} renders ${result.servers.length} servers (${result.servers.map((s) => s.name).join(", ")}); ` +
      "the local VM runner boots one (stage mvp)");
  }
  const server = result.servers[0];
  const dir = writeServerRender(path.resolve(opts.outDir), server);
  const userDataFile = path.join(dir, "user-data.yaml");
  return {
    stack: opts.stack, server: server.name, userDataFile, userData: server.userData, files: server.files,
    pushOnly: server.pushOnly, pushes: server.pushes, overrides, secretOverrides, serverMemoryMiB: serverMemoryOf(withVm.config),
  };
}
