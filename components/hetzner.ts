/**
 * Hetzner Cloud implementation of the machine interface: the stack's Network with one cloud
 * subnet, SSH keys, firewall (attached at creation), a primary IPv4 kept apart from the server, a
 * data volume, and a server with delete and rebuild protection, joined to the network at its
 * planned address when it is created. Provider docs: https://www.pulumi.com/registry/packages/hcloud/
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import type { FirewallRule, ServerPlan, StackPlan } from "../plan/plan";
import type { LoadBalancerPlan } from "../plan/scaled";
import {
  FORMER_OWNER,
  formerlyOwnedBy,
  type FixedIp,
  type LoadBalancerArgs,
  type Machine,
  type MachineArgs,
  type MachineProvider,
  portText,
  SERVER_IGNORES,
  sshKeyName,
  type StackLoadBalancer,
  type StackNetwork,
} from "./machine";

/** The smallest type (25 services, 25 targets): ten app servers and three ports fit with room. */
export const HETZNER_LOAD_BALANCER_TYPE = "lb11";

/**
 * One TCP service per port, with the PROXY protocol, checked on the app servers' health listener.
 * Hetzner's `retries` counts failed checks before a target leaves and passed ones before it
 * returns: the plan's two thresholds, equal by design (plan/scaled.ts).
 */
export function hetznerLoadBalancerServices(plan: LoadBalancerPlan) {
  const check = plan.healthCheck;
  if (check.healthyThreshold !== check.unhealthyThreshold) {
    throw new Error(`load balancer: Hetzner has one threshold (retries) for both directions; the plan has ${check.unhealthyThreshold} out and ${check.healthyThreshold} back`);
  }
  return plan.ports.map((port) => ({
    protocol: "tcp",
    listenPort: port,
    destinationPort: port,
    proxyprotocol: true,
    healthCheck: {
      protocol: "http",
      port: check.port,
      interval: check.intervalSeconds,
      timeout: check.timeoutSeconds,
      retries: check.unhealthyThreshold,
      http: { path: check.path, statusCodes: ["200"] },
    },
  }));
}

const MANAGED_BY = { "managed-by": "saas-vps" };
const labelsFor = (plan: ServerPlan) => ({ ...MANAGED_BY, server: plan.name });

/**
 * The cloud firewall's inbound rules: the plan's rules with public sources, those sources only.
 * Hetzner's firewall filters public interfaces only (docs/ARCHITECTURE.md, provider facts), so a
 * rule's peers, reached over the private network, are left to the host firewall.
 */
export function hetznerFirewallRules(rules: FirewallRule[]) {
  return rules
    .filter((rule) => rule.sources.length > 0)
    .map((rule) => ({ direction: "in", protocol: rule.protocol, port: portText(rule), sourceIps: rule.sources, description: rule.description }));
}

export const hetzner: MachineProvider = {
  plansPrivateAddresses: true,

  createSshKeys(name: string, sshPublicKeys: string[], parent: pulumi.Resource): pulumi.Output<string>[] {
    // The labels the mvp server's keys always had: an unchanged key shows no diff.
    const labels = { ...MANAGED_BY, server: FORMER_OWNER };
    return sshPublicKeys.map((publicKey, i) => new hcloud.SshKey(sshKeyName(name, i), { name: sshKeyName(name, i), publicKey, labels }, formerlyOwnedBy(name, parent)).id);
  },

  createNetwork(name: string, plan: StackPlan, parent: pulumi.Resource): StackNetwork | undefined {
    if (!plan.network) return undefined;
    const { cidr, zone } = plan.network;
    if (!zone) throw new Error("a Hetzner network without a network zone (the config parser sets one)");
    // Its range cannot change in place: protected, so a changed privateNetworkCidr is refused, not rebuilt.
    const network = new hcloud.Network(`${name}-network`, { ipRange: cidr, deleteProtection: true, labels: MANAGED_BY }, { parent });
    // One subnet over the whole range: every planned address lies in it (plan/plan.ts PRIVATE_HOSTS).
    const subnet = new hcloud.NetworkSubnet(
      `${name}-subnet`,
      { networkId: network.id.apply(Number), type: "cloud", networkZone: zone, ipRange: cidr },
      { parent },
    );
    return { id: network.id, cidr: network.ipRange, ready: [subnet] };
  },

  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp {
    const ip = new hcloud.PrimaryIp(
      `${name}-ipv4`,
      { type: "ipv4", assigneeType: "server", location: plan.region, autoDelete: false, deleteProtection: true, labels: labelsFor(plan) },
      { parent },
    );
    return { address: ip.ipAddress, id: ip.id };
  },

  createLoadBalancer(name: string, args: LoadBalancerArgs, parent: pulumi.Resource): StackLoadBalancer {
    const { plan, network } = args;
    const labels = { ...MANAGED_BY, role: "load-balancer" };
    const lb = new hcloud.LoadBalancer(
      `${name}-${plan.name}`,
      { loadBalancerType: HETZNER_LOAD_BALANCER_TYPE, location: plan.region, algorithm: { type: "round_robin" }, deleteProtection: true, labels },
      { parent },
    );
    const lbId = lb.id.apply(Number);
    // Targets by private address need the balancer in the network first (provider facts).
    const attached = new hcloud.LoadBalancerNetwork(
      `${name}-${plan.name}-network`,
      { loadBalancerId: lbId, networkId: network.id.apply(Number), ip: plan.privateIp, enablePublicInterface: true },
      { parent, dependsOn: network.ready },
    );
    hetznerLoadBalancerServices(plan).forEach((service) => new hcloud.LoadBalancerService(`${name}-${plan.name}-${service.listenPort}`, { loadBalancerId: lb.id, ...service }, { parent }));
    // One target per server, so a server added or removed is one target created or deleted.
    for (const server of plan.targets) {
      const serverId = args.targets[server];
      if (!serverId) throw new Error(`load balancer target ${server} is no server of this stack`);
      new hcloud.LoadBalancerTarget(
        `${name}-${plan.name}-${server}`,
        { type: "server", loadBalancerId: lbId, serverId: serverId.apply(Number), usePrivateIp: true },
        { parent, dependsOn: [attached] },
      );
    }
    return { id: lb.id, ipv4: lb.ipv4 };
  },

  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine {
    const { plan } = args;
    const opts = { parent };
    const labels = labelsFor(plan);
    const firewall = new hcloud.Firewall(
      `${name}-fw`,
      { labels, rules: hetznerFirewallRules(plan.firewall) },
      opts,
    );
    const network = args.network;
    if (network && !plan.privateIp) throw new Error(`server ${plan.name} joins the private network without a planned address`);
    const volume = plan.volume
      ? new hcloud.Volume(
          `${name}-${plan.volume.name}`,
          // No provider formatting: bootstrap formats an empty volume itself, with the label it mounts by.
          { size: plan.volume.sizeGb, location: plan.region, automount: false, deleteProtection: true, labels },
          opts,
        )
      : undefined;
    const server = new hcloud.Server(
      `${name}-server`,
      {
        serverType: plan.serverType,
        image: args.image,
        location: plan.region,
        sshKeys: args.sshKeys,
        firewallIds: [firewall.id.apply(Number)],
        publicNets: [{ ipv4Enabled: true, ipv4: args.fixedIp.id.apply(Number), ipv6Enabled: true }],
        // Attached at creation, so first boot already has its private interface. aliasIps empty
        // on purpose: the SDK documents that, left unset, the network is detached and
        // re-attached on every update.
        ...(network ? { networks: [{ networkId: network.id.apply(Number), ip: plan.privateIp, aliasIps: [] }] } : {}),
        userData: args.userData,
        deleteProtection: true,
        rebuildProtection: true,
        labels,
      },
      // The network id alone does not make the server wait for the subnet it needs.
      { ...opts, ignoreChanges: SERVER_IGNORES, dependsOn: network?.ready },
    );
    const ready: pulumi.Resource[] = [server];
    if (volume) {
      ready.push(
        new hcloud.VolumeAttachment(
          `${name}-${plan.volume!.name}-attach`,
          { serverId: server.id.apply(Number), volumeId: volume.id.apply(Number), automount: false },
          opts,
        ),
      );
    }
    return {
      ipv4: args.fixedIp.address,
      ipv6: server.ipv6Address,
      serverId: server.id,
      privateIpv4: network ? pulumi.output(plan.privateIp!) : undefined,
      ready,
    };
  },
};
