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
import { planStack, type ServerPlan, type StackPlan } from "../../plan/plan";
import type { LoadBalancerPlan } from "../../plan/scaled";
import { runsApp, runsPostgres } from "../../provisioning/roles/index";
import { projectConfigOf, projectKeyOf, qualifyKey } from "../../config/keysFromPulumi";
import { type RecordedPush, type StackFile, readStackFile, renderStack, withOverrides } from "../lib/renderStack";
import { missingStackMessage, stackFilePath } from "../lib/stacks";
import { writeServerRender } from "../lib/writeRender";
import { addressInNetwork } from "./network";

/** The host as the guest sees it under QEMU user networking; forwarded connections come from it. */
export const GUEST_HOST_ADDRESS = "10.0.2.2";

export interface VmBucketOverride {
  endpoint: string;
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The uploads bucket on the same server (its own key), for a stack whose uploads go to a bucket. */
  uploads?: { name: string; accessKeyId: string; secretAccessKey: string };
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
  /** Memory of the server's type in the plan: the render (PostgreSQL settings) is tuned for it. */
  serverMemoryMiB: number;
  /** What the plan gives the server to do. */
  roles: ServerPlan["roles"];
  /** Whether it runs the app, and so gets the release. */
  runsApp: boolean;
  /** Its planned address on the stack's private network with the prefix length (split stages). */
  privateAddress?: string;
}

/**
 * The memory a server's VM gets: its server type's when it runs PostgreSQL, the primary or its
 * read replica (the render tunes PostgreSQL for it), else at most LEAN_VM_MEMORY_MIB (nothing on
 * it is sized by the plan's memory, and the host runs several VMs at once).
 */
export function vmMemoryFor(render: Pick<VmRender, "roles" | "serverMemoryMiB">): number {
  return runsPostgres(render.roles) ? render.serverMemoryMiB : Math.min(render.serverMemoryMiB, LEAN_VM_MEMORY_MIB);
}

/** Memory of an app or worker VM (measured: see cli/vm/README.md, "Several servers"). */
export const LEAN_VM_MEMORY_MIB = 1024;

/** The overrides a stack needs on the local VM (see the module comment). */
export function vmOverrides(stackConfig: Record<string, string>, publicKey: string, bucket?: VmBucketOverride, uploadsInBucket = false): Record<string, string> {
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
    if (uploadsInBucket && bucket.uploads) {
      Object.assign(overrides, {
        [qualifyKey("uploadsBucketProvider")]: "s3",
        [qualifyKey("uploadsBucketEndpoint")]: bucket.endpoint,
        [qualifyKey("uploadsBucketName")]: bucket.uploads.name,
        [qualifyKey("uploadsAccessKeyId")]: bucket.uploads.accessKeyId,
        [qualifyKey("uploadsSecretAccessKey")]: bucket.uploads.secretAccessKey,
      });
    }
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

export interface VmStackRender {
  stack: string;
  /** Every server of the stack, in the plan's order. */
  servers: VmRender[];
  /** The stack's private network CIDR (split stages). */
  networkCidr?: string;
  /** The provider's load balancer in front of the app servers (stage scaled): the VMs get a stand-in. */
  loadBalancer?: LoadBalancerPlan;
}

/** The `saas-vps:` keys a caller's settings (short keys) set; null ones are removed instead. */
function settingOverrides(settings: Record<string, string | null> = {}): Record<string, string> {
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== null).map(([k, v]) => [qualifyKey(k), v as string]));
}

/** The stack's file with a caller's settings (short keys; null removes the key). */
export function stackFileWithSettings(stack: string, settings: Record<string, string | null> = {}): StackFile {
  const file = stackFilePath(stack);
  if (!fs.existsSync(file)) throw new Error(missingStackMessage(stack));
  const stackFile = readStackFile(file);
  for (const [key, value] of Object.entries(settings)) if (value === null) delete stackFile.config[qualifyKey(key)];
  return withOverrides(stackFile, settingOverrides(settings));
}

/** The stack's plan with a caller's settings (what its VMs would boot), before anything is rendered. */
export function planOfStack(stack: string, settings: Record<string, string | null> = {}): StackPlan {
  return planStack(parseStackConfig(projectConfigOf(stackFileWithSettings(stack, settings).config)));
}

/** Render every server of the stack for the local VMs and write <outDir>/<server>/user-data.yaml + files/. */
export async function renderStackServersForVm(opts: {
  stack: string;
  publicKey: string;
  bucket?: VmBucketOverride;
  outDir: string;
  /**
   * Stack settings (short keys) changed on purpose by the caller, e.g. a test's process counts;
   * null removes the key (a test of a stack with a domain, on plain HTTP).
   */
  settings?: Record<string, string | null>;
}): Promise<VmStackRender> {
  const stackFile = stackFileWithSettings(opts.stack, opts.settings);
  const overrides = settingOverrides(opts.settings);
  const uploadsInBucket = parseStackConfig(projectConfigOf(stackFile.config)).uploads.storage === "bucket";
  Object.assign(overrides, vmOverrides(stackFile.config, opts.publicKey, opts.bucket, uploadsInBucket));
  const withVm = withOverrides(stackFile, overrides);
  // Overridden credentials are secrets, as `pulumi config set --secret` would make them.
  const secretOverrides = Object.keys(overrides).filter((k) => SECRET_KEYS.has(projectKeyOf(k) ?? ""));
  withVm.secretKeys = [...new Set([...withVm.secretKeys, ...secretOverrides])];
  const plan = planStack(parseStackConfig(projectConfigOf(withVm.config)));
  const result = await renderStack(opts.stack, withVm, "qemu");
  const servers = plan.servers.map((planned) => {
    const server = result.servers.find((s) => s.name === planned.name);
    if (!server) throw new Error(`stack ${opts.stack}: the plan has server ${planned.name}, the program declared none of that name`);
    const dir = writeServerRender(path.resolve(opts.outDir), server);
    return {
      stack: opts.stack, server: server.name, userDataFile: path.join(dir, "user-data.yaml"), userData: server.userData,
      files: server.files, pushOnly: server.pushOnly, pushes: server.pushes, overrides, secretOverrides,
      serverMemoryMiB: planned.memoryMiB, roles: planned.roles, runsApp: runsApp(planned.roles),
      ...(planned.privateIp && plan.network ? { privateAddress: addressInNetwork(planned.privateIp, plan.network.cidr) } : {}),
    };
  });
  return {
    stack: opts.stack, servers, ...(plan.network ? { networkCidr: plan.network.cidr } : {}),
    ...(plan.loadBalancer ? { loadBalancer: plan.loadBalancer } : {}),
  };
}

/** Render a one-server stack (stage mvp) for the local VM; see renderStackServersForVm. */
export async function renderStackForVm(opts: Parameters<typeof renderStackServersForVm>[0]): Promise<VmRender> {
  const { servers } = await renderStackServersForVm(opts);
  if (servers.length !== 1) {
    throw new Error(`stack ${opts.stack} renders ${servers.length} servers (${servers.map((s) => s.server).join(", ")}); ` +
      "use renderStackServersForVm");
  }
  return servers[0];
}
