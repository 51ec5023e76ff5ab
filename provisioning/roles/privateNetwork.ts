/**
 * What every server of a split stage gets for the stack's private network: the first-boot step
 * that waits until the server has its private address (on whatever interface the provider puts
 * it) and records it for the steps after it. Nothing here names an interface or an address: the
 * provider assigns them (DigitalOcean only when the droplet is created).
 */
import { PRIVATE_IPV4_FILE } from "../layout";
import type { RoleContribution } from "./contribution";

export interface PrivateNetworkInput {
  /** The stack's private network (RFC 1918 CIDR): the address looked for lies inside it. */
  cidr: string;
}

/**
 * How long first boot waits for the private address. The providers attach it around the time the
 * server boots, as they do the data volume (10-data-volume waits 120 s for that); a bit longer,
 * since on Hetzner the interface is configured only once its device shows up.
 */
export const PRIVATE_NETWORK_WAIT_SECONDS = 180;

export function renderPrivateNetwork(input: PrivateNetworkInput): RoleContribution {
  return {
    files: [],
    // iproute2 finds the address (`ip address show to <cidr>`); Debian has it, listed so it is said.
    packages: ["iproute2"],
    steps: ["15-private-network"],
    units: [],
    settings: { PRIVATE_NETWORK_CIDR: input.cidr, PRIVATE_IPV4_FILE, PRIVATE_NETWORK_WAIT: String(PRIVATE_NETWORK_WAIT_SECONDS) },
  };
}
