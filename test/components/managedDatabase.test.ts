/**
 * The managed database component under Pulumi mocks (ladder step 3): what it declares at
 * DigitalOcean, with which protection, and that no password leaves it in clear.
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { isWrappedSecret, MOCK_DATABASE_CA, RecordingMocks, unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { ManagedDatabase } from "../../components/managedDatabase";
import type { DatabaseCredentials, DatabaseEndpoint } from "../../plan/database";

const CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster";
const COMMAND = "command:remote:Command";

/** The recording mocks, keeping what each resource was answered (the cluster's admin password). */
class AnsweringMocks extends RecordingMocks {
  readonly answered = new Map<string, Record<string, any>>();
  newResource(args: pulumi.runtime.MockResourceArgs) {
    const result = super.newResource(args);
    this.answered.set(args.name, result.state);
    return result;
  }
}

interface Run {
  mocks: AnsweringMocks;
  options: Map<string, pulumi.ResourceOptions>;
  endpoint: DatabaseEndpoint;
  credentials: DatabaseCredentials;
  credentialsSecret: boolean;
  ca: string;
}

async function declare(): Promise<Run> {
  const mocks = new AnsweringMocks();
  await pulumi.runtime.setMocks(mocks, "saas-vps", "test", false);
  const options = new Map<string, pulumi.ResourceOptions>();
  const record: pulumi.ResourceTransformation = (args) => {
    options.set(args.name, args.opts);
    return undefined;
  };
  const db = new ManagedDatabase("saas-test-db", { size: "db-s-2vcpu-4gb", region: "fra1", vpcId: "vpc-of-the-stack", tags: ["saas-vps"] }, { transformations: [record] });
  db.admit([pulumi.output("101"), pulumi.output("202")]);
  db.handOver({ host: "192.0.2.10", dependsOn: [] });
  const [endpoint, credentials, ca, credentialsSecret] = await Promise.all([
    valueOf(db.endpoint),
    valueOf(db.credentials),
    valueOf(db.caCertificate),
    pulumi.isSecret(db.credentials) as unknown as Promise<boolean>,
  ]);
  // Let every resource registration reach the mocks.
  await new Promise((resolve) => setTimeout(resolve, 50));
  await pulumi.runtime.disconnect();
  return { mocks, options, endpoint, credentials, credentialsSecret, ca };
}

function one(run: Run, type: string) {
  const found = run.mocks.ofType(type);
  assert.equal(found.length, 1, `expected one ${type}, got ${found.length}`);
  return found[0];
}

describe("components under Pulumi mocks: managed database (DigitalOcean)", function () {
  let run: Run;
  before(async () => {
    run = await declare();
  });

  it("one PostgreSQL 17 node of the planned size, in the stack's VPC and region, protected", () => {
    const cluster = one(run, CLUSTER);
    assert.deepEqual(
      { engine: cluster.inputs.engine, version: cluster.inputs.version, size: cluster.inputs.size, region: cluster.inputs.region, nodeCount: cluster.inputs.nodeCount, vpc: cluster.inputs.privateNetworkUuid },
      { engine: "pg", version: "17", size: "db-s-2vcpu-4gb", region: "fra1", nodeCount: 1, vpc: "vpc-of-the-stack" },
    );
    assert.equal(run.options.get(cluster.name)?.protect, true);
  });

  it("the app's database (protected: deleting it drops the data) and the three logins of plan/database.ts", () => {
    const db = one(run, "digitalocean:index/databaseDb:DatabaseDb");
    assert.equal(db.inputs.name, "app");
    assert.equal(run.options.get(db.name)?.protect, true);
    const users = run.mocks.ofType("digitalocean:index/databaseUser:DatabaseUser").map((u) => u.inputs.name).sort();
    assert.deepEqual(users, ["app", "app_web", "app_worker"]);
    assert.deepEqual(Object.fromEntries(Object.entries(run.credentials).map(([login, c]) => [login, c.user])), { owner: "app", web: "app_web", worker: "app_worker" });
  });

  it("a database firewall that admits exactly the given droplets, by id: no address, no tag, not the world", () => {
    const fw = one(run, "digitalocean:index/databaseFirewall:DatabaseFirewall");
    assert.deepEqual(fw.inputs.rules, [
      { type: "droplet", value: "101" },
      { type: "droplet", value: "202" },
    ]);
  });

  it("no connection pool: the app needs LISTEN/NOTIFY, session advisory locks and prepared statements", () => {
    assert.equal(run.mocks.ofType("digitalocean:index/databaseConnectionPool:DatabaseConnectionPool").length, 0);
  });

  it("the endpoint is the cluster's private host and port, the app's database, TLS required; the CA comes from the provider", () => {
    assert.deepEqual(run.endpoint, { host: "private-saas-test-db-pg-do-user-0.db.ondigitalocean.com", port: 25060, database: "app", tls: true });
    assert.equal(run.ca, MOCK_DATABASE_CA);
  });

  it("the logins' passwords are a secret Output", () => {
    assert.equal(run.credentialsSecret, true);
    for (const c of Object.values(run.credentials)) assert.match(c.password, /^FAKE/);
  });

  it("the handover runs over SSH as the admin user; the admin's password is only in its secret stdin, never in the command or its trigger", () => {
    const handover = one(run, COMMAND);
    const adminPassword = run.mocks.answered.get(one(run, CLUSTER).name)!.password as string;
    assert.match(adminPassword, /^FAKE/);
    assert.ok(isWrappedSecret(handover.inputs.stdin), "stdin reached the provider in clear");
    assert.ok(unwrapSecrets(handover.inputs.stdin).startsWith(`${adminPassword}\n`));
    assert.match(unwrapSecrets(handover.inputs.stdin), /ALTER DATABASE :"db" OWNER TO :"owner";/);
    const visible = JSON.stringify({ create: handover.inputs.create, triggers: handover.inputs.triggers, connection: handover.inputs.connection });
    assert.ok(!visible.includes(adminPassword), "the admin's password is in the command's clear inputs");
    assert.ok(
      handover.inputs.create.includes("'host=private-saas-test-db-pg-do-user-0.db.ondigitalocean.com port=25060 dbname=app user=doadmin sslmode=verify-ca sslrootcert=/etc/saas-vps/db-ca.crt'"),
      handover.inputs.create,
    );
    assert.equal(unwrapSecrets(handover.inputs.connection).user, "admin");
    assert.notEqual(handover.inputs.logging, "stdoutAndStderr");
  });
});
