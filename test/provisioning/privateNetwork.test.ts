/**
 * 15-private-network as shipped, in a network namespace of its own: it finds the address inside
 * the stack's private network on whatever interface holds it, ignores addresses outside it, and
 * gives up after its bound with an error naming the network it waited for.
 * (Waiting for an address that comes late: test/provisioning/postgresAccess.test.ts.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadScript } from "../../provisioning/scripts";
import { tempDir } from "../support/tools";

describe("@real 15-private-network: waits for the private address on any interface", function () {
  this.timeout(60_000);
  const ns = `pn-${randomBytes(3).toString("hex")}`;
  let dir: string;

  const step = (cidr: string, wait: number) => {
    const env = join(dir, "bootstrap.env");
    writeFileSync(env, `PRIVATE_NETWORK_CIDR="${cidr}"\nPRIVATE_IPV4_FILE="${dir}/run/private-ipv4"\nPRIVATE_NETWORK_WAIT="${wait}"\n`);
    return spawnSync("ip", ["netns", "exec", ns, "bash", join(dir, "15-private-network")], { encoding: "utf8", env: { ...process.env, BOOTSTRAP_ENV: env } });
  };

  before(function () {
    if (process.getuid?.() !== 0 || spawnSync("ip", ["-V"]).status !== 0) {
      if (process.env.CI) throw new Error("the private network step test needs root and ip netns");
      console.log("      SKIPPED LOUDLY: needs root and ip netns");
      this.skip();
    }
    dir = tempDir("private-network");
    writeFileSync(join(dir, "15-private-network"), loadScript("server/15-private-network"));
    spawnSync("ip", ["netns", "add", ns]);
    // A public-looking address on one interface, the private one on a second with another name.
    for (const [link, address] of [["pub0", "192.0.2.5/24"], ["enp7s0", "10.20.0.30/32"]]) {
      assert.equal(spawnSync("ip", ["-n", ns, "link", "add", link, "type", "veth", "peer", "name", `${link}p`]).status, 0);
      assert.equal(spawnSync("ip", ["-n", ns, "addr", "add", address, "dev", link]).status, 0);
      assert.equal(spawnSync("ip", ["-n", ns, "link", "set", link, "up"]).status, 0);
    }
  });

  after(() => void spawnSync("ip", ["netns", "del", ns]));

  it("records the address inside the network, whatever the interface is called", () => {
    const r = step("10.20.0.0/16", 5);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // Found on the first look; bash's SECONDS counts whole seconds, so a look that straddles a
    // second's boundary reports 1.
    assert.match(r.stdout, /^private network 10\.20\.0\.0\/16: this server is 10\.20\.0\.30 \(waited [01] s\)$/m);
    assert.equal(readFileSync(join(dir, "run", "private-ipv4"), "utf8"), "10.20.0.30\n");
  });

  it("gives up after its bound, naming the network it waited for and the addresses it saw", () => {
    const r = step("10.30.0.0/16", 2);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^no address in the private network 10\.30\.0\.0\/16 on any interface after 2 s \(IPv4 addresses here: .*pub0 192\.0\.2\.5\/24.*enp7s0 10\.20\.0\.30\/32.*\)$/m);
  });

  it("takes no address outside the network for one inside it (a /24 that does not hold 10.20.0.30), and records nothing", () => {
    rmSync(join(dir, "run", "private-ipv4"), { force: true });
    const r = step("10.20.1.0/24", 1);
    assert.equal(r.status, 1, r.stdout);
    assert.ok(!existsSync(join(dir, "run", "private-ipv4")), "a failed wait recorded an address");
  });
});
