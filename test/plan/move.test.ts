/**
 * The move of a running mvp stack to separated, in the plan and the render (plan/move.ts,
 * provisioning/mvpDatabase.ts): where the app's database is in each state, what the old server
 * gets, and that the first `pulumi up` of the move leaves everything the running server already
 * has as it is.
 */
import { BOOTSTRAP_ENV_FILE, BOOTSTRAP_STEP_DIR } from "../../provisioning/layout";
import assert from "node:assert/strict";
import { ConfigError, parseStackConfig, type StackConfig } from "../../config/config";
import { planStack, type StackPlan } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { BACKUP_PATHS } from "../../provisioning/backup";
import { MVP_DATABASE_PATHS } from "../../provisioning/mvpDatabase";
import { renderServer } from "../../provisioning/server";
import { APP_ENV_FILE } from "../../provisioning/layout";
import { minimalRaw, separatedRaw, uploadsBucketKeys } from "../support/fixtures";

// The move is of the database: uploads are in the bucket already (README: moving uploads comes first).
const MVP = { ...minimalRaw("hetzner"), webInstances: "3", workerInstances: "2", uploadsStorage: "bucket", ...uploadsBucketKeys("hetzner") };
const separated = (extra: Record<string, string> = {}) => ({ ...MVP, ...separatedRaw("hetzner"), ...extra });

function configOf(raw: Record<string, string>): StackConfig {
  return parseStackConfig(raw);
}

function filesOf(config: StackConfig, plan: StackPlan, name: string): Map<string, string> {
  const server = plan.servers.find((s) => s.name === name);
  assert.ok(server, `no server ${name} in the plan`);
  const rendered = renderServer(buildServerInput(config, server, { machine: config.provider, ...PLACEHOLDER_CONTEXT }, plan));
  return new Map(rendered.files.map((f) => [f.path, f.content]));
}

function problemsOf(raw: Record<string, string>): string[] {
  try {
    parseStackConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("moving from mvp: the plan", () => {
  const mvpConfig = configOf(MVP);
  const mvpPlan = planStack(mvpConfig);

  it("live: the app server is the mvp server (every role, its volume, its type) on the private network; the db server waits; no worker server yet", () => {
    const plan = planStack(configOf(separated({ mvpDatabase: "live" })));
    assert.deepEqual(plan.servers.map((s) => s.name), ["app", "db"]);
    const [app, db] = plan.servers;
    const { privateIp, mvpDatabase, ...rest } = app;
    assert.deepEqual(rest, mvpPlan.servers[0]);
    assert.equal(privateIp, "10.20.0.10");
    assert.equal(mvpDatabase, "live");
    assert.deepEqual(plan.database, { kind: "server", server: "app" });
    assert.deepEqual(db.roles, ["db"]);
    assert.equal(db.volume?.name, "app-data");
    // PostgreSQL on the db server: only servers that exist, over the private network.
    assert.deepEqual(db.firewall.filter((r) => r.port === 5432).map((r) => [r.sources, r.peers]), [[[], ["app"]]]);
  });

  it("kept: the app uses the db server and the worker server; the app server serves web only and keeps its volume", () => {
    const plan = planStack(configOf(separated({ mvpDatabase: "kept" })));
    assert.deepEqual(plan.servers.map((s) => s.name), ["app", "worker", "db"]);
    const app = plan.servers[0];
    assert.deepEqual(app.roles, ["web"]);
    assert.equal(app.workerInstances, 0);
    assert.deepEqual(app.volume, mvpPlan.servers[0].volume);
    assert.equal(app.mvpDatabase, "kept");
    assert.deepEqual(plan.database, { kind: "server", server: "db" });
    assert.equal(plan.servers[1].workerInstances, 2);
    assert.deepEqual(plan.servers[2].firewall.filter((r) => r.port === 5432).map((r) => r.peers), [["app", "worker"]]);
  });

  it("retired (key removed) is a plain separated stack: the app server has no volume and nothing of the move", () => {
    const plan = planStack(configOf(separated()));
    const app = plan.servers[0];
    assert.equal(app.volume, undefined);
    assert.equal(app.mvpDatabase, undefined);
    assert.deepEqual(plan.database, { kind: "server", server: "db" });
  });
});

describe("moving from mvp: the config", () => {
  it("refuses mvpDatabase outside stage separated, an unknown state, a managed database and a resized app server, naming each key", () => {
    assert.deepEqual(problemsOf({ ...MVP, mvpDatabase: "live" }), [
      "saas-vps:mvpDatabase: is for stage separated only; this stack's stage is mvp (remove the key or change saas-vps:stage)",
    ]);
    assert.deepEqual(problemsOf(separated({ mvpDatabase: "moved" })), ['saas-vps:mvpDatabase: "moved" is not allowed; use one of live, kept']);
    const managed = { ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed", mvpDatabase: "live" };
    assert.deepEqual(problemsOf(managed), [
      "saas-vps:mvpDatabase: moving an mvp stack is built for saas-vps:databaseMode server (the backup is restored onto the db server); databaseMode is managed",
    ]);
    const [resized] = problemsOf(separated({ mvpDatabase: "kept", serverType: "cx33", webServerType: "cx23" }));
    assert.match(resized, /^saas-vps:webServerType: must stay unset \(or equal serverType\) while saas-vps:mvpDatabase is set: .*; got "cx23"$/);
    assert.deepEqual(problemsOf(separated({ mvpDatabase: "kept", serverType: "cx33", webServerType: "cx33" })), []);
  });
});

describe("moving from mvp: what each server gets", () => {
  const mvpConfig = configOf(MVP);
  const mvpFiles = filesOf(mvpConfig, planStack(mvpConfig), "app");
  const liveConfig = configOf(separated({ mvpDatabase: "live" }));
  const livePlan = planStack(liveConfig);
  const keptConfig = configOf(separated({ mvpDatabase: "kept" }));
  const keptPlan = planStack(keptConfig);

  it("live: the running server keeps every file it has byte for byte; it only gains the switch and the wait for its private address (state live)", () => {
    const live = filesOf(liveConfig, livePlan, "app");
    const changed = [...mvpFiles].filter(([path, content]) => live.get(path) !== content).map(([path]) => path);
    assert.deepEqual(changed, [BOOTSTRAP_ENV_FILE]);
    // Joining the private network is the one first-boot change: its step, and its settings in bootstrap.env.
    const withoutNetwork = (text: string) => text.split("\n").filter((line) => !/^PRIVATE_/.test(line)).join("\n").replace(" 15-private-network", "");
    assert.equal(withoutNetwork(live.get(BOOTSTRAP_ENV_FILE)!), mvpFiles.get(BOOTSTRAP_ENV_FILE));
    const added = [...live.keys()].filter((path) => !mvpFiles.has(path));
    assert.deepEqual(added.sort(), [MVP_DATABASE_PATHS.envFile, MVP_DATABASE_PATHS.command, `${BOOTSTRAP_STEP_DIR}/15-private-network`].sort());
    assert.match(live.get(MVP_DATABASE_PATHS.envFile)!, /^MVP_DATABASE="live"$/m);
    assert.match(live.get(MVP_DATABASE_PATHS.envFile)!, /^DB_ROLES="app app_web app_worker"$/m);
  });

  it("live: the db server's backups wait (standby); kept: they run", () => {
    assert.match(filesOf(liveConfig, livePlan, "db").get(BACKUP_PATHS.envFile)!, /^BACKUP_STANDBY='yes'$/m);
    assert.doesNotMatch(filesOf(keptConfig, keptPlan, "db").get(BACKUP_PATHS.envFile)!, /BACKUP_STANDBY/);
    assert.doesNotMatch(mvpFiles.get(BACKUP_PATHS.envFile)!, /BACKUP_STANDBY/);
  });

  it("kept: the app server gets the switch in state kept, and no file of the db role or the workers any more", () => {
    const kept = filesOf(keptConfig, keptPlan, "app");
    assert.match(kept.get(MVP_DATABASE_PATHS.envFile)!, /^MVP_DATABASE="kept"$/m);
    assert.equal(kept.get(MVP_DATABASE_PATHS.command), mvpFilesOf(livePlan, liveConfig).get(MVP_DATABASE_PATHS.command), "the command is the same file in both states");
    for (const path of [BACKUP_PATHS.envFile, BACKUP_PATHS.command, "/etc/saas-vps/db.env", "/etc/systemd/system/backup.timer"]) assert.ok(!kept.has(path), path);
    assert.doesNotMatch(kept.get("/etc/systemd/system/saas-app.target")!, /worker@/);
  });

  // The switch itself: live keeps the on-box database, kept points at the db server.
  it("the switch is app.env: 127.0.0.1 while live, the db server's private address once kept", () => {
    const urlOf = (files: Map<string, string>) => /^DATABASE_URL=postgres:\/\/[^@]+@([^:/]+)/m.exec(files.get(APP_ENV_FILE)!)?.[1];
    assert.equal(urlOf(filesOf(liveConfig, livePlan, "app")), "127.0.0.1");
    assert.equal(urlOf(filesOf(keptConfig, keptPlan, "app")), "10.20.0.30");
  });

  function mvpFilesOf(plan: StackPlan, config: StackConfig) {
    return filesOf(config, plan, "app");
  }
});
