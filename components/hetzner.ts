/**
 * Hetzner Cloud implementation of the machine interface: SSH keys, firewall (attached at
 * creation), a primary IPv4 kept apart from the server, a data volume, and a server with
 * delete and rebuild protection. Provider docs: https://www.pulumi.com/registry/packages/hcloud/
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import type { ServerPlan } from "../plan/plan";
import { type FixedIp, type Machine, type MachineArgs, type MachineProvider, portText, PROTECTED, SERVER_IGNORES } from "./machine";

const labelsFor = (plan: ServerPlan) => ({ "managed-by": "saas-vps", server: plan.name });

export const hetzner: MachineProvider = {
  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp {
    const ip = new hcloud.PrimaryIp(
      `${name}-ipv4`,
      { type: "ipv4", assigneeType: "server", location: plan.region, autoDelete: false, deleteProtection: true, labels: labelsFor(plan) },
      { parent, ...PROTECTED },
    );
    return { address: ip.ipAddress, id: ip.id };
  },

  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine {
    const { plan } = args;
    const opts = { parent };
    const labels = labelsFor(plan);
    const keys = args.sshPublicKeys.map((publicKey, i) => new hcloud.SshKey(`${name}-key-${i}`, { publicKey, labels }, opts));
    const firewall = new hcloud.Firewall(
      `${name}-fw`,
      {
        labels,
        rules: plan.firewall.map((rule) => ({
          direction: "in",
          protocol: rule.protocol,
          port: portText(rule),
          sourceIps: rule.sources,
          description: rule.description,
        })),
      },
      opts,
    );
    const volume = plan.volume
      ? new hcloud.Volume(
          `${name}-${plan.volume.name}`,
          // No provider formatting: bootstrap formats an empty volume itself, with the label it mounts by.
          { size: plan.volume.sizeGb, location: plan.region, automount: false, deleteProtection: true, labels },
          { ...opts, ...PROTECTED },
        )
      : undefined;
    const server = new hcloud.Server(
      `${name}-server`,
      {
        serverType: plan.serverType,
        image: args.image,
        location: plan.region,
        sshKeys: keys.map((k) => k.id),
        firewallIds: [firewall.id.apply(Number)],
        publicNets: [{ ipv4Enabled: true, ipv4: args.fixedIp.id.apply(Number), ipv6Enabled: true }],
        userData: args.userData,
        deleteProtection: true,
        rebuildProtection: true,
        labels,
      },
      { ...opts, ...PROTECTED, ignoreChanges: SERVER_IGNORES },
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
    return { ipv4: args.fixedIp.address, ipv6: server.ipv6Address, serverId: server.id, ready };
  },
};
