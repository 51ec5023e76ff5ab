/**
 * Critical workers (config/workers.ts): the keys, their errors, the default list against the
 * reference app's own task names, and what a server with them gets rendered.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseStackConfig, type StackConfig } from "../../config/config";
import { DEFAULT_CRITICAL_TASKS } from "../../config/workers";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { renderServer } from "../../provisioning/server";
import { configProblems } from "../support/configProblems";
import { minimalRaw, scaledRaw, separatedRaw, withDomain } from "../support/fixtures";

const APP = join(__dirname, "..", "..", "app", "src");

/** Every file of one planned server, by path. */
function filesOf(config: StackConfig, server: string): Map<string, string> {
  const plan = planStack(config);
  const planned = plan.servers.find((s) => s.name === server)!;
  const input = buildServerInput(config, planned, { machine: "hetzner", ...PLACEHOLDER_CONTEXT }, plan);
  return new Map(renderServer(input).files.map((f) => [f.path, f.content]));
}

describe("critical workers: config", () => {
  it("defaults: none in mvp and separated, one in scaled, running the reference app's mails and Stripe events", () => {
    assert.deepEqual(parseStackConfig(minimalRaw("hetzner")).criticalWorkers, { instances: 0, tasks: DEFAULT_CRITICAL_TASKS });
    assert.equal(parseStackConfig({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner") }).criticalWorkers.instances, 0);
    const scaled = parseStackConfig(withDomain({ ...minimalRaw("hetzner"), ...scaledRaw("hetzner", 2) }));
    assert.equal(scaled.criticalWorkers.instances, 1);
    const set = parseStackConfig({ ...minimalRaw("hetzner"), criticalWorkerInstances: "2", criticalTasks: '["send_password_reset_email"]' });
    assert.deepEqual(set.criticalWorkers, { instances: 2, tasks: ["send_password_reset_email"] });
  });

  it("the default list is exactly the app's mail tasks and its Stripe event task, so the two cannot drift", async () => {
    const { TASKS } = await import(pathToFileURL(join(APP, "jobs", "queue.ts")).href);
    const { BILLING_TASKS } = await import(pathToFileURL(join(APP, "billing", "tasks.ts")).href);
    assert.deepEqual([...DEFAULT_CRITICAL_TASKS].sort(), [...Object.values(TASKS as Record<string, string>), BILLING_TASKS.processStripeEvent].sort());
  });

  const errors: Array<[string, Record<string, string>, string[]]> = [
    ["a count out of range", { criticalWorkerInstances: "9" }, ['saas-vps:criticalWorkerInstances: must be a whole number from 0 to 8; got "9"']],
    ["a count that is not a number", { criticalWorkerInstances: "one" }, ['saas-vps:criticalWorkerInstances: must be a whole number from 0 to 8; got "one"']],
    [
      "names that are not task names, and one twice",
      { criticalWorkerInstances: "1", criticalTasks: JSON.stringify(["send welcome", "process_stripe_event", "a%i", "process_stripe_event"]) },
      [
        'saas-vps:criticalTasks: entry 0: "send welcome" is not a task name (a letter or "_", then letters, digits, "_", ".", ":" or "-"; at most 100 characters, e.g. send_welcome_email)',
        'saas-vps:criticalTasks: entry 2: "a%i" is not a task name (a letter or "_", then letters, digits, "_", ".", ":" or "-"; at most 100 characters, e.g. send_welcome_email)',
        'saas-vps:criticalTasks: entry 3: "process_stripe_event" is listed twice; list each task once',
      ],
    ],
    ["not a list", { criticalWorkerInstances: "1", criticalTasks: "send_welcome_email" }, [`saas-vps:criticalTasks: must be a JSON list of the app's task names, e.g. ["send_password_reset_email","process_stripe_event"]; got "send_welcome_email"`]],
    [
      "a task list with no critical worker to run it (the default count in mvp)",
      { criticalTasks: '["send_welcome_email"]' },
      ["saas-vps:criticalTasks: is only for saas-vps:criticalWorkerInstances 1 or more; criticalWorkerInstances is 0 (the default in stage mvp), so every worker runs every task and nothing would use the list: set criticalWorkerInstances or remove the key"],
    ],
    [
      "critical workers and no other worker",
      { workerInstances: "0", criticalWorkerInstances: "1" },
      ["saas-vps:criticalWorkerInstances: is 1 but saas-vps:workerInstances is 0: the critical workers run only criticalTasks, so every other task would run nowhere; set workerInstances to 1 or more, or criticalWorkerInstances to 0"],
    ],
    [
      "a metrics offset that puts a critical worker on a web port",
      { metricsPortOffset: "2900", criticalWorkerInstances: "1" },
      ["saas-vps:metricsPortOffset: gives metrics ports 2901-5902 (offset + web ports 3001-3002, offset + worker numbers 1-1 and critical worker numbers 101-101), of which 3001 already taken (web ports, 22, 25, 53, 80, 443, 5432, 6379, 8081, 8082, 9100); pick an offset that keeps them clear, e.g. 10000; got 2900"],
    ],
  ];
  for (const [what, fragment, expected] of errors) {
    it(`refuses ${what}, naming the key`, () => {
      assert.deepEqual(configProblems({ ...minimalRaw("hetzner"), ...fragment }), expected);
    });
  }
});

describe("critical workers: plan and render", () => {
  it("without critical workers a server renders no worker-critical unit and worker@ runs every task", () => {
    const files = filesOf(parseStackConfig({ ...minimalRaw("hetzner"), workerInstances: "2" }), "app");
    assert.ok(![...files.keys()].some((p) => p.includes("worker-critical")));
    assert.doesNotMatch(files.get("/etc/systemd/system/worker@.service")!, /WORKER_TASKS/);
  });

  it("mvp: worker-critical@101.. run only the critical tasks, worker@ all but them, and the target and releases take both", () => {
    const config = parseStackConfig({ ...minimalRaw("hetzner"), workerInstances: "2", criticalWorkerInstances: "2", criticalTasks: '["send_password_reset_email","process_stripe_event"]' });
    const files = filesOf(config, "app");
    assert.match(files.get("/etc/systemd/system/worker-critical@.service")!, /^Environment=NODE_ENV=production WORKER_ID=%i WORKER_TASKS_ONLY=send_password_reset_email,process_stripe_event$/m);
    assert.match(files.get("/etc/systemd/system/worker@.service")!, /^Environment=NODE_ENV=production WORKER_ID=%i WORKER_TASKS_EXCEPT=send_password_reset_email,process_stripe_event$/m);
    assert.match(files.get("/etc/systemd/system/saas-app.target")!, /^Wants=web@3001\.service web@3002\.service worker@1\.service worker@2\.service worker-critical@101\.service worker-critical@102\.service$/m);
    assert.match(files.get("/etc/saas-vps/release.conf")!, /^WORKER_UNITS="worker@1\.service worker@2\.service worker-critical@101\.service worker-critical@102\.service"$/m);
  });

  it("separated: the worker server gets them, the app server none", () => {
    const config = parseStackConfig({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner"), criticalWorkerInstances: "1" });
    assert.ok(filesOf(config, "worker").has("/etc/systemd/system/worker-critical@.service"));
    assert.match(filesOf(config, "worker").get("/etc/saas-vps/release.conf")!, /^WORKER_UNITS="worker@1\.service worker-critical@101\.service"$/m);
    assert.ok(![...filesOf(config, "app").keys()].some((p) => p.includes("worker-critical")));
  });
});
