import assert from "node:assert/strict";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { minimalRaw } from "../support/fixtures";

describe("stage planner: separated with a managed database", () => {
  const plan = planStack(parseStackConfig({ ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb" }));

  it("plans the cluster instead of a db server: no db server, no data volume, nothing opens PostgreSQL's port", () => {
    assert.deepEqual(plan.database, { kind: "managed", size: "db-s-2vcpu-4gb" });
    assert.deepEqual(plan.servers.map((s) => s.name), ["app", "worker"]);
    assert.ok(plan.servers.every((s) => s.volume === undefined && !s.roles.includes("db")));
    assert.ok(plan.servers.every((s) => s.firewall.every((rule) => rule.port !== 5432)));
  });

  it("backs the cluster up from the app server, which holds the owner login already; the worker server gets no backup", () => {
    assert.deepEqual(plan.servers.find((s) => s.name === "app")!.roles, ["web", "backup"]);
    assert.deepEqual(plan.servers.find((s) => s.name === "worker")!.roles, ["worker"]);
  });

  it("plans a db server with its own backups when the database mode is server", () => {
    const own = planStack(parseStackConfig({ ...minimalRaw("digitalocean"), stage: "separated" }));
    assert.deepEqual(own.database, { kind: "server", server: "db" });
    assert.ok(own.servers.every((s) => !s.roles.includes("backup")));
  });
});

describe("stage planner: scaled with a managed database and readReplica", () => {
  const config = (extra: Record<string, string> = {}) =>
    parseStackConfig({ ...minimalRaw("digitalocean"), stage: "scaled", appServers: "3", databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb", readReplica: "true", ...extra });
  const plan = planStack(config());

  it("records the cluster's read-only node in the database plan, sized like the cluster by default", () => {
    assert.deepEqual(plan.database, { kind: "managed", size: "db-s-2vcpu-4gb", replicaSize: "db-s-2vcpu-4gb" });
    assert.deepEqual(planStack(config({ managedReplicaSize: "db-s-4vcpu-8gb" })).database, { kind: "managed", size: "db-s-2vcpu-4gb", replicaSize: "db-s-4vcpu-8gb" });
  });

  it("plans no replica server, no db server and nothing that opens PostgreSQL's port", () => {
    assert.deepEqual(plan.servers.map((s) => s.name).sort(), ["app", "app-2", "app-3", "cache", "worker"]);
    assert.ok(plan.servers.every((s) => !s.roles.includes("replica") && !s.roles.includes("db") && s.volume === undefined));
    assert.ok(plan.servers.every((s) => s.firewall.every((rule) => rule.port !== 5432)));
  });

  it("without readReplica the plan has no replica size", () => {
    assert.deepEqual(planStack(config({ readReplica: "false" })).database, { kind: "managed", size: "db-s-2vcpu-4gb" });
  });
});
