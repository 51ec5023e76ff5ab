/**
 * The stack output the rollback workflow reads: every server that runs the app (and so runs
 * `release rollback`), as the SSH destination `admin@<fixed IPv4>`; never the db server, which
 * has no release.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { minimalRaw, separatedRaw } from "../support/fixtures";
import { runProgram } from "../support/mockProgram";

const SERVER_TYPE = "hcloud:index/server:Server";
const FIXED_IP = "hcloud:index/primaryIp:PrimaryIp";

describe("stack output releaseSshTargets (where a rollback runs)", function () {
  this.timeout(120_000);

  it("mvp: the one server, as admin@ its fixed IPv4", async () => {
    const run = await runProgram(minimalRaw("hetzner"));
    const ip = run.mocks.ofType(FIXED_IP).find((r) => r.name === "saas-test-app-ipv4")!.state.ipAddress;
    assert.deepEqual(await valueOf(run.outputs.releaseSshTargets), { app: `admin@${ip}` });
  });

  it("separated: the app and worker servers, each at its own fixed IPv4; not the db server", async () => {
    const run = await runProgram({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner") });
    assert.deepEqual(run.mocks.ofType(SERVER_TYPE).map((s) => s.name).sort(), ["saas-test-app-server", "saas-test-db-server", "saas-test-worker-server"]);
    const ipOf = (name: string) => run.mocks.ofType(FIXED_IP).find((r) => r.name === `saas-test-${name}-ipv4`)!.state.ipAddress;
    const targets = await valueOf(run.outputs.releaseSshTargets);
    assert.deepEqual(targets, { app: `admin@${ipOf("app")}`, worker: `admin@${ipOf("worker")}` });
    assert.notEqual(ipOf("app"), ipOf("worker"));
  });
});

describe("stack outputs sshTargets and sshHostKeys (where `npm run ops` logs in, and the key it pins)", function () {
  this.timeout(120_000);

  it("separated: every server, db included, at its own fixed IPv4, each with the host key its user-data installs", async () => {
    const run = await runProgram({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner") });
    const ipOf = (name: string) => run.mocks.ofType(FIXED_IP).find((r) => r.name === `saas-test-${name}-ipv4`)!.state.ipAddress;
    assert.deepEqual(await valueOf(run.outputs.sshTargets), { app: `admin@${ipOf("app")}`, db: `admin@${ipOf("db")}`, worker: `admin@${ipOf("worker")}` });
    const keys = (await valueOf(run.outputs.sshHostKeys)) as Record<string, string>;
    assert.deepEqual(Object.keys(keys).sort(), ["app", "db", "worker"]);
    for (const [name, key] of Object.entries(keys)) {
      assert.match(key, /^ssh-ed25519 \S+$/, name);
      const server = run.mocks.ofType(SERVER_TYPE).find((s) => s.name === `saas-test-${name}-server`)!;
      assert.equal(parse(unwrapSecrets(server.inputs.userData)).ssh_keys.ed25519_public, key, `${name}: its user-data installs another key`);
    }
    assert.equal(new Set(Object.values(keys)).size, 3, "servers share a host key");
  });
});
