/**
 * Private addresses of the stack's servers, and the firewall sources they resolve to. The plan
 * names peers (servers) rather than addresses because DigitalOcean assigns VPC addresses itself:
 * there the real address is known only once the droplet exists. A peer whose address is not
 * known yet resolves to the whole private network, which belongs to the stack alone; the day-2
 * push, rendered once every address is known, narrows it to the exact address.
 */
import type { FirewallRule, ServerPlan, StackPlan } from "./plan";
import { LOAD_BALANCER_NAME } from "./scaled";

/** Private address of each server by plan name; undefined while the provider has not assigned it. */
export type PrivateAddresses = Readonly<Record<string, string | undefined>>;

/**
 * The planned addresses (exact on Hetzner and the local VM, placeholders on DigitalOcean), the
 * load balancer's under its plan name: Hetzner attaches it at that address.
 */
export function plannedAddresses(plan: Pick<StackPlan, "servers" | "loadBalancer">): PrivateAddresses {
  const balancer = plan.loadBalancer ? [[plan.loadBalancer.name, plan.loadBalancer.privateIp]] : [];
  return Object.fromEntries([...plan.servers.filter((s) => s.privateIp).map((s) => [s.name, s.privateIp]), ...balancer]);
}

/** A rule's sources with its peers resolved: `<address>/32` each, or the network where unknown. */
export function resolveSources(rule: FirewallRule, addresses: PrivateAddresses, networkCidr: string | undefined): string[] {
  const peers = (rule.peers ?? []).map((peer) => {
    const address = addresses[peer];
    if (address) return `${address}/32`;
    if (!networkCidr) throw new Error(`firewall rule "${rule.description}" names peer ${peer}, but the stack has no private network`);
    return networkCidr;
  });
  const balancer = rule.loadBalancer ? [balancerSource(addresses, networkCidr, rule)] : [];
  return [...new Set([...rule.sources, ...peers, ...balancer])];
}

/**
 * Where the stack's load balancer connects from: its planned address, or on DigitalOcean, which
 * gives it an address of its own that no output names, the private network.
 */
function balancerSource(addresses: PrivateAddresses, networkCidr: string | undefined, rule: FirewallRule): string {
  const address = addresses[LOAD_BALANCER_NAME];
  if (address) return `${address}/32`;
  if (!networkCidr) throw new Error(`firewall rule "${rule.description}" admits the load balancer, but the stack has no private network`);
  return networkCidr;
}

/** The server's rules with every peer resolved to addresses (the host firewall's input). */
export function resolveFirewall(server: Pick<ServerPlan, "firewall">, addresses: PrivateAddresses, networkCidr: string | undefined): FirewallRule[] {
  return server.firewall.map((rule) => ({ port: rule.port, protocol: rule.protocol, sources: resolveSources(rule, addresses, networkCidr), description: rule.description }));
}
