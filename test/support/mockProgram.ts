/**
 * Runs the real program under Pulumi mocks for one raw config and records every resource with
 * its inputs and its resource options (protect, ignoreChanges). The mock API does not pass
 * options, so a transformation on the root component records them as resources are built.
 */
import { SECRET_KEYS } from "../../config/config";
import * as pulumi from "@pulumi/pulumi";
import { createProgram } from "../../program/program";
import { isWrappedSecret, RecordingMocks, valueOf, type RecordedResource } from "../../cli/lib/pulumiMocks";
import { pushResourceName } from "../../components/vpsServer";
import { qualifyKey } from "../../config/keysFromPulumi";
import { qualified } from "./fixtures";

export interface MockRun {
  mocks: RecordingMocks;
  outputs: ReturnType<typeof createProgram>;
  /** Resource options by resource name, as the program set them. */
  options: Map<string, pulumi.ResourceOptions>;
  /** Every resource's URN (type chain of its parents and its name: its identity in a stack's state), by resource name. */
  urns: Map<string, string>;
}

/** `secretKeys`: the keys set as Pulumi secrets; default: every credential key the config sets (as `pulumi config set --secret` would). */
export async function runProgram(raw: Record<string, string>, secretKeys: string[] = credentialKeysIn(raw), stack = "test", mocks = new RecordingMocks()): Promise<MockRun> {
  return runProgramOf(raw, { secretKeys, stack, mocks });
}

/** runProgram with named options. */
export async function runProgramOf(
  raw: Record<string, string>,
  { secretKeys = credentialKeysIn(raw), stack = "test", mocks = new RecordingMocks() }: { secretKeys?: string[]; stack?: string; mocks?: RecordingMocks } = {},
): Promise<MockRun> {
  await pulumi.runtime.setMocks(mocks, "saas-vps", stack, false);
  pulumi.runtime.setAllConfig(qualified(raw), secretKeys.map(qualifyKey));
  const options = new Map<string, pulumi.ResourceOptions>();
  const resources: pulumi.Resource[] = [];
  const record: pulumi.ResourceTransformation = (args) => {
    options.set(args.name, args.opts);
    resources.push(args.resource);
    return undefined;
  };
  const outputs = createProgram(stack, { transformations: [record] });
  await Promise.all([valueOf(outputs.ipv6), valueOf(outputs.userDataBytes)]);
  // A URN ends with "::<name>".
  const urns = new Map((await Promise.all(resources.map((r) => valueOf(r.urn)))).map((urn) => [urn.slice(urn.lastIndexOf("::") + 2), urn]));
  await pulumi.runtime.disconnect();
  return { mocks, outputs, options, urns };
}

/** The keys of `raw` that hold credentials (SECRET_KEYS), which a stack sets as secrets. */
export function credentialKeysIn(raw: Record<string, string>): string[] {
  return Object.keys(raw).filter((key) => SECRET_KEYS.has(key));
}

/** A server's day-2 push of one file (the command resource), by the server's plan name and the file's path. */
export function pushOf(run: MockRun, server: string, path: string, stack = "test"): RecordedResource {
  const name = pushResourceName(`saas-${stack}-${server}`, path);
  const push = run.mocks.ofType("command:remote:Command").find((c) => c.name === name);
  if (!push) throw new Error(`no push ${name}; pushes: ${run.mocks.ofType("command:remote:Command").map((c) => c.name).join(", ")}`);
  return push;
}

/** Where `needle` appears in clear in a value (paths into it), looking past wrapped secrets. */
export function clearPaths(value: unknown, needle: string, path = "$"): string[] {
  if (isWrappedSecret(value)) return [];
  if (typeof value === "string") return value.includes(needle) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => clearPaths(v, needle, `${path}[${i}]`));
  if (value && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => clearPaths(v, needle, `${path}.${k}`));
  return [];
}
