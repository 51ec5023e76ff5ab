/**
 * Runs the real program under Pulumi mocks for one raw config and records every resource with
 * its inputs and its resource options (protect, ignoreChanges). The mock API does not pass
 * options, so a transformation on the root component records them as resources are built.
 */
import * as pulumi from "@pulumi/pulumi";
import { createProgram } from "../../program/program";
import { RecordingMocks, valueOf } from "../../cli/lib/pulumiMocks";
import { qualifyKey } from "../../config/keysFromPulumi";
import { qualified } from "./fixtures";

export interface MockRun {
  mocks: RecordingMocks;
  outputs: ReturnType<typeof createProgram>;
  /** Resource options by resource name, as the program set them. */
  options: Map<string, pulumi.ResourceOptions>;
}

export async function runProgram(raw: Record<string, string>, secretKeys: string[] = [], stack = "test", mocks = new RecordingMocks()): Promise<MockRun> {
  await pulumi.runtime.setMocks(mocks, "saas-vps", stack, false);
  pulumi.runtime.setAllConfig(qualified(raw), secretKeys.map(qualifyKey));
  const options = new Map<string, pulumi.ResourceOptions>();
  const record: pulumi.ResourceTransformation = (args) => {
    options.set(args.name, args.opts);
    return undefined;
  };
  const outputs = createProgram(stack, { transformations: [record] });
  await Promise.all([valueOf(outputs.ipv6), valueOf(outputs.userDataBytes)]);
  await pulumi.runtime.disconnect();
  return { mocks, outputs, options };
}
