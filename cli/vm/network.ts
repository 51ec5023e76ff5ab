/**
 * The local VMs' networks. Every VM has its own QEMU user-mode NIC (SSH/HTTP forwards on the
 * host's loopback, NAT to the internet, the host at 10.0.2.2). The VMs of a split stack also
 * share a second NIC on the stack's private network: a QEMU multicast socket segment bound to
 * the host's loopback. Ethernet frames travel between the VMs' QEMU processes as UDP datagrams
 * on 127.0.0.1; the host's own IP stack has no interface or route on that network, so the host
 * cannot reach the private addresses (the separated e2e checks it), and nothing leaves the host.
 *
 * The planned private address is configured the way a provider's tooling does it, from outside
 * the user-data: a cloud-init network-config (v2) in the NoCloud seed, matching each NIC by its
 * MAC address. (Matching by `name:` is not an option: cloud-init 25's networkd renderer writes
 * the config id as the interface name then, and the guest comes up offline.)
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";

/** One stack's private segment: the multicast group and UDP port its VMs' QEMUs share on 127.0.0.1. */
export interface PrivateSegment {
  group: string;
  port: number;
}

/** A VM's NIC on the private network. */
export interface PrivateNic {
  segment: PrivateSegment;
  mac: string;
  /** The planned address with the network's prefix length, e.g. 10.20.0.30/16. */
  address: string;
}

/** QEMU's locally administered prefix; the rest of a MAC is ours. */
const MAC_PREFIX = "52:54:00";
const SEGMENT_FILE = "private-network.json";

/**
 * The stack's segment, kept in its run dir so a VM restarted alone (`--server`) joins the same
 * one; made at random on first use (group in 239.255/16, the organisation-local multicast
 * scope), so two stacks running side by side never share frames.
 */
export function ensurePrivateSegment(stackDir: string): PrivateSegment {
  const file = path.join(stackDir, SEGMENT_FILE);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8")) as PrivateSegment;
  const [a, b, p1, p2] = crypto.randomBytes(4);
  const segment: PrivateSegment = { group: `239.255.${a}.${b === 0 ? 1 : b}`, port: 20000 + (((p1 << 8) | p2) % 40000) };
  fs.mkdirSync(stackDir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(segment) + "\n");
  return segment;
}

/**
 * A stable MAC for one NIC of one VM: 52:54:00 then 3 bytes of sha256(stack dir, server, nic).
 * The network-config matches NICs by it, so it must be known before QEMU starts.
 */
export function macFor(stackDir: string, server: string, nic: "public" | "private" | "metadata"): string {
  const h = crypto.createHash("sha256").update(`${path.resolve(stackDir)}\0${server}\0${nic}`).digest();
  return [MAC_PREFIX, ...[...h.subarray(0, 3)].map((x) => x.toString(16).padStart(2, "0"))].join(":");
}

/** `<ip>/<prefix>` for a planned address in the stack's network CIDR. */
export function addressInNetwork(ip: string, networkCidr: string): string {
  const prefix = Number(networkCidr.split("/")[1]);
  if (!Number.isInteger(prefix) || prefix < 8 || prefix > 30) throw new Error(`private network ${networkCidr}: no usable prefix length`);
  return `${ip}/${prefix}`;
}

/**
 * The seed's network-config: the user-mode NIC by DHCP (IPv4 only: QEMU's user network has no
 * DHCPv6, and asking for it stalls the boot), the private NIC with its static address and no
 * gateway (the private network routes nowhere else).
 */
export function renderNetworkConfig(publicMac: string, privateNic: Pick<PrivateNic, "mac" | "address">): string {
  const config = {
    network: {
      version: 2,
      ethernets: {
        public: { match: { macaddress: publicMac }, dhcp4: true, dhcp6: false },
        private: { match: { macaddress: privateNic.mac }, addresses: [privateNic.address], dhcp4: false, dhcp6: false },
      },
    },
  };
  return stringify(config);
}

/** QEMU's arguments for the private NIC: a multicast socket netdev on the host's loopback. */
export function privateNicArgs(nic: PrivateNic): string[] {
  return [
    "-netdev", `socket,id=net1,mcast=${nic.segment.group}:${nic.segment.port},localaddr=127.0.0.1`,
    "-device", `virtio-net-pci,netdev=net1,mac=${nic.mac}`,
  ];
}
