/**
 * (no VM) The local VMs' private network pieces: the seed's network-config, the NICs' MACs, the
 * stack's segment. That the guest really comes up with these (cloud-init 25's networkd renderer
 * matching by MAC, DHCP kept on the user-mode NIC) is proven by test/vm/separated.test.ts.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { addressInNetwork, ensurePrivateSegment, macFor, privateNicArgs, renderNetworkConfig } from "../../cli/vm/network";

describe("local VMs: the private network", function () {
  it("the network-config matches both NICs by MAC: DHCPv4 on the user-mode one, the planned address on the private one, no gateway", () => {
    const doc = parse(renderNetworkConfig("52:54:00:aa:bb:01", { mac: "52:54:00:aa:bb:02", address: "10.20.0.30/16" }));
    assert.equal(doc.network.version, 2);
    const nics = Object.values(doc.network.ethernets) as Record<string, unknown>[];
    assert.equal(nics.length, 2);
    const pub = nics.find((n) => (n.match as { macaddress: string }).macaddress === "52:54:00:aa:bb:01")!;
    const priv = nics.find((n) => (n.match as { macaddress: string }).macaddress === "52:54:00:aa:bb:02")!;
    assert.deepEqual(pub, { match: { macaddress: "52:54:00:aa:bb:01" }, dhcp4: true, dhcp6: false });
    assert.deepEqual(priv, { match: { macaddress: "52:54:00:aa:bb:02" }, addresses: ["10.20.0.30/16"], dhcp4: false, dhcp6: false });
    for (const nic of nics) {
      assert.equal((nic.match as Record<string, unknown>).name, undefined, "matching by name leaves the guest offline under cloud-init 25");
      assert.equal(nic["set-name"], undefined);
    }
  });

  it("MACs are QEMU-prefixed unicast, stable per stack dir, server and NIC, and differ between them", () => {
    const a = macFor("/x/.vm/separated", "db", "private");
    assert.match(a, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(macFor("/x/.vm/separated", "db", "private"), a);
    const others = [macFor("/x/.vm/separated", "app", "private"), macFor("/x/.vm/separated", "db", "public"), macFor("/x/.vm/other", "db", "private")];
    assert.equal(new Set([a, ...others]).size, 4);
  });

  it("the planned address keeps the network's prefix length; a network with no usable prefix is refused", () => {
    assert.equal(addressInNetwork("10.20.0.30", "10.20.0.0/16"), "10.20.0.30/16");
    assert.equal(addressInNetwork("192.168.7.10", "192.168.7.0/24"), "192.168.7.10/24");
    assert.throws(() => addressInNetwork("10.0.0.1", "10.0.0.1/32"), /10\.0\.0\.1\/32: no usable prefix length/);
  });

  it("the segment is made once per stack dir and kept (a VM restarted alone joins the same one); QEMU binds it to loopback", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-net-"));
    try {
      const first = ensurePrivateSegment(dir);
      assert.match(first.group, /^239\.255\.\d{1,3}\.\d{1,3}$/);
      assert.ok(first.port >= 20000 && first.port < 60000, String(first.port));
      assert.deepEqual(ensurePrivateSegment(dir), first);
      const other = fs.mkdtempSync(path.join(os.tmpdir(), "vm-net-"));
      try {
        // Two stacks at once must not share frames (a random group and port; equal only by a 1 in 2^32 chance).
        assert.notDeepEqual(ensurePrivateSegment(other), first);
      } finally {
        fs.rmSync(other, { recursive: true, force: true });
      }
      const args = privateNicArgs({ segment: first, mac: "52:54:00:01:02:03", address: "10.20.0.10/16" });
      assert.deepEqual(args, [
        "-netdev", `socket,id=net1,mcast=${first.group}:${first.port},localaddr=127.0.0.1`,
        "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:01:02:03",
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
