/**
 * @vm — boots the cached Debian 13 image under QEMU with a small user-data and checks it from
 * the host. Slow (≈ 1.5–3 min under TCG after the image is cached; + ≈ 1.5 min for a first
 * image build, which needs root). Select with `--grep @vm`, exclude with `--grep @vm --invert`.
 * It skips only when qemu-system-x86_64 cannot run at all; everything else is a failure.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { type BootResult, bootVm } from "../../cli/vm/boot";
import { lockRunDir } from "../../cli/vm/lock";
import { ensureSshKey, ssh } from "../../cli/vm/ssh";
import { type Vm, consoleTail, elapsed, qemuAvailable, stopVm } from "../../cli/vm/vm";

const FIXTURE = path.join(__dirname, "fixtures", "boot-user-data.yaml");
const RUN_DIR = path.join(PROJECT_DIR, ".vm", "test-boot");
const PAGE_MARKER = "saas-vps vm test page";

interface HttpProbe { status: number; body: string }

function httpGet(port: number, timeoutMs = 5000): Promise<HttpProbe> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

describe("@vm Debian 13 VM runner: boot a user-data under QEMU", function () {
  this.timeout(40 * 60 * 1000);

  let boot: BootResult | undefined;
  let vm: Vm;
  const figures: Record<string, number | string> = {};
  let firstAny200: number | undefined;
  let firstPage200: number | undefined;
  let polling = false;
  let poller: Promise<void> | undefined;
  let unlock: (() => void) | undefined;

  before(async function () {
    const q = qemuAvailable();
    if (!q.ok) {
      const bar = "!".repeat(78);
      console.warn(`\n${bar}\n!! SKIPPING @vm TESTS: QEMU cannot run on this machine.\n!! ${q.reason}\n` +
        `!! Install qemu-system-x86 (cli/setup.sh) to run the Debian 13 VM tests.\n${bar}\n`);
      this.skip();
    }
    fs.mkdirSync(RUN_DIR, { recursive: true });
    // Two mocha runs must never drive (or stop) the same VM: wait for a live owner.
    unlock = await lockRunDir(RUN_DIR, (m) => console.log(`      ${m}`));
    await stopVm(RUN_DIR, { log: () => {} }); // a VM left over from an interrupted run of ours
    const key = ensureSshKey(RUN_DIR);
    const userDataFile = path.join(RUN_DIR, "test-user-data.yaml");
    fs.writeFileSync(userDataFile, fs.readFileSync(FIXTURE, "utf8").split("__SSH_PUBLIC_KEY__").join(key.publicKey));

    const log = (m: string) => console.log(`      ${m}`);
    // Probe HTTP once a second from VM start, independent of SSH/cloud-init progress.
    let vmRef: Vm | undefined;
    polling = true;
    poller = (async () => {
      while (polling && firstPage200 === undefined) {
        const running = vmRef;
        if (running) {
          try {
            const r = await httpGet(running.ports.http, 3000);
            if (r.status === 200 && firstAny200 === undefined) firstAny200 = elapsed(running);
            if (r.status === 200 && r.body.includes(PAGE_MARKER)) firstPage200 = elapsed(running);
          } catch { /* not up yet */ }
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    figures.hostLoadAtStart = os.loadavg()[0].toFixed(2);
    const t0 = Date.now();
    boot = await bootVm({ runDir: RUN_DIR, userDataFile, hostname: "saas-vm-test", log, onStart: (v) => { vmRef = v; } });
    vm = boot.vm;
    figures.imageKey = boot.image.key;
    figures.imageBuilt = String(boot.image.built);
    figures.imageBuildSeconds = boot.image.buildSeconds ?? "?";
    figures.imageDiskMiB = Math.round((boot.image.diskBytes ?? 0) / 1048576);
    figures.bootStartAfterSeconds = Math.round((vm.startedAtMs - t0) / 100) / 10;
    figures.sshSeconds = boot.sshSeconds;
    figures.cloudInitSeconds = boot.cloudInit.seconds;
    const deadline = Date.now() + 120000;
    while (firstPage200 === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    polling = false;
    await poller;
    figures.firstHttp200Seconds = firstAny200 ?? "never";
    figures.pageHttp200Seconds = firstPage200 ?? "never";
    figures.hostLoadAtEnd = os.loadavg()[0].toFixed(2);
    // Where the guest's time went (for the README figures; not asserted).
    const blame = await ssh(vm, "sudo -n cloud-init analyze blame 2>/dev/null | head -14; systemd-analyze 2>/dev/null | head -1");
    log(`cloud-init analyze blame / systemd-analyze:\n${blame.stdout.replace(/^/gm, "        ")}`);
  });

  after(async function () {
    polling = false;
    if (poller) await poller;
    if (Object.keys(figures).length) {
      console.log("      VM figures (seconds from QEMU start):", JSON.stringify(figures));
      fs.writeFileSync(path.join(RUN_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
    }
    if (unlock) {
      await stopVm(RUN_DIR, { log: () => {} });
      unlock();
    }
  });

  it("cloud-init finished `done` with no errors and no warnings", function () {
    const ci = boot!.cloudInit;
    assert.equal(ci.status, "done",
      `cloud-init status ${ci.status}: ${JSON.stringify(ci.errors)}\nconsole:\n${consoleTail(vm, 20)}`);
    assert.deepEqual(ci.errors, []);
    assert.deepEqual(ci.recoverableErrors, {}, `recoverable errors: ${JSON.stringify(ci.recoverableErrors)}`);
  });

  it("admin logs in with the run dir's key and has passwordless sudo; root login is off", async function () {
    const r = await ssh(vm, "id -un; sudo -n true && echo sudo-ok; hostname; sudo -n sshd -T | grep -E '^(permitrootlogin|passwordauthentication) '");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "admin");
    assert.equal(lines[1], "sudo-ok");
    assert.equal(lines[2], "saas-vm-test");
    assert.match(r.stdout, /^passwordauthentication no$/m);
    assert.doesNotMatch(r.stdout, /^permitrootlogin yes$/m);
  });

  it("write_files wrote the marker file", async function () {
    const r = await ssh(vm, "cat /etc/saas-vm-test/marker");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "written by cloud-init write_files\n");
  });

  it("nginx serves the user-data's page (not the default page) through the forwarded HTTP port", async function () {
    const r = await httpGet(vm.ports.http);
    assert.equal(r.status, 200);
    assert.ok(r.body.includes(PAGE_MARKER), `body: ${r.body.slice(0, 200)}`);
    assert.notEqual(figures.pageHttp200Seconds, "never");
  });

  it("PostgreSQL runs with a cluster made at first boot, listens on loopback only, and is not forwarded", async function () {
    const r = await ssh(vm, [
      "sudo -n -u postgres psql -XtAc 'select 1' ",
      "systemctl is-active saas-vps-firstboot.service",
      "sudo -n journalctl -b -u saas-vps-firstboot.service -o cat | grep -c 'creating PostgreSQL'",
      "sudo -n test -s /etc/ssl/private/ssl-cert-snakeoil.key && echo snakeoil-ok",
      "ss -Hltn 'sport = :5432' | awk '{print $4}' | sort",
    ].join(" && "));
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines.slice(0, 4), ["1", "active", "1", "snakeoil-ok"]);
    const listeners = lines.slice(4);
    assert.ok(listeners.length > 0, "nothing listens on 5432");
    for (const l of listeners) assert.match(l, /^(127\.0\.0\.1|\[::1\]):5432$/, `PostgreSQL listens on ${l}`);
    // Only SSH, HTTP and HTTPS are forwarded from the host; nothing else is reachable from outside.
    const netdev = vm.qemuArgs[vm.qemuArgs.indexOf("-netdev") + 1];
    const forwards = [...netdev.matchAll(/hostfwd=tcp:([\d.]+):\d+-:(\d+)/g)].map((m) => `${m[1]}->${m[2]}`);
    assert.deepEqual(forwards.sort(), ["127.0.0.1->22", "127.0.0.1->443", "127.0.0.1->80"]);
  });

  it("the data volume is attached as /dev/disk/by-id/virtio-saas-data (4 GiB)", async function () {
    const r = await ssh(vm, "lsblk -bndo SIZE \"$(readlink -f /dev/disk/by-id/virtio-saas-data)\"");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(4 * 1024 ** 3));
  });

  it("the root filesystem was grown to the overlay size and the kernel matches the image's modules", async function () {
    const r = await ssh(vm, "df -B1 --output=size / | tail -1; test -d /lib/modules/$(uname -r) && echo modules-ok");
    assert.equal(r.code, 0, r.stderr);
    const [size, mods] = r.stdout.trim().split("\n");
    assert.ok(Number(size) > 8 * 1024 ** 3, `root filesystem is ${size} bytes`);
    assert.equal(mods, "modules-ok");
  });

  it("stop powers the VM off via ACPI", async function () {
    const how = await stopVm(RUN_DIR, { log: (m) => console.log(`      ${m}`) });
    assert.equal(how, "powerdown");
  });
});
