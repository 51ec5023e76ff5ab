/**
 * The one provider-neutral interface: what a server component needs from a hosting provider.
 * One implementation per provider (hetzner.ts, digitalocean.ts); everything above this file
 * is provider-neutral, and the parity test runs the same contract on both.
 */
import * as pulumi from "@pulumi/pulumi";
import type { FirewallRule, ServerPlan } from "../plan/plan";

/** The fixed public IPv4, created before the server so user-data can name it and it outlives a replacement. */
export interface FixedIp {
  address: pulumi.Output<string>;
  /** Provider id of the IP resource. */
  id: pulumi.Output<string>;
}

export interface MachineArgs {
  plan: ServerPlan;
  /** Provider image name for Debian 13. */
  image: string;
  sshPublicKeys: string[];
  fixedIp: FixedIp;
  /** First-boot user-data; later changes are ignored (day-2 pushes carry them). */
  userData: pulumi.Output<string>;
}

/** What the rest of the program uses of a provider's server. */
export interface Machine {
  ipv4: pulumi.Output<string>;
  ipv6: pulumi.Output<string>;
  serverId: pulumi.Output<string>;
  /** Resources that must exist before SSH to the fixed IP reaches this server. */
  ready: pulumi.Resource[];
}

export interface MachineProvider {
  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp;
  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine;
}

/** Servers, volumes and fixed IPs are protected: deleting one must be a deliberate act. */
export const PROTECTED: Pick<pulumi.CustomResourceOptions, "protect"> = { protect: true };
/**
 * Both providers replace a server when its user-data or its SSH keys change (they read both only
 * at creation), which would destroy it and its database: ignore both. Day-2 changes to what they
 * carry reach the server through the pushes (the admin's authorized_keys is a pushed file).
 */
export const SERVER_IGNORES = ["userData", "sshKeys"];

export function portText(rule: FirewallRule): string {
  return String(rule.port);
}
