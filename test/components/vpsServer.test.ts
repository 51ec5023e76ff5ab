import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import { RecordingMocks, unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { decodeWriteFiles, readStackFile, renderStack, withOverrides } from "../../cli/lib/renderStack";
import { HOST_FIREWALL_PATH } from "../../provisioning/hostFirewall";
import type { PrivateAddresses } from "../../plan/peers";
import type { ServerPlan } from "../../plan/plan";
import type { RenderedServer } from "../../provisioning/server";
import { creationOrder } from "../../components/saasStack";
import { MACHINE_PROVIDERS, type RenderAddresses, VpsServer } from "../../components/vpsServer";
import { ED25519_KEY } from "../support/fixtures";

const PATH = "/etc/saas-vps/peers";

/** A render that writes the addresses it was given into the user-data and into one file. */
function recordingRender(calls: PrivateAddresses[]) {
  return (ipv4: pulumi.Output<string>, addresses: pulumi.Output<PrivateAddresses>): pulumi.Output<RenderedServer> =>
    pulumi.all([ipv4, addresses]).apply(([, known]) => {
      calls.push(known);
      const text = JSON.stringify(known);
      return { userData: `#cloud-config\n# ${text}\n`, userDataBytes: text.length, files: [{ path: PATH, content: text, mode: "0644" }], packages: [] };
    });
}

const dbPlan: ServerPlan = {
  name: "db",
  roles: ["db"],
  serverType: "s-2vcpu-4gb",
  region: "fra1",
  memoryMiB: 4096,
  firewall: [{ port: 5432, protocol: "tcp", sources: [], peers: ["app"], description: "PostgreSQL from app" }],
  privateIp: "10.20.0.30",
  webInstances: 0,
  workerInstances: 0,
};

/** One db server on DigitalOcean under mocks, with the given address sets; what it rendered and sent. */
async function runServer(addresses: RenderAddresses) {
  const mocks = new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, "saas-vps", "unit", false);
  const calls: PrivateAddresses[] = [];
  const plan = { provider: "digitalocean" as const, stage: "separated" as const, servers: [dbPlan], network: { cidr: "10.20.0.0/16" }, database: { kind: "server" as const, server: "db" }, backupBucket: {} as never };
  const network = MACHINE_PROVIDERS.digitalocean.createNetwork("unit", plan, undefined as unknown as pulumi.Resource);
  const vps = new VpsServer("unit-db", {
    plan: dbPlan,
    provider: "digitalocean",
    sshKeys: MACHINE_PROVIDERS.digitalocean.createSshKeys("unit", [ED25519_KEY], undefined as unknown as pulumi.Resource),
    network,
    serverIds: { db: "1", app: "2" },
    render: recordingRender(calls),
    privateAddresses: addresses,
    files: [{ path: PATH, secret: false }],
  });
  await valueOf(vps.userDataBytes);
  await valueOf(vps.ipv6);
  await pulumi.runtime.disconnect();
  const droplet = mocks.ofType("digitalocean:index/droplet:Droplet")[0];
  const push = mocks.ofType("command:remote:Command")[0];
  return { calls, userData: unwrapSecrets(droplet.inputs.userData) as string, pushed: unwrapSecrets(push.inputs.stdin) as string, vps };
}

describe("VpsServer: one render function, two address sets", function () {
  it("renders the user-data from the first-boot addresses and the day-2 pushes from the day-2 addresses", async () => {
    const { calls, userData, pushed } = await runServer({ firstBoot: {}, day2: { app: "10.20.0.7", db: "10.20.0.9" } });
    assert.equal(calls.length, 2);
    assert.ok(userData.includes("# {}\n"), `user-data was rendered from ${userData}`);
    assert.deepEqual(JSON.parse(pushed), { app: "10.20.0.7", db: "10.20.0.9" });
  });

  it("renders once when both sets are the same (addresses planned)", async () => {
    const planned = { app: "10.20.0.10", db: "10.20.0.30" };
    const { calls, userData, pushed } = await runServer({ firstBoot: planned });
    assert.equal(calls.length, 1);
    assert.ok(userData.includes(`# ${JSON.stringify(planned)}\n`));
    assert.deepEqual(JSON.parse(pushed), planned);
  });

  it("exposes the droplet's assigned VPC address", async () => {
    const { vps } = await runServer({ firstBoot: {} });
    const address = await valueOf(vps.privateIpv4!);
    assert.match(address, /^10\.20\.\d+\.\d+$/);
    assert.notEqual(address, dbPlan.privateIp, "the plan's placeholder leaked through");
  });
});

describe("SaasStack: creation order", function () {
  const named = (name: string, peers?: string[]): ServerPlan => ({ ...dbPlan, name, firewall: peers ? [{ ...dbPlan.firewall[0], peers }] : [] });

  it("declares the servers others reach over the private network first, the rest in plan order", () => {
    const order = creationOrder([named("app"), named("worker"), named("db", ["app", "worker"])]).map((s) => s.name);
    assert.deepEqual(order, ["db", "app", "worker"]);
  });

  it("declares each server before every server it admits, also across chains (db, replica, the certificate's issuer, its followers)", () => {
    const plan = [named("app", ["app-2"]), named("app-2"), named("worker"), named("db", ["app", "app-2", "worker", "replica"]), named("replica", ["app", "app-2"])];
    assert.deepEqual(creationOrder(plan).map((s) => s.name), ["db", "worker", "replica", "app", "app-2"]);
  });

  it("refuses servers that admit each other in a cycle", () => {
    assert.throws(() => creationOrder([named("a", ["b"]), named("b", ["a"])]), /cycle: a, b/);
  });

  it("keeps the plan's order when no server is reached over the private network (mvp)", () => {
    assert.deepEqual(creationOrder([named("app"), named("worker")]).map((s) => s.name), ["app", "worker"]);
  });
});

describe("SaasStack: the local VM's render of a DigitalOcean stack", function () {
  it("uses the planned private addresses, which the VM's network-config attaches, not the ones DigitalOcean would assign", async () => {
    const file = withOverrides(readStackFile(join(__dirname, "..", "..", "Pulumi.separated.yaml")), {
      provider: "digitalocean",
      region: "fra1",
      serverType: "s-2vcpu-4gb",
      dbServerType: "s-2vcpu-4gb",
    });
    const render = await renderStack("separated", file, "qemu");
    const db = render.servers.find((s) => s.name === "db")!;
    const nft = decodeWriteFiles(db.userData).get(HOST_FIREWALL_PATH)!;
    const rule = nft.split("\n").find((line) => /tcp dport 5432\b/.test(line)) ?? "";
    assert.match(rule, /ip saddr \{ 10\.20\.0\.10\/32, 10\.20\.0\.20\/32 \}/);
  });
});
