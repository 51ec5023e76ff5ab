/**
 * The policy pack's rules (policy/policies.ts) against the resources our own program declares
 * under Pulumi mocks — both providers, every stage, the managed database included — and against
 * hand-made resources that break each rule. The rules are called directly, and through the
 * `validateResource` of the policies handed to the PolicyPack, as the policy engine calls them;
 * no PolicyPack is constructed here (it would start a policy server in this process).
 * The same runs check that protection follows the protected kinds (components/protection.ts).
 */
import assert from "node:assert/strict";
import * as digitalocean from "@pulumi/digitalocean";
import * as hcloud from "@pulumi/hcloud";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import type { ResourceValidationArgs, ResourceValidation } from "@pulumi/policy";
import { unwrapSecrets } from "../../cli/lib/pulumiMocks";
import { PROTECTED_KINDS } from "../../components/protection";
import {
  hetznerProtection,
  loadBalancerPrivateTargets,
  POLICIES,
  privateBuckets,
  privatePortsNotPublic,
  protectedKinds,
  RULES,
  sshKeyNamePerStack,
  userDataUnderCap,
  type PolicyResource,
  type ResourceRule,
} from "../../policy/policies";
import { minimalRaw, separatedRaw } from "../support/fixtures";
import { runProgram } from "../support/mockProgram";

type Provider = "hetzner" | "digitalocean";

interface Variant {
  label: string;
  provider: Provider;
  raw: Record<string, string>;
  /** Protected kinds this variant must declare (and protect). */
  kinds: string[];
}

const VARIANTS: Variant[] = [
  { label: "hetzner, mvp", provider: "hetzner", raw: minimalRaw("hetzner"), kinds: ["server", "data volume", "fixed IP", "generated secret", "SSH host key"] },
  { label: "digitalocean, mvp", provider: "digitalocean", raw: minimalRaw("digitalocean"), kinds: ["server", "data volume", "fixed IP", "bucket", "private network", "generated secret", "SSH host key"] },
  {
    label: "hetzner, separated",
    provider: "hetzner",
    raw: { ...minimalRaw("hetzner"), ...separatedRaw("hetzner") },
    kinds: ["server", "data volume", "fixed IP", "private network", "generated secret", "SSH host key"],
  },
  {
    label: "digitalocean, separated",
    provider: "digitalocean",
    raw: { ...minimalRaw("digitalocean"), ...separatedRaw("digitalocean") },
    kinds: ["server", "data volume", "fixed IP", "bucket", "private network", "generated secret", "SSH host key"],
  },
  {
    label: "digitalocean, separated, managed database",
    provider: "digitalocean",
    raw: { ...minimalRaw("digitalocean"), ...separatedRaw("digitalocean"), databaseMode: "managed" },
    kinds: ["server", "fixed IP", "bucket", "private network", "database cluster", "database", "generated secret", "SSH host key"],
  },
];

/** Types each rule looks at, and that the program must declare so that passing means something. */
const RULE_SUBJECTS: Record<Provider, string[]> = {
  hetzner: ["hcloud:index/firewall:Firewall", "hcloud:index/sshKey:SshKey", "hcloud:index/server:Server"],
  digitalocean: ["digitalocean:index/firewall:Firewall", "digitalocean:index/sshKey:SshKey", "digitalocean:index/droplet:Droplet", "digitalocean:index/spacesBucket:SpacesBucket"],
};

const URN = (type: string, name = "r", stack = "prod") => `urn:pulumi:${stack}::saas-vps::saas-vps:stack:SaasStack$${type}::${name}`;
const resource = (type: string, props: Record<string, any>, extra: Partial<PolicyResource> = {}): PolicyResource => ({ type, props, urn: URN(type), protect: true, ...extra });

for (const variant of VARIANTS) {
  describe(`policy pack on our program under mocks: ${variant.label}`, function () {
    this.timeout(120_000);
    let resources: Array<PolicyResource & { name: string }>;

    before(async () => {
      const run = await runProgram(variant.raw);
      resources = run.mocks.resources.map((r) => ({
        name: r.name,
        type: r.type,
        // The policy engine hands policies their inputs with secrets unwrapped.
        props: unwrapSecrets(r.inputs),
        urn: run.urns.get(r.name) ?? assert.fail(`no URN for ${r.name}`),
        protect: run.options.get(r.name)?.protect === true,
      }));
    });

    it("declares what the rules look at (firewalls, SSH keys, servers with user-data, buckets)", () => {
      const types = new Set(resources.map((r) => r.type));
      for (const type of RULE_SUBJECTS[variant.provider]) assert.ok(types.has(type), `no ${type}`);
      for (const server of resources.filter((r) => r.type.endsWith("/server:Server") || r.type.endsWith("/droplet:Droplet"))) {
        assert.equal(typeof server.props.userData, "string", `${server.name} has no user-data to check`);
      }
    });

    for (const rule of RULES) {
      it(`passes ${rule.name}`, () => {
        const violations = resources.flatMap((r) => rule.check(r).map((message) => `${r.type} ${r.name}: ${message}`));
        assert.deepEqual(violations, []);
      });
    }

    it("protects exactly the resources of a protected kind, and declares the kinds this stage holds", () => {
      for (const r of resources) {
        assert.equal(r.protect, PROTECTED_KINDS[r.type] !== undefined, `${r.type} ${r.name}: protect is ${r.protect}`);
      }
      const declared = new Set(resources.filter((r) => r.protect).map((r) => PROTECTED_KINDS[r.type]));
      assert.deepEqual([...declared].sort(), [...variant.kinds].sort());
    });
  });
}

describe("policy pack: each rule against hand-made resources", () => {
  const violations = (rule: ResourceRule, r: PolicyResource) => rule.check(r);

  it("protected kinds must be protected", () => {
    assert.match(violations(protectedKinds, resource("digitalocean:index/volume:Volume", {}, { protect: false }))[0], /this data volume .* must be protected/);
    assert.deepEqual(violations(protectedKinds, resource("digitalocean:index/volume:Volume", {})), []);
    assert.deepEqual(violations(protectedKinds, resource("digitalocean:index/firewall:Firewall", {}, { protect: false })), []);
  });

  it("Hetzner servers keep delete and rebuild protection; volumes, IPs and networks delete protection", () => {
    assert.deepEqual(violations(hetznerProtection, resource("hcloud:index/server:Server", { deleteProtection: true })), ["hcloud:index/server:Server must set rebuildProtection: true; got undefined"]);
    assert.equal(violations(hetznerProtection, resource("hcloud:index/volume:Volume", { deleteProtection: false })).length, 1);
    assert.equal(violations(hetznerProtection, resource("hcloud:index/primaryIp:PrimaryIp", {})).length, 1);
    assert.deepEqual(violations(hetznerProtection, resource("hcloud:index/network:Network", { deleteProtection: true })), []);
  });

  it("no cloud firewall opens 5432, 6379 or 9100 to the world; other ports and private sources pass", () => {
    const hetznerRule = (port: string, sourceIps: string[], protocol = "tcp") => resource("hcloud:index/firewall:Firewall", { rules: [{ direction: "in", protocol, port, sourceIps }] });
    assert.match(violations(privatePortsNotPublic, hetznerRule("5432", ["0.0.0.0/0"]))[0], /rules\[0\] opens 5432 to the world/);
    assert.match(violations(privatePortsNotPublic, hetznerRule("6000-9200", ["203.0.113.7/32", "::/0"]))[0], /opens 6379, 9100 to the world/);
    assert.match(violations(privatePortsNotPublic, hetznerRule("any", ["0.0.0.0/0"], "udp"))[0], /opens 5432, 6379, 9100/);
    // Valkey (the cache server of stage scaled) on its own port, for either IP version, on either provider.
    assert.match(violations(privatePortsNotPublic, hetznerRule("6379", ["0.0.0.0/0"]))[0], /rules\[0\] opens 6379 to the world/);
    assert.deepEqual(violations(privatePortsNotPublic, hetznerRule("6379", ["10.20.0.10/32", "10.20.0.20/32"])), []);
    assert.deepEqual(violations(privatePortsNotPublic, hetznerRule("5432", ["10.20.0.0/16"])), []);
    assert.deepEqual(violations(privatePortsNotPublic, hetznerRule("443", ["0.0.0.0/0", "::/0"])), []);
    assert.deepEqual(violations(privatePortsNotPublic, hetznerRule("", ["0.0.0.0/0"], "icmp")), []);
    const doRule = (portRange: string | undefined, sourceAddresses: string[]) => resource("digitalocean:index/firewall:Firewall", { inboundRules: [{ protocol: "tcp", portRange, sourceAddresses }] });
    assert.match(violations(privatePortsNotPublic, doRule("9100", ["::/0"]))[0], /inboundRules\[0\] opens 9100/);
    assert.match(violations(privatePortsNotPublic, doRule(undefined, ["0.0.0.0/0"]))[0], /opens 5432, 6379, 9100/);
    assert.match(violations(privatePortsNotPublic, doRule("6379", ["::/0"]))[0], /inboundRules\[0\] opens 6379 to the world/);
    assert.deepEqual(violations(privatePortsNotPublic, doRule("1-65535", ["198.51.100.0/24"])), []);
    const dbFirewall = (rules: unknown[]) => resource("digitalocean:index/databaseFirewall:DatabaseFirewall", { rules });
    assert.match(violations(privatePortsNotPublic, dbFirewall([{ type: "droplet", value: "101" }, { type: "ip_addr", value: "0.0.0.0/0" }]))[0], /rules\[1\] admits 0\.0\.0\.0\/0/);
    assert.deepEqual(violations(privatePortsNotPublic, dbFirewall([{ type: "droplet", value: "101" }])), []);
  });

  it("buckets and their objects are private", () => {
    assert.match(violations(privateBuckets, resource("digitalocean:index/spacesBucket:SpacesBucket", { acl: "public-read" }))[0], /acl is public-read/);
    assert.equal(violations(privateBuckets, resource("digitalocean:index/spacesBucketObject:SpacesBucketObject", { acl: "public-read" }, { protect: false })).length, 1);
    assert.deepEqual(violations(privateBuckets, resource("digitalocean:index/spacesBucket:SpacesBucket", { acl: "private" })), []);
  });

  it("user-data fits each provider's own cap: 32 KiB on Hetzner, 64 KiB on DigitalOcean", () => {
    const of = (bytes: number) => "#".repeat(bytes);
    assert.match(violations(userDataUnderCap, resource("hcloud:index/server:Server", { userData: of(32 * 1024 + 1) }))[0], /userData is 32769 bytes; the provider refuses more than 32768/);
    assert.deepEqual(violations(userDataUnderCap, resource("hcloud:index/server:Server", { userData: of(32 * 1024) })), []);
    assert.deepEqual(violations(userDataUnderCap, resource("digitalocean:index/droplet:Droplet", { userData: of(32 * 1024 + 1) })), []);
    assert.equal(violations(userDataUnderCap, resource("digitalocean:index/droplet:Droplet", { userData: of(64 * 1024 + 1) })).length, 1);
  });

  it("load balancers reach their targets on private addresses", () => {
    const target = (props: Record<string, unknown>) => resource("hcloud:index/loadBalancerTarget:LoadBalancerTarget", props, { protect: false });
    assert.match(violations(loadBalancerPrivateTargets, target({ type: "server", serverId: 7 }))[0], /must set usePrivateIp: true/);
    assert.deepEqual(violations(loadBalancerPrivateTargets, target({ type: "server", serverId: 7, usePrivateIp: true })), []);
    assert.match(violations(loadBalancerPrivateTargets, target({ type: "ip", ip: "203.0.113.5" }))[0], /not a private address/);
    assert.deepEqual(violations(loadBalancerPrivateTargets, target({ type: "ip", ip: "10.20.0.11" })), []);
    assert.equal(violations(loadBalancerPrivateTargets, resource("hcloud:index/loadBalancer:LoadBalancer", { targets: [{ type: "server", serverId: 1, usePrivateIp: true }, { type: "server", serverId: 2 }] })).length, 1);
    assert.match(violations(loadBalancerPrivateTargets, resource("digitalocean:index/loadBalancer:LoadBalancer", { dropletIds: [1, 2] }))[0], /vpcUuid is not set/);
    assert.deepEqual(violations(loadBalancerPrivateTargets, resource("digitalocean:index/loadBalancer:LoadBalancer", { dropletIds: [1, 2], vpcUuid: "vpc-1" })), []);
  });

  it("SSH key names hold the stack's name", () => {
    const key = (props: Record<string, unknown>, stack: string) => resource("hcloud:index/sshKey:SshKey", props, { urn: URN("hcloud:index/sshKey:SshKey", "k", stack), protect: false });
    assert.match(violations(sshKeyNamePerStack, key({ name: "deploy-key" }, "prod"))[0], /does not hold the stack's name \(prod\)/);
    assert.match(violations(sshKeyNamePerStack, key({}, "prod"))[0], /name is not set/);
    assert.deepEqual(violations(sshKeyNamePerStack, key({ name: "saas-prod-app-key-0" }, "prod")), []);
    assert.equal(violations(sshKeyNamePerStack, { ...key({ name: "saas-prod-app-key-0" }, "staging"), type: "digitalocean:index/sshKey:SshKey" }).length, 1);
  });

  it("the policies handed to the PolicyPack report through reportViolation what their rules find", () => {
    const args = (r: PolicyResource) =>
      ({ type: r.type, props: r.props, urn: r.urn, name: "r", opts: { protect: r.protect, ignoreChanges: [], aliases: [], additionalSecretOutputs: [], customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 } }, stackTags: new Map() }) as unknown as ResourceValidationArgs;
    const reports = (name: string, r: PolicyResource) => {
      const policy = POLICIES.find((p) => p.name === name)!;
      assert.equal(policy.enforcementLevel, "mandatory");
      const found: string[] = [];
      (policy.validateResource as ResourceValidation)(args(r), (message) => found.push(message));
      return found;
    };
    assert.deepEqual(POLICIES.map((p) => p.name), RULES.map((r) => r.name));
    assert.equal(reports("protected-kinds-are-protected", resource("hcloud:index/volume:Volume", { deleteProtection: true }, { protect: false })).length, 1);
    assert.deepEqual(reports("protected-kinds-are-protected", resource("hcloud:index/volume:Volume", { deleteProtection: true })), []);
    assert.equal(reports("private-ports-not-public", resource("hcloud:index/firewall:Firewall", { rules: [{ direction: "in", protocol: "tcp", port: "5432", sourceIps: ["0.0.0.0/0"] }] })).length, 1);
  });
});

describe("protected kinds (components/protection.ts)", () => {
  it("name real resource types of the provider SDKs", () => {
    const sdks: Record<string, Record<string, unknown>> = { hcloud, digitalocean, random, tls };
    for (const type of Object.keys(PROTECTED_KINDS)) {
      const [pkg, , className] = type.split(":");
      const cls = sdks[pkg]?.[className] as { __pulumiType?: string } | undefined;
      assert.equal(cls?.__pulumiType, type, `${type} is no resource type of @pulumi/${pkg}`);
    }
  });
});
