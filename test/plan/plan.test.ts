import assert from "node:assert/strict";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { minimalRaw } from "../support/fixtures";

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

  it("is a plain value: planning twice gives equal plans", () => {
    const config = parseStackConfig(minimalRaw("hetzner"));
    assert.deepEqual(planStack(config), planStack(config));
  });
});
