/**
 * The local VM boots a stack's exact render (no VM needed here, so not tagged @vm): the
 * runner's user-data is byte-for-byte what `npm run render --machine qemu` writes, and it
 * differs from the cloud render only where the VM must differ (extra SSH key, data-volume
 * device, and with a local bucket the backup bucket settings).
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { readStackFile, renderStack, withOverrides } from "../../cli/lib/renderStack";
import { PROJECT_DIR, stackFilePath } from "../../cli/lib/stacks";
import { LEAN_VM_MEMORY_MIB, renderStackForVm, renderStackServersForVm, vmMemoryFor } from "../../cli/vm/stack";
import { bootedPart, checkLater } from "../../cli/vm/stackVms";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9mPyC0sQ0ZzLbJ3w1d8u9hZk0xF2JmQkq6Zb3aXy9T saas-vps-vm";
const BUCKET = { endpoint: "https://10.0.2.2:45678", name: "vm-backups", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** The user-data without the bundle's bytes, and the bundle's files: what can be diffed. */
function split(userData: string): { doc: Record<string, unknown> } {
  const doc = parse(userData);
  for (const f of doc.write_files) delete f.content;
  return { doc };
}

function changedFiles(a: Map<string, string>, b: Map<string, string>): string[] {
  const paths = new Set([...a.keys(), ...b.keys()]);
  return [...paths].filter((p) => a.get(p) !== b.get(p)).sort();
}

function changedLines(a: string, b: string): string[] {
  const al = new Set(a.split("\n"));
  const bl = new Set(b.split("\n"));
  return [...a.split("\n").filter((l) => !bl.has(l)).map((l) => `- ${l}`), ...b.split("\n").filter((l) => !al.has(l)).map((l) => `+ ${l}`)];
}

describe("local VM: the stack's exact render (cli/vm/stack.ts)", function () {
  this.timeout(120000);
  let tmp: string;
  let cloud: Awaited<ReturnType<typeof renderStack>>["servers"][number];

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vm-stack-"));
    cloud = (await renderStack("staging", readStackFile(stackFilePath("staging")))).servers[0];
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("without a bucket: same bytes as `npm run render -- --machine qemu --set sshPublicKeys=... --set sshAllowedCidrs=...`", async function () {
    const vm = await renderStackForVm({ stack: "staging", publicKey: KEY, outDir: path.join(tmp, "runner") });
    const keys = JSON.parse(vm.overrides["saas-vps:sshPublicKeys"]);
    const r = spawnSync("npm", ["run", "-s", "render", "--", "--stack", "staging", "--out", path.join(tmp, "cli"), "--machine", "qemu",
      "--set", `saas-vps:sshPublicKeys=${JSON.stringify(keys)}`, "--set", `saas-vps:sshAllowedCidrs=${vm.overrides["saas-vps:sshAllowedCidrs"]}`],
      { cwd: PROJECT_DIR, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const cli = fs.readFileSync(path.join(tmp, "cli", "app", "user-data.yaml"));
    assert.ok(cli.equals(fs.readFileSync(vm.userDataFile)), "runner user-data differs from npm run render's");
    // The stack's own key stays; the run dir's key is added.
    assert.equal(keys.length, 2);
    assert.equal(keys[1], KEY);
  });

  it("differs from the cloud render only in the SSH key, SSH from the QEMU host address, and the data-volume device", async function () {
    const vm = await renderStackForVm({ stack: "staging", publicKey: KEY, outDir: path.join(tmp, "runner2") });
    const a = split(cloud.userData).doc as { users: { ssh_authorized_keys?: string[] }[] };
    const b = split(vm.userData).doc as typeof a;
    assert.deepEqual(b.users[0].ssh_authorized_keys, [...a.users[0].ssh_authorized_keys!, KEY]);
    b.users[0].ssh_authorized_keys = a.users[0].ssh_authorized_keys;
    assert.deepEqual(b, a);
    assert.deepEqual(changedFiles(cloud.files, vm.files), ["/etc/saas-vps/bootstrap.env", "/etc/saas-vps/firewall.nft", "/home/admin/.ssh/authorized_keys"]);
    assert.deepEqual(changedLines(cloud.files.get("/etc/saas-vps/bootstrap.env")!, vm.files.get("/etc/saas-vps/bootstrap.env")!), [
      '- DATA_DEVICE_GLOB="/dev/disk/by-id/scsi-0DO_Volume_*"',
      '+ DATA_DEVICE_GLOB="/dev/disk/by-id/virtio-saas-data"',
    ]);
    assert.deepEqual(changedLines(cloud.files.get("/etc/saas-vps/firewall.nft")!, vm.files.get("/etc/saas-vps/firewall.nft")!), [
      '-     ip saddr { 203.0.113.0/24 } tcp dport 22 accept comment "SSH from sshAllowedCidrs"',
      '+     ip saddr { 203.0.113.0/24, 10.0.2.2/32 } tcp dport 22 accept comment "SSH from sshAllowedCidrs"',
    ]);
    assert.equal(vm.files.get("/home/admin/.ssh/authorized_keys"), `${cloud.files.get("/home/admin/.ssh/authorized_keys")}${KEY}\n`);
  });

  it("with a local bucket: also only the backup bucket settings, and the secret key stays a secret", async function () {
    const vm = await renderStackForVm({ stack: "staging", publicKey: KEY, bucket: BUCKET, outDir: path.join(tmp, "runner3") });
    assert.deepEqual(vm.secretOverrides, ["saas-vps:backupSecretAccessKey"]);
    assert.deepEqual(changedFiles(cloud.files, vm.files), ["/etc/saas-vps/backup.env", "/etc/saas-vps/bootstrap.env", "/etc/saas-vps/firewall.nft", "/home/admin/.ssh/authorized_keys"]);
    const diff = changedLines(cloud.files.get("/etc/saas-vps/backup.env")!, vm.files.get("/etc/saas-vps/backup.env")!);
    for (const l of diff) assert.match(l, /^[-+] (RESTIC_REPOSITORY|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_DEFAULT_REGION)=/, l);
    assert.ok(diff.includes("+ RESTIC_REPOSITORY='s3:https://10.0.2.2:45678/vm-backups/restic'"), diff.join("\n"));
    // Same as `pulumi config set --secret`: the parser accepts it only because it is a secret.
    const file = withOverrides(readStackFile(stackFilePath("staging")), vm.overrides);
    await assert.rejects(renderStack("staging", file, "qemu"), /backupSecretAccessKey: is a credential and is stored in plain text/);
  });

  it("a split stack: every server rendered, its planned private address, the db's memory, uploads and backups at the local S3 server with their own keys", async function () {
    const uploads = { name: "vm-uploads", accessKeyId: "S3RVERUPLOADS", secretAccessKey: "S3RVERUPLOADSSECRET" };
    const r = await renderStackServersForVm({
      stack: "separated", publicKey: KEY, bucket: { ...BUCKET, uploads }, outDir: path.join(tmp, "separated"),
      settings: { domain: null, acmeEmail: null, plainHttp: "true", privateNetworkCidr: "10.231.0.0/16" },
    });
    assert.equal(r.networkCidr, "10.231.0.0/16");
    assert.deepEqual(r.servers.map((s) => [s.server, s.roles.join("+"), s.privateAddress, s.runsApp]), [
      ["app", "web", "10.231.0.10/16", true], ["worker", "worker", "10.231.0.20/16", true], ["db", "db", "10.231.0.30/16", false],
    ]);
    const stack = readStackFile(stackFilePath("separated")).config;
    assert.ok(stack["saas-vps:domain"], "the example stack has a domain (the VM test removes it)");
    for (const s of r.servers) {
      assert.ok(fs.readFileSync(s.userDataFile, "utf8") === s.userData, `${s.server}: user-data file`);
      assert.match(s.userData, /^#cloud-config/);
    }
    // Memory: PostgreSQL's server gets its type's (the render tunes PostgreSQL for it), the others the lean size.
    const db = r.servers.find((s) => s.server === "db")!;
    assert.equal(vmMemoryFor(db), db.serverMemoryMiB);
    assert.ok(db.serverMemoryMiB > LEAN_VM_MEMORY_MIB, String(db.serverMemoryMiB));
    for (const s of r.servers.filter((x) => x.server !== "db")) assert.equal(vmMemoryFor(s), Math.min(s.serverMemoryMiB, LEAN_VM_MEMORY_MIB));
    // A read replica runs PostgreSQL tuned like the primary's: its type's memory too.
    assert.equal(vmMemoryFor({ roles: ["replica"], serverMemoryMiB: 2048 }), 2048);
    // Both buckets at the local server, each with its key; both secret keys held as secrets.
    const overrides = r.servers[0].overrides;
    assert.equal(overrides["saas-vps:uploadsBucketEndpoint"], BUCKET.endpoint);
    assert.equal(overrides["saas-vps:uploadsBucketName"], uploads.name);
    assert.equal(overrides["saas-vps:uploadsAccessKeyId"], uploads.accessKeyId);
    assert.deepEqual([...r.servers[0].secretOverrides].sort(), ["saas-vps:backupSecretAccessKey", "saas-vps:uploadsSecretAccessKey"]);
    const appEnv = r.servers[0].files.get("/etc/saas-vps/app.env")!;
    assert.match(appEnv, /^S3_ENDPOINT=https:\/\/10\.0\.2\.2:45678$/m);
    assert.match(appEnv, /^S3_ACCESS_KEY_ID=S3RVERUPLOADS$/m);
    assert.match(db.files.get("/etc/saas-vps/backup.env")!, /^RESTIC_REPOSITORY='s3:https:\/\/10\.0\.2\.2:45678\/vm-backups\/restic'$/m);
  });

  it("part of a stack: the named servers in the plan's order, the balancer targeting the booted app servers only (none booted: no balancer); an unknown name is refused, naming the stack's servers", async function () {
    const r = await renderStackServersForVm({ stack: "scaled", publicKey: KEY, outDir: path.join(tmp, "scaled"), settings: { smtpUrl: null } });
    assert.deepEqual(r.servers.map((s) => s.server), ["app", "app-2", "worker", "db", "cache"]);
    assert.deepEqual(r.loadBalancer?.targets, ["app", "app-2"]);
    assert.equal(bootedPart(r).render, r);
    const core = bootedPart(r, ["db", "app-2", "app"]);
    assert.deepEqual(core.render.servers.map((s) => s.server), ["app", "app-2", "db"]);
    assert.deepEqual(core.notBooted, ["worker", "cache"]);
    assert.deepEqual(core.render.loadBalancer?.targets, ["app", "app-2"]);
    const one = bootedPart(r, ["app-2", "db"]);
    assert.deepEqual(one.render.loadBalancer?.targets, ["app-2"]);
    assert.equal(one.render.loadBalancer?.privateIp, r.loadBalancer?.privateIp);
    assert.equal(bootedPart(r, ["worker", "db"]).render.loadBalancer, undefined);
    assert.throws(() => bootedPart(r, ["app", "app-3"]), /servers to boot: no server app-3 in stack scaled; its servers are app, app-2, worker, db, cache/);
    assert.throws(() => bootedPart(r, []), /servers to boot: none given for stack scaled; its servers are app, app-2, worker, db, cache/);
  });

  it("servers to boot later: among the part booted, none running the app, not all of it; each refusal names the servers", async function () {
    const r = await renderStackServersForVm({ stack: "scaled", publicKey: KEY, outDir: path.join(tmp, "scaled-later"), settings: { smtpUrl: null } });
    const core = bootedPart(r, ["app", "app-2", "db"]).render;
    assert.deepEqual(checkLater(core, []), []);
    assert.deepEqual(checkLater(r, ["cache", "db"]), ["cache", "db"]);
    assert.throws(() => checkLater(core, ["cache"]), /servers to boot later: cache not among the servers booted \(app, app-2, db\)/);
    assert.throws(() => checkLater(core, ["db", "app-2"]), /servers to boot later: app-2 run the app; the first release and the balancer need them booted with the others/);
    const dbOnly = bootedPart(r, ["db"]).render;
    assert.throws(() => checkLater(dbOnly, ["db"]), /servers to boot later: all of db; nothing would boot first/);
  });

  it("a one-server stack keeps the one-server call; a split stack is refused by it, naming its servers", async function () {
    await assert.rejects(renderStackForVm({ stack: "separated", publicKey: KEY, outDir: path.join(tmp, "separated-one") }),
      /stack separated renders 3 servers \(app, worker, db\); use renderStackServersForVm/);
  });
});
