/**
 * Stage scaled with `databaseMode: managed` and `readReplica: true` under Pulumi mocks: the read
 * replica is a read-only node of the DigitalOcean cluster (DatabaseReplica), not a server; it sits
 * in the cluster's region and VPC, is protected like the cluster, admits exactly the droplets the
 * cluster admits, and the app servers' web processes read from its private host with the web
 * login and the cluster's CA (DATABASE_READ_URL), a secret all the way to the server.
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { decodeWriteFiles } from "../../cli/lib/renderStack";
import { isWrappedSecret, RecordingMocks, unwrapSecrets, valueOf, type RecordedResource } from "../../cli/lib/pulumiMocks";
import { ManagedDatabase } from "../../components/managedDatabase";
import { protectKinds } from "../../components/protection";
import type { DatabaseEndpoint } from "../../plan/database";
import { WEB_ENV_FILE, WORKER_ENV_FILE } from "../../provisioning/layout";
import { minimalRaw, withDomain } from "../support/fixtures";
import { pushOf, runProgram, runProgramOf, type MockRun } from "../support/mockProgram";
import { byUrn, changesBetween } from "../support/urns";

const CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster";
const REPLICA = "digitalocean:index/databaseReplica:DatabaseReplica";
const DB_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall";
const DROPLET = "digitalocean:index/droplet:Droplet";
const APP_SERVERS = ["app", "app-2", "app-3"];

function one(run: { mocks: RecordingMocks }, type: string): RecordedResource {
  const found = run.mocks.ofType(type);
  assert.equal(found.length, 1, `expected one ${type}, got ${found.map((r) => r.name).join(", ") || "none"}`);
  return found[0];
}

describe("components under Pulumi mocks: a managed database with a read-only node", function () {
  let mocks: RecordingMocks;
  const options = new Map<string, pulumi.ResourceOptions>();
  let readEndpoint: DatabaseEndpoint | undefined;
  let withoutReplica: { readEndpoint?: unknown };

  before(async () => {
    mocks = new RecordingMocks();
    await pulumi.runtime.setMocks(mocks, "saas-vps", "test", false);
    const record: pulumi.ResourceTransformation = (args) => {
      options.set(args.name, args.opts);
      return undefined;
    };
    // Protection comes from the resource types, as the stack's transformation gives it (components/protection.ts).
    const args = { size: "db-s-2vcpu-4gb", region: "fra1", vpcId: "vpc-of-the-stack", tags: ["saas-vps"] };
    const db = new ManagedDatabase("saas-test-db", { ...args, replicaSize: "db-s-4vcpu-8gb" }, { transformations: [protectKinds, record] });
    db.admit([pulumi.output("101"), pulumi.output("202")]);
    withoutReplica = new ManagedDatabase("saas-other-db", args, { transformations: [protectKinds, record] });
    readEndpoint = await valueOf(db.readEndpoint!);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await pulumi.runtime.disconnect();
  });

  it("one read-only node of the cluster, of the given size, in the cluster's region and VPC, with its tags", () => {
    const replicas = mocks.ofType(REPLICA);
    assert.deepEqual(replicas.map((r) => r.name), ["saas-test-db-replica"], "only the cluster given a replica size has one");
    const cluster = mocks.ofType(CLUSTER).find((c) => c.name === "saas-test-db-pg")!;
    const [replica] = replicas;
    assert.deepEqual(
      { clusterId: replica.inputs.clusterId, size: replica.inputs.size, region: replica.inputs.region, vpc: replica.inputs.privateNetworkUuid, tags: replica.inputs.tags },
      { clusterId: cluster.id, size: "db-s-4vcpu-8gb", region: cluster.inputs.region, vpc: cluster.inputs.privateNetworkUuid, tags: ["saas-vps"] },
    );
    assert.equal(withoutReplica.readEndpoint, undefined);
  });

  it("is protected, as the cluster is", () => {
    assert.equal(options.get("saas-test-db-replica")?.protect, true);
    assert.equal(options.get("saas-test-db-pg")?.protect, true);
  });

  it("has a database firewall of its own, on its uuid, admitting exactly the droplets the cluster's admits", () => {
    const firewalls = mocks.ofType(DB_FIREWALL);
    const replica = one({ mocks }, REPLICA);
    const cluster = mocks.ofType(CLUSTER).find((c) => c.name === "saas-test-db-pg")!;
    const byTarget = new Map(firewalls.map((fw) => [fw.inputs.clusterId, fw.inputs.rules]));
    assert.equal(firewalls.length, 2);
    // The provider names a replica by its uuid; its id is not that.
    assert.notEqual(replica.state.uuid, replica.id);
    assert.deepEqual(byTarget.get(replica.state.uuid), byTarget.get(cluster.id));
    assert.deepEqual(byTarget.get(replica.state.uuid), [
      { type: "droplet", value: "101" },
      { type: "droplet", value: "202" },
    ]);
  });

  it("its read endpoint is the node's private host and port, the app's database, TLS verified with the cluster's CA file", () => {
    const replica = mocks.ofType(REPLICA)[0];
    assert.deepEqual(readEndpoint, { host: replica.state.privateHost, port: 25060, database: "app", tls: true, caFile: "/etc/saas-vps/db-ca.crt" });
    assert.notEqual(replica.state.privateHost, replica.state.host);
  });
});

describe("components under Pulumi mocks: digitalocean, stage scaled with a managed database and readReplica", function () {
  const raw = (appServers: number, extra: Record<string, string> = {}) =>
    withDomain({ ...minimalRaw("digitalocean"), stage: "scaled", appServers: String(appServers), databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb", readReplica: "true", ...extra });
  let run: MockRun;
  before(async () => {
    run = await runProgramOf(raw(3));
  });
  const droplet = (name: string) => {
    const found = run.mocks.ofType(DROPLET).find((d) => d.name === `saas-test-${name}-server`);
    assert.ok(found, `no ${name} droplet`);
    return found!;
  };
  const webPassword = () => run.mocks.ofType("digitalocean:index/databaseUser:DatabaseUser").find((u) => u.inputs.name === "app_web")!.state.password as string;

  it("creates the read-only node of the stack's cluster, sized like it, in its region and the stack's VPC, protected; and no replica or db server", () => {
    const cluster = one(run, CLUSTER);
    const replica = one(run, REPLICA);
    const vpc = one(run, "digitalocean:index/vpc:Vpc");
    assert.deepEqual(
      { clusterId: replica.inputs.clusterId, size: replica.inputs.size, region: replica.inputs.region, vpc: replica.inputs.privateNetworkUuid },
      { clusterId: cluster.id, size: "db-s-2vcpu-4gb", region: "fra1", vpc: vpc.id },
    );
    assert.equal(run.options.get(replica.name)?.protect, true);
    assert.deepEqual(run.mocks.ofType(DROPLET).map((d) => d.name.replace(/^saas-test-|-server$/g, "")).sort(), [...APP_SERVERS, "cache", "worker"].sort());
    assert.equal(run.mocks.ofType("digitalocean:index/volume:Volume").length, 0);
  });

  it("the node's database firewall admits exactly the droplets the cluster's does: every droplet that connects to PostgreSQL (the app servers and the worker, not the cache server), by id", () => {
    const replica = one(run, REPLICA);
    const cluster = one(run, CLUSTER);
    const rulesOf = (clusterId: string) => {
      const fw = run.mocks.ofType(DB_FIREWALL).filter((f) => f.inputs.clusterId === clusterId);
      assert.equal(fw.length, 1, `firewalls of ${clusterId}`);
      return [...fw[0].inputs.rules].sort((a: any, b: any) => a.value.localeCompare(b.value));
    };
    const droplets = [...APP_SERVERS, "worker"].map((name) => ({ type: "droplet", value: droplet(name).id })).sort((a, b) => a.value.localeCompare(b.value));
    assert.deepEqual(rulesOf(replica.state.uuid), droplets);
    assert.deepEqual(rulesOf(cluster.id), droplets);
  });

  it("every app server's web processes read from the node's private host with the web login, TLS verified against the cluster's CA; the worker reads nothing there", () => {
    const replica = one(run, REPLICA);
    const host = `${replica.state.privateHost}:25060/app`;
    const tls = "sslmode=verify-ca&sslrootcert=%2Fetc%2Fsaas-vps%2Fdb-ca.crt&uselibpqcompat=true";
    for (const name of APP_SERVERS) {
      const web = unwrapSecrets(pushOf(run, name, WEB_ENV_FILE).inputs.stdin) as string;
      assert.ok(web.split("\n").includes(`DATABASE_READ_URL=postgres://app_web:${webPassword()}@${host}?${tls}`), `${name}: ${web}`);
      // Reads and writes are on different hosts: the app refuses a read URL equal to DATABASE_URL.
      assert.match(web, /^DATABASE_URL=postgres:\/\/app_web:[^@]+@private-saas-test-db-pg-/m, name);
    }
    assert.doesNotMatch(unwrapSecrets(pushOf(run, "worker", WORKER_ENV_FILE).inputs.stdin), /DATABASE_READ_URL/);
  });

  it("DATABASE_READ_URL reaches the servers as a secret only: in the secret push and the secret user-data, never in clear", () => {
    const password = webPassword();
    for (const name of APP_SERVERS) {
      const push = pushOf(run, name, WEB_ENV_FILE);
      assert.ok(isWrappedSecret(push.inputs.stdin), `${name}: web.env's push is not secret`);
      const userData = droplet(name).inputs.userData;
      const firstBoot = decodeWriteFiles(unwrapSecrets(userData)).get(WEB_ENV_FILE);
      if (firstBoot !== undefined && /DATABASE_READ_URL/.test(firstBoot)) assert.ok(isWrappedSecret(userData), `${name}: user-data with DATABASE_READ_URL is not secret`);
    }
    for (const resource of run.mocks.resources) {
      const clear = JSON.stringify(resource.inputs, (_key, value) => (isWrappedSecret(value) ? "[secret]" : value));
      assert.ok(!clear.includes(password), `${resource.name} carries the web login's password in clear`);
    }
  });

  it("no stack output shows the read URL's password unless it is secret", async () => {
    const password = webPassword();
    for (const [key, value_] of Object.entries(run.outputs)) {
      if (!pulumi.Output.isInstance(value_)) continue;
      const output = value_ as pulumi.Output<unknown>;
      if (await (pulumi.isSecret(output) as unknown as Promise<boolean>)) continue;
      assert.ok(!String(JSON.stringify(await valueOf(output))).includes(password), `output ${key} shows the web login's password`);
    }
  });

  it("separated → scaled with a managed database replaces and deletes nothing the separated stack has", async () => {
    const separated = await runProgram(withDomain({ ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb" }));
    const separatedUrns = await byUrn(separated);
    const grown = await runProgramOf(raw(2));
    const change = changesBetween(separated, separatedUrns, grown, await byUrn(grown));
    assert.deepEqual(change.replaced, []);
    assert.deepEqual(change.deleted, []);
    assert.ok(change.created.includes("saas-test-db-replica"), `created: ${change.created.join(", ")}`);
    assert.ok(change.created.includes("saas-test-db-replica-fw"), `created: ${change.created.join(", ")}`);
  });
});
