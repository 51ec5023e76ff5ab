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
import { renderStackForVm } from "../../cli/vm/stack";

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
});
