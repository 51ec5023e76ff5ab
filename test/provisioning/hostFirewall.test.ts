/**
 * The host firewall as rendered, first as text, then loaded by the real nft into a test host: a
 * network namespace with two neighbours (one inside sshAllowedCidrs, one outside), each on its own
 * veth link, and a listener on SSH, HTTP, HTTPS and PostgreSQL's port. Nothing leaves the
 * namespaces this test makes (and removes).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderHostFirewall, renderRuleLines } from "../../provisioning/hostFirewall";
import { planPublicFirewall } from "../../plan/plan";
import { METADATA_ADDRESS } from "../../provisioning/layout";
import { tempDir } from "../support/tools";

describe("host firewall (nftables) rendering", () => {
  it("lets anyone in with one version-free line when both address families are open", () => {
    assert.deepEqual(renderRuleLines({ port: 80, protocol: "tcp", sources: ["0.0.0.0/0", "::/0"], description: "HTTP" }), [
      'tcp dport 80 accept comment "HTTP"',
    ]);
  });

  it("matches listed CIDRs per address family, and an open family by its version alone", () => {
    assert.deepEqual(renderRuleLines({ port: 22, protocol: "tcp", sources: ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/48"], description: "SSH" }), [
      'ip saddr { 203.0.113.0/24, 198.51.100.7/32 } tcp dport 22 accept comment "SSH"',
      'ip6 saddr { 2001:db8::/48 } tcp dport 22 accept comment "SSH"',
    ]);
    assert.deepEqual(renderRuleLines({ port: 443, protocol: "tcp", sources: ["0.0.0.0/0"], description: "HTTPS v4" }), [
      'meta nfproto ipv4 tcp dport 443 accept comment "HTTPS v4"',
    ]);
  });

  it("drops by default, keeps established connections, and never flushes other tables (fail2ban's)", () => {
    const text = renderHostFirewall(planPublicFirewall(["203.0.113.0/24"]));
    assert.match(text, /type filter hook input priority filter; policy drop;/);
    assert.match(text, /ct state established,related accept/);
    assert.doesNotMatch(text, /flush ruleset/);
    assert.match(text, /^table inet saas_vps\ndelete table inet saas_vps\ntable inet saas_vps \{$/m);
  });

  it("lets only root and the agent units' cgroups reach the metadata service (it hands out the user-data); every other way out stays open", () => {
    const text = renderHostFirewall(planPublicFirewall(["203.0.113.0/24"]));
    const output = text.slice(text.indexOf("chain output {"));
    assert.match(output, /type filter hook output priority filter; policy accept;/);
    // Allow lines first, then a reject with no condition but the address: nothing unmatched passes.
    assert.deepEqual(output.match(/^ {4}(?!type)\S.*$/gm), [
      "    ip daddr 169.254.169.254 meta skuid 0 accept",
      "    ip daddr 169.254.169.254 socket cgroupv2 level 2 @metadata_agents accept",
      '    ip daddr 169.254.169.254 reject comment "metadata service: root and agents only"',
    ]);
    assert.match(text, /\n {2}set metadata_agents \{\n {4}type cgroupsv2\n {2}\}\n/);
  });

  it("refuses a plan without an SSH rule (a push of it would lock the admin out)", () => {
    assert.throws(() => renderHostFirewall([{ port: 80, protocol: "tcp", sources: ["0.0.0.0/0"], description: "HTTP" }]), /no SSH \(22\) rule/);
  });
});

const ip = (...args: string[]) => {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
};
const inNs = (ns: string, cmd: string[], input?: string) => spawnSync("ip", ["netns", "exec", ns, ...cmd], { encoding: "utf8", input });

const LISTENER = `
import socket, selectors, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", port)); s.listen(); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept(); conn.close()
`;
const PROBE = `
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close(); print("open")
except socket.timeout: print("dropped")
except ConnectionRefusedError: print("refused")
`;

describe("@real host firewall loaded by nft into a test host", function () {
  this.timeout(60_000);
  const id = randomBytes(3).toString("hex");
  const [server, allowed, other] = ["s", "a", "b"].map((n) => `fw${n}-${id}`);
  const addr = { serverA: "10.231.1.1", allowed: "10.231.1.2", serverB: "10.231.2.1", other: "10.231.2.2", serverA6: "fd31:1::1", allowed6: "fd31:1::2", serverB6: "fd31:2::1", other6: "fd31:2::2" };
  let listener: ChildProcess | undefined;
  let metadata: ChildProcess | undefined;
  let dir: string;

  const probe = (from: string, host: string, port: number) => inNs(from, ["python3", "-c", PROBE, host, String(port), "1"]).stdout.trim();
  const load = (file: string) => inNs(server, ["nft", "-f", file]);
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  before(async function () {
    if (process.getuid?.() !== 0 || spawnSync("nft", ["--version"]).status !== 0) {
      if (process.env.CI) throw new Error("the host firewall test needs root and nft (npm run setup)");
      console.log("      SKIPPED LOUDLY: needs root and nft (npm run setup)");
      this.skip();
    }
    dir = tempDir("firewall");
    for (const ns of [server, allowed, other]) {
      ip("netns", "add", ns);
      ip("-n", ns, "link", "set", "lo", "up");
    }
    const link = (peer: string, tag: string, serverAddr: string, peerAddr: string, serverAddr6: string, peerAddr6: string) => {
      ip("link", "add", `v${tag}${id}`, "type", "veth", "peer", "name", `v${tag}s${id}`);
      ip("link", "set", `v${tag}${id}`, "netns", peer);
      ip("link", "set", `v${tag}s${id}`, "netns", server);
      ip("-n", peer, "addr", "add", `${peerAddr}/24`, "dev", `v${tag}${id}`);
      ip("-n", server, "addr", "add", `${serverAddr}/24`, "dev", `v${tag}s${id}`);
      ip("-n", peer, "-6", "addr", "add", `${peerAddr6}/64`, "dev", `v${tag}${id}`, "nodad");
      ip("-n", server, "-6", "addr", "add", `${serverAddr6}/64`, "dev", `v${tag}s${id}`, "nodad");
      ip("-n", peer, "link", "set", `v${tag}${id}`, "up");
      ip("-n", server, "link", "set", `v${tag}s${id}`, "up");
    };
    link(allowed, "a", addr.serverA, addr.allowed, addr.serverA6, addr.allowed6);
    link(other, "b", addr.serverB, addr.other, addr.serverB6, addr.other6);
    listener = spawn("ip", ["netns", "exec", server, "python3", "-c", LISTENER, "22", "80", "443", "5432"], { stdio: ["ignore", "pipe", "inherit"] });
    // A stand-in metadata service: the allowed neighbour also answers at the metadata address,
    // routed from the server as a provider's on-link route does.
    ip("-n", allowed, "addr", "add", `${METADATA_ADDRESS}/32`, "dev", `va${id}`);
    ip("-n", server, "route", "add", `${METADATA_ADDRESS}/32`, "via", addr.allowed);
    metadata = spawn("ip", ["netns", "exec", allowed, "python3", "-c", LISTENER, "80"], { stdio: ["ignore", "pipe", "inherit"] });
    for (const child of [listener, metadata]) {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once("data", () => resolve());
        child.once("exit", (code) => reject(new Error(`listener exited ${code}`)));
      });
    }
  });

  after(() => {
    listener?.kill();
    metadata?.kill();
    for (const ns of [server, allowed, other]) spawnSync("ip", ["netns", "del", ns]);
  });

  const AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
  /** A connection from the server to the metadata service, as root or as another user (nobody). */
  const probeMetadata = (asRoot: boolean) =>
    inNs(server, [...(asRoot ? [] : AS_NOBODY), "/usr/bin/python3", "-c", PROBE, METADATA_ADDRESS, "80", "1"]).stdout.trim();

  it("without rules every port answers from both neighbours (the probes can see a difference)", () => {
    assert.equal(probe(other, addr.serverB, 22), "open");
    assert.equal(probe(other, addr.serverB, 5432), "open");
    assert.equal(probeMetadata(false), "open");
  });

  it("with the rendered rules the metadata service answers root and refuses every other user", () => {
    const loaded = load(write("metadata.nft", renderHostFirewall(planPublicFirewall(["10.231.1.0/24"]))));
    assert.equal(loaded.status, 0, loaded.stderr);
    assert.equal(probeMetadata(true), "open");
    assert.equal(probeMetadata(false), "refused");
    assert.equal(inNs(server, [...AS_NOBODY, "/usr/bin/python3", "-c", PROBE, addr.allowed, "80", "1"]).stdout.trim(), "open", "other outbound connections of other users stay open");
  });

  it("with the rendered rules: SSH only from sshAllowedCidrs (IPv4 and IPv6), HTTP(S) from anyone, nothing else", () => {
    const file = write("good.nft", renderHostFirewall(planPublicFirewall(["10.231.1.0/24", "fd31:1::/64"])));
    const loaded = load(file);
    assert.equal(loaded.status, 0, loaded.stderr);
    assert.equal(probe(allowed, addr.serverA, 22), "open");
    assert.equal(probe(allowed, addr.serverA6, 22), "open");
    assert.equal(probe(other, addr.serverB, 22), "dropped");
    assert.equal(probe(other, addr.serverB6, 22), "dropped");
    for (const port of [80, 443]) {
      assert.equal(probe(other, addr.serverB, port), "open");
      assert.equal(probe(other, addr.serverB6, port), "open");
    }
    assert.equal(probe(allowed, addr.serverA, 5432), "dropped");
    assert.equal(probe(other, addr.serverB, 5432), "dropped");
  });

  it("loading it again replaces only our table; another table's drop (a fail2ban ban) still drops what ours accepts", () => {
    const ban = inNs(server, ["nft", "-f", "-"], `table inet f2b-table {\n chain input {\n  type filter hook input priority filter - 1;\n  ip saddr ${addr.allowed} tcp dport 22 drop\n }\n}\n`);
    assert.equal(ban.status, 0, ban.stderr);
    const file = write("wider.nft", renderHostFirewall(planPublicFirewall(["10.231.0.0/16"])));
    assert.equal(load(file).status, 0);
    assert.equal(probe(other, addr.serverB, 22), "open");
    assert.equal(probe(allowed, addr.serverA, 22), "dropped", "the ban must hold although our table accepts the address");
    const tables = inNs(server, ["nft", "list", "tables"]).stdout;
    assert.match(tables, /table inet f2b-table/);
    assert.equal(tables.match(/table inet saas_vps/g)?.length, 1);
    assert.equal(inNs(server, ["nft", "delete", "table", "inet", "f2b-table"]).status, 0);
  });

  it("a rule set that does not load changes nothing: the rules in force stay (never half applied, never locked out)", () => {
    const good = write("narrow.nft", renderHostFirewall(planPublicFirewall(["10.231.1.0/24"])));
    assert.equal(load(good).status, 0);
    const broken = write("broken.nft", renderHostFirewall(planPublicFirewall(["10.231.1.0/24"])).replace('tcp dport 443 accept', "tcp dport 443 acept"));
    const r = load(broken);
    assert.notEqual(r.status, 0);
    assert.equal(probe(other, addr.serverB, 22), "dropped", "the narrow rules must still be in force");
    assert.equal(probe(allowed, addr.serverA, 22), "open");
    assert.equal(probe(other, addr.serverB, 80), "open");
  });
});
