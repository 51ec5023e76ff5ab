/**
 * @vm end to end: ONE Debian 13 VM booted under QEMU with the staging stack's exact rendered
 * user-data (machine kind qemu, the run dir's SSH key added, backups pointed at an s3rver on the
 * host), running the prod example's web and worker counts on staging's 2 GiB plan (the first
 * release must fit a slow box), given the stack's day-2 pushes as `pulumi up` runs them after creating the server, then
 * every point below, in order, from the host (cli/vm/README.md lists what each one checks):
 *   1 cloud-init done, no errors; every push succeeded; the box has the exact user-data and every
 *     file (the user-data's and the pushed ones)
 *   2 the release ships; /health through nginx; signup through nginx; the worker sends the welcome email
 *   O1-O9 every watchdog alert caused for real and resolved, the heartbeat, metrics, one request id
 *     through nginx, web, worker and Sentry (observabilitySteps.ts; the stack's alert webhook,
 *     heartbeat and Sentry DSN point at stand-ins on the host); before 3, as they need a box on
 *     which no backup ever ran
 *   3 backup timer; backup.service ships an encrypted dump to the host's S3; the restore drill passes
 *   4 reboot: mounts, PostgreSQL, web, worker, timers come back; the signed-up user is still there
 *   5 kill -9 a web instance and the worker: systemd restarts them, /health stays 200 meanwhile
 *   6 only SSH/HTTP/HTTPS on public addresses; PostgreSQL on loopback only
 *   6b the host firewall is loaded and drops a port the plan does not open (forwarded from the host)
 *   7 every app unit's `systemd-analyze security` exposure <= 3.0
 *   8 2 GiB VM: MemAvailable >= 40 % of MemTotal after boot and a short load
 *   9 Debian 13's systemd agrees with our OnCalendar parser on the whole corpus
 *   10 `npm run ops -- status` against the VM: every line OK; a stopped worker is a FAIL and exit 1
 * Figures are printed and written to .vm/e2e/figures.json. The budget below catches a hang.
 *
 * Skips (loudly) only when qemu-system-x86_64 cannot run at all; with CI=true that is a failure.
 * Test-only setup, not product behaviour: the guest is made to trust the local bucket's
 * self-signed certificate (a cloud bucket has a public one) — see cli/vm/s3.ts.
 */
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts } from "../../cli/lib/ports";
import { readStackFile, renderStack } from "../../cli/lib/renderStack";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { type BootResult, bootVm } from "../../cli/vm/boot";
import { httpRequest, isHealthy, waitForHealth } from "../../cli/vm/http";
import { lockRunDir } from "../../cli/vm/lock";
import { sleep } from "../../cli/vm/process";
import { type PushRun, runPushes } from "../../cli/vm/pushes";
import { type ShippedRelease, shipRelease } from "../../cli/vm/release";
import { type LocalBucket, startS3Bucket, trustBucketCaInGuest } from "../../cli/vm/s3";
import { ensureSshKey, scpToVm, ssh } from "../../cli/vm/ssh";
import { type VmRender, renderStackForVm } from "../../cli/vm/stack";
import { type Vm, consoleTail, elapsed, METADATA_STAND_IN_ADDRESS, METADATA_STAND_IN_GUEST_ADDRESS, stopVm } from "../../cli/vm/vm";
import { spawnSync } from "node:child_process";
import { parse as parseYaml } from "yaml";
import { addHostForward } from "../../cli/vm/qmp";
import { calendarCorpus, compareWithSystemd } from "../support/calendarCorpus";
import { waitForSsh } from "../../cli/vm/wait";
import { MVP_E2E_STACK, mvpE2eSettings } from "./settings";
import { ObservabilityStandIns, observabilitySteps, standInSettings } from "./observabilitySteps";
import { assertBackupInBucket, assertNoMailToken, envValue, isLoopback, parseSs, psql, runHost, sh, skipUnlessQemu, siteOfVm, unitProps, verifyAndLogIn, vmBudgetMs, waitForWelcomeEmail } from "./guest";

const STACK = MVP_E2E_STACK;
/** The prod example's process counts (its file is the one source), run on staging's 2 GiB plan. */
const RUN_DIR = path.join(PROJECT_DIR, ".vm", "e2e");
const BUCKET_NAME = "vm-e2e-backups";
// 22-24 minutes alone on a 2-core host, before the observability steps joined it (they took
// about 12 more on a VM of their own); 36 with the move rehearsal's VMs beside it at nice 10.
// `npm test` runs it alone (cli/test.sh). Its waits are hang guards, and its times are recorded,
// not asserted. The budget catches a hang: 60 minutes, counted from QEMU's start
// (waiting for an image build is the image's time, which .ci/run prints, not this suite's).
const BUDGET_MS = vmBudgetMs(60);
const log = (m: string) => console.log(`      ${m}`);
const METADATA_BODY = "metadata-stand-in";

describe("@vm e2e: the staging stack's exact user-data and day-2 pushes on a Debian 13 VM", function () {
  this.timeout(BUDGET_MS);

  /** Set when this suite's before() starts (not at file load: in `npm test` other suites run first). */
  let t0 = 0;
  let releaseLock: (() => void) | undefined;
  let bucket: LocalBucket | undefined;
  const standIns = new ObservabilityStandIns();
  let render: VmRender;
  let boot: BootResult;
  let vm: Vm;
  let release: ShippedRelease | undefined;
  let pushes: PushRun | undefined;
  const figures: Record<string, unknown> = {};
  const marker = `vm-e2e-marker-${crypto.randomBytes(12).toString("hex")}`;
  const email = `e2e-${crypto.randomBytes(4).toString("hex")}@example.com`;
  const password = "a long e2e password 123";
  let userId = "";
  let orgId = "";

  before(async function () {
    t0 = Date.now();
    skipUnlessQemu(this, "e2e");
    releaseLock = await lockRunDir(RUN_DIR, log);
    await stopVm(RUN_DIR, { log: () => {} }); // left over from an interrupted run of ours
    const key = ensureSshKey(RUN_DIR);

    // The host's S3: fresh bucket store each run, fixed port (it goes into the rendered user-data).
    const bucketDir = path.join(RUN_DIR, "bucket");
    fs.rmSync(path.join(bucketDir, "data"), { recursive: true, force: true });
    const [port] = await freePorts(1);
    bucket = await startS3Bucket({ dir: bucketDir, name: BUCKET_NAME, port });
    // The alert webhook, heartbeat and Sentry stand-ins (their port goes into the user-data too).
    await standIns.start();
    render = await renderStackForVm({
      stack: STACK, publicKey: key.publicKey, outDir: path.join(RUN_DIR, "render"), settings: { ...mvpE2eSettings(), ...standInSettings(standIns) },
      bucket: { endpoint: bucket.guestEndpoint, name: bucket.name, accessKeyId: bucket.accessKeyId, secretAccessKey: bucket.secretAccessKey },
    });
    log(`rendered stack ${STACK} for qemu: ${render.userDataFile} (${Buffer.byteLength(render.userData)} bytes); ` +
      `overrides: ${Object.keys(render.overrides).join(", ")}`);
    figures.hostLoadAtStart = os.loadavg()[0].toFixed(2);
    // The provider's metadata service, stood in for by a program QEMU runs per connection: it
    // answers every request with METADATA_BODY (point 1c).
    const standIn = path.join(RUN_DIR, "metadata-stand-in.sh");
    fs.writeFileSync(standIn, `#!/bin/sh\nIFS= read -r request || true\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: ${METADATA_BODY.length}\\r\\nConnection: close\\r\\n\\r\\n${METADATA_BODY}'\n`, { mode: 0o755 });
    boot = await bootVm({ runDir: RUN_DIR, userDataFile: render.userDataFile, hostname: "saas-e2e", log, metadataStandIn: standIn });
    vm = boot.vm;
    figures.imageKey = boot.image.key;
    figures.imageBuilt = boot.image.built;
    figures.sshSeconds = boot.sshSeconds;
    figures.cloudInitDoneSeconds = boot.cloudInit.seconds;
    // `pulumi up` pushes right after creating the server (each push waits for cloud-init); with
    // cloud-init failed there is nothing to push onto: point 1 reports it.
    if (boot.cloudInit.status === "done") {
      pushes = await runPushes(vm, render.pushes, { log });
      figures.pushes = pushes.count;
      figures.pushSeconds = pushes.seconds;
      figures.pushesUpdated = pushes.updated;
      figures.pushOnlyFiles = render.pushOnly.length;
      // TEST-ONLY SETUP: trust the local bucket's self-signed certificate (cli/vm/s3.ts).
      await trustBucketCaInGuest(vm, bucket.certFile);
    }
  });

  after(async function () {
    figures.totalSeconds = Math.round((Date.now() - t0) / 1000);
    figures.hostLoadAtEnd = os.loadavg()[0].toFixed(2);
    if (releaseLock) {
      log(`VM figures: ${JSON.stringify(figures)}`);
      fs.writeFileSync(path.join(RUN_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
      if (vm && process.env.SAAS_VPS_VM_KEEP === "1") log(`SAAS_VPS_VM_KEEP=1: leaving the VM running (npm run vm -- stop --name e2e)`);
      else await stopVm(RUN_DIR, { log });
      if (bucket) await bucket.close();
      await standIns.close();
      releaseLock();
    }
  });

  it("1. cloud-init is `done` with no errors; every day-2 push ran; the box has the exact rendered user-data and every file, and ran bootstrap", async function () {
    assert.equal(pushes?.count, render.pushes.length, `cloud-init ${boot.cloudInit.extendedStatus}: the pushes did not run`);
    // Same bytes as rendered (cloud-init keeps what it was given in user-data.txt).
    const sha = crypto.createHash("sha256").update(render.userData).digest("hex");
    assert.equal((await sh(vm, "sudo sha256sum /var/lib/cloud/instance/user-data.txt")).split(" ")[0], sha);
    // Every file the server gets, from the user-data or a push, is on disk with the rendered content.
    const paths = [...render.files.keys()];
    const sums = await sh(vm, `sudo sha256sum ${paths.join(" ")}`);
    const onDisk = new Map(sums.trim().split("\n").map((l) => { const [h, p] = l.split(/\s+/); return [p, h]; }));
    for (const [p, content] of render.files) {
      assert.equal(onDisk.get(p), crypto.createHash("sha256").update(content).digest("hex"), `${p} differs from the render`);
    }
    figures.userDataBytes = Buffer.byteLength(render.userData);
    figures.filesChecked = paths.length;
    const ci = boot.cloudInit;
    const output = (await ssh(vm, "sudo tail -n 40 /var/log/cloud-init-output.log")).stdout;
    figures.cloudInitStatus = ci.extendedStatus;
    assert.equal(ci.status, "done", `cloud-init ${ci.extendedStatus}: ${JSON.stringify(ci.errors)}\n` +
      `cloud-init-output.log tail:\n${output}`);
    assert.deepEqual(ci.errors, []);
    assert.deepEqual(ci.recoverableErrors, {}, `recoverable errors: ${JSON.stringify(ci.recoverableErrors)}`);
    assert.match(await sh(vm, "cloud-init status --long"), /^status: done$/m);
    assert.match(await sh(vm, "sudo cat /var/lib/saas-vps/bootstrap.done"), /^\d{4}-\d\d-\d\dT/);
    const bootstrapLog = await sh(vm, "sudo grep -E '^bootstrap: ' /var/log/cloud-init-output.log");
    log(`bootstrap timeline:\n${bootstrapLog.trim().split("\n").map((l) => `        ${l}`).join("\n")}`);
    assert.match(bootstrapLog.trim().split("\n").pop() ?? "", /^bootstrap: \[\d+s\] done$/);
    // The package made no cluster of its own (createcluster.d written before the package step):
    // the only cluster is ours, on the data volume, created once.
    const clusters = (await sh(vm, "pg_lsclusters --no-header")).trim().split("\n");
    assert.equal(clusters.length, 1, clusters.join("\n"));
    assert.match(clusters[0], /^\d+\s+main\s+5432\s+online\s+postgres\s+\/srv\/data\/postgresql\/\d+\/main\s/);
    assert.doesNotMatch(bootstrapLog, /dropping PostgreSQL/);
    // systemd has loaded every unit file as it is on disk (no "changed on disk" warnings later).
    const units = paths.filter((p) => /^\/etc\/systemd\/system\/[^/]+\.(service|timer|target)$/.test(p))
      .map((p) => p.split("/").pop()!.replace(/^web@\.service$/, "web@3001.service").replace(/^worker@\.service$/, "worker@1.service"))
      .filter((u) => !u.endsWith("@.service"));
    const stale = (await sh(vm, `systemctl show -p Id -p NeedDaemonReload ${units.join(" ")}`)).trim().split("\n\n")
      .filter((block) => /NeedDaemonReload=yes/.test(block));
    assert.deepEqual(stale, [], `units systemd has not reloaded since their files changed: ${stale.join("; ")}`);
  });

  it("1c. SSH pins the host key the program made: the server presents exactly the user-data's ED25519 key; sshd applies the stack's settings (no root, keys only)", async function () {
    const pinned: string = parseYaml(render.userData).ssh_keys.ed25519_public;
    assert.match(pinned, /^ssh-ed25519 [A-Za-z0-9+/=]+$/);
    const scan = spawnSync("ssh-keyscan", ["-T", "20", "-t", "ed25519", "-p", String(vm.ports.ssh), "127.0.0.1"], { encoding: "utf8" });
    const presented = scan.stdout.trim().split("\n").find((l) => !l.startsWith("#"))?.split(" ").slice(1).join(" ");
    assert.equal(presented, pinned, `ssh-keyscan: ${scan.stdout}${scan.stderr}`);
    assert.ok(vm.knownHostsPath && fs.readFileSync(vm.knownHostsPath, "utf8").includes(pinned), "the runner does not pin it");
    // What Debian 13's sshd makes of the pushed drop-in with its own defaults, not the file's text.
    const effective = await sh(vm, "sudo sshd -T | grep -E '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication|pubkeyauthentication|maxauthtries) ' | sort");
    assert.equal(effective, ["kbdinteractiveauthentication no", "maxauthtries 3", "passwordauthentication no", "permitrootlogin no", "pubkeyauthentication yes", ""].join("\n"));
  });

  it("1d. the runner's disks: the root filesystem was grown to the overlay's size, and the kernel matches the image's modules", async function () {
    const [size, modules] = (await sh(vm, "df -B1 --output=size / | tail -1; test -d /lib/modules/$(uname -r) && echo modules-ok")).trim().split("\n");
    assert.ok(Number(size) > 8 * 1024 ** 3, `root filesystem is ${size} bytes`);
    assert.equal(modules, "modules-ok");
  });

  it("1b. Debian 13's nginx accepts the prod stack's TLS site (domain, HTTP/2) inside its own nginx.conf, with no warning", async function () {
    // The host's nginx (Debian 12, 1.22) is older than the target's; this is the target's verdict
    // on the site a stack with a domain gets (the staging VM itself has none).
    const prod = await renderStack("prod", readStackFile(path.join(PROJECT_DIR, "Pulumi.prod.yaml")));
    const site = prod.servers[0].files.get("/etc/nginx/conf.d/saas-vps.conf")!;
    assert.match(site, /^\s*http2 on;$/m);
    const local = path.join(RUN_DIR, "prod-site.conf");
    fs.writeFileSync(local, site.replaceAll("/etc/saas-vps/tls/", "/tmp/nginx-check/"));
    await sh(vm, "rm -rf /tmp/nginx-check && mkdir -p /tmp/nginx-check");
    await scpToVm(vm, local, "/tmp/nginx-check/site.conf");
    const out = await sh(vm, [
      "cd /tmp/nginx-check",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=check -keyout privkey.pem -out fullchain.pem 2>/dev/null",
      "sed -e 's#include /etc/nginx/conf.d/\\*.conf;#include /tmp/nginx-check/site.conf;#' -e 's#include /etc/nginx/sites-enabled/\\*;##' /etc/nginx/nginx.conf > nginx.conf",
      "grep -q 'include /tmp/nginx-check/site.conf;' nginx.conf",
      "sudo nginx -t -c /tmp/nginx-check/nginx.conf 2>&1",
    ].join(" && "));
    assert.match(out, /syntax is ok/);
    assert.match(out, /test is successful/);
    assert.doesNotMatch(out, /\[(warn|emerg)\]/, out);
  });

  it("2a. after shipping the release, GET /health through nginx answers 200 {\"status\":\"ok\"}", async function () {
    const before = await httpRequest(vm.ports.http, { path: "/health", agent: false }).catch((e) => ({ status: 0, body: String(e), headers: {} }));
    assert.ok(!isHealthy(before), "healthy before any release was shipped?");
    figures.healthBeforeRelease = before.status;
    release = await shipRelease(vm, { stack: STACK, log });
    figures.appBuildSeconds = Math.round(release.buildSeconds);
    figures.releaseSeconds = Math.round(release.releaseSeconds);
    const h = await waitForHealth(vm, { timeoutMs: 5 * 60000, log });
    figures.firstHealthySeconds = h.seconds;
    const r = await httpRequest(vm.ports.http, { path: "/health" });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { status: "ok" });
    assert.equal(r.headers["x-app-release"], release.id);
    assert.ok(r.headers["x-request-id"], "nginx's X-Request-Id is missing");
    assert.equal(r.headers["x-frame-options"], "DENY", "not answered through the rendered nginx site");
    assert.match(await sh(vm, "readlink /srv/app/current"), new RegExp(`releases/${release.id}\\s*$`));
  });

  it("2b. a signup through nginx creates a user, and the worker processes the welcome-email job", async function () {
    const r = await httpRequest(vm.ports.http, {
      method: "POST", path: "/auth/register", body: { email, password, name: marker, organizationName: "E2E Org" }, timeoutMs: 60000,
    });
    // Signup answers 202 without a session (the same for a taken address); the address is verified next.
    assert.equal(r.status, 202, r.body);
    assert.equal(JSON.parse(r.body).status, "verification_sent");
    assert.equal(await psql(vm, `select count(*) from users where email = '${email}' and name = '${marker}'`), "1");
    // The worker (unit worker@1) logs the email's envelope (no SMTP_URL), never its link, and the job as done.
    assertNoMailToken(await waitForWelcomeEmail(vm, email));
    ({ userId, orgId } = await verifyAndLogIn(vm, siteOfVm(vm), email, password));
    // ...and the queue no longer holds it (graphile-worker deletes completed jobs).
    assert.equal(await psql(vm, `select count(*) from graphile_worker.jobs where key = 'welcome:${userId}'`), "0");
  });

  it("2c. the metadata service answers root and the provider's agent unit only: not the app user, not a process in a web unit (even as root); no copy of the user-data is left for them; migrations ran in their sandboxed unit", async function () {
    // The stand-in NIC has no address yet (cloud-init's fallback configures the first NIC only);
    // on a provider the metadata address is on-link the same way.
    const links = await sh(vm, "ip -o link show");
    const nic = links.split("\n").find((l) => l.toLowerCase().includes(vm.metadataMac!.toLowerCase()))?.split(":")[1]?.trim();
    assert.ok(nic, `no NIC with MAC ${vm.metadataMac}:\n${links}`);
    await sh(vm, `sudo ip link set dev ${nic} up && sudo ip addr replace ${METADATA_STAND_IN_GUEST_ADDRESS}/24 dev ${nic}`);
    const get = `curl -s -m 10 http://${METADATA_STAND_IN_ADDRESS}/`;
    // Root (as cloud-init and the providers' agents run) gets the answer: the probe can see a difference.
    assert.equal((await sh(vm, `sudo ${get}`)).trim(), METADATA_BODY);
    // The app user: the host firewall's output rule (owner of the socket is not root).
    const asApp = await ssh(vm, `sudo runuser -u app -- ${get}`);
    assert.notEqual(asApp.code, 0, `the app user reached the metadata service: ${asApp.stdout}`);
    assert.doesNotMatch(asApp.stdout, new RegExp(METADATA_BODY));
    // A process in web@3001's own cgroup, as root: IPAddressDeny= is a BPF filter systemd attaches
    // to the unit's cgroup, and it applies to every process in it; root passes the firewall, so
    // only the unit's own filter can stop this request.
    const cgroup = (await sh(vm, "systemctl show -p ControlGroup --value web@3001.service")).trim();
    assert.match(cgroup, /web@3001\.service$/);
    const inUnit = await ssh(vm, `sudo sh -c 'echo $$ > /sys/fs/cgroup${cgroup}/cgroup.procs && exec ${get}'`);
    assert.notEqual(inUnit.code, 0, `a process in web@3001's cgroup reached the metadata service: ${inUnit.stdout}`);
    assert.doesNotMatch(inUnit.stdout, new RegExp(METADATA_BODY));
    // A provider's agent running as its own user (DigitalOcean's do-agent) is let through by its
    // unit: the drop-in we render has systemd put the unit's cgroup into the firewall's set. Two
    // stand-ins under dynamic users, one named like the agent and one not; then the set must
    // survive a reload of the firewall (which replaces the table) by the agent's restart. The answer
    // and curl's status go out in one echo: journald split curl's own unterminated output and a
    // later echo into two lines. "$$" is systemd's escape for a literal "$" in ExecStart.
    const agentUnit = (name: string) => `sudo tee /etc/systemd/system/${name}.service >/dev/null <<'EOF'\n[Service]\nDynamicUser=yes\n` +
      `ExecStart=/bin/sh -c 'a=$$(curl -s -m 10 http://${METADATA_STAND_IN_ADDRESS}/); echo "$$a curl exit $$?"; exec sleep infinity'\nEOF\n`;
    await sh(vm, `${agentUnit("do-agent")}${agentUnit("other-agent")}sudo systemctl daemon-reload && sudo systemctl start do-agent.service other-agent.service`);
    const agentAnswers = async (unit: string, count: number) => {
      let lines: string[] = [];
      for (let i = 0; i < 30 && lines.length < count; i++) {
        lines = (await sh(vm, `sudo journalctl -q -o cat -u ${unit}.service | grep 'curl exit' || true`)).trim().split("\n").filter(Boolean);
        if (lines.length < count) await new Promise((r) => setTimeout(r, 1000));
      }
      assert.equal(lines.length, count, `${unit}: ${lines.join(" | ")}`);
      return lines;
    };
    assert.equal((await agentAnswers("do-agent", 1))[0], `${METADATA_BODY} curl exit 0`);
    assert.match((await agentAnswers("other-agent", 1))[0], /^ ?curl exit [1-9]\d*$/);
    assert.match(await sh(vm, "sudo nft list set inet saas_vps metadata_agents"), /do-agent\.service/);
    await sh(vm, "sudo systemctl reload saas-firewall.service");
    assert.equal((await agentAnswers("do-agent", 2))[1], `${METADATA_BODY} curl exit 0`);
    assert.match(await sh(vm, "sudo nft list set inet saas_vps metadata_agents"), /do-agent\.service/);
    await sh(vm, "sudo systemctl stop do-agent.service other-agent.service && sudo rm /etc/systemd/system/do-agent.service /etc/systemd/system/other-agent.service && sudo systemctl daemon-reload");
    figures.metadata = { root: "answered", appUser: `curl exit ${asApp.code}`, inWebUnit: `curl exit ${inUnit.code}`, agentUnit: "answered, also after a firewall reload" };
    // The first-boot bundle is gone once unpacked; cloud-init's own copies are root-only.
    assert.equal((await ssh(vm, "sudo test -e /var/lib/saas-vps/first-boot-files.tar.gz")).code, 1, "the first-boot bundle is still there");
    const modes = await sh(vm, "sudo stat -L -c '%a %U:%G %n' /var/lib/cloud/instance/user-data.txt /var/lib/cloud/instance/user-data.txt.i /var/lib/cloud/instance/cloud-config.txt");
    log(`cloud-init's copies of the user-data:\n${modes.trim().split("\n").map((l) => `        ${l}`).join("\n")}`);
    for (const line of modes.trim().split("\n")) assert.match(line, /^600 root:root /, line);
    // Nothing the app user can read holds a first-boot secret (the host key, the app's SECRET_KEY).
    const secretKey = envValue(render.files.get("/etc/saas-vps/app.env")!, "SECRET_KEY");
    // The release's migrations ran in migrate@<id>.service (as the app user, in the web units' sandbox).
    const migrate = await unitProps(vm, `migrate@${release!.id}.service`, ["Result", "User", "IPAddressDeny"]);
    assert.deepEqual([migrate.Result, migrate.User], ["success", "app"], JSON.stringify(migrate));
    const readable = await ssh(vm, `sudo runuser -u app -- grep -rlsF -e 'OPENSSH PRIVATE KEY' -e '${secretKey}' /var/lib/cloud /var/log /run/cloud-init /var/lib/saas-vps /etc/saas-vps /srv/app /tmp`);
    assert.equal(readable.stdout.trim(), "", `the app user can read first-boot secrets in: ${readable.stdout}`);
  });

  observabilitySteps(standIns, () => ({ stack: STACK, vm, render, release, figures }));

  it("3. the backup timer is active; backup.service ships an encrypted dump to the host's S3; the restore drill passes", async function () {
    const timer = await unitProps(vm, "backup.timer", ["ActiveState", "UnitFileState", "NextElapseUSecRealtime"]);
    assert.equal(timer.ActiveState, "active");
    assert.equal(timer.UnitFileState, "enabled");
    assert.notEqual(timer.NextElapseUSecRealtime, "", "backup.timer has no next run");
    const drillTimer = await unitProps(vm, "restore-drill.timer", ["ActiveState", "UnitFileState"]);
    assert.deepEqual([drillTimer.ActiveState, drillTimer.UnitFileState], ["active", "enabled"]);

    // O5 made the first backup: this one must add a snapshot, and the latest must hold the marker.
    const snapshots = () => bucket!.objects().filter((o) => o.key.startsWith("restic/snapshots/")).length;
    const snapshotsBefore = snapshots();
    const tb = Date.now();
    const start = await ssh(vm, "sudo systemctl start backup.service", { timeoutMs: 10 * 60000 });
    const journal = await sh(vm, "sudo journalctl -u backup.service -b -o cat --no-pager");
    assert.equal(start.code, 0, `backup.service failed:\n${start.stderr}\n${journal}`);
    figures.backupSeconds = Math.round((Date.now() - tb) / 100) / 10;
    assert.equal((await unitProps(vm, "backup.service", ["Result"])).Result, "success");
    const backupEnv = render.files.get("/etc/saas-vps/backup.env")!;
    const stored = await assertBackupInBucket(bucket!, backupEnv, { marker, secrets: [email], cacheDir: path.join(RUN_DIR, "restic-cache") });
    assert.equal(snapshots(), snapshotsBefore + 1, "backup.service added no snapshot");
    figures.backupObjects = stored.objects;
    figures.backupBytes = stored.bytes;

    const td = Date.now();
    const drill = await ssh(vm, "sudo systemctl start restore-drill.service", { timeoutMs: 10 * 60000 });
    const drillLog = await sh(vm, "sudo journalctl -u restore-drill.service -b -o cat --no-pager");
    assert.equal(drill.code, 0, `restore-drill.service failed:\n${drill.stderr}\n${drillLog}`);
    figures.drillSeconds = Math.round((Date.now() - td) / 100) / 10;
    assert.match(drillLog, /restore drill OK/);
    figures.drill = drillLog.split("\n").find((l) => l.includes("restore drill OK"));
    assert.match(await sh(vm, "sudo backup list"), /app\.dump|[0-9a-f]{8}/);
    // Neither job triggered the failure alert.
    assert.equal((await sh(vm, "sudo journalctl -b -o cat --no-pager -u alert@backup.service.service -u alert@restore-drill.service.service | wc -l")).trim(), "0");
  });

  it("4. after a reboot, mounts, PostgreSQL, web, worker and timers come back, the signed-up user is still there, and re-running bootstrap changes nothing", async function () {
    const oldBoot = (await sh(vm, "cat /proc/sys/kernel/random/boot_id")).trim();
    const tr = Date.now();
    await ssh(vm, "sudo systemctl reboot", { timeoutMs: 30000 }); // the connection may drop: ignore its status
    let newBoot = oldBoot;
    while (newBoot === oldBoot) {
      if (Date.now() - tr > 10 * 60000) assert.fail(`no new boot after 10 min; console:\n${consoleTail(vm, 30)}`);
      await sleep(3000);
      const r = await ssh(vm, "cat /proc/sys/kernel/random/boot_id", { timeoutMs: 20000 });
      if (r.code === 0) newBoot = r.stdout.trim();
    }
    await waitForSsh(vm, { log });
    const state = (await ssh(vm, "systemctl is-system-running --wait", { timeoutMs: 5 * 60000 })).stdout.trim();
    figures.rebootToSystemReadySeconds = Math.round((Date.now() - tr) / 100) / 10;
    const failed = (await sh(vm, "systemctl --failed --plain --no-legend --no-pager")).trim();
    assert.equal(state, "running", `system state after reboot: ${state}; failed units:\n${failed}`);
    // Hang guards, not deadlines: the times are recorded (beside other VMs a slow host has taken
    // several minutes from "running" to healthy: three web instances start at once on TCG).
    const h = await waitForHealth(vm, { timeoutMs: 10 * 60000, log });
    figures.rebootToHealthySeconds = Math.round((Date.now() - tr) / 100) / 10;
    assert.equal(h.release, release?.id);

    // Mount: the data volume by label on /srv/data, with the cluster on it.
    const mount = (await sh(vm, "findmnt -n -o SOURCE,FSTYPE /srv/data")).trim().split(/\s+/);
    assert.equal(mount[1], "ext4");
    assert.equal((await sh(vm, `sudo blkid -o value -s LABEL ${mount[0]}`)).trim(), "saas-data");
    assert.equal(await sh(vm, "readlink -f /dev/disk/by-id/virtio-saas-data"), `${mount[0]}\n`);
    assert.match(await sh(vm, "grep -E '^LABEL=saas-data /srv/data ext4' /etc/fstab"), /nofail/);
    assert.match(await psql(vm, "show data_directory"), /^\/srv\/data\/postgresql\/\d+\/main$/);
    // Units.
    const units = ["nginx.service", "web@3001.service", "web@3002.service", "worker@1.service", "saas-app.target",
      "backup.timer", "restore-drill.timer", "ssh.service", "fail2ban.service"];
    const pgUnit = (await sh(vm, "systemctl list-units --plain --no-legend 'postgresql@*-main.service' | awk '{print $1}'")).trim();
    assert.match(pgUnit, /^postgresql@\d+-main\.service$/);
    const active = (await ssh(vm, `systemctl is-active ${[pgUnit, ...units].join(" ")}`)).stdout.trim().split("\n");
    assert.deepEqual(active, Array(units.length + 1).fill("active"), `units: ${[pgUnit, ...units].join(" ")}`);
    // Data from before the reboot, through the database and through the app (login).
    assert.equal(await psql(vm, `select name from users where email = '${email}'`), marker);
    const login = await httpRequest(vm.ports.http, { method: "POST", path: "/auth/login", body: { email, password }, timeoutMs: 60000 });
    assert.equal(login.status, 200, login.body);
    assert.match(JSON.parse(login.body).token, /^sess_/);

    // A day-2 push of bootstrap re-runs it on the live box: it must change nothing that exists.
    const rerun = await sh(vm, "sudo /usr/local/lib/saas-vps/bootstrap 2>&1", 5 * 60000);
    assert.match(rerun, /data volume already mounted on \/srv\/data/);
    assert.doesNotMatch(rerun, /formatting|creating PostgreSQL|dropping PostgreSQL|enabled /, rerun);
    assert.match(rerun, /\] done$/m);
    assert.equal(await psql(vm, `select name from users where email = '${email}'`), marker);
    assert.equal((await waitForHealth(vm, { timeoutMs: 5 * 60000, log })).release, release?.id);
  });

  it("5. kill -9 of a web instance and the worker: systemd restarts them and /health through nginx stays 200", async function () {
    const webBefore = await unitProps(vm, "web@3001.service", ["MainPID", "NRestarts"]);
    const workerBefore = await unitProps(vm, "worker@1.service", ["MainPID", "NRestarts"]);
    assert.notEqual(webBefore.MainPID, "0");
    assert.notEqual(workerBefore.MainPID, "0");
    const probes: { at: number; status: number; ok: boolean; err?: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const at = Date.now();
        try {
          // A probe counts as failed on any answer but a healthy 200, and on no answer within 20 s
          // (a hang guard: a slow host answers late, a missing upstream answers 502 at once).
          const r = await httpRequest(vm.ports.http, { path: "/health", timeoutMs: 20000 });
          probes.push({ at, status: r.status, ok: isHealthy(r) });
        } catch (e) {
          probes.push({ at, status: 0, ok: false, err: (e as Error).message });
        }
        await sleep(100);
      }
    })();
    try {
      await sleep(2000);
      const killedAt = Date.now();
      await sh(vm, `sudo kill -9 ${webBefore.MainPID} ${workerBefore.MainPID}`);
      let web = webBefore;
      let worker = workerBefore;
      for (;;) {
        web = await unitProps(vm, "web@3001.service", ["MainPID", "NRestarts", "ActiveState"]);
        worker = await unitProps(vm, "worker@1.service", ["MainPID", "NRestarts", "ActiveState"]);
        const back = web.ActiveState === "active" && worker.ActiveState === "active" &&
          web.MainPID !== "0" && web.MainPID !== webBefore.MainPID && worker.MainPID !== "0" && worker.MainPID !== workerBefore.MainPID;
        if (back && (await ssh(vm, "curl -fsS -m 3 http://127.0.0.1:3001/health")).code === 0) break;
        if (Date.now() - killedAt > 5 * 60000) assert.fail(`not restarted after 5 min: web ${JSON.stringify(web)} worker ${JSON.stringify(worker)}`);
        await sleep(500);
      }
      figures.killToBothBackSeconds = Math.round((Date.now() - killedAt) / 100) / 10;
      // Restarted by systemd (at least once: under a loaded TCG host a fresh process has been seen
      // to fail once more, e.g. a DB connection timing out at start, before it stays up).
      figures.killRestarts = { web: Number(web.NRestarts) - Number(webBefore.NRestarts), worker: Number(worker.NRestarts) - Number(workerBefore.NRestarts) };
      if (Number(web.NRestarts) - Number(webBefore.NRestarts) > 1 || Number(worker.NRestarts) - Number(workerBefore.NRestarts) > 1) {
        log(`more than one restart after the kill: ${JSON.stringify(figures.killRestarts)}; journal:\n` +
          (await ssh(vm, "sudo journalctl -u web@3001.service -u worker@1.service -b -o cat --no-pager -n 25")).stdout);
      }
      assert.ok(Number(web.NRestarts) >= Number(webBefore.NRestarts) + 1, `web@3001 NRestarts ${webBefore.NRestarts} -> ${web.NRestarts}`);
      assert.ok(Number(worker.NRestarts) >= Number(workerBefore.NRestarts) + 1, `worker@1 NRestarts ${workerBefore.NRestarts} -> ${worker.NRestarts}`);
      await sleep(3000); // and a little after, while nginx takes 3001 back
    } finally {
      polling = false;
      await poller;
    }
    const bad = probes.filter((p) => !p.ok);
    figures.killProbes = probes.length;
    figures.killProbesFailed = bad.length;
    assert.ok(probes.length >= 20, `only ${probes.length} probes`);
    assert.deepEqual(bad, [], `${bad.length} of ${probes.length} /health probes failed during the kill`);
    const worker = await sh(vm, "sudo journalctl -u worker@1.service -b -o cat --no-pager | tail -5");
    assert.doesNotMatch(worker, /permanently failed/);
  });

  it("6. from outside only SSH, HTTP and HTTPS answer; PostgreSQL listens on loopback only", async function () {
    const tcp = parseSs(await sh(vm, "sudo ss -Hltnp"), "tcp");
    const udp = parseSs(await sh(vm, "sudo ss -Hlunp"), "udp");
    figures.tcpListeners = tcp.map((l) => `${l.local} ${l.process}`);
    figures.udpListeners = udp.map((l) => `${l.local} ${l.process}`);
    const pg = tcp.filter((l) => l.process === "postgres");
    assert.ok(pg.length > 0, "PostgreSQL does not listen at all");
    for (const l of pg) assert.ok(isLoopback(l.host), `PostgreSQL listens on ${l.local}`);
    const metrics = tcp.filter((l) => l.port === 9100);
    assert.deepEqual(metrics.map((l) => l.local), ["127.0.0.1:9100"], "the node exporter listens elsewhere than 127.0.0.1:9100 (or not at all)");
    // Every listening TCP port, tried from the guest's own public address (what the outside
    // reaches when no provider firewall is in front, as here).
    const ip = (await sh(vm, "ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1")).trim();
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
    const reachable: number[] = [];
    for (const port of [...new Set([...tcp.map((l) => l.port), 443])].sort((x, y) => x - y)) {
      if ((await ssh(vm, `timeout 3 bash -c 'exec 3<>/dev/tcp/${ip}/${port}'`)).code === 0) reachable.push(port);
    }
    figures.tcpReachableOnPublicAddress = reachable;
    const publicTcp = tcp.filter((l) => !isLoopback(l.host));
    const publicUdp = udp.filter((u) => !isLoopback(u.host) && u.port !== 68); // 68: the DHCP client (networkd)
    const unexpected = [
      ...publicTcp.filter((l) => ![22, 80, 443].includes(l.port)).map((l) => `tcp ${l.local} (${l.process})`),
      ...publicUdp.map((l) => `udp ${l.local} (${l.process})`),
      ...reachable.filter((p) => ![22, 80, 443].includes(p)).map((p) => `tcp ${ip}:${p} answers`),
    ];
    assert.deepEqual(unexpected, [], `listening on a public address besides SSH/HTTP/HTTPS:\n  ${unexpected.join("\n  ")}\n` +
      "(seen before: 5355 = systemd-resolved's LLMNR, on by default in Debian; the stack turns it off in " +
      "/etc/systemd/resolved.conf.d/50-saas-vps.conf. On a cloud server the provider firewall would hide such a listener, " +
      "the VM has none in front)");
    assert.deepEqual(reachable.filter((p) => p !== 443), [22, 80]);
    // And the host forwards only SSH/HTTP/HTTPS, on its loopback.
    const netdev = vm.qemuArgs[vm.qemuArgs.indexOf("-netdev") + 1];
    const forwards = [...netdev.matchAll(/hostfwd=tcp:([\d.]+):\d+-:(\d+)/g)].map((m) => `${m[1]}->${m[2]}`);
    assert.deepEqual(forwards.sort(), ["127.0.0.1->22", "127.0.0.1->443", "127.0.0.1->80"]);
  });

  it("6b. the host firewall is loaded, and a port the plan does not open is dropped even when forwarded to the guest", async function () {
    assert.equal((await sh(vm, "systemctl is-active saas-firewall.service")).trim(), "active");
    const table = await sh(vm, "sudo nft list table inet saas_vps");
    assert.match(table, /type filter hook input priority filter; policy drop;/);
    assert.match(table, /ip saddr 10\.0\.2\.2 tcp dport 22 accept|ip saddr \{[^}]*10\.0\.2\.2[^}]*\} tcp dport 22 accept/);
    // A listener on every address inside the guest, which the guest itself reaches (over lo)...
    await sh(vm, "sudo systemd-run --unit=fw-probe python3 -m http.server 8080 --bind 0.0.0.0");
    try {
      let local = "";
      for (let i = 0; i < 30 && local !== "200"; i++) {
        local = (await ssh(vm, "curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:8080/")).stdout.trim();
        if (local !== "200") await sleep(500);
      }
      assert.equal(local, "200", "the probe listener does not answer inside the guest");
      // ...but forwarded from the host (arriving from 10.0.2.2, like the SSH the runner uses), dropped.
      const [hostPort] = await freePorts(1);
      await addHostForward(vm.qmpSocket, hostPort, 8080);
      const r = await httpRequest(hostPort, { path: "/", timeoutMs: 4000 }).then((x) => `answered ${x.status}`, (e: Error) => `no answer: ${e.message}`);
      figures.firewallProbe = r;
      assert.match(r, /^no answer/, `port 8080 answered from outside the firewall: ${r}`);
    } finally {
      await ssh(vm, "sudo systemctl stop fw-probe");
    }
  });

  it("7. every app unit's (and backup job's) `systemd-analyze security` exposure is 3.0 or better", async function () {
    const wants = (await sh(vm, "systemctl show -p Wants --value saas-app.target")).trim().split(/\s+/).sort();
    const releaseConf = render.files.get("/etc/saas-vps/release.conf")!.replace(/"/g, "'");
    const ports = envValue(releaseConf, "WEB_PORTS").split(" ");
    const workers = envValue(releaseConf, "WORKER_UNITS").split(" ");
    assert.deepEqual(ports.length, Number(mvpE2eSettings().webInstances));
    assert.deepEqual(workers.length, Number(mvpE2eSettings().workerInstances));
    assert.deepEqual(wants, [...ports.map((p) => `web@${p}.service`), ...workers].sort());
    const score = async (unit: string) => {
      const out = await sh(vm, `systemd-analyze security --no-pager ${unit} | tail -1`);
      const m = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(out);
      if (!m) throw new Error(`no exposure line for ${unit}: ${out}`);
      return { score: Number(m[1]), label: m[2] };
    };
    const scores: Record<string, string> = {};
    for (const unit of [...wants, "backup.service", "restore-drill.service", "prometheus-node-exporter.service"]) {
      const s = await score(unit);
      scores[unit] = `${s.score} ${s.label}`;
      assert.ok(s.score <= 3.0, `${unit}: exposure ${s.score} ${s.label}`);
    }
    // For the record (Debian's unit, not ours; not asserted).
    scores["nginx.service"] = `${(await score("nginx.service")).score} (info)`;
    figures.exposure = scores;
    log(`exposure: ${JSON.stringify(scores)}`);
  });

  it("8. with 2 GiB, at least 40 % of memory stays available after boot and a short load", async function () {
    assert.equal(vm.qemuArgs[vm.qemuArgs.indexOf("-m") + 1], "2048");
    assert.equal(render.serverMemoryMiB, 2048, "the staging stack must stay on a 2 GiB plan: the VM runs its exact PostgreSQL tuning");
    const login = await httpRequest(vm.ports.http, { method: "POST", path: "/auth/login", body: { email, password }, timeoutMs: 60000 });
    const token = JSON.parse(login.body).token as string;
    // A short load: 400 requests, 4 at a time: health, authenticated reads, projects created.
    // No logins inside it: under TCG each scrypt hash (N=2^14, r=8, p=5) keeps an emulated vCPU
    // busy for seconds; with them in the mix, DB connections took > 3 s, /health answered 503 and
    // nginx (then max_fails=1, now 3; proxy_next_upstream http_503) marked both instances down: 502 "no live
    // upstreams" for 99-393 of 400 requests in 3 of 6 runs (a product finding, see
    // cli/vm/README.md). The point here is memory; the load must still be served (>= 95 %).
    const jobs: (() => Promise<number>)[] = [];
    for (let i = 0; i < 400; i++) {
      const auth = { authorization: `Bearer ${token}` };
      if (i % 4 === 1) jobs.push(async () => (await httpRequest(vm.ports.http, { path: "/me", headers: auth })).status);
      else if (i % 4 === 2) jobs.push(async () => (await httpRequest(vm.ports.http, { method: "POST", path: `/orgs/${orgId}/projects`, headers: auth, body: { name: `load ${i}` } })).status);
      else if (i % 4 === 3) jobs.push(async () => (await httpRequest(vm.ports.http, { path: `/orgs/${orgId}/projects?limit=20`, headers: auth })).status);
      else jobs.push(async () => (await httpRequest(vm.ports.http, { path: "/health" })).status);
    }
    const statuses: number[] = [];
    const tl = Date.now();
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let job = jobs.shift(); job; job = jobs.shift()) statuses.push(await job().catch(() => 0));
    }));
    const loadSeconds = (Date.now() - tl) / 1000;
    const bad = statuses.filter((s) => s === 0 || s >= 400);
    assert.equal(statuses.length, 400);
    figures.loadFailed = bad.length;
    if (bad.length) {
      figures.loadFailedStatuses = [...new Set(bad)];
      log(`load: ${bad.length} of 400 failed (${[...new Set(bad)].join(", ")}); nginx errors:\n` +
        (await ssh(vm, "sudo tail -n 5 /var/log/nginx/error.log")).stdout);
    }
    assert.ok(bad.length <= 20, `${bad.length} of 400 requests failed: ${[...new Set(bad)].join(", ")}`);
    figures.loadRequests = statuses.length;
    figures.loadReqPerSecond = Math.round(statuses.length / loadSeconds);
    await sleep(2000);
    const mem: Record<string, number> = {};
    for (const l of (await sh(vm, "cat /proc/meminfo")).split("\n")) {
      const m = /^([^:]+):\s+(\d+)/.exec(l);
      if (m) mem[m[1]] = Number(m[2]);
    }
    assert.ok(mem.MemTotal > 0 && mem.MemAvailable !== undefined, "no MemTotal/MemAvailable in /proc/meminfo");
    const pct = (100 * mem.MemAvailable) / mem.MemTotal;
    figures.memTotalMiB = Math.round(mem.MemTotal / 1024);
    figures.memAvailableMiB = Math.round(mem.MemAvailable / 1024);
    figures.memAvailablePercent = Math.round(pct * 10) / 10;
    figures.memRssMiB = Object.fromEntries((await sh(vm,
      "ps -eo rss=,comm= | awk '{s[$2]+=$1} END {for (c in s) if (s[c] > 20000) print c, int(s[c]/1024)}'"))
      .trim().split("\n").map((l) => l.split(" ")).map(([c, v]) => [c, Number(v)]));
    log(`memory after load: ${figures.memAvailableMiB} of ${figures.memTotalMiB} MiB available (${figures.memAvailablePercent} %); ` +
      `RSS by command (MiB): ${JSON.stringify(figures.memRssMiB)}`);
    assert.ok(pct >= 40, `MemAvailable ${mem.MemAvailable} kB is ${pct.toFixed(1)} % of MemTotal ${mem.MemTotal} kB`);
  });

  it("9. Debian 13's systemd agrees with our OnCalendar parser on the whole corpus (the host has an older systemd)", async function () {
    const corpus = calendarCorpus();
    const r = await ssh(vm, "TZ=UTC xargs -d '\\n' systemd-analyze calendar --", { input: corpus.join("\n") + "\n", timeoutMs: 300000 });
    const { disagreements, counts } = compareWithSystemd(corpus, () => ({ stdout: r.stdout, stderr: r.stderr }));
    figures.calendarCorpus = { expressions: corpus.length, ...counts };
    log(`OnCalendar corpus on the guest's systemd: ${JSON.stringify(counts)}`);
    assert.deepEqual(disagreements, []);
    assert.ok((counts["both accept"] ?? 0) > 300, JSON.stringify(counts));
  });

  it("10. `npm run ops -- status` from the host: every line OK; worker@1 stopped is a FAIL line and exit 1; the node exporter serves its collectors on loopback", async function () {
    // Debian 13's exporter under the rendered flags and sandbox: exactly the chosen collectors, each succeeding.
    const scraped = await sh(vm, "curl -fsS http://127.0.0.1:9100/metrics | grep '^node_scrape_collector_success'");
    const collectors = [...scraped.matchAll(/collector="([^"]+)"\} (\d)/g)].map((m) => `${m[1]}=${m[2]}`);
    assert.deepEqual(collectors.sort(), ["cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname", "vmstat"].map((c) => `${c}=1`));

    const ops = async () => {
      const r = await runHost("npm", ["run", "-s", "ops", "--", "status", "--vm", "--run-dir", RUN_DIR], process.env);
      const rows = r.stdout.toString().split("\n").filter((l) => /^ {2}\S/.test(l));
      return { code: r.code, rows, text: `${r.stdout}${r.stderr}` };
    };
    // The watchdog's own alerts are lines too: a load alert under emulation clears within its
    // 2-minute period, so a run with non-OK lines is tried again (at most 4 times, 30 s apart).
    let run = await ops();
    for (let i = 0; i < 3 && run.rows.some((l) => !l.startsWith("  OK ")); i++) {
      log(`ops status not all OK yet (exit ${run.code}):\n${run.rows.filter((l) => !l.startsWith("  OK ")).join("\n")}`);
      await sleep(30000);
      run = await ops();
    }
    log(`npm run ops -- status:\n${run.text.trimEnd().split("\n").map((l) => `        ${l}`).join("\n")}`);
    figures.opsStatusLines = run.rows.length;
    assert.equal(run.code, 0, run.text);
    assert.deepEqual(run.rows.filter((l) => !l.startsWith("  OK ")), []);
    const checks = run.rows.map((l) => l.slice(8).split(/\s{2,}/)[0]);
    for (const check of ["unit web@3001.service", "unit worker@1.service", "unit nginx.service", "unit watchdog.timer", "unit backup.timer",
      "unit prometheus-node-exporter.service", "nginx -t", "health via nginx", "listen 127.0.0.1:9100", "disk-root", "disk-data", "memory",
      "database as web", "database as worker", "database local", "replication", "backup", "restore-drill", "release", "alerts"]) {
      assert.ok(checks.includes(check), `no ${check} line:\n${run.text}`);
    }
    assert.ok(checks.some((c) => /^unit postgresql@\d+-main\.service$/.test(c)), run.text);
    assert.ok(run.rows.some((l) => /^ {2}OK\s+release\s+[0-9a-f]{16} /.test(l)), run.text);

    await sh(vm, "sudo systemctl stop worker@1.service");
    try {
      const stopped = await ops();
      log(`with worker@1 stopped:\n${stopped.rows.filter((l) => !l.startsWith("  OK ")).map((l) => `        ${l}`).join("\n")}`);
      assert.equal(stopped.code, 1, stopped.text);
      assert.ok(stopped.rows.some((l) => /^ {2}FAIL\s+unit worker@1\.service\s+inactive \(dead\)/.test(l)), stopped.text);
    } finally {
      await sh(vm, "sudo systemctl start worker@1.service");
    }
    assert.equal((await sh(vm, "systemctl is-active worker@1.service")).trim(), "active");
  });

  it("11. stop powers the VM off through ACPI (a clean shutdown, not a kill)", async function () {
    if (process.env.SAAS_VPS_VM_KEEP === "1") {
      log("!! SKIPPED: SAAS_VPS_VM_KEEP=1 keeps the VM running, so it is not stopped here");
      this.skip();
    }
    assert.equal(await stopVm(RUN_DIR, { log }), "powerdown");
  });

  it(`finished inside the ${BUDGET_MS / 60000}-minute budget`, function () {
    const s = (Date.now() - t0) / 1000;
    const sinceQemu = elapsed(vm);
    figures.secondsBeforeStop = Math.round(s);
    figures.secondsSinceQemuStart = Math.round(sinceQemu);
    log(`e2e so far: ${s.toFixed(0)} s, of which ${sinceQemu.toFixed(0)} s since QEMU started (the rest: the image and the render)`);
    assert.ok(sinceQemu * 1000 < BUDGET_MS, `took ${sinceQemu.toFixed(0)} s since QEMU started`);
  });
});
