/**
 * @vm the move from mvp to separated, rehearsed with data (README "Moving from mvp to separated"),
 * on the example stack Pulumi.separated.yaml in local VMs on one private network:
 *
 *   step 1 (`mvpDatabase: live`): the app server runs everything as in mvp (web, worker, its own
 *     PostgreSQL, its backups); the new db server boots with an empty database whose backups wait.
 *     Both VMs boot from that step's exact user-data. (The app server of a real move booted long
 *     before from the mvp user-data and gets step 1 as pushes; QEMU cannot attach the private NIC
 *     to a running VM the way the provider does, so the VM boots with it. Every file the mvp
 *     server already has renders byte for byte the same at step 1: test/plan/move.test.ts.)
 *     Data is written through the app: signups, a project.
 *   step 2, the window: `mvp-database freeze` on app, `backup now` there, `backup restore-app` on
 *     db; `backup tables` on both agree row for row.
 *   step 3 (`mvpDatabase: kept`): the switch's pushes on app and db (what `pulumi up` runs), the
 *     web processes restart onto the db server; the users written before the move log in, a new
 *     signup lands in the db server's database and not in the old one; the old cluster's logins
 *     are locked and its backup timers off.
 * The worker server step 3 creates is not booted here: the separated e2e boots one and proves it
 * runs the jobs; this test proves the data survives the move.
 *
 * Skips (loudly) only when qemu-system-x86_64 cannot run at all; with CI=true that is a failure.
 */
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { httpRequest, isHealthy, waitForHealth } from "../../cli/vm/http";
import { lockRunDir } from "../../cli/vm/lock";
import { runPushes } from "../../cli/vm/pushes";
import type { LocalBucket } from "../../cli/vm/s3";
import { ensureSshKey } from "../../cli/vm/ssh";
import { type VmRender, renderStackServersForVm } from "../../cli/vm/stack";
import { type StackVms, bootStackVms, releaseStackVms, sinceStart, stopStackVms, trustBucketInStackVms } from "../../cli/vm/stackVms";
import { type Vm, consoleTail } from "../../cli/vm/vm";
import { journalTail, privateCidrUnusedByHost, psql, sh, skipUnlessQemu, stackBucketOverride, startStackBucket, siteOfVm, unitProps, verifyAndLogIn, vmBudgetMs, waitForWelcomeEmail } from "./guest";
import { SPLIT_SETTINGS, SPLIT_STACK } from "./settings";

const STACK = SPLIT_STACK;
const STACK_DIR = path.join(PROJECT_DIR, ".vm", "e2e-move");
const BUCKET_NAME = "vm-e2e-move-backups";
const UPLOADS_BUCKET_NAME = "vm-e2e-move-uploads";
const BUDGET_MS = vmBudgetMs(60);
const log = (m: string) => console.log(`      ${m}`);

/**
 * About 19 minutes alone on an idle 2-core machine (two VMs boot, a release, the window, a switch
 * that rolls three web instances): `npm run test:move` runs it; `npm test` leaves it out and says
 * so (cli/test.sh). The budget, mocha's timeout for each hook and step, is a hang guard: 60 minutes.
 */

describe("@vm move from mvp to separated: data written at mvp is on the db server after the move", function () {
  this.timeout(BUDGET_MS);

  let t0 = 0;
  let unlock: (() => void) | undefined;
  let bucket: LocalBucket | undefined;
  let vms: StackVms;
  let privateNetworkCidr = "";
  const figures: Record<string, unknown> = {};
  const suffix = crypto.randomBytes(4).toString("hex");
  const password = "a long move e2e password 123";
  const earlyUsers = [`move-a-${suffix}@example.com`, `move-b-${suffix}@example.com`];
  const lateUser = `move-c-${suffix}@example.com`;
  let tablesBefore = "";

  const vmOf = (name: string): Vm => {
    const s = vms.servers.find((x) => x.render.server === name);
    assert.ok(s, `the stack has no server ${name}`);
    assert.ok(!s.error, `server ${name} did not come up: ${s.error?.message}`);
    return s.boot!.vm;
  };
  const settings = (state: "live" | "kept") => ({ ...SPLIT_SETTINGS, privateNetworkCidr, mvpDatabase: state });
  const post = (vm: Vm, p: string, body: unknown, token?: string) =>
    httpRequest(vm.ports.http, { method: "POST", path: p, body, timeoutMs: 60000, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });

  before(async function () {
    t0 = Date.now();
    skipUnlessQemu(this, "move");
    unlock = await lockRunDir(STACK_DIR, log);
    await stopStackVms(STACK_DIR, { log: () => {} }); // left over from an interrupted run of ours
    bucket = await startStackBucket(STACK_DIR, { backups: BUCKET_NAME, uploads: UPLOADS_BUCKET_NAME });
    figures.hostLoadAtStart = os.loadavg()[0].toFixed(2);
    privateNetworkCidr = privateCidrUnusedByHost();
    vms = await bootStackVms({
      stack: STACK, stackDir: STACK_DIR, settings: settings("live"), log, bucket: stackBucketOverride(bucket!),
      onRender: (r) => log(`step 1 rendered ${r.servers.map((s) => `${s.server} (${s.roles.join("+")}, ${s.privateAddress}, ${s.pushes.length} pushes)`).join("; ")}`),
    });
    figures.boot = Object.fromEntries(vms.servers.map((s) => [s.render.server, { ...s.at, error: s.error?.message.split("\n")[0] }]));
    const failed = vms.servers.filter((s) => s.error);
    assert.deepEqual(failed.map((s) => s.error!.message), []);
    // TEST-ONLY SETUP: trust the local bucket's self-signed certificate (cli/vm/s3.ts).
    await trustBucketInStackVms(vms, bucket.certFile);
    await releaseStackVms(vms, { stack: STACK, log });
    figures.healthySeconds = sinceStart(vms);
  });

  afterEach(async function () {
    if (this.currentTest?.state !== "failed" || !vms) return;
    for (const s of vms.servers.filter((x) => x.vm)) {
      log(`--- ${s.render.server}: console tail ---\n${consoleTail(s.vm!, 15)}`);
      log(`--- ${s.render.server}: journal tail ---\n${await journalTail(s.vm!, undefined, 30)}`);
    }
  });

  after(async function () {
    figures.totalSeconds = Math.round((Date.now() - t0) / 1000);
    figures.hostLoadAtEnd = os.loadavg()[0].toFixed(2);
    if (!unlock) return;
    log(`figures: ${JSON.stringify(figures)}`);
    fs.writeFileSync(path.join(STACK_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
    if (process.env.SAAS_VPS_VM_KEEP === "1") log("SAAS_VPS_VM_KEEP=1: leaving the VMs running (npm run vm -- stop --name e2e-move)");
    else await stopStackVms(STACK_DIR, { log });
    if (bucket) await bucket.close();
    unlock();
  });

  it("step 1 (live): the app server runs everything on its own PostgreSQL; the new db server's database is empty and its backups wait", async function () {
    assert.deepEqual(vms.servers.map((s) => s.render.server).sort(), ["app", "db"], "step 1 has no worker server yet");
    const app = vmOf("app");
    const db = vmOf("db");
    for (const email of earlyUsers) {
      // Signup answers 202 without a session; the address is verified (SQL), then the owner logs in.
      const r = await post(app, "/auth/register", { email, password, name: `before ${email}`, organizationName: `Org ${email}` });
      assert.equal(r.status, 202, r.body);
      const { orgId, token } = await verifyAndLogIn(app, siteOfVm(app), email, password);
      const project = await post(app, `/orgs/${orgId}/projects`, { name: `project of ${email}` }, token);
      assert.equal(project.status, 201, project.body);
    }
    // The jobs run on the app server, against its own database.
    await waitForWelcomeEmail(app, earlyUsers[1]);
    assert.equal(await psql(app, `select count(*) from users where email like 'move-%-${suffix}@example.com'`), "2");
    assert.equal(await psql(db, "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')"), "0");
    const skipped = await sh(db, "sudo backup now 2>&1");
    assert.match(skipped, /skipped: this server's database is not the app's database yet/);
    const timer = await unitProps(app, "backup.timer", ["ActiveState"]);
    assert.equal(timer.ActiveState, "active", "the app server's own backups run until the switch");
  });

  it("step 2 (the window): freeze, the last backup on app, restore-app on db: every table, same rows", async function () {
    const app = vmOf("app");
    const db = vmOf("db");
    const tw = Date.now();
    figures.windowStartedAt = sinceStart(vms);
    await sh(app, "sudo /usr/local/lib/saas-vps/mvp-database freeze");
    const frozen = await httpRequest(app.ports.http, { path: "/health", agent: false }).catch((e) => ({ status: 0, body: String(e), headers: {} }));
    assert.ok(!isHealthy(frozen), "the site still answers healthy after freeze");
    // A write through the app now reaches nothing: the old database's logins are locked.
    assert.equal(await psql(app, "select count(*) from pg_roles where rolname in ('app', 'app_web', 'app_worker') and rolcanlogin"), "0");
    const tb = Date.now();
    await sh(app, "sudo backup now", 10 * 60000);
    figures.backupSeconds = Math.round((Date.now() - tb) / 100) / 10;
    tablesBefore = await sh(app, "sudo backup tables");
    assert.match(tablesBefore, /\busers\b/);
    const tr = Date.now();
    const restored = await sh(db, "sudo backup restore-app 2>&1", 10 * 60000);
    figures.restoreSeconds = Math.round((Date.now() - tr) / 100) / 10;
    assert.match(restored, /made .* on app/, restored);
    const tablesAfter = await sh(db, "sudo backup tables");
    assert.equal(tablesAfter, tablesBefore, "the db server's tables and row counts differ from the app server's");
    figures.windowSecondsBeforeSwitch = Math.round((Date.now() - tw) / 1000);
  });

  it("step 3 (kept): the switch's pushes move the web processes to the db server; old users log in, new writes land there only", async function () {
    assert.ok(tablesBefore, "step 2 did not complete");
    const app = vmOf("app");
    const db = vmOf("db");
    const key = ensureSshKey(STACK_DIR);
    const kept = await renderStackServersForVm({
      stack: STACK, publicKey: key.publicKey, outDir: path.join(STACK_DIR, "render-kept"), settings: settings("kept"), bucket: stackBucketOverride(bucket!),
    });
    const server = (name: string): VmRender => kept.servers.find((s) => s.server === name)!;
    assert.deepEqual(kept.servers.map((s) => s.server).sort(), ["app", "db", "worker"]);
    const ts = Date.now();
    // What `pulumi up` runs: each server's pushes (the db server's first: PostgreSQL lets the app in).
    const dbPushes = await runPushes(db, server("db").pushes, { log });
    const appPushes = await runPushes(app, server("app").pushes, { log });
    figures.switchPushes = { db: dbPushes.updated, app: appPushes.updated };
    await waitForHealth(app, { timeoutMs: 180000, log });
    figures.switchSeconds = Math.round((Date.now() - ts) / 1000);
    figures.downtimeSeconds = Math.round(sinceStart(vms) - (figures.windowStartedAt as number));
    // The users written before the move log in, and see their project.
    for (const email of earlyUsers) {
      const r = await post(app, "/auth/login", { email, password });
      assert.equal(r.status, 200, `${email}: ${r.body}`);
    }
    // A new signup lands in the db server's database, not in the old one.
    const r = await post(app, "/auth/register", { email: lateUser, password, name: "after the move", organizationName: "After Org" });
    assert.equal(r.status, 202, r.body);
    assert.equal(await psql(db, `select count(*) from users where email like 'move-%-${suffix}@example.com'`), "3");
    assert.equal(await psql(app, `select count(*) from users where email = '${lateUser}'`), "0");
    assert.equal(await psql(db, `select count(*) from projects where name like 'project of move-%-${suffix}@example.com'`), "2");
    // The old cluster: kept, unused, no login, no backups; no worker processes on the app server.
    assert.equal(await psql(app, "select count(*) from pg_roles where rolname in ('app', 'app_web', 'app_worker') and rolcanlogin"), "0");
    for (const timer of ["backup.timer", "restore-drill.timer"]) {
      const t = await unitProps(app, timer, ["ActiveState", "UnitFileState"]);
      assert.deepEqual([t.ActiveState, t.UnitFileState], ["inactive", "disabled"], timer);
    }
    assert.equal((await sh(app, "systemctl list-units --plain --no-legend --state=active 'worker@*' | wc -l")).trim(), "0");
    // The db server backs the app up now.
    const backup = await sh(db, "sudo backup now 2>&1", 10 * 60000);
    assert.doesNotMatch(backup, /skipped/, backup);
  });
});
