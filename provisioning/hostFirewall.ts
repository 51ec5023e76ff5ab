/**
 * The host firewall: nftables on every server, rendered from the same planned rules as the
 * provider's cloud firewall (plan/plan.ts), so the two cannot disagree. The cloud firewall is
 * the outer guard; this one still holds when it is missing, detached or (Hetzner) does not
 * filter an interface, and it is the only guard on private networks.
 *
 * Our own table (`inet saas_vps`), never `flush ruleset`: fail2ban keeps its own table beside
 * ours, and a packet must pass every base chain on the input hook, so a ban still drops.
 * The file is one nft transaction: `table` (create if missing), `delete table`, then the whole
 * table. nft applies a file all or nothing, so a rule set that does not load leaves the rules
 * that were there (or none, on first boot: the server stays reachable, never locked out).
 * Syntax: https://wiki.nftables.org/wiki-nftables/index.php/Quick_reference-nftables_in_10_minutes
 */
import { isIPv4 } from "node:net";
import type { RenderedFile } from "./files";
import { CONFIG_DIR, METADATA_ADDRESS } from "./layout";
import { BASE_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export const HOST_FIREWALL_TABLE = "saas_vps";
export const HOST_FIREWALL_PATH = `${CONFIG_DIR}/firewall.nft`;
export const HOST_FIREWALL_UNIT = "saas-firewall.service";
export const NFT = "/usr/sbin/nft";

/**
 * Services besides root's that must reach the metadata service: DigitalOcean's metrics agent runs
 * as its own user (do-agent) and reads the droplet's id, region and auth token there before it
 * sends anything. A unit name, not a user: the user does not exist when the rules first load
 * (DigitalOcean installs the agent during first boot) and nft resolves names only at load. Each
 * unit's drop-in has systemd put its cgroup into the set when it starts (NFTSet=, systemd 254+);
 * on a Hetzner server no such unit exists and the set stays empty.
 */
export const METADATA_AGENT_UNITS = ["do-agent.service"];
const METADATA_AGENT_SET = "metadata_agents";
/** Where an agent unit's drop-in goes (pushed only). */
export const metadataAgentDropInPath = (unit: string) => `${UNIT_DIR}/${unit}.d/saas-metadata.conf`;

/** One inbound allowance; the planner's FirewallRule has this shape. */
export interface HostFirewallRule {
  port: number;
  protocol: "tcp";
  /** CIDRs allowed in; "0.0.0.0/0" and "::/0" mean anyone over that IP version. */
  sources: string[];
  description: string;
}

const ANY_V4 = "0.0.0.0/0";
const ANY_V6 = "::/0";

/**
 * The accept lines of one rule: one per IP version it lets in. Anyone of a version is matched by
 * the version alone; listed CIDRs by an anonymous set of source addresses.
 */
export function renderRuleLines(rule: HostFirewallRule): string[] {
  const v4 = rule.sources.filter((c) => isIPv4(c.split("/")[0]));
  const v6 = rule.sources.filter((c) => !isIPv4(c.split("/")[0]));
  const tail = `${rule.protocol} dport ${rule.port} accept comment ${JSON.stringify(rule.description)}`;
  if (v4.includes(ANY_V4) && v6.includes(ANY_V6)) return [tail];
  const match = (cidrs: string[], any: string, family: "ip" | "ip6", proto: string) =>
    cidrs.includes(any) ? `meta nfproto ${proto} ${tail}` : `${family} saddr { ${cidrs.join(", ")} } ${tail}`;
  return [
    ...(v4.length ? [match(v4, ANY_V4, "ip", "ipv4")] : []),
    ...(v6.length ? [match(v6, ANY_V6, "ip6", "ipv6")] : []),
  ];
}

export function renderHostFirewall(rules: HostFirewallRule[]): string {
  if (!rules.some((r) => r.port === 22)) {
    // Every plan lets SSH in from sshAllowedCidrs; without it a push would lock the admin out.
    throw new Error("host firewall: the planned rules have no SSH (22) rule");
  }
  const lines = [
    "#!/usr/sbin/nft -f",
    "# Rendered by saas-vps (provisioning/hostFirewall.ts) from the stack plan's inbound rules,",
    "# the same rules as the provider's cloud firewall. Pushed again on change. Do not edit here.",
    `table inet ${HOST_FIREWALL_TABLE}`,
    `delete table inet ${HOST_FIREWALL_TABLE}`,
    `table inet ${HOST_FIREWALL_TABLE} {`,
    "  chain input {",
    "    type filter hook input priority filter; policy drop;",
    "    ct state established,related accept",
    "    ct state invalid drop",
    '    iifname "lo" accept',
    // Path MTU discovery and ping; IPv6 cannot even find its neighbours without ICMPv6.
    "    meta l4proto icmp accept",
    "    meta l4proto ipv6-icmp accept",
    // DHCP lease renewals (the providers hand out addresses by DHCP; replies are not
    // always tracked as part of a connection).
    '    udp sport 67 udp dport 68 accept comment "DHCPv4 replies"',
    '    ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment "DHCPv6 replies"',
    ...rules.flatMap(renderRuleLines).map((l) => `    ${l}`),
    "  }",
    // Outbound stays open but for the metadata service, which hands the user-data (first-boot
    // secrets) to anyone who asks: only root's sockets (cloud-init, the provider's root agents)
    // and the sockets of the agent units in the set reach it.
    `  set ${METADATA_AGENT_SET} {`,
    "    type cgroupsv2",
    "  }",
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    // Allow, then reject the rest: a negated cgroup match is false for a socket whose cgroup is
    // not that deep (the root cgroup), which would let it through.
    `    ip daddr ${METADATA_ADDRESS} meta skuid 0 accept`,
    `    ip daddr ${METADATA_ADDRESS} socket cgroupv2 level 2 @${METADATA_AGENT_SET} accept`,
    `    ip daddr ${METADATA_ADDRESS} reject comment "metadata service: root and agents only"`,
    "  }",
    "}",
    "",
  ];
  return lines.join("\n");
}

/**
 * Loads the rule set at boot before the network comes up (as Debian's nftables.service does for
 * /etc/nftables.conf, which we leave alone), and removes only our table on stop.
 */
export function renderHostFirewallUnit(): string {
  return renderUnit(
    {
      Unit: [
        ["Description", "saas-vps host firewall (nftables table inet saas_vps)"],
        ["Wants", "network-pre.target"],
        ["Before", "network-pre.target shutdown.target"],
        ["Conflicts", "shutdown.target"],
        ["DefaultDependencies", "no"],
      ],
      Service: [
        ["Type", "oneshot"],
        ["RemainAfterExit", "yes"],
        ["ExecStart", `${NFT} -f ${HOST_FIREWALL_PATH}`],
        ["ExecReload", `${NFT} -f ${HOST_FIREWALL_PATH}`],
        // Reloading replaces the table and empties the agents' set: a running agent is restarted
        // so that systemd adds it again ("+": systemctl runs outside this sandbox; --no-block:
        // the agent's drop-in orders it after this unit). At boot the agent starts after us.
        ["ExecReload", `-+/usr/bin/systemctl --no-block try-restart ${METADATA_AGENT_UNITS.join(" ")}`],
        ["ExecStop", `${NFT} delete table inet ${HOST_FIREWALL_TABLE}`],
        ...BASE_SANDBOX,
        ["ProtectSystem", "strict"],
        ["CapabilityBoundingSet", "CAP_NET_ADMIN"],
        ["RestrictAddressFamilies", "AF_NETLINK AF_UNIX"],
        ["IPAddressDeny", "any"],
        ["MemoryDenyWriteExecute", "yes"],
        ["UMask", "0077"],
      ],
      Install: [["WantedBy", "sysinit.target"]],
    },
    "Host firewall: inbound default drop, the stack plan's allowances",
  );
}

export function renderHostFirewallFiles(rules: HostFirewallRule[]): RenderedFile[] {
  return [
    {
      path: HOST_FIREWALL_PATH,
      content: renderHostFirewall(rules),
      mode: "0644",
      // Checked before it replaces the running rules; nft applies all of it or nothing.
      onChange: `${NFT} -c -f ${HOST_FIREWALL_PATH} && systemctl reload-or-restart ${HOST_FIREWALL_UNIT}`,
    },
    { path: `${UNIT_DIR}/${HOST_FIREWALL_UNIT}`, content: renderHostFirewallUnit(), mode: "0644", onChange: "systemctl daemon-reload" },
    ...METADATA_AGENT_UNITS.map(metadataAgentDropIn),
  ];
}

/**
 * The agent starts after the rules and lands in the set. A drop-in for a unit that does not
 * exist does nothing. Pushed only: the agent reaches the metadata service from the push that
 * `pulumi up` runs right after creating the server (a restart), not during the first boot.
 */
function metadataAgentDropIn(unit: string): RenderedFile {
  return {
    path: metadataAgentDropInPath(unit),
    content: [
      "# Rendered by saas-vps (provisioning/hostFirewall.ts): this agent may reach the metadata service.",
      "[Unit]",
      `After=${HOST_FIREWALL_UNIT}`,
      "",
      "[Service]",
      `NFTSet=cgroup:inet:${HOST_FIREWALL_TABLE}:${METADATA_AGENT_SET}`,
      "",
    ].join("\n"),
    mode: "0644",
    // try-restart fails for a unit that does not exist (a Hetzner server, or before the agent's
    // package): restart only one that is there.
    onChange: `systemctl daemon-reload && if systemctl show -p LoadState ${unit} | grep -qx LoadState=loaded; then systemctl try-restart ${unit}; fi`,
    pushOnly: true,
  };
}
