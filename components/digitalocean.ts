/**
 * DigitalOcean implementation of the machine interface: one VPC for the stack, SSH keys, a
 * droplet in that VPC with the monitoring agent, a reserved IPv4 kept apart from the droplet, a
 * data volume, and a cloud firewall. DigitalOcean has no server delete protection: Pulumi's
 * `protect` stands in. Provider docs: https://www.pulumi.com/registry/packages/digitalocean/
 */
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { ANYWHERE, type FirewallRule, type ServerPlan, type StackPlan } from "../plan/plan";
import type { LoadBalancerPlan } from "../plan/scaled";
import {
  type FixedIp,
  type LoadBalancerArgs,
  type StackLoadBalancer,
  type Machine,
  type MachineArgs,
  type MachineProvider,
  FORMER_OWNER,
  formerlyOwnedBy,
  peerIds,
  portText,
  SERVER_IGNORES,
  sshKeyName,
  type ServerIds,
  type StackNetwork,
} from "./machine";

/**
 * The stack's VPC keeps the resource name and parent the mvp server's own VPC always had, so a
 * stack moved from mvp keeps its VPC, and with it its droplet (a droplet's vpcUuid cannot change
 * in place). docs/ARCHITECTURE.md, "One VPC per stack on DigitalOcean".
 */
export const VPC_OWNER = FORMER_OWNER;
const VPC_DESCRIPTION = "saas-vps private network";

/**
 * The cloud firewall's inbound rules, from the plan's rules: public sources by address, peers by
 * droplet id. DigitalOcean's firewall also filters traffic inside the VPC (provider facts), so a
 * private rule must name its peers here too.
 */
export function digitaloceanInboundRules(rules: FirewallRule[], serverIds: ServerIds, loadBalancerId?: string) {
  return rules.map((rule) => {
    const droplets = peerIds(rule, serverIds).map(Number);
    if (rule.loadBalancer && loadBalancerId === undefined) throw new Error(`firewall rule "${rule.description}" admits the load balancer, but the stack has none`);
    return {
      protocol: rule.protocol,
      portRange: portText(rule),
      ...(rule.sources.length > 0 ? { sourceAddresses: rule.sources } : {}),
      ...(droplets.length > 0 ? { sourceDropletIds: droplets } : {}),
      ...(rule.loadBalancer ? { sourceLoadBalancerUids: [loadBalancerId!] } : {}),
    };
  });
}

/**
 * The balancer's settings from the plan: TCP forwarded as is with the PROXY protocol (TLS ends on
 * the app servers), the health listener checked over HTTP, in the stack's VPC.
 */
export function digitaloceanLoadBalancerSettings(plan: LoadBalancerPlan) {
  const check = plan.healthCheck;
  return {
    region: plan.region,
    // The smallest size; DigitalOcean scales a balancer by units, changed in place.
    sizeUnit: 1,
    forwardingRules: plan.ports.map((port) => ({ entryProtocol: "tcp", entryPort: port, targetProtocol: "tcp", targetPort: port })),
    healthcheck: {
      protocol: "http",
      port: check.port,
      path: check.path,
      checkIntervalSeconds: check.intervalSeconds,
      responseTimeoutSeconds: check.timeoutSeconds,
      unhealthyThreshold: check.unhealthyThreshold,
      healthyThreshold: check.healthyThreshold,
    },
    enableProxyProtocol: true,
    redirectHttpToHttps: false,
    // Its certificates would need DigitalOcean's DNS; TLS is the app servers' (passthrough).
    disableLetsEncryptDnsRecords: true,
  };
}

export const digitaloceanProvider: MachineProvider = {
  plansPrivateAddresses: false,

  createSshKeys(name: string, sshPublicKeys: string[], parent: pulumi.Resource): pulumi.Output<string>[] {
    return sshPublicKeys.map((publicKey, i) => new digitalocean.SshKey(sshKeyName(name, i), { name: sshKeyName(name, i), publicKey }, formerlyOwnedBy(name, parent)).fingerprint);
  },

  createNetwork(name: string, plan: StackPlan, parent: pulumi.Resource): StackNetwork {
    const ownerName = `${name}-${VPC_OWNER}`;
    const vpc = new digitalocean.Vpc(
      `${ownerName}-vpc`,
      // At mvp no range is set and DigitalOcean picks one; a VPC's range cannot change in place,
      // so the range set at creation stays (a changed privateNetworkCidr is reported, below).
      { region: plan.servers[0].region, description: VPC_DESCRIPTION, ...(plan.network ? { ipRange: plan.network.cidr } : {}) },
      {
        parent,
        ignoreChanges: ["ipRange"],
        aliases: [{ parent: pulumi.createUrn(ownerName, "saas-vps:server:VpsServer", parent) }],
      },
    );
    const declared = plan.network?.cidr;
    const cidr = vpc.ipRange.apply((actual) => {
      if (declared && actual && actual !== declared) {
        pulumi.log.warn(
          `saas-vps:privateNetworkCidr: the stack's VPC has the range ${actual}, fixed when it was created; ${declared} is not applied ` +
            `(DigitalOcean replaces a VPC whose range changes, and every droplet in it). Servers use ${actual}; set saas-vps:privateNetworkCidr to it.`,
          vpc,
        );
      }
      return actual;
    });
    return { id: vpc.id, cidr, ready: [vpc] };
  },

  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp {
    const ip = new digitalocean.ReservedIp(`${name}-ipv4`, { region: plan.region }, { parent });
    return { address: ip.ipAddress, id: ip.id };
  },

  createLoadBalancer(name: string, args: LoadBalancerArgs, parent: pulumi.Resource): StackLoadBalancer {
    const { plan, network } = args;
    const ids = plan.targets.map((server) => {
      const id = args.targets[server];
      if (!id) throw new Error(`load balancer target ${server} is no server of this stack`);
      return id.apply(Number);
    });
    // By id, not by tag: a tag is account-wide, and another stack's droplets could carry it.
    const lb = new digitalocean.LoadBalancer(`${name}-${plan.name}`, { ...digitaloceanLoadBalancerSettings(plan), vpcUuid: network.id, dropletIds: ids }, { parent });
    return { id: lb.id, ipv4: lb.ip };
  },

  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine {
    const { plan, network } = args;
    if (!network) throw new Error(`droplet ${plan.name} without the stack's VPC`);
    const opts = { parent };
    const tags = ["saas-vps", `saas-vps-${plan.name}`];
    const volume = plan.volume
      ? new digitalocean.Volume(
          `${name}-${plan.volume.name}`,
          {
            region: plan.region,
            size: plan.volume.sizeGb,
            initialFilesystemType: "ext4",
            initialFilesystemLabel: plan.volume.label,
            description: "saas-vps data (PostgreSQL, uploads)",
            tags,
          },
          opts,
        )
      : undefined;
    const droplet = new digitalocean.Droplet(
      `${name}-server`,
      {
        image: args.image,
        region: plan.region,
        size: plan.serverType,
        sshKeys: args.sshKeys,
        vpcUuid: network.id,
        ipv6: true,
        monitoring: true,
        userData: args.userData,
        tags,
      },
      { ...opts, ignoreChanges: SERVER_IGNORES },
    );
    const dropletId = droplet.id.apply(Number);
    const ready: pulumi.Resource[] = [
      droplet,
      new digitalocean.ReservedIpAssignment(`${name}-ipv4-assign`, { ipAddress: args.fixedIp.address, dropletId }, opts),
    ];
    if (volume) {
      ready.push(new digitalocean.VolumeAttachment(`${name}-${plan.volume!.name}-attach`, { dropletId, volumeId: volume.id }, opts));
    }
    // Rules naming servers (or the balancer) wait for every droplet (and the balancer) to exist;
    // the public ones must not wait with them, so they are two firewalls (DigitalOcean allows
    // what any firewall of a droplet allows).
    const isPrivate = (rule: FirewallRule) => (rule.peers?.length ?? 0) > 0 || rule.loadBalancer === true;
    const publicRules = plan.firewall.filter((rule) => !isPrivate(rule));
    const privateRules = plan.firewall.filter(isPrivate);
    new digitalocean.Firewall(
      `${name}-fw`,
      {
        dropletIds: [dropletId],
        inboundRules: digitaloceanInboundRules(publicRules, {}),
        // A DigitalOcean firewall drops outbound traffic it does not list: apt, ACME, S3 and SMTP need it open.
        outboundRules: [
          { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
      },
      opts,
    );
    if (privateRules.length > 0) {
      new digitalocean.Firewall(
        `${name}-fw-private`,
        {
          dropletIds: [dropletId],
          inboundRules: pulumi.all([args.serverIds, args.loadBalancerId]).apply(([ids, lbId]) => digitaloceanInboundRules(privateRules, ids, lbId)),
        },
        opts,
      );
    }
    return { ipv4: args.fixedIp.address, ipv6: droplet.ipv6Address, serverId: droplet.id, privateIpv4: droplet.ipv4AddressPrivate, ready };
  },
};
