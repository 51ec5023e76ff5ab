/**
 * The rendered cases every real-tool check and golden runs on: both example stacks through
 * the real program (as `npm run render` does), plus edge cases rendered directly.
 */
import { join } from "node:path";
import { renderServer, type MachineKind } from "../../provisioning/server";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { decodeWriteFiles, readStackFile, readUserDataBundle, renderStack } from "../../cli/lib/renderStack";
import { minimalRaw } from "./fixtures";

export interface RenderCase {
  name: string;
  userData: string;
  /** Absolute path on the server → content. */
  files: Map<string, string>;
  /** Absolute path → octal mode string from the user-data. */
  modes: Map<string, string>;
}

const ROOT = join(__dirname, "..", "..");

async function stackCase(stack: string): Promise<RenderCase> {
  const result = await renderStack(stack, readStackFile(join(ROOT, `Pulumi.${stack}.yaml`)));
  const [server] = result.servers;
  return { name: `stack-${stack}`, userData: server.userData, files: server.files, modes: modesOf(server.userData) };
}

function directCase(name: string, raw: Record<string, string>, machine: MachineKind): RenderCase {
  const config = parseStackConfig(raw);
  const [server] = planStack(config).servers;
  const { userData } = renderServer(buildServerInput(config, server, { machine, ...PLACEHOLDER_CONTEXT }));
  return { name, userData, files: decodeWriteFiles(userData), modes: modesOf(userData) };
}

function modesOf(userData: string): Map<string, string> {
  return new Map([...readUserDataBundle(userData)].map(([path, f]) => [path, f.mode]));
}

export async function renderAllCases(): Promise<RenderCase[]> {
  return [
    await stackCase("staging"),
    await stackCase("prod"),
    directCase("one-web-no-workers-qemu", { ...minimalRaw("hetzner"), webInstances: "1", workerInstances: "0" }, "qemu"),
    directCase("sixteen-web-domain", { ...minimalRaw("digitalocean"), webInstances: "16", workerInstances: "16", domain: "shop.example.org", acmeEmail: "ops@example.org" }, "digitalocean"),
  ];
}
