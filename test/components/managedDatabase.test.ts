/**
 * The managed database component under Pulumi mocks (ladder step 3): what it declares at
 * DigitalOcean, with which protection, and that no password leaves it in clear.
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { isWrappedSecret, MOCK_DATABASE_CA, RecordingMocks, unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { ManagedDatabase } from "../../components/managedDatabase";
import { protectKinds } from "../../components/protection";
import type { DatabaseCredentials, DatabaseEndpoint } from "../../plan/database";
import { minimalRaw } from "../support/fixtures";
import { pushOf, runProgram, type MockRun } from "../support/mockProgram";

const CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster";
const COMMAND = "command:remote:Command";

interface Run {
  mocks: RecordingMocks;
  options: Map<string, pulumi.ResourceOptions>;
  endpoint: DatabaseEndpoint;
  credentials: DatabaseCredentials;
  credentialsSecret: boolean;
  ca: string;
}

async function declare(): Promise<Run> {
  const mocks = new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, "saas-vps", "test", false);
  const options = new Map<string, pulumi.ResourceOptions>();
  const record: pulumi.ResourceTransformation = (args) => {
    options.set(args.name, args.opts);
    return undefined;
  };
  // Protection comes from the resource types, set by the stack's transformation (components/protection.ts): given here as the stack gives it.
  const db = new ManagedDatabase("saas-test-db", { size: "db-s-2vcpu-4gb", region: "fra1", vpcId: "vpc-of-the-stack", tags: ["saas-vps"] }, { transformations: [protectKinds, record] });
  db.admit([pulumi.output("101"), pulumi.output("202")]);
  db.handOver({ server: { host: "192.0.2.10", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgQhqhz7570cVflJzFU7G+rWj7+er6oB85ewHM+R5QD" }, dependsOn: [] });
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

function one(run: { mocks: RecordingMocks }, type: string, name?: string) {
  const found = run.mocks.ofType(type).filter((r) => name === undefined || r.name === name);
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
    assert.deepEqual(run.endpoint, { host: "private-saas-test-db-pg-do-user-0.db.ondigitalocean.com", port: 25060, database: "app", tls: true, caFile: "/etc/saas-vps/db-ca.crt" });
    assert.equal(run.ca, MOCK_DATABASE_CA);
  });

  it("the logins' passwords are a secret Output", () => {
    assert.equal(run.credentialsSecret, true);
    for (const c of Object.values(run.credentials)) assert.match(c.password, /^FAKE/);
  });

  it("the handover runs over SSH as the admin user; the admin's password is only in its secret stdin, never in the command or its trigger", () => {
    const handover = one(run, COMMAND);
    const adminPassword = one(run, CLUSTER).state.password as string;
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

describe("components under Pulumi mocks: the program at stage separated with databaseMode managed", function () {
  let run: MockRun;
  before(async () => {
    run = await runProgram({ ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb" });
  });
  const droplet = (name: string) => {
    const found = run.mocks.ofType("digitalocean:index/droplet:Droplet").find((d) => d.name === `saas-test-${name}-server`);
    assert.ok(found, `no ${name} droplet`);
    return found!;
  };
  /** What a push writes, by server and path (the push's stdin). */
  const pushed = (server: string, path: string) => pushOf(run, server, path);
  const users = (): Record<string, string> => Object.fromEntries(run.mocks.ofType("digitalocean:index/databaseUser:DatabaseUser").map((u) => [u.inputs.name, u.state.password as string]));

  it("declares the cluster in the stack's VPC, protected, and no db server or data volume", () => {
    const cluster = one(run, CLUSTER);
    const vpc = run.mocks.ofType("digitalocean:index/vpc:Vpc");
    assert.equal(vpc.length, 1);
    assert.equal(cluster.inputs.privateNetworkUuid, vpc[0].id);
    assert.equal(cluster.inputs.size, "db-s-2vcpu-4gb");
    assert.equal(run.options.get(cluster.name)?.protect, true);
    assert.deepEqual(run.mocks.ofType("digitalocean:index/droplet:Droplet").map((d) => d.name).sort(), ["saas-test-app-server", "saas-test-worker-server"]);
    assert.equal(run.mocks.ofType("digitalocean:index/volume:Volume").length, 0);
  });

  it("the database firewall lists exactly the stack's droplets, by id", () => {
    const [fw] = run.mocks.ofType("digitalocean:index/databaseFirewall:DatabaseFirewall");
    assert.deepEqual(
      [...fw.inputs.rules].sort((a: any, b: any) => a.value.localeCompare(b.value)),
      [droplet("app").id, droplet("worker").id].sort().map((value) => ({ type: "droplet", value })),
    );
  });

  it("the app's processes reach the private host with TLS verified against the cluster's CA, each with its DigitalOcean login", () => {
    const passwords = users();
    const web = unwrapSecrets(pushed("app", "/etc/saas-vps/web.env").inputs.stdin) as string;
    const worker = unwrapSecrets(pushed("worker", "/etc/saas-vps/worker.env").inputs.stdin) as string;
    const host = "private-saas-test-db-pg-do-user-0.db.ondigitalocean.com:25060/app";
    const tls = "sslmode=verify-ca&sslrootcert=%2Fetc%2Fsaas-vps%2Fdb-ca.crt&uselibpqcompat=true";
    assert.ok(web.includes(`DATABASE_URL=postgres://app_web:${passwords.app_web}@${host}?${tls}`), web);
    assert.ok(worker.includes(`DATABASE_URL=postgres://app_worker:${passwords.app_worker}@${host}?${tls}`), worker);
    for (const server of ["app", "worker"]) assert.equal(unwrapSecrets(pushed(server, "/etc/saas-vps/db-ca.crt").inputs.stdin), MOCK_DATABASE_CA);
  });

  it("the app server backs the cluster up as the owner; the worker server holds neither the owner's password nor a backup", () => {
    const passwords = users();
    const backupEnv = unwrapSecrets(pushed("app", "/etc/saas-vps/backup.env").inputs.stdin) as string;
    assert.match(backupEnv, /^BACKUP_DB_HOST='private-saas-test-db-pg-do-user-0\.db\.ondigitalocean\.com'$/m);
    assert.ok(backupEnv.includes(`BACKUP_DB_PASSWORD='${passwords.app}'`));
    const workerPushes = run.mocks.ofType(COMMAND).filter((c) => c.name.startsWith("saas-test-worker-push-"));
    assert.ok(workerPushes.length > 0);
    for (const push of workerPushes) {
      assert.ok(!JSON.stringify(unwrapSecrets(push.inputs)).includes(passwords.app), `${push.name} carries the owner's password`);
      assert.ok(!push.name.endsWith("-etc-saas-vps-backup-env"));
    }
  });

  it("the handover runs on the app server; every release waits for it", () => {
    const handover = one(run, COMMAND, "saas-test-db-handover");
    const appIp: string = one(run, "digitalocean:index/reservedIp:ReservedIp", "saas-test-app-ipv4").state.ipAddress;
    assert.equal(unwrapSecrets(handover.inputs.connection).host, appIp);
    const releases = run.mocks.ofType(COMMAND).filter((c) => /-app-release$/.test(c.name));
    assert.deepEqual(releases.map((r) => r.name).sort(), ["saas-test-app-app-release", "saas-test-worker-app-release"]);
    for (const release of releases) {
      const dependsOn = (run.options.get(release.name)?.dependsOn ?? []) as pulumi.Resource[];
      assert.ok([dependsOn].flat().some((r) => (r as any).__name === "saas-test-db-handover"), `${release.name} does not wait for the handover`);
    }
  });

  it("no password of the cluster is in a clear output or in a push that is not secret", async () => {
    const passwords: string[] = Object.values(users());
    for (const [key, value_] of Object.entries(run.outputs)) {
      if (!pulumi.Output.isInstance(value_)) continue;
      const output = value_ as pulumi.Output<unknown>;
      if (await (pulumi.isSecret(output) as unknown as Promise<boolean>)) continue;
      const value = JSON.stringify(await valueOf(output));
      for (const p of passwords) assert.ok(!value.includes(p), `output ${key} shows a database password`);
    }
    for (const push of run.mocks.ofType(COMMAND)) {
      if (isWrappedSecret(push.inputs.stdin)) continue;
      const clear = JSON.stringify(push.inputs);
      for (const p of passwords) assert.ok(!clear.includes(p), `${push.name} carries a database password in clear`);
    }
  });
});
