/**
 * The policy pack's rules, each a small pure function of one resource (type, inputs, URN, protect
 * flag) that returns its violations, so tests call them without a policy engine. policy/index.ts
 * hands POLICIES to `new PolicyPack`; `pulumi preview --policy-pack policy` runs them on every
 * resource before anything is created. Every rule is mandatory: a violation fails the preview.
 */
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { PROTECTED_KINDS } from "../components/protection";
import { parseCidr, isPrivateIpv4Cidr } from "../config/validators";
import { NEVER_PUBLIC_PORTS } from "../plan/plan";
import { DIGITALOCEAN_USER_DATA_LIMIT_BYTES, USER_DATA_LIMIT_BYTES } from "../provisioning/cloudInit";
import { parseUrn } from "../cli/lib/previewJson";

/** What a rule sees of a resource: its type, its inputs (secrets unwrapped, as the policy engine gives them), URN and protect flag. */
export interface PolicyResource {
  type: string;
  props: Record<string, any>;
  urn: string;
  protect: boolean;
}

export interface ResourceRule {
  name: string;
  description: string;
  /** The violations of one resource; empty when it complies or the rule does not concern it. */
  check(resource: PolicyResource): string[];
}

// --- protection ------------------------------------------------------------------------------

/** Resources of a protected kind (components/protection.ts) carry Pulumi's protect flag. */
export const protectedKinds: ResourceRule = {
  name: "protected-kinds-are-protected",
  description: "Servers, volumes, fixed IPs, buckets, databases, load balancers, networks and generated secrets are protected.",
  check: ({ type, protect }) => (PROTECTED_KINDS[type] !== undefined && !protect ? [`this ${PROTECTED_KINDS[type]} (${type}) must be protected (protect: true)`] : []),
};

/** Hetzner's own protection flags, per type that has them: Pulumi's protect does not stop the console or the API. */
export const HETZNER_PROTECTION_FLAGS: Readonly<Record<string, readonly string[]>> = {
  "hcloud:index/server:Server": ["deleteProtection", "rebuildProtection"],
  "hcloud:index/volume:Volume": ["deleteProtection"],
  "hcloud:index/primaryIp:PrimaryIp": ["deleteProtection"],
  "hcloud:index/floatingIp:FloatingIp": ["deleteProtection"],
  "hcloud:index/network:Network": ["deleteProtection"],
  "hcloud:index/loadBalancer:LoadBalancer": ["deleteProtection"],
};

export const hetznerProtection: ResourceRule = {
  name: "hetzner-protection-flags",
  description: "Hetzner resources that have delete (and rebuild) protection have it on.",
  check: ({ type, props }) => (HETZNER_PROTECTION_FLAGS[type] ?? []).filter((flag) => props[flag] !== true).map((flag) => `${type} must set ${flag}: true; got ${JSON.stringify(props[flag])}`),
};

// --- firewalls -------------------------------------------------------------------------------

/** A source that is the whole internet: a network of prefix length 0 (0.0.0.0/0, ::/0). */
function isWorld(source: string): boolean {
  return parseCidr(source.trim())?.bits === 0;
}

/** The ports a rule's port text covers, as [first, last]; "any", "all", "0" or none mean every port. */
export function portSpan(port: unknown): [number, number] | undefined {
  if (port === undefined || port === null || port === "" || port === "any" || port === "all" || port === "0") return [1, 65535];
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(String(port).trim());
  if (!match) return undefined;
  return [Number(match[1]), Number(match[2] ?? match[1])];
}

/** The never-public ports one inbound rule opens to the world; a port text we cannot read counts as all of them. */
export function worldOpenedPorts(protocol: unknown, port: unknown, sources: unknown): number[] {
  if (protocol !== "tcp" && protocol !== "udp") return [];
  if (!Array.isArray(sources) || !sources.some((s) => typeof s === "string" && isWorld(s))) return [];
  const span = portSpan(port);
  if (!span) return [...NEVER_PUBLIC_PORTS];
  return NEVER_PUBLIC_PORTS.filter((p) => p >= span[0] && p <= span[1]);
}

export const privatePortsNotPublic: ResourceRule = {
  name: "private-ports-not-public",
  description: `No cloud firewall opens ${NEVER_PUBLIC_PORTS.join(", ")} (database, cache, metrics) to 0.0.0.0/0 or ::/0; no database firewall admits the world.`,
  check: ({ type, props }) => {
    const say = (ports: number[], where: string) => (ports.length > 0 ? [`${where} opens ${ports.join(", ")} to the world (0.0.0.0/0 or ::/0); these ports are reached over the private network only`] : []);
    switch (type) {
      case "hcloud:index/firewall:Firewall":
        return ((props.rules ?? []) as any[]).flatMap((rule, i) => (rule.direction === "in" ? say(worldOpenedPorts(rule.protocol, rule.port, rule.sourceIps), `rules[${i}]`) : []));
      case "digitalocean:index/firewall:Firewall":
        return ((props.inboundRules ?? []) as any[]).flatMap((rule, i) => say(worldOpenedPorts(rule.protocol, rule.portRange, rule.sourceAddresses), `inboundRules[${i}]`));
      case "digitalocean:index/databaseFirewall:DatabaseFirewall":
        return ((props.rules ?? []) as any[]).flatMap((rule, i) =>
          rule.type === "ip_addr" && typeof rule.value === "string" && isWorld(rule.value) ? [`rules[${i}] admits ${rule.value} to the database (admit droplets by id)`] : [],
        );
      default:
        return [];
    }
  },
};

// --- buckets ---------------------------------------------------------------------------------

const PUBLIC_ACLS = ["public-read", "public-read-write"];

export const privateBuckets: ResourceRule = {
  name: "buckets-private",
  description: "Spaces buckets and their objects are private (no public-read ACL).",
  check: ({ type, props }) =>
    (type === "digitalocean:index/spacesBucket:SpacesBucket" || type === "digitalocean:index/spacesBucketObject:SpacesBucketObject") && PUBLIC_ACLS.includes(props.acl)
      ? [`acl is ${props.acl}; the app serves files itself, so buckets stay private`]
      : [],
};

// --- user-data -------------------------------------------------------------------------------

/** Each provider's user-data cap, by server type. */
export const USER_DATA_CAPS: Readonly<Record<string, number>> = {
  "hcloud:index/server:Server": USER_DATA_LIMIT_BYTES,
  "digitalocean:index/droplet:Droplet": DIGITALOCEAN_USER_DATA_LIMIT_BYTES,
};

export const userDataUnderCap: ResourceRule = {
  name: "user-data-under-cap",
  description: "A server's user-data fits its provider's cap (Hetzner 32 KiB, DigitalOcean 64 KiB).",
  check: ({ type, props }) => {
    const cap = USER_DATA_CAPS[type];
    if (cap === undefined || typeof props.userData !== "string") return [];
    const bytes = Buffer.byteLength(props.userData, "utf8");
    return bytes > cap ? [`userData is ${bytes} bytes; the provider refuses more than ${cap}`] : [];
  },
};

// --- load balancers --------------------------------------------------------------------------

function isPrivateAddress(ip: unknown): boolean {
  const cidr = typeof ip === "string" ? parseCidr(`${ip}/32`) : undefined;
  return cidr !== undefined && isPrivateIpv4Cidr(cidr);
}

/** A Hetzner target (LoadBalancerTarget, or a LoadBalancer's inline target) reaches its server privately. */
function hetznerTargetProblems(target: Record<string, any>, where: string): string[] {
  if (target.type === "ip") return isPrivateAddress(target.ip) ? [] : [`${where}: ip target ${JSON.stringify(target.ip)} is not a private address`];
  return target.usePrivateIp === true ? [] : [`${where}: a ${target.type ?? "server"} target must set usePrivateIp: true`];
}

export const loadBalancerPrivateTargets: ResourceRule = {
  name: "load-balancer-private-targets",
  description: "Load balancers reach their targets over the private network.",
  check: ({ type, props }) => {
    switch (type) {
      case "hcloud:index/loadBalancerTarget:LoadBalancerTarget":
        return hetznerTargetProblems(props, "target");
      case "hcloud:index/loadBalancer:LoadBalancer":
        return ((props.targets ?? []) as any[]).flatMap((target, i) => hetznerTargetProblems(target, `targets[${i}]`));
      case "digitalocean:index/loadBalancer:LoadBalancer":
        // In a VPC, a DigitalOcean load balancer forwards to its droplets' private addresses.
        return props.vpcUuid ? [] : ["vpcUuid is not set: the load balancer must sit in the stack's VPC to reach droplets privately"];
      default:
        return [];
    }
  },
};

// --- SSH keys --------------------------------------------------------------------------------

const SSH_KEY_TYPES = ["hcloud:index/sshKey:SshKey", "digitalocean:index/sshKey:SshKey"];

export const sshKeyNamePerStack: ResourceRule = {
  name: "ssh-key-name-per-stack",
  description: "Each stack registers its SSH keys under names that hold the stack's name, so stacks on one provider never share one.",
  check: ({ type, props, urn }) => {
    if (!SSH_KEY_TYPES.includes(type)) return [];
    const stack = parseUrn(urn)?.stack;
    if (!stack) return [`cannot read the stack from the URN ${urn}`];
    if (typeof props.name !== "string") return [`name is not set; it must hold the stack's name (${stack})`];
    return props.name.includes(stack) ? [] : [`name ${JSON.stringify(props.name)} does not hold the stack's name (${stack})`];
  },
};

export const RULES: readonly ResourceRule[] = [protectedKinds, hetznerProtection, privatePortsNotPublic, privateBuckets, userDataUnderCap, loadBalancerPrivateTargets, sshKeyNamePerStack];

/** The rules as @pulumi/policy resource policies (mandatory). */
export const POLICIES: ResourceValidationPolicy[] = RULES.map((rule) => ({
  name: rule.name,
  description: rule.description,
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    for (const message of rule.check({ type: args.type, props: args.props, urn: args.urn, protect: args.opts.protect })) reportViolation(message);
  },
}));
