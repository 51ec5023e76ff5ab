/**
 * DigitalOcean implementation of the machine interface: SSH keys, a VPC, a droplet with the
 * monitoring agent, a reserved IPv4 kept apart from the droplet, a data volume, and a cloud
 * firewall. DigitalOcean has no server delete protection: Pulumi's `protect` stands in.
 * Provider docs: https://www.pulumi.com/registry/packages/digitalocean/
 */
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { ANYWHERE, type ServerPlan } from "../plan/plan";
import { type FixedIp, type Machine, type MachineArgs, type MachineProvider, portText, PROTECTED, SERVER_IGNORES } from "./machine";

export const digitaloceanProvider: MachineProvider = {
  createFixedIp(name: string, plan: ServerPlan, parent: pulumi.Resource): FixedIp {
    const ip = new digitalocean.ReservedIp(`${name}-ipv4`, { region: plan.region }, { parent, ...PROTECTED });
    return { address: ip.ipAddress, id: ip.id };
  },

  createMachine(name: string, args: MachineArgs, parent: pulumi.Resource): Machine {
    const { plan } = args;
    const opts = { parent };
    const tags = ["saas-vps", `saas-vps-${plan.name}`];
    const keys = args.sshPublicKeys.map((publicKey, i) => new digitalocean.SshKey(`${name}-key-${i}`, { publicKey }, opts));
    const vpc = new digitalocean.Vpc(`${name}-vpc`, { region: plan.region, description: "saas-vps private network" }, opts);
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
          { ...opts, ...PROTECTED },
        )
      : undefined;
    const droplet = new digitalocean.Droplet(
      `${name}-server`,
      {
        image: args.image,
        region: plan.region,
        size: plan.serverType,
        sshKeys: keys.map((k) => k.fingerprint),
        vpcUuid: vpc.id,
        ipv6: true,
        monitoring: true,
        userData: args.userData,
        tags,
      },
      { ...opts, ...PROTECTED, ignoreChanges: SERVER_IGNORES },
    );
    const dropletId = droplet.id.apply(Number);
    const ready: pulumi.Resource[] = [
      droplet,
      new digitalocean.ReservedIpAssignment(`${name}-ipv4-assign`, { ipAddress: args.fixedIp.address, dropletId }, opts),
    ];
    if (volume) {
      ready.push(new digitalocean.VolumeAttachment(`${name}-${plan.volume!.name}-attach`, { dropletId, volumeId: volume.id }, opts));
    }
    new digitalocean.Firewall(
      `${name}-fw`,
      {
        dropletIds: [dropletId],
        inboundRules: plan.firewall.map((rule) => ({ protocol: rule.protocol, portRange: portText(rule), sourceAddresses: rule.sources })),
        // A DigitalOcean firewall drops outbound traffic it does not list: apt, ACME, S3 and SMTP need it open.
        outboundRules: [
          { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
      },
      opts,
    );
    return { ipv4: args.fixedIp.address, ipv6: droplet.ipv6Address, serverId: droplet.id, ready };
  },
};
