import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { ConfigError } from "../../config/config";
import { decodeWriteFiles, readUserDataBundle } from "../../cli/lib/renderStack";
import { isWrappedSecret, unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { BACKUP_PATHS } from "../../provisioning/backup";
import { RELEASE_PATHS } from "../../provisioning/release";
import { minimalRaw } from "../support/fixtures";
import { runProgram, type MockRun } from "../support/mockProgram";
import { tempDir } from "../support/tools";

type ProviderName = "hetzner" | "digitalocean";

/** The provider-specific tokens the parity contract is checked through. */
const TOKENS: Record<ProviderName, { server: string; firewall: string; volume: string; attach: string; fixedIp: string; image: string }> = {
  hetzner: {
    server: "hcloud:index/server:Server",
    firewall: "hcloud:index/firewall:Firewall",
    volume: "hcloud:index/volume:Volume",
    attach: "hcloud:index/volumeAttachment:VolumeAttachment",
    fixedIp: "hcloud:index/primaryIp:PrimaryIp",
    image: "debian-13",
  },
  digitalocean: {
    server: "digitalocean:index/droplet:Droplet",
    firewall: "digitalocean:index/firewall:Firewall",
    volume: "digitalocean:index/volume:Volume",
    attach: "digitalocean:index/volumeAttachment:VolumeAttachment",
    fixedIp: "digitalocean:index/reservedIp:ReservedIp",
    image: "debian-13-x64",
  },
};
const COMMAND = "command:remote:Command";

/** Inbound firewall rules normalized across providers: "port from sources". */
function inboundRules(run: MockRun, provider: ProviderName): string[] {
  const [fw] = run.mocks.ofType(TOKENS[provider].firewall);
  const rules: Array<{ port: string; sources: string[] }> =
    provider === "hetzner"
      ? fw.inputs.rules.map((r: any) => {
          assert.equal(r.direction, "in");
          assert.equal(r.protocol, "tcp");
          return { port: r.port, sources: r.sourceIps };
        })
      : fw.inputs.inboundRules.map((r: any) => {
          assert.equal(r.protocol, "tcp");
          return { port: r.portRange, sources: r.sourceAddresses };
        });
  return rules.map((r) => `${r.port} from ${r.sources.join(",")}`);
}

function one(run: MockRun, type: string) {
  const found = run.mocks.ofType(type);
  assert.equal(found.length, 1, `expected one ${type}, got ${found.length}`);
  return found[0];
}

for (const provider of ["hetzner", "digitalocean"] as const) {
  describe(`components under Pulumi mocks: ${provider} (parity contract)`, function () {
    let run: MockRun;
    const raw: Record<string, string> = { ...minimalRaw(provider), sshAllowedCidrs: JSON.stringify(["203.0.113.7/32", "2001:db8::/48"]) };

    before(async () => {
      run = await runProgram(raw, provider === "hetzner" ? ["backupSecretAccessKey"] : []);
    });

    it("creates one Debian 13 server in the configured region and size", () => {
      const server = one(run, TOKENS[provider].server);
      assert.equal(server.inputs.image, TOKENS[provider].image);
      assert.equal(provider === "hetzner" ? server.inputs.location : server.inputs.region, provider === "hetzner" ? "fsn1" : "fra1");
      assert.equal(provider === "hetzner" ? server.inputs.serverType : server.inputs.size, provider === "hetzner" ? "cx23" : "s-2vcpu-4gb");
    });

    it("opens 22 only to sshAllowedCidrs and 80/443 to anyone, nothing else", () => {
      assert.deepEqual(inboundRules(run, provider), [
        "22 from 203.0.113.7/32,2001:db8::/48",
        "80 from 0.0.0.0/0,::/0",
        "443 from 0.0.0.0/0,::/0",
      ]);
    });

    it("protects the server, the data volume and the fixed IP, and ignores user-data and SSH key changes (both would replace it)", () => {
      for (const type of [TOKENS[provider].server, TOKENS[provider].volume, TOKENS[provider].fixedIp]) {
        const name = one(run, type).name;
        assert.equal(run.options.get(name)?.protect, true, `${type} ${name} is not protected`);
      }
      const server = one(run, TOKENS[provider].server);
      const ignored = (run.options.get(server.name) as pulumi.CustomResourceOptions).ignoreChanges;
      assert.deepEqual(ignored, ["userData", "sshKeys"]);
      // The names must be the provider's input names, or Pulumi ignores nothing.
      for (const key of ignored ?? []) assert.ok(key in server.inputs, `${TOKENS[provider].server} has no input ${key}`);
      if (provider === "hetzner") {
        assert.equal(server.inputs.deleteProtection, true);
        assert.equal(server.inputs.rebuildProtection, true);
        assert.equal(one(run, TOKENS.hetzner.volume).inputs.deleteProtection, true);
      }
    });

    it("attaches a data volume and a fixed IPv4 to the server", () => {
      const attach = one(run, TOKENS[provider].attach);
      const volume = one(run, TOKENS[provider].volume);
      assert.equal(volume.inputs.size, 20);
      assert.ok(attach.inputs.volumeId !== undefined && (attach.inputs.serverId ?? attach.inputs.dropletId) !== undefined);
      if (provider === "hetzner") {
        const server = one(run, TOKENS.hetzner.server);
        assert.deepEqual(server.inputs.publicNets.map((n: any) => [n.ipv4Enabled, typeof n.ipv4, n.ipv6Enabled]), [[true, "number", true]]);
      } else {
        one(run, "digitalocean:index/reservedIpAssignment:ReservedIpAssignment");
        const droplet = one(run, TOKENS.digitalocean.server);
        assert.equal(droplet.inputs.monitoring, true);
        assert.ok(droplet.inputs.vpcUuid, "droplet is not in a VPC");
        assert.equal(one(run, "digitalocean:index/vpc:Vpc").inputs.region, "fra1");
      }
    });

    it("hands the rendered user-data to the server, as a secret", async () => {
      const server = one(run, TOKENS[provider].server);
      assert.ok(isWrappedSecret(server.inputs.userData), "userData reached the provider in clear");
      const userData: string = unwrapSecrets(server.inputs.userData);
      assert.ok(userData.startsWith("#cloud-config\n"));
      const doc = parse(userData);
      assert.deepEqual(doc.users[0].ssh_authorized_keys, JSON.parse(raw.sshPublicKeys));
      const ip = await valueOf(run.outputs.ipv4);
      const files = decodeWriteFiles(userData);
      assert.match(files.get("/etc/saas-vps/app.env")!, new RegExp(`^APP_URL=http://${ip.replace(/\./g, "\\.")}$`, "m"));
      assert.match(files.get("/etc/nginx/conf.d/saas-vps.conf")!, /server 127\.0\.0\.1:3001 .*\n\s+server 127\.0\.0\.1:3002 /);
    });

    it("pushes every file the server gets on day 2 (the user-data's and the push-only ones), keyed by its content hash", () => {
      const userData: string = unwrapSecrets(one(run, TOKENS[provider].server).inputs.userData);
      const files = decodeWriteFiles(userData);
      const firstBoot = readUserDataBundle(userData);
      // The large commands nothing runs on first boot travel only in the push (provisioning/files.ts).
      const pushOnly = [RELEASE_PATHS.command, BACKUP_PATHS.command];
      for (const path of pushOnly) assert.ok(!files.has(path), `${path} is in the user-data`);
      const pushes = run.mocks.ofType(COMMAND).filter((c) => c.name.includes("-push-"));
      assert.equal(pushes.length, files.size + pushOnly.length);
      const pushedOnly: string[] = [];
      for (const push of pushes) {
        const stdin: string = unwrapSecrets(push.inputs.stdin);
        const create: string = unwrapSecrets(push.inputs.create);
        const [hash] = unwrapSecrets(push.inputs.triggers);
        assert.match(hash, /^[0-9a-f]{64}$/);
        const installed = [...files.entries()].find(([, content]) => content === stdin)?.[0];
        const path = installed ?? pushOnly.find((p) => create.includes(p));
        assert.ok(path, `push ${push.name} carries content no installed file has`);
        assert.ok(create.includes(path), `push ${push.name} writes elsewhere than ${path}`);
        if (!installed) {
          pushedOnly.push(path);
        } else {
          // Day 2 must leave the mode and owner first boot gave the file (app.env stays 0600 root:root).
          const { mode, owner } = firstBoot.get(path)!;
          assert.ok(create.includes(`want='\\''${mode} ${owner}'\\''`), `push ${push.name} does not install ${path} as ${mode} ${owner}`);
        }
        const secretFile = ["/etc/saas-vps/app.env", "/etc/saas-vps/web.env", "/etc/saas-vps/worker.env", "/etc/saas-vps/db.env", "/etc/saas-vps/backup.env"].includes(path);
        assert.equal(isWrappedSecret(push.inputs.stdin), secretFile, `${path}: secret=${secretFile} expected for its content`);
        assert.equal(push.inputs.connection.user ?? unwrapSecrets(push.inputs.connection).user, "admin");
      }
      assert.deepEqual(pushedOnly.sort(), [...pushOnly].sort());
    });

    it("generates one password per database login; the owner's keeps the resource name existing stacks have (no rotation)", () => {
      const names = run.mocks.ofType("random:index/randomPassword:RandomPassword").map((r) => r.name.replace(/^.*?-(db-[a-z-]+|app-[a-z-]+|backup-[a-z-]+)$/, "$1"));
      for (const name of ["db-password", "db-web-password", "db-worker-password"]) assert.ok(names.includes(name), `no ${name} in ${names.join(", ")}`);
    });

    it("keeps secrets secret: env files, their hashes, generated passwords and bucket keys", async () => {
      const envPush = run.mocks.ofType(COMMAND).find((p) => p.name.endsWith("-etc-saas-vps-app-env"))!;
      assert.ok(envPush, "no push for /etc/saas-vps/app.env");
      assert.ok(isWrappedSecret(envPush.inputs.stdin), "app.env content reached the provider in clear");
      assert.ok(isWrappedSecret(envPush.inputs.triggers[0]) || isWrappedSecret(envPush.inputs.triggers), "app.env hash is not secret");
      assert.equal(envPush.inputs.logging, "none");
      assert.equal(await pulumi.isSecret(run.outputs.backupEncryptionPassword), true);
      assert.equal(await pulumi.isSecret(run.outputs.backupSecretAccessKey), true);
      assert.equal(await pulumi.isSecret(run.outputs.backupAccessKeyId), true);
      assert.equal(await pulumi.isSecret(run.outputs.url), false);
    });

    it("exports IPs, URL, SSH command, provider and stage", async () => {
      const ip = await valueOf(run.outputs.ipv4);
      assert.match(ip, /^192\.0\.2\.\d+$/);
      assert.equal(await valueOf(run.outputs.url), `http://${ip}`);
      assert.equal(await valueOf(run.outputs.sshCommand), `ssh admin@${ip}`);
      assert.match(await valueOf(run.outputs.ipv6), /^2001:db8::/);
      assert.equal(run.outputs.provider, provider);
      assert.equal(run.outputs.stage, "mvp");
    });
  });
}

describe("components under Pulumi mocks: behaviour across configs", function () {
  it("a config change that touches one file changes only that file's push hash", async () => {
    const hashes = async (raw: Record<string, string>) => {
      const run = await runProgram(raw, ["backupSecretAccessKey"]);
      return new Map(run.mocks.ofType(COMMAND).map((p) => [p.name, unwrapSecrets(p.inputs.triggers)[0] as string]));
    };
    const before = await hashes(minimalRaw("hetzner"));
    const after = await hashes({ ...minimalRaw("hetzner"), backupSchedule: "*-*-* 01:15:00 UTC" });
    assert.deepEqual([...after.keys()], [...before.keys()]);
    const changed = [...before.keys()].filter((name) => before.get(name) !== after.get(name));
    assert.deepEqual(changed, ["saas-test-app-push-etc-systemd-system-backup-timer"]);
  });

  it("fails before declaring any resource when the config is bad", async () => {
    await assert.rejects(runProgram({ provider: "hetzner", regoin: "fsn1" }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^saas-vps:regoin: unknown key; did you mean saas-vps:region\?$/m);
      return true;
    });
  });
});

describe("components under Pulumi mocks: app releases", function () {
  /** A small app source tree of the user's own, in a temp folder. */
  function appFixture(): string {
    const dir = tempDir("app");
    mkdirSync(join(dir, "src"));
    writeFileSync(join(dir, "package.json"), '{"name":"my-app"}\n');
    writeFileSync(join(dir, "src", "web.js"), "console.log('v1')\n");
    mkdirSync(join(dir, "node_modules", "dep"), { recursive: true });
    writeFileSync(join(dir, "node_modules", "dep", "index.js"), "ignored\n");
    return dir;
  }
  /** Every resource's inputs, by name, as plain JSON (secrets unwrapped). */
  async function snapshot(raw: Record<string, string>) {
    const run = await runProgram(raw, ["backupSecretAccessKey"]);
    return { run, inputs: new Map(run.mocks.resources.map((r) => [r.name, JSON.stringify(unwrapSecrets(r.inputs))])) };
  }

  it("builds, uploads and releases the app after provisioning, keyed by the source hash", async () => {
    const appDir = appFixture();
    const { run } = await snapshot({ ...minimalRaw("hetzner"), appDir, appBuildCommand: "./build.sh" });
    const [build] = run.mocks.ofType("command:local:Command");
    assert.equal(build.inputs.create, "./build.sh");
    assert.equal(build.inputs.dir, appDir);
    const hash = build.inputs.triggers[0];
    assert.match(hash, /^[0-9a-f]{16}$/);
    assert.equal(await valueOf(run.outputs.releaseId), hash);
    const [upload] = run.mocks.ofType("command:remote:CopyToRemote");
    assert.deepEqual(upload.inputs.triggers, [hash]);
    assert.equal(upload.inputs.remotePath, `/tmp/saas-app-${hash}.tar.gz`);
    const release = run.mocks.ofType(COMMAND).find((c) => c.name.endsWith("-app-release"))!;
    assert.deepEqual(release.inputs.triggers, [hash]);
    assert.match(release.inputs.create, new RegExp(`sudo /usr/local/sbin/release '/srv/app/artifacts/saas-app-${hash}\\.tar\\.gz'$`));
    const dependsOn = run.options.get(release.name)?.dependsOn as pulumi.Resource[];
    const pushCount = run.mocks.ofType(COMMAND).filter((c) => c.name.includes("-push-")).length;
    assert.equal(dependsOn.length, pushCount + 1, "the release must wait for the upload and every day-2 push");
  });

  it("an unchanged app gives no diff; a changed source file changes exactly the release resources", async () => {
    const appDir = appFixture();
    const raw = { ...minimalRaw("hetzner"), appDir, appBuildCommand: "./build.sh" };
    const first = await snapshot(raw);
    const changedNames = (other: Map<string, string>) => [...first.inputs.keys()].filter((name) => first.inputs.get(name) !== other.get(name));
    assert.deepEqual(changedNames((await snapshot(raw)).inputs), []);
    writeFileSync(join(appDir, "node_modules", "dep", "index.js"), "dependencies do not count\n");
    assert.deepEqual(changedNames((await snapshot(raw)).inputs), []);

    writeFileSync(join(appDir, "src", "web.js"), "console.log('v2')\n");
    const changed = await snapshot(raw);
    assert.deepEqual([...changed.inputs.keys()], [...first.inputs.keys()]);
    assert.deepEqual(changedNames(changed.inputs).sort(), ["saas-test-app-app-build", "saas-test-app-app-release", "saas-test-app-app-upload"]);
  });

  it("rejects an appDir that is not a folder, naming the key", async () => {
    await assert.rejects(runProgram({ ...minimalRaw("hetzner"), appDir: "no/such/app" }, ["backupSecretAccessKey"]), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^saas-vps:appDir: "no\/such\/app" is not a folder/);
      return true;
    });
  });
});
