/**
 * Releases across servers under Pulumi mocks (ladder step 3): the real program for a stage
 * separated stack. One build per `pulumi up`; the worker server's release runs only after the app
 * server's release (which runs the migrations) has finished, and the app server's never waits for
 * anything on the worker server. Stage mvp keeps its one build, upload and release.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { unwrapSecrets } from "../../cli/lib/pulumiMocks";
import { minimalRaw } from "../support/fixtures";
import { runProgram, type MockRun } from "../support/mockProgram";
import { tempDir } from "../support/tools";

const BUILD = "command:local:Command";
const UPLOAD = "command:remote:CopyToRemote";
const COMMAND = "command:remote:Command";

/** A small app source tree of the user's own. */
function appFixture(): string {
  const dir = tempDir("order-app");
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "package.json"), '{"name":"my-app"}\n');
  writeFileSync(join(dir, "src", "web.js"), "console.log('v1')\n");
  return dir;
}

/** The URNs a resource was declared to depend on (dependsOn), as the program set them. */
async function dependsOnUrns(run: MockRun, name: string): Promise<string[]> {
  const deps = (run.options.get(name)?.dependsOn ?? []) as pulumi.Resource[];
  return Promise.all(deps.map((d) => new Promise<string>((resolve) => d.urn.apply((urn) => resolve(urn)))));
}

const urnName = (urn: string) => urn.split("::").pop()!;

describe("components under Pulumi mocks: releases across the servers of stage separated", function () {
  this.timeout(60_000);
  let run: MockRun;
  const raw = (appDir: string) => ({ ...minimalRaw("hetzner"), stage: "separated", workerInstances: "2", appDir, appBuildCommand: "./build.sh" });

  before(async () => {
    run = await runProgram(raw(appFixture()), ["backupSecretAccessKey"]);
  });

  it("builds once, and both app servers upload and release what that build made", () => {
    const builds = run.mocks.ofType(BUILD);
    assert.deepEqual(builds.map((b) => b.name), ["saas-test-app-app-build"], "one build, by the app server's release");
    const hash = builds[0].inputs.triggers[0];
    const uploads = run.mocks.ofType(UPLOAD);
    assert.deepEqual(uploads.map((u) => u.name).sort(), ["saas-test-app-app-upload", "saas-test-worker-app-upload"]);
    const releases = run.mocks.ofType(COMMAND).filter((c) => c.name.endsWith("-app-release"));
    assert.deepEqual(releases.map((r) => r.name).sort(), ["saas-test-app-app-release", "saas-test-worker-app-release"]);
    for (const r of [...uploads, ...releases]) assert.deepEqual(r.inputs.triggers, [hash], `${r.name} is keyed by the source hash`);
    const perServer = run.mocks.resources.filter((r) => r.type === "saas-vps:app:AppRelease").map((r) => r.name).sort();
    assert.deepEqual(perServer, ["saas-test-app-app", "saas-test-worker-app"], "the db server runs no app and gets no release");
  });

  it("the worker server's release waits for the app server's release; its upload does not", async () => {
    const deps = (await dependsOnUrns(run, "saas-test-worker-app-release")).map(urnName);
    assert.ok(deps.includes("saas-test-app-app-release"), `worker release depends on: ${deps.join(", ")}`);
    assert.ok(deps.includes("saas-test-worker-app-upload"));
    const workerPushes = deps.filter((d) => d.startsWith("saas-test-worker-push-"));
    assert.ok(workerPushes.length > 0, "and on the worker server's own pushes");
    const uploadDeps = (await dependsOnUrns(run, "saas-test-worker-app-upload")).map(urnName);
    assert.ok(!uploadDeps.some((d) => d.startsWith("saas-test-app-")), `the upload starts as soon as the worker is provisioned: ${uploadDeps.join(", ")}`);
  });

  it("the app server's release never waits for anything on the worker server", async () => {
    const deps = (await dependsOnUrns(run, "saas-test-app-app-release")).map(urnName);
    assert.ok(deps.includes("saas-test-app-app-upload"));
    assert.deepEqual(deps.filter((d) => !d.startsWith("saas-test-app-")), [], `app release depends on: ${deps.join(", ")}`);
  });

  it("the release.conf each server gets: the app server migrates and rolls web; the worker server only restarts workers", () => {
    const conf = (server: string) => {
      const push = run.mocks.ofType(COMMAND).find((c) => c.name.startsWith(`saas-test-${server}-push-`) && String(unwrapSecrets(c.inputs).create).includes("/etc/saas-vps/release.conf"));
      assert.ok(push, `a push of release.conf to ${server}`);
      return String(unwrapSecrets(push.inputs).stdin ?? "");
    };
    assert.match(conf("app"), /^WEB_PORTS="3001 3002"\nWORKER_UNITS=""\nMIGRATE="yes"$/m);
    assert.match(conf("worker"), /^WEB_PORTS=""\nWORKER_UNITS="worker@1.service worker@2.service"\nMIGRATE="no"$/m);
  });
});
