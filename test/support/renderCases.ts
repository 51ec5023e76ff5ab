/**
 * The rendered cases every real-tool check and golden runs on: every server of every stack file
 * (Pulumi.<stack>.yaml) through the real program (as `npm run render` does), plus edge cases
 * rendered directly. Each case holds every file the server gets: the user-data's and the
 * push-only ones the day-2 push brings right after first boot (provisioning/files.ts).
 */
import { join } from "node:path";
import { renderServer, type MachineKind } from "../../provisioning/server";
import type { RenderedFile } from "../../provisioning/files";
import { parseStackConfig, type StackConfig } from "../../config/config";
import { qualifyKey } from "../../config/keysFromPulumi";
import { projectConfigOf } from "../../config/keysFromPulumi";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { readStackFile, readUserDataBundle, renderStack, type StackFile } from "../../cli/lib/renderStack";
import { listStacks } from "../../cli/lib/stacks";
import { minimalRaw, qualified, scaledRaw, withDomain } from "./fixtures";
import { planPushes, renderPushCommand } from "../../provisioning/push";
import { credentialKeysIn } from "./mockProgram";

export interface RenderCase {
  name: string;
  userData: string;
  /** Absolute path on the server → content: every file the server gets. */
  files: Map<string, string>;
  /** Absolute path → octal mode string. */
  modes: Map<string, string>;
  /** Paths of the files only the day-2 push carries (not in the user-data). */
  pushOnly: Set<string>;
  /** Path → the day-2 push command the program runs for it (its action and its group's included). */
  pushCommands: Map<string, string>;
  /**
   * The files as the first boot writes them, where a push then brings other content: on
   * DigitalOcean a server created before its peers opens a private port to the VPC's range at
   * first boot, and the push narrows it to their addresses once they exist.
   */
  firstBoot?: Map<string, string>;
}

const ROOT = join(__dirname, "..", "..");

/** Every file of the one server of a config's plan, rendered with the placeholder context. */
function renderPlanned(config: StackConfig, machine: MachineKind) {
  const [server] = planStack(config).servers;
  return renderServer(buildServerInput(config, server, { machine, ...PLACEHOLDER_CONTEXT }));
}

/**
 * Every server of a stack file, as the real program has it: the user-data's files, then the
 * pushes'. Rendered as `npm run render` does.
 */
async function stackCases(stack: string): Promise<RenderCase[]> {
  return serverCases(stack, await renderStack(stack, readStackFile(join(ROOT, `Pulumi.${stack}.yaml`))));
}

/**
 * Stage scaled in the shape its example stack (Pulumi.scaled.yaml: two app servers, plain HTTP,
 * no replica) does not cover: three app servers behind the balancer with a domain, the worker,
 * the db server and its read replica, on Hetzner. Named scaled-tls, beside the example's cases.
 */
async function scaledCases(): Promise<RenderCase[]> {
  const raw = withDomain({ ...minimalRaw("hetzner"), ...scaledRaw("hetzner", 3) });
  return serverCases("scaled-tls", await renderStack("scaled-tls", stackFileOf(raw)));
}

/**
 * Stage scaled on DigitalOcean with a managed database and its read-only node: two app servers
 * behind the balancer reading from the node, the worker; no db or replica server.
 */
async function scaledManagedCases(): Promise<RenderCase[]> {
  const raw = withDomain({ ...minimalRaw("digitalocean"), ...scaledRaw("digitalocean", 2), databaseMode: "managed" });
  return serverCases("scaled-managed", await renderStack("scaled-managed", stackFileOf(raw)));
}

/** A stack file of short keys, as `pulumi config set` would write it: credentials as secrets. */
function stackFileOf(raw: Record<string, string>): StackFile {
  return { config: qualified(raw), secretKeys: credentialKeysIn(raw).map(qualifyKey) };
}

function serverCases(stack: string, render: Awaited<ReturnType<typeof renderStack>>): RenderCase[] {
  return render.servers.map((server) => {
    const installed = readUserDataBundle(server.userData);
    return {
      name: `stack-${stack}-${server.name}`,
      userData: server.userData,
      files: server.files,
      modes: new Map([...[...installed].map(([path, f]) => [path, f.mode] as const), ...server.pushes.map((p) => [p.path, p.mode] as const)]),
      pushOnly: new Set(server.pushOnly),
      pushCommands: new Map(server.pushes.map((p) => [p.path, p.command])),
      firstBoot: new Map([...installed].map(([path, f]) => [path, f.content])),
    };
  });
}

function caseOf(name: string, { userData, files }: { userData: string; files: RenderedFile[] }): RenderCase {
  return {
    name,
    userData,
    files: new Map(files.map((f: RenderedFile) => [f.path, f.content])),
    modes: new Map(files.map((f) => [f.path, f.mode])),
    pushOnly: new Set(files.filter((f) => f.pushOnly).map((f) => f.path)),
    pushCommands: new Map(planPushes(files).map(({ path, action }) => [path, renderPushCommand(files.find((f) => f.path === path)!, action)])),
  };
}

function directCase(name: string, raw: Record<string, string>, machine: MachineKind): RenderCase {
  return caseOf(name, renderPlanned(parseStackConfig(raw), machine));
}

export async function renderAllCases(): Promise<RenderCase[]> {
  const stacks: RenderCase[] = [];
  for (const stack of listStacks(ROOT)) stacks.push(...(await stackCases(stack)));
  stacks.push(...(await scaledCases()), ...(await scaledManagedCases()));
  return [
    ...stacks,
    directCase("one-web-no-workers-qemu", { ...minimalRaw("hetzner"), webInstances: "1", workerInstances: "0" }, "qemu"),
    directCase("sixteen-web-domain", withDomain({ ...minimalRaw("digitalocean"), webInstances: "16", workerInstances: "16" }), "digitalocean"),
    // Uploads in a bucket: S3_* in app.env, no upload directory for bootstrap or the units.
    directCase("uploads-bucket", { ...minimalRaw("digitalocean"), uploadsStorage: "bucket" }, "digitalocean"),
    // Critical workers on the one server of mvp: worker-critical@101 and @102 beside worker@1 and @2.
    directCase("mvp-critical-workers", { ...minimalRaw("hetzner"), workerInstances: "2", criticalWorkerInstances: "2", criticalTasks: JSON.stringify(["send_password_reset_email", "process_stripe_event"]) }, "hetzner"),
  ];
}
