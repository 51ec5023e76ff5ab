import assert from "node:assert/strict";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { minimalRaw, withDomain } from "../support/fixtures";

describe("stage planner", () => {
  it("plans stage mvp as one server with every role, a data volume and the public firewall", () => {
    const plan = planStack(parseStackConfig({ ...minimalRaw("digitalocean"), webInstances: "3", workerInstances: "0" }));
    assert.equal(plan.stage, "mvp");
    assert.equal(plan.servers.length, 1);
    const [app] = plan.servers;
    assert.deepEqual(app.roles, ["web", "worker", "db"]);
    assert.deepEqual(app.volume, { name: "app-data", sizeGb: 20, label: "saas-data", mountPoint: "/srv/data" });
    assert.deepEqual(app.firewall.map((r) => [r.port, r.sources]), [
      [22, ["203.0.113.7/32"]],
      [80, ["0.0.0.0/0", "::/0"]],
      [443, ["0.0.0.0/0", "::/0"]],
    ]);
    assert.equal(app.webInstances, 3);
    assert.equal(app.workerInstances, 0);
    assert.equal(plan.backupBucket.provider, "digitalocean");
  });

  // Plain data: components/ and the render output read it field by field, so it may hold no
  // class instances, functions or Pulumi Outputs, and it may not share lists with the config
  // (a component that edits its plan's firewall must not change another server's).
  it("is plain data that owns its lists and leaves the config untouched", () => {
    const config = deepFreeze(parseStackConfig(minimalRaw("hetzner")));
    const plan = planStack(config);
    assert.deepEqual(notPlain(plan, "plan"), []);
    const ssh = plan.servers[0].firewall.find((r) => r.port === 22)!;
    assert.ok(!Object.isFrozen(ssh.sources), "the SSH rule's sources are the config's own (frozen) list");
    ssh.sources.push("198.51.100.0/24");
    assert.deepEqual(config.sshAllowedCidrs, ["203.0.113.7/32"]);
  });

  it("plans stage scaled as separated's servers with the app server multiplied behind the balancer, and the replica", () => {
    const raw = { ...minimalRaw("hetzner"), stage: "scaled", appServers: "3", readReplica: "true", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" };
    const plan = planStack(parseStackConfig(raw));
    const by = Object.fromEntries(plan.servers.map((s) => [s.name, s]));
    assert.deepEqual(Object.keys(by).sort(), ["app", "app-2", "app-3", "cache", "db", "replica", "worker"]);
    assert.deepEqual(
      Object.fromEntries(plan.servers.map((s) => [s.name, s.privateIp])),
      { app: "10.20.0.10", "app-2": "10.20.0.11", "app-3": "10.20.0.12", worker: "10.20.0.20", db: "10.20.0.30", replica: "10.20.0.31", cache: "10.20.0.40" },
    );
    assert.deepEqual(plan.servers.filter((s) => s.roles.includes("web")).map((s) => [s.name, s.migrates]), [["app", undefined], ["app-2", false], ["app-3", false]]);
    assert.deepEqual(plan.loadBalancer?.targets, ["app", "app-2", "app-3"]);
    assert.equal(plan.loadBalancer?.privateIp, "10.20.0.5");
    // Plain HTTP (no domain): nothing listens on 443, so the balancer forwards 80 only.
    assert.deepEqual(plan.loadBalancer?.ports, [80]);
    for (const name of ["app", "app-2", "app-3"]) {
      assert.deepEqual(by[name].firewall.map((r) => [r.port, r.sources, r.loadBalancer ?? false]), [
        [22, ["203.0.113.7/32"], false],
        [80, [], true],
        [8081, [], true],
      ]);
    }
    assert.deepEqual(by.db.firewall.find((r) => r.port === 5432)?.peers, ["app", "app-2", "app-3", "worker", "replica"]);
    assert.deepEqual(by.replica.firewall.find((r) => r.port === 5432)?.peers, ["app", "app-2", "app-3"]);
    assert.deepEqual(by.replica.volume, by.db.volume);
    assert.deepEqual(notPlain(plan, "plan"), []);
    assert.notEqual(by.app.firewall, by["app-2"].firewall, "two app servers share one firewall list");
  });

  it("plans stage scaled's cache server: Valkey from the app servers and the worker only, private only, on cacheServerType, no volume", () => {
    const raw = { ...minimalRaw("digitalocean"), stage: "scaled", appServers: "2", cacheServerType: "s-2vcpu-2gb", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" };
    const plan = planStack(parseStackConfig(raw));
    const cache = plan.servers.find((s) => s.name === "cache")!;
    assert.deepEqual(cache.roles, ["cache"]);
    assert.deepEqual([cache.serverType, cache.memoryMiB, cache.privateIp, cache.volume], ["s-2vcpu-2gb", 2048, "10.20.0.40", undefined]);
    assert.deepEqual([cache.webInstances, cache.workerInstances], [0, 0]);
    assert.deepEqual(cache.firewall.map((r) => [r.port, r.sources, r.peers, r.loadBalancer ?? false]), [
      [22, ["203.0.113.7/32"], undefined, false],
      [6379, [], ["app", "app-2", "worker"], false],
    ]);
    assert.ok(plan.servers.every((s) => s.name === "cache" || !s.roles.includes("cache")), "another server has the cache role");
    // Stage separated has no cache: the app there keeps its limits per server.
    const separated = planStack(parseStackConfig({ ...minimalRaw("digitalocean"), stage: "separated", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" }));
    assert.ok(!separated.servers.some((s) => s.roles.includes("cache")));
  });

  it("plans stage scaled with a domain with one certificate issuer, app, which admits the other app servers to SSH and its ACME relay", () => {
    const raw = { ...withDomain({ ...minimalRaw("hetzner"), stage: "scaled", appServers: "3", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" }) };
    const plan = planStack(parseStackConfig(raw));
    assert.equal(plan.certificateIssuer, "app");
    const by = Object.fromEntries(plan.servers.map((s) => [s.name, s]));
    const rules = (name: string) => by[name].firewall.map((r) => [r.port, r.sources, r.peers ?? [], r.loadBalancer ?? false]);
    assert.deepEqual(rules("app"), [
      [22, ["203.0.113.7/32"], [], false],
      [80, [], [], true],
      [443, [], [], true],
      [8081, [], [], true],
      [8082, [], ["app-2", "app-3"], false],
      [22, [], ["app-2", "app-3"], false],
    ]);
    for (const name of ["app-2", "app-3"]) {
      assert.deepEqual(rules(name), [[22, ["203.0.113.7/32"], [], false], [80, [], [], true], [443, [], [], true], [8081, [], [], true]]);
    }
    // Without a domain there is no certificate to share.
    const plain = planStack(parseStackConfig({ ...minimalRaw("hetzner"), stage: "scaled", appServers: "3", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" }));
    assert.equal(plain.certificateIssuer, undefined);
    assert.ok(plain.servers.every((s) => s.firewall.every((r) => !(r.loadBalancer && r.peers))), "a plain HTTP stack admits no app server to another");
  });
});

/** Paths below `value` that hold anything but strings, numbers, booleans, undefined, arrays and plain objects. */
function notPlain(value: unknown, path: string): string[] {
  if (value === undefined || ["string", "number", "boolean"].includes(typeof value)) return [];
  if (Array.isArray(value)) return value.flatMap((v, i) => notPlain(v, `${path}[${i}]`));
  if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.entries(value).flatMap(([k, v]) => notPlain(v, `${path}.${k}`));
  }
  return [path];
}

/** Freezes `value` and everything below it, so any write by the code under test throws. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
