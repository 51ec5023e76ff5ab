/**
 * Network namespaces that stand for servers on one private network (the @real PostgreSQL and load
 * balancer tests): each gets loopback, the hub's namespace holds a bridge, and every other
 * namespace is one veth pair away from it with its address. The hub's own address is left to the
 * caller (one test adds it late, as a provider does after a reboot).
 */
import { spawnSync } from "node:child_process";

export function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/**
 * namespaces: name → namespace; addresses: name → IPv4 of each peer (not the hub); tag: a
 * per-run string that keeps interface names unique (at most 15 characters with 2 letters and "b").
 */
export function bridgeNamespaces(namespaces: Record<string, string>, hub: string, addresses: Record<string, string>, prefixLength: number, tag: string): void {
  for (const n of Object.values(namespaces)) {
    ip("netns", "add", n);
    ip("-n", n, "link", "set", "lo", "up");
  }
  const hubNs = namespaces[hub]!;
  ip("-n", hubNs, "link", "add", "br0", "type", "bridge");
  ip("-n", hubNs, "link", "set", "br0", "up");
  for (const [peer, address] of Object.entries(addresses)) {
    const [here, there] = [`${tag}${peer[0]}`, `${tag}${peer[0]}b`];
    ip("link", "add", here, "type", "veth", "peer", "name", there);
    ip("link", "set", here, "netns", namespaces[peer]!);
    ip("link", "set", there, "netns", hubNs);
    ip("-n", hubNs, "link", "set", there, "master", "br0");
    ip("-n", hubNs, "link", "set", there, "up");
    ip("-n", namespaces[peer]!, "addr", "add", `${address}/${prefixLength}`, "dev", here);
    ip("-n", namespaces[peer]!, "link", "set", here, "up");
  }
}

/**
 * A veth pair straight between two namespaces, each end with its address: a network of its own
 * beside the bridge's, such as a balancer's public side and a client out on the internet.
 * names: the two interfaces (at most 15 characters each, unique per run).
 */
export function linkNamespaces(a: { ns: string; address: string }, b: { ns: string; address: string }, prefixLength: number, names: [string, string]): void {
  ip("link", "add", names[0], "type", "veth", "peer", "name", names[1]);
  for (const [end, name] of [[a, names[0]], [b, names[1]]] as const) {
    ip("link", "set", name, "netns", end.ns);
    ip("-n", end.ns, "addr", "add", `${end.address}/${prefixLength}`, "dev", name);
    ip("-n", end.ns, "link", "set", name, "up");
  }
}
