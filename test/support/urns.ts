/**
 * Resource identity across two runs of the program under mocks: what Pulumi compares between a
 * stack's state and the next `pulumi up` (a resource's URN, or an alias naming its old one), and
 * the inputs whose change makes its provider replace it (components/replaceInputs.ts).
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { unwrapSecrets, valueOf, type RecordedResource } from "../../cli/lib/pulumiMocks";
import { replaceInputsOf } from "../../components/replaceInputs";
import type { MockRun } from "./mockProgram";

/** A child's URN from its parent's: the parent's type chain, then the child's type and name. */
export function childUrn(parentUrn: string, type: string, name: string): string {
  const [head, project, typeChain] = parentUrn.split("::");
  return `${head}::${project}::${typeChain}$${type}::${name}`;
}

export interface RunUrns {
  urns: Map<RecordedResource, string>;
  resolve: Map<string, RecordedResource>;
}

/** Every resource of a run by its URN, and by the URNs its aliases name. */
export async function byUrn(run: MockRun): Promise<RunUrns> {
  const urns = new Map<RecordedResource, string>();
  const resolve = new Map<string, RecordedResource>();
  for (const resource of run.mocks.resources) {
    const opts = run.options.get(resource.name);
    const parent = opts?.parent ? await valueOf(opts.parent.urn) : undefined;
    const urn = parent ? childUrn(parent, resource.type, resource.name) : `urn:pulumi:test::saas-vps::${resource.type}::${resource.name}`;
    urns.set(resource, urn);
    resolve.set(urn, resource);
    for (const alias of (opts?.aliases ?? []) as Array<pulumi.Alias | string>) {
      assert.ok(typeof alias === "object" && alias.parent && Object.keys(alias).length === 1, `${resource.name}: only parent aliases are understood here`);
      const aliasParent = await valueOf(pulumi.output((alias as pulumi.Alias).parent as pulumi.Input<string>));
      resolve.set(childUrn(aliasParent, resource.type, resource.name), resource);
    }
  }
  return { urns, resolve };
}

/** Resources whose replacement is harmless and expected: pushes and releases are re-run by design. */
export const isCommand = (r: RecordedResource) => r.type.startsWith("command:");
export const isComponent = (r: RecordedResource) => r.type.startsWith("saas-vps:");

/** What the second run would do to the first's resources (commands and components aside). */
export function changesBetween(before: MockRun, beforeUrns: RunUrns, after: MockRun, afterUrns: RunUrns): { replaced: string[]; deleted: string[]; created: string[] } {
  const replaced: string[] = [];
  const deleted: string[] = [];
  const kept = new Set<RecordedResource>();
  for (const old of before.mocks.resources.filter((r) => !isCommand(r) && !isComponent(r))) {
    const now = afterUrns.resolve.get(beforeUrns.urns.get(old)!);
    if (!now) {
      deleted.push(old.name);
      continue;
    }
    kept.add(now);
    const ignored = ((after.options.get(now.name) as pulumi.CustomResourceOptions | undefined)?.ignoreChanges ?? []) as string[];
    for (const input of replaceInputsOf(old.type)) {
      if (ignored.includes(input)) continue;
      const [was, is] = [unwrapSecrets(old.inputs[input]), unwrapSecrets(now.inputs[input])];
      if (JSON.stringify(was) !== JSON.stringify(is)) replaced.push(`${old.name}.${input}: ${JSON.stringify(was)} → ${JSON.stringify(is)}`);
    }
  }
  const created = after.mocks.resources.filter((r) => !isCommand(r) && !isComponent(r) && !kept.has(r)).map((r) => r.name);
  return { replaced, deleted, created };
}
