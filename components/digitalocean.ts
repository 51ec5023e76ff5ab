/**
 * DigitalOcean implementation of the machine interface: one VPC for the stack, SSH keys, a
 * droplet in that VPC with the monitoring agent, a reserved IPv4 kept apart from the droplet, a
 * data volume, and a cloud firewall. DigitalOcean has no server delete protection: Pulumi's
 * `protect` stands in. Provider docs: https://www.pulumi.com/registry/packages/digitalocean/
 */
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { ANYWHERE, type FirewallRule, type ServerPlan, type StackPlan } from "../plan/plan";
import {
  type FixedIp,
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
export function digitaloceanInboundRules(rules: FirewallRule[], serverIds: ServerIds) {
  return rules.map((rule) => {
    const droplets = peerIds(rule, serverIds).map(Number);
    return {
      protocol: rule.protocol,
      portRange: portText(rule),
      ...(rule.sources.length > 0 ? { sourceAddresses: rule.sources } : {}),
      ...(droplets.length > 0 ? { sourceDropletIds: droplets } : {}),
    };
  });
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
    // Rules naming servers wait for every droplet to exist; the public ones must not wait with
    // them, so they are two firewalls (DigitalOcean allows what any firewall of a droplet allows).
    const publicRules = plan.firewall.filter((rule) => !rule.peers?.length);
    const privateRules = plan.firewall.filter((rule) => rule.peers?.length);
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
        { dropletIds: [dropletId], inboundRules: pulumi.output(args.serverIds).apply((ids) => digitaloceanInboundRules(privateRules, ids)) },
        opts,
      );
    }
    return { ipv4: args.fixedIp.address, ipv6: droplet.ipv6Address, serverId: droplet.id, privateIpv4: droplet.ipv4AddressPrivate, ready };
  },
};
