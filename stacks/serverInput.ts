/**
 * Maps the stack config and one planned server to the renderer's input. Pure: the component
 * calls it inside its single Output boundary, the render command and tests call it directly.
 */
import type { MachineKind, ServerRenderInput } from "../provisioning/server";
import type { StackConfig } from "./config";
import type { ServerPlan } from "./plan";

export interface ServerSecrets {
  databasePassword: string;
  appSecretKey: string;
}

export interface ServerInputContext {
  machine: MachineKind;
  /** The server's fixed public IPv4; the app's URL when no domain is set. */
  ipv4: string;
  secrets: ServerSecrets;
}

export function appUrlFor(config: Pick<StackConfig, "domain">, ipv4: string): string {
  return config.domain ? `https://${config.domain}` : `http://${ipv4}`;
}

export function buildServerInput(config: StackConfig, server: ServerPlan, context: ServerInputContext): ServerRenderInput {
  return {
    hostname: server.name,
    machine: context.machine,
    roles: server.roles,
    memoryMiB: config.serverMemoryMiB,
    webInstances: server.webInstances,
    workerInstances: server.workerInstances,
    sshPublicKeys: config.sshPublicKeys,
    appUrl: appUrlFor(config, context.ipv4),
    domain: config.domain,
    acmeEmail: config.acmeEmail,
    secrets: context.secrets,
  };
}

/** Stand-in values with the shapes of the real ones, for listing which files a server gets. */
export const PLACEHOLDER_CONTEXT: Omit<ServerInputContext, "machine"> = {
  ipv4: "192.0.2.10",
  secrets: { databasePassword: "placeholder-database-password", appSecretKey: "placeholder-app-secret-key-0000000000000000" },
};
