/**
 * A second "host" on this machine: a network namespace joined to this one by a veth pair, the
 * shape of a provider's private network between two servers (its own addresses, its own port
 * space, every packet through the kernel's TCP/IP stack both ways instead of loopback). The
 * MTU is Hetzner's private-network MTU (1450, docs.hetzner.com/cloud/networks), so the
 * segments are sized as they would be there. An optional netem delay on both ends stands in
 * for the private network's round trip, which a veth pair (a few µs) does not have.
 */
import { execFileSync, spawnSync } from "node:child_process";
import crypto from "node:crypto";

export const PRIVATE_NETWORK_MTU = 1450;

export interface PrivateLink {
  namespace: string;
  /** This side's address (the app server's). */
  hostAddress: string;
  /** The namespace's address (the db server's). */
  peerAddress: string;
  /** argv prefix that runs a command inside the namespace. */
  inNamespace(argv: string[]): string[];
  /** Sets the round trip the link adds (half on each direction's egress); 0 removes it. */
  setRoundTripMs(ms: number): void;
  remove(): void;
}

function run(argv: string[]): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
}

/** Whether this kernel has the netem qdisc: tried on a throwaway dummy link in a throwaway namespace. */
export function netemProblem(): string | undefined {
  const ns = `netemcheck-${crypto.randomBytes(3).toString("hex")}`;
  try {
    run(["ip", "netns", "add", ns]);
    run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const r = spawnSync("ip", ["netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "100us"], { encoding: "utf8" });
    return r.status === 0 ? undefined : `tc qdisc add ... netem: ${(r.stderr || r.stdout).trim()}`;
  } finally {
    spawnSync("ip", ["netns", "del", ns]);
  }
}

/**
 * Creates the namespace and the link: `hostAddress` on this side, `peerAddress` inside, both in
 * `prefixBits`. Refuses when this side already routes the peer's address somewhere other than
 * the default route (another engineer's network, a VPN), rather than shadowing it.
 */
export function createPrivateLink(hostAddress: string, peerAddress: string, prefixBits: number): PrivateLink {
  const clash = execFileSync("ip", ["-4", "-o", "route", "show", "match", peerAddress], { encoding: "utf8" })
    .split("\n").filter((l) => l.trim() && !l.startsWith("default"));
  if (clash.length) throw new Error(`this machine already routes ${peerAddress}: ${clash.join("; ")}`);
  const tag = crypto.randomBytes(3).toString("hex");
  const namespace = `benchdb-${tag}`;
  const hostIf = `vbh${tag}`;
  const peerIf = `vbp${tag}`;
  const inNamespace = (argv: string[]) => ["ip", "netns", "exec", namespace, ...argv];
  run(["ip", "netns", "add", namespace]);
  try {
    run(["ip", "-n", namespace, "link", "set", "lo", "up"]);
    run(["ip", "link", "add", hostIf, "mtu", String(PRIVATE_NETWORK_MTU), "type", "veth", "peer", "name", peerIf, "mtu", String(PRIVATE_NETWORK_MTU)]);
    run(["ip", "link", "set", peerIf, "netns", namespace]);
    run(["ip", "addr", "add", `${hostAddress}/${prefixBits}`, "dev", hostIf]);
    run(["ip", "-n", namespace, "addr", "add", `${peerAddress}/${prefixBits}`, "dev", peerIf]);
    run(["ip", "link", "set", hostIf, "up"]);
    run(["ip", "-n", namespace, "link", "set", peerIf, "up"]);
  } catch (e) {
    spawnSync("ip", ["link", "del", hostIf]);
    spawnSync("ip", ["netns", "del", namespace]);
    throw e;
  }
  /** The same tc qdisc command for this side's end and the namespace's end of the pair. */
  const onBothEnds = (args: (dev: string) => string[]) => [["tc", "qdisc", ...args(hostIf)], inNamespace(["tc", "qdisc", ...args(peerIf)])];
  return {
    namespace,
    hostAddress,
    peerAddress,
    inNamespace,
    setRoundTripMs(ms: number) {
      for (const argv of onBothEnds((dev) => ["del", "dev", dev, "root"])) spawnSync(argv[0], argv.slice(1)); // none yet is fine
      if (ms <= 0) return;
      const oneWayUs = String(Math.round((ms * 1000) / 2));
      for (const argv of onBothEnds((dev) => ["add", "dev", dev, "root", "netem", "delay", `${oneWayUs}us`])) run(argv);
    },
    remove() {
      spawnSync("ip", ["link", "del", hostIf]); // deletes its peer in the namespace too
      spawnSync("ip", ["netns", "del", namespace]);
    },
  };
}
