/**
 * The one provider-neutral interface: what a server component needs from a hosting provider.
 * One implementation per provider (hetzner.ts, digitalocean.ts); everything above this file
 * is provider-neutral, and the parity test runs the same contract on both.
 */
import * as pulumi from "@pulumi/pulumi";
import type { FirewallRule, ServerPlan, StackPlan } from "../plan/plan";
import type { LoadBalancerPlan } from "../plan/scaled";

/** The fixed public IPv4, created before the server so user-data can name it and it outlives a replacement. */
export interface FixedIp {
  address: pulumi.Output<string>;
  /** Provider id of the IP resource. */
  id: pulumi.Output<string>;
}

/** The stack's private network (Hetzner Network + subnet, DigitalOcean VPC), as servers join it. */
export interface StackNetwork {
  /** Provider id of the network (Hetzner Network, DigitalOcean VPC). */
  id: pulumi.Output<string>;
  /**
   * Its real address range. On DigitalOcean a VPC created before the stack declared a range (stage
   * mvp) keeps the range DigitalOcean chose; renders use this, never the config's.
   */
  cidr: pulumi.Output<string>;
  /** What a server must wait for before it can join (Hetzner's subnet). */
  ready: pulumi.Resource[];
}

/** Provider ids of the stack's servers by plan name, once they all exist (firewall sources by server). */
export type ServerIds = Readonly<Record<string, string>>;

export interface MachineArgs {
  plan: ServerPlan;
  /** The stack's private network, when the stage has one (on DigitalOcean: always, the VPC). */
  network?: StackNetwork;
  /** Every server of the stack by plan name; a firewall rule's peers resolve to these. */
  serverIds: pulumi.Input<ServerIds>;
  /** The stack's load balancer, once it exists (stage scaled): rules admitting it name it. */
  loadBalancerId?: pulumi.Input<string | undefined>;
  /** Provider image name for Debian 13. */
  image: string;
  /** The stack's registered SSH keys as the provider's server input takes them (createSshKeys). */
  sshKeys: pulumi.Output<string>[];
  fixedIp: FixedIp;
  /** First-boot user-data; later changes are ignored (day-2 pushes carry them). */
  userData: pulumi.Output<string>;
}

/** What the rest of the program uses of a provider's server. */
export interface Machine {
  ipv4: pulumi.Output<string>;
  ipv6: pulumi.Output<string>;
  serverId: pulumi.Output<string>;
  /** Address on the stack's private network (planned on Hetzner, assigned on DigitalOcean); none without one. */
  privateIpv4?: pulumi.Output<string>;
  /** Resources that must exist before SSH to the fixed IP reaches this server. */
  ready: pulumi.Resource[];
}

export interface MachineProvider {
  /**
   * Whether servers get the private address the plan gives them (Hetzner, the local VM) or one the
   * provider assigns when it creates them (DigitalOcean).
   */
  readonly plansPrivateAddresses: boolean;
  /**
   * The stack's SSH keys, registered once for every server: both providers refuse a public key
   * that is already registered, so a second server registering it again would fail to create.
   */
  createSshKeys(name: string, sshPublicKeys: string[], parent: pulumi.Resource): pulumi.Output<string>[];
  /** The stack's private network, created once before any server; undefined when the stack has none. */
  createNetwork(name: string, plan: StackPlan, parent: pulumi.Resource): StackNetwork | undefined;
  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp;
  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine;
  /** The load balancer in front of the app servers, in the stack's private network, once they exist. */
  createLoadBalancer(name: string, args: LoadBalancerArgs, parent: pulumi.Resource): StackLoadBalancer;
}

export interface LoadBalancerArgs {
  plan: LoadBalancerPlan;
  network: StackNetwork;
  /** Provider ids of the servers behind it, by plan name (the plan's targets). */
  targets: Readonly<Record<string, pulumi.Output<string>>>;
}

/** What the rest of the program uses of the balancer. */
export interface StackLoadBalancer {
  /** Provider id (DigitalOcean firewall rules admit it by this). */
  id: pulumi.Output<string>;
  /** The public IPv4 the site's DNS points at. */
  ipv4: pulumi.Output<string>;
}

/**
 * Both providers replace a server when its user-data or its SSH keys change (they read both only
 * at creation), which would destroy it and its database: ignore both. Day-2 changes to what they
 * carry reach the server through the pushes (the admin's authorized_keys is a pushed file).
 */
export const SERVER_IGNORES = ["userData", "sshKeys"];

export function portText(rule: FirewallRule): string {
  return String(rule.port);
}

/** Provider ids of a rule's peers; a peer that is no server of the stack is a planning error. */
export function peerIds(rule: FirewallRule, serverIds: ServerIds): string[] {
  return (rule.peers ?? []).map((peer) => {
    const id = serverIds[peer];
    if (id === undefined) throw new Error(`firewall rule "${rule.description}" names ${peer}, which is no server of this stack`);
    return id;
  });
}

/**
 * The stack-wide resources the mvp server used to own (its SSH keys; on DigitalOcean its VPC) keep
 * that server's resource names, moved under the stack with an alias to their old parent: a stack
 * moved from mvp keeps them, and with them its server.
 */
export const FORMER_OWNER = "app";

/**
 * The name of the stack's i-th SSH key, as a Pulumi resource and at the provider: it holds the stack's
 * name (the stack component's name does), so stacks sharing a Hetzner project or a DigitalOcean
 * account never clash on a key name (Hetzner refuses a name twice in a project). The policy pack
 * checks it (policy/policies.ts).
 */
export function sshKeyName(stackComponentName: string, index: number): string {
  return `${stackComponentName}-${FORMER_OWNER}-key-${index}`;
}

/** Options that move a resource once created under the mvp server's component to the stack. */
export function formerlyOwnedBy(stackName: string, parent: pulumi.Resource): Pick<pulumi.CustomResourceOptions, "parent" | "aliases"> {
  return { parent, aliases: [{ parent: pulumi.createUrn(`${stackName}-${FORMER_OWNER}`, "saas-vps:server:VpsServer", parent) }] };
}
