/**
 * @vm stage `scaled` in local VMs behind the load balancer's stand-in: the example stack
 * (Pulumi.scaled.yaml), each server in a Debian 13 VM booted from its exact user-data on the
 * stack's private network, the provider's balancer stood in for by HAProxy in a network namespace
 * on that network (cli/vm/balancer.ts), which the host reaches over a veth pair, and both buckets
 * (backups, uploads) in one s3rver on the host.
 * Unless SAAS_VPS_VM_SERVERS says otherwise (comma-separated names, or `all`), it boots the
 * balanced part, app, app-2 and db, and the read replica, as `npm test` does; the points that
 * need a server left out (worker, cache) skip, saying so. The example stack has no read replica:
 * a run that names `replica` plans one, and boots it once the others are up, while points 1–9
 * run (its clone waits for db anyway; four emulated VMs booting at once slowed every boot by
 * 3–4 minutes). `npm run test:scaled` boots every server of the example stack (five VMs, about 45
 * minutes on 2 cores). Then, from the host:
 *   1 every booted server from its exact user-data (cloud-init done without errors, every push
 *     ran, every file as rendered); the balancer's targets are the booted app servers, UP
 *   2 the private network: planned addresses by MAC, the VMs find each other, the host reaches none
 *   3 PostgreSQL on db: loopback and its private address only; every server running the app reaches it
 *   4 each server runs its own part; 4b the critical workers on worker; 4c every app server holds
 *     connections to Valkey on cache, and none has logged it away
 *   5 through the balancer every app server answers; each one's nginx access log names the host's
 *     veth address as the client (from the PROXY header), never the balancer's
 *   6 an app server refuses port 80 (and the health port) to another server of the private network
 *     (db), while the balancer's health checks keep it UP
 *   7 a signup through the balancer is stored on db; the app records the client's own address for
 *     its login; 7b its mail is sent by a critical worker
 *   8 an upload through the balancer lands in the uploads bucket, on no VM's disk
 *   9 the db server's backup reaches the backups bucket, encrypted; its restore drill passes
 *  9b (a run that names `replica`, which plans the read replica) the replica booted as rendered;
 *     db streams to it over TLS through its slot; every web instance reads the audit log there; an
 *     invitation made through the balancer is in the audit log read there within the bound, with
 *     the client's own address; with replay paused on the replica, the next one is missing until
 *     web's check finds the replica past the bound and reads on db, and the replica is back in
 *     use once resumed; the replica's lag under a write load is a figure
 *  10 a new release rolled across the app servers in the program's order (each server's release
 *     command, the next after the one before), under GET and POST load through the balancer: each
 *     server is drained alone, no request fails, every server ends on the new release; the
 *     throughput with one server out against all in is a figure
 *  11 a release that cannot start on app-2: app takes it, app-2 fails its health gate and rolls
 *     back, the roll stops there (in `pulumi up` the failed command stops every release after it);
 *     no request fails, and app serves the new release beside app-2's old one (migrations are
 *     expand/contract, so both releases run on one schema; the next `pulumi up` retries)
 * Points 2, 3, 7–9 are stage separated's checks (test/vm/splitChecks.ts), which this stack's db,
 * worker and buckets share.
 * Each phase's seconds are printed and written to .vm/e2e-scaled/figures.json.
 * Needs root (namespaces, TAP) besides QEMU.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { balancerServerStates } from "../../cli/vm/balancer";
import { httpRequest, waitForHealthInGuest } from "../../cli/vm/http";
import { lockRunDir } from "../../cli/vm/lock";
import { sleep } from "../../cli/vm/process";
import { type ShippedRelease, shipRelease } from "../../cli/vm/release";
import { ssh } from "../../cli/vm/ssh";
import type { LocalBucket } from "../../cli/vm/s3";
import { type StackVms, bootStackVms, joinLaterServers, releaseStackVms, sinceStart, stopStackVms, trustBucketInStackVms } from "../../cli/vm/stackVms";
import type { Vm } from "../../cli/vm/vm";
import { planOfStack } from "../../cli/vm/stack";
import { POSTGRES_PORT, VALKEY_PORT } from "../../plan/plan";
import { APP_ENV_FILE, WEB_ENV_FILE } from "../../provisioning/layout";
import { drainSeconds, REPLICA_SERVER, undrainSeconds } from "../../plan/scaled";
import { packArtifact } from "../release/harness";
import { type StateChange, waitHaproxyState, watchHaproxyStates } from "../support/haproxy";
import { throughputByBalancerState } from "../support/throughput";
import { type LoadReport, runLoad } from "../support/httpLoad";
import { privateCidrUnusedByHost, psql, sh, skipUnlessQemu, stackBucketOverride, startStackBucket, vmBudgetMs } from "./guest";
import { SCALED_STACK, scaledServers, scaledSettings } from "./settings";
import { type SignedUp, assertBackupAndDrill, assertBootedAsRendered, assertEachServerRunsItsPart, assertPostgresPrivate, assertPrivateNetwork, assertUploadInBucketOnly, bootFigures, logTimings, logVmTails, serverOf, signupStoredOnDb, welcomeMailedByWorker } from "./splitChecks";

const STACK = SCALED_STACK;
const STACK_DIR = path.join(PROJECT_DIR, ".vm", "e2e-scaled");
const BUDGET_MS = vmBudgetMs(60);

const log = (m: string) => console.log(`      ${m}`);

/** The servers this run boots (undefined: every one): SAAS_VPS_VM_SERVERS, else the balanced part. */
const ONLY = scaledServers();
/** The stack's settings for them: a run that names `replica` plans the read replica. */
const SETTINGS = scaledSettings(ONLY);
/** Booted once the others are up, while points 1–9 run (bootStackVms's `later`): the replica. */
const LATER = ONLY?.includes(REPLICA_SERVER) ? [REPLICA_SERVER] : [];

/** The built artifact unpacked, for packArtifact to pack again under other ids. */
function unpacked(artifact: string, dir: string): string {
  const src = fs.mkdtempSync(path.join(dir, "src-"));
  const r = spawnSync("tar", ["-xzf", artifact, "-C", src], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar -xzf ${artifact}: ${r.stderr}`);
  return src;
}

/** A release whose web cannot start on app-2 (something only that server lacks) and runs the real web elsewhere. */
function failsOnAppTwo(realWeb: string): Record<string, string> {
  return {
    // uname, not /proc/sys/kernel/hostname: the web unit's ProcSubset=pid hides /proc/sys.
    "bin/web": '#!/bin/sh\nif [ "$(uname -n)" = "app-2" ]; then echo "web: cannot start on this server" >&2; exit 1; fi\n' +
      'exec "$(dirname "$(readlink -f "$0")")/web.real" "$@"\n',
    "bin/web.real": realWeb,
  };
}

/** A target's state change in HAProxy (StateChange, `t` in ms since the epoch), `at` seconds after the watch started (the first view of each at about 0). */
type Change = StateChange & { at: number };

/**
 * Every target drained alone: it went down and came back up, and at no moment were two targets
 * out together (replaying the changes from all up).
 */
function assertDrainedAlone(changes: Change[], targets: string[], drained: string[]): void {
  const state: Record<string, string> = Object.fromEntries(targets.map((t) => [t, "up"]));
  for (const c of changes) {
    state[c.name] = c.state;
    const out = targets.filter((t) => state[t] !== "up");
    assert.ok(out.length <= 1, `${out.join(" and ")} out of the balancer together at ${c.at} s: ${JSON.stringify(changes)}`);
  }
  for (const name of drained) {
    const downAt = changes.findIndex((c) => c.name === name && c.state === "down");
    assert.ok(downAt >= 0, `HAProxy never took ${name} out: ${JSON.stringify(changes)}`);
    assert.ok(changes.slice(downAt).some((c) => c.name === name && c.state === "up"), `${name} never came back up: ${JSON.stringify(changes)}`);
  }
}

describe("@vm scaled: the stack's servers (every one, or SAAS_VPS_VM_SERVERS) in VMs on one private network, behind the load balancer's stand-in (HAProxy in a namespace)", function () {
  this.timeout(BUDGET_MS);
  let t0 = 0;
  let unlock: (() => void) | undefined;
  let vms: StackVms;
  const figures: Record<string, unknown> = {};
  let bucket: LocalBucket | undefined;
  /** Why the guests could not be made to trust the local bucket (points 8 and 9 need it). */
  let bucketTrust: Error | undefined = new Error("not attempted: a server did not come up");
  let user: SignedUp | undefined;
  /** The first release unpacked, for points 10 and 11 to pack again under new ids. */
  let src: string | undefined;
  const source = () => (src ??= unpacked(server("app").release!.artifact, fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-scaled-"))));
  const marker = `vm-scaled-marker-${crypto.randomBytes(12).toString("hex")}`;
  const site = () => ({ host: lb().link.balancer, port: 80 });
  const phases: Record<string, number> = {};
  const phase = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    try {
      return await f();
    } finally {
      phases[name] = Math.round((Date.now() - t) / 100) / 10;
      log(`phase ${name}: ${phases[name]} s`);
    }
  };

  const server = (name: string) => serverOf(vms, name);
  const vmOf = (name: string): Vm => server(name).boot!.vm;
  const lb = () => {
    assert.ok(vms.balancer, `the balancer's stand-in did not start: ${vms.balancerError?.message}`);
    return vms.balancer;
  };
  const targets = () => vms.render.loadBalancer!.targets;
  /** One request through the balancer's frontend on port 80, on a connection of its own. */
  const throughBalancer = (p: string, timeoutMs = 10000) => httpRequest(site().port, { host: site().host, path: p, agent: false, timeoutMs });
  const states = async () => (await balancerServerStates(lb().statsSocket))["lb-80"] ?? {};
  /** Skips the point, saying so, when a server it needs is left out of this run. */
  const needs = (ctx: Mocha.Context, ...names: string[]) => {
    const booted = vms ? [...vms.servers.map((s) => s.render.server), ...LATER] : [];
    const missing = names.filter((n) => vms && !booted.includes(n));
    if (missing.length === 0) return;
    const how = missing.includes(REPLICA_SERVER)
      ? "a run that names `replica` in SAAS_VPS_VM_SERVERS plans the read replica and boots it (npm test does)"
      : "`npm run test:scaled` boots every server";
    log(`SKIPPED LOUDLY: needs ${missing.join(" and ")}, not booted in this run (it boots ${booted.join(", ")}); ${how}`);
    ctx.skip();
  };
  /** Each target's state changes in HAProxy (test/support/haproxy.ts), polled every 500 ms until stopped; seconds since the start. */
  const watchStates = () => {
    const t0 = Date.now();
    const watch = watchHaproxyStates(lb().statsSocket, 500);
    return { stop: async (): Promise<Change[]> => (await watch.stop()).map((c) => ({ ...c, at: Math.round((c.t - t0) / 100) / 10 })) };
  };
  /** GET and POST load through the balancer as the signed-up user (test/support/httpLoad.ts), light enough for emulated servers. */
  const startLoad = () => {
    let end!: () => void;
    const report = runLoad({
      base: `http://${site().host}:${site().port}`, getPath: `/orgs/${user!.orgId}/projects?limit=1`, postPath: `/orgs/${user!.orgId}/projects`,
      postBody: { name: "load {n}" }, headers: { authorization: `Bearer ${user!.token}` }, loops: 4, timeoutSeconds: 15, pauseMs: 500,
    }, new Promise<void>((r) => { end = r; }));
    return { stop: (): Promise<LoadReport> => { end(); return report; } };
  };
  const untilAllUp = async (timeoutMs: number) => {
    for (const name of targets()) await waitHaproxyState(lb().statsSocket, name, "up", timeoutMs, 500);
  };
  const releaseOn = async (name: string) => (await waitForHealthInGuest(vmOf(name), { timeoutMs: 60000, log: () => {} })).release;
  /** Each running web instance on app server `name`: "web@N.service <its last journal line of this boot matching `pattern` (grep -E), if any>". */
  const lastWords = async (name: string, pattern: string): Promise<string[]> => {
    const out = await sh(vmOf(name), "for u in $(systemctl list-units --plain --no-legend --state=active 'web@*' | awk '{print $1}'); do " +
      `printf '%s ' "$u"; sudo journalctl -u "$u" -b -o cat --no-pager | grep -E '${pattern}' | tail -n 1; echo; done`);
    const lines = out.trim().split("\n").filter(Boolean);
    assert.ok(lines.length > 0, `${name}: no web instance`);
    return lines;
  };
  /** As the signed-up owner, through the balancer. */
  const asOwner = (method: string, p: string, body?: unknown) =>
    httpRequest(site().port, { host: site().host, method, path: p, body, headers: { authorization: `Bearer ${user!.token}` }, agent: false, timeoutMs: 30000 });
  /** The owner's organization's audit log, read through the balancer (web reads it on the replica while it keeps up). */
  const auditLog = async () => {
    const r = await asOwner("GET", `/orgs/${user!.orgId}/events?limit=50`);
    assert.equal(r.status, 200, r.body);
    return (JSON.parse(r.body) as { events: { kind: string; ip: string | null; data: Record<string, unknown> }[] }).events;
  };
  /** An invitation made through the balancer (a write on db, and an event in the audit log); its id. */
  const invite = async () => {
    const r = await asOwner("POST", `/orgs/${user!.orgId}/invitations`, { email: `invited-${crypto.randomBytes(4).toString("hex")}@example.com`, role: "member" });
    assert.equal(r.status, 201, r.body);
    return (JSON.parse(r.body) as { invitation: { id: string } }).invitation.id;
  };
  const invited = (events: Awaited<ReturnType<typeof auditLog>>, id: string) => events.find((e) => e.kind === "invitation.created" && e.data.invitationId === id);

  before(async function () {
    t0 = Date.now();
    skipUnlessQemu(this, "scaled");
    if (process.getuid?.() !== 0) {
      if (process.env.CI === "true") throw new Error("the @vm scaled test needs root (the balancer's network namespace)");
      log("SKIPPED LOUDLY: the @vm scaled test needs root (the balancer's network namespace and TAP)");
      this.skip();
    }
    unlock = await lockRunDir(STACK_DIR, log);
    await stopStackVms(STACK_DIR, { log: () => {} }); // left over from an interrupted run of ours
    bucket = await startStackBucket(STACK_DIR, { backups: "vm-e2e-scaled-backups", uploads: "vm-e2e-scaled-uploads" });
    figures.hostLoadAtStart = os.loadavg()[0].toFixed(2);
    const privateNetworkCidr = privateCidrUnusedByHost();
    figures.privateNetworkCidr = privateNetworkCidr;
    vms = await phase("boot (images, QEMU, SSH, cloud-init, pushes; all servers at once)", () => bootStackVms({
      stack: STACK, stackDir: STACK_DIR, settings: { ...SETTINGS, privateNetworkCidr }, log, bucket: stackBucketOverride(bucket!), servers: ONLY, later: LATER,
      // Five emulated VMs at once: on a busy host (SAAS_VPS_VM_BUDGET_MINUTES raised) SSH may take longer than the default 15 minutes.
      // Cloud-init too: on that host three of the four took more than its default 20 minutes after SSH.
      sshTimeoutMs: Math.max(15 * 60000, BUDGET_MS / 2), cloudInitTimeoutMs: Math.max(20 * 60000, BUDGET_MS / 2),
      onRender: (r) => log(`rendered ${r.servers.map((s) => `${s.server} (${s.roles.join("+")}, ${s.privateAddress})`).join("; ")}; balancer ${r.loadBalancer?.privateIp} ports ${r.loadBalancer?.ports.join(",")}`),
    }));
    figures.boot = bootFigures(vms);
    log(`boot, seconds since the first QEMU start: ${JSON.stringify(figures.boot)}`);
    if (vms.servers.every((s) => !s.error)) {
      // TEST-ONLY SETUP: trust the local bucket's self-signed certificate (cli/vm/s3.ts); only
      // points 8 and 9 need it, so a failure here is theirs.
      bucketTrust = await phase("the guests trust the local bucket", () => trustBucketInStackVms(vms, bucket!.certFile)).then(() => undefined, (e: Error) => e);
      await phase("first release on every app server in turn, /health through nginx and through the balancer", () => releaseStackVms(vms, { stack: STACK, log }));
      figures.balancerHealthyAt = vms.balancerHealthyAt;
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state !== "failed" || !vms) return;
    await logVmTails(vms, log, { console: 10, journal: 20 });
    if (vms.balancer) log(`--- balancer: HAProxy's log ---\n${fs.readFileSync(path.join(vms.balancer.dir, "haproxy.log"), "utf8").split("\n").slice(-20).join("\n")}`);
  });

  after(async function () {
    figures.phases = phases;
    figures.totalSeconds = Math.round((Date.now() - t0) / 1000);
    figures.hostLoadAtEnd = os.loadavg()[0].toFixed(2);
    if (!unlock) return;
    if (vms) {
      figures.timings = logTimings(vms, log);
      log(`  balancer: /health through it ${vms.balancerHealthyAt ?? "-"}`);
    }
    log(`phases (seconds): ${JSON.stringify(phases)}`);
    log(`figures: ${JSON.stringify(figures)}`);
    fs.writeFileSync(path.join(STACK_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
    if (process.env.SAAS_VPS_VM_KEEP === "1") log("SAAS_VPS_VM_KEEP=1: leaving the VMs and the balancer running (npm run vm -- stop --name e2e-scaled)");
    else await stopStackVms(STACK_DIR, { log });
    // A server still booting in the background ends with its VM (its wait sees QEMU exit).
    if (vms?.later && process.env.SAAS_VPS_VM_KEEP !== "1") await vms.later;
    if (bucket) await bucket.close();
    unlock();
  });

  it("1. every booted server from its exact user-data (cloud-init done without errors, every push ran, every file as rendered); the balancer's targets are the booted app servers; /health answers through it", async function () {
    const plan = planOfStack(STACK, SETTINGS);
    const booted = (n: string) => !vms.notBooted.includes(n);
    // The servers booted later (the replica) join at their point (9b), which checks them as rendered.
    assert.deepEqual(vms.servers.map((s) => s.render.server), plan.servers.map((s) => s.name).filter((n) => booted(n) && !LATER.includes(n)));
    assert.deepEqual(vms.notBooted, ONLY ? plan.servers.map((s) => s.name).filter((n) => !ONLY.includes(n)) : []);
    if (vms.notBooted.length) log(`not booted in this run: ${vms.notBooted.join(", ")}`);
    if (LATER.length) log(`booting meanwhile, checked at 9b: ${LATER.join(", ")}`);
    await assertBootedAsRendered(vms);
    assert.deepEqual(lb().targets.map((t) => t.name), plan.loadBalancer!.targets.filter(booted));
    assert.ok(targets().length >= 2, "stage scaled has at least two app servers");
    for (const t of lb().targets) assert.equal(`${t.address}/${vms.render.networkCidr!.split("/")[1]}`, server(t.name).render.privateAddress);
    // The plan's address in the test's private network (the render's; the file's CIDR is another).
    assert.equal(lb().privateAddress.split("/")[0], vms.render.loadBalancer!.privateIp);
    assert.equal(vms.render.loadBalancer!.privateIp.split(".")[3], plan.loadBalancer!.privateIp.split(".")[3]);
    assert.ok(vms.balancerHealthyAt, "no /health through the balancer");
    const s = await states();
    assert.deepEqual(Object.keys(s).sort(), [...targets()].sort());
    for (const name of targets()) assert.equal(s[name], "UP", `${name} in HAProxy: ${JSON.stringify(s)}`);
  });

  it("2. each VM has its planned private address on the NIC with its MAC; the VMs find each other there, the host reaches none of them", async function () {
    await phase("2 private network", () => assertPrivateNetwork(vms));
  });

  it("3. PostgreSQL on db listens on loopback and its private address only; every server running the app reaches it, the host and a forwarded port do not", async function () {
    figures.postgres = await phase("3 PostgreSQL private", () => assertPostgresPrivate(vms));
  });

  it("4. each server runs its own part: web on the app servers, workers on worker, neither elsewhere", async function () {
    await phase("4 parts", () => assertEachServerRunsItsPart(vms));
  });

  it("4b. the critical workers run on worker", async function () {
    needs(this, "worker");
    const critical = await sh(vmOf("worker"), "systemctl list-units --plain --no-legend --state=active 'worker-critical@*' | awk '{print $1}'");
    assert.match(critical, /^worker-critical@\d+\.service$/m, "no critical worker on worker");
  });

  it("4c. every app server holds connections to Valkey on cache, and none of its web instances has it unavailable now", async function () {
    needs(this, "cache");
    await phase("4c Valkey", async () => {
      const cache = server("cache");
      const peers = (await sh(cache.boot!.vm, `ss -Htn state established '( sport = :${VALKEY_PORT} )'`)).trim().split("\n").filter(Boolean)
        .map((l) => l.trim().split(/\s+/).at(-1)!.replace(/:\d+$/, ""));
      figures.valkeyPeers = peers;
      for (const name of targets()) {
        const address = server(name).render.privateAddress!.split("/")[0]!;
        assert.ok(peers.includes(address), `${name} (${address}) holds no connection to Valkey on cache: peers ${peers.join(", ")}`);
        // Each web instance's last word on Valkey, if any: "back" after an outage, never "unavailable".
        // (An emulated first connect can outlast the client's 2 s connect timeout; it reconnects.)
        const lines = await lastWords(name, '"valkey (unavailable|back)');
        figures[`valkeyStatus ${name}`] = lines;
        for (const line of lines) assert.doesNotMatch(line, /valkey unavailable/, `${name}: ${line}`);
      }
    });
  });

  it("5. through the balancer every app server answers, and each one's nginx logs the host's veth address as the client (PROXY protocol), never the balancer's", async function () {
    await phase("5 requests through the balancer, access logs", async () => {
      const marker = `scaled-probe-${crypto.randomBytes(6).toString("hex")}`;
      const n = 24;
      const statuses: number[] = [];
      for (let i = 0; i < n; i++) statuses.push((await throughBalancer(`/${marker}/${i}`)).status);
      // An unknown path: one answer (404), the same from every server, and one access log line each.
      assert.equal(new Set(statuses).size, 1, `statuses: ${statuses.join(",")}`);
      assert.ok(statuses[0]! < 500, `statuses: ${statuses.join(",")}`);
      const perServer: Record<string, number> = {};
      for (const name of targets()) {
        const lines = (await sh(vmOf(name), `sudo grep -h ${marker} /var/log/nginx/saas-vps.access.log || true`)).trim().split("\n").filter(Boolean);
        perServer[name] = lines.length;
        for (const line of lines) {
          const entry = JSON.parse(line) as { remote_addr: string; uri: string };
          assert.equal(entry.remote_addr, lb().link.host, `${name} logged ${entry.remote_addr} as the client of ${entry.uri}`);
          assert.notEqual(entry.remote_addr, vms.render.loadBalancer!.privateIp);
        }
      }
      figures.requestsPerServer = perServer;
      log(`${n} requests through the balancer, per app server: ${JSON.stringify(perServer)}; client address logged: ${lb().link.host}`);
      assert.equal(Object.values(perServer).reduce((a, b) => a + b, 0), n, `every request is in exactly one server's log: ${JSON.stringify(perServer)}`);
      for (const name of targets()) assert.ok(perServer[name]! > 0, `${name} answered none of ${n} requests: ${JSON.stringify(perServer)}`);
    });
  });

  it("6. an app server refuses port 80 and the health port to another server of the private network (db), while the balancer, from its planned address, gets through and keeps it UP", async function () {
    await phase("6 firewall from db", async () => {
      const app = server("app").render.privateAddress!.split("/")[0]!;
      const db = vmOf("db");
      // The network works between them: app reaches PostgreSQL on db, which its firewall opens to app.
      const dbAddress = server("db").render.privateAddress!.split("/")[0]!;
      await sh(vmOf("app"), `timeout 8 bash -c 'exec 3<>/dev/tcp/${dbAddress}/${POSTGRES_PORT}'`);
      const port80 = await ssh(db, `timeout 8 bash -c 'exec 3<>/dev/tcp/${app}/80' && echo connected`, { timeoutMs: 60000 });
      log(`db → ${app}:80: exit ${port80.code} ${port80.stdout.trim()}${port80.stderr.trim()}`);
      assert.notEqual(port80.code, 0, "the db server connected to app's port 80");
      assert.doesNotMatch(port80.stdout, /connected/);
      // The health port too: only the balancer's address may check it.
      const health = await ssh(db, `timeout 8 bash -c 'exec 3<>/dev/tcp/${app}/8081' && echo connected`, { timeoutMs: 60000 });
      assert.notEqual(health.code, 0, "the db server connected to app's health port");
      // From the balancer's namespace (its planned address) the same port answers, with a PROXY header.
      const fromLb = spawnSync("ip", ["netns", "exec", lb().namespace, "curl", "-sS", "-m", "10", "--haproxy-protocol", "-o", "/dev/null", "-w", "%{http_code}", `http://${app}/health`], { encoding: "utf8" });
      assert.equal(fromLb.stdout, "200", fromLb.stderr);
      assert.equal((await states()).app, "UP");
    });
  });

  it("7. a signup through the balancer is stored in PostgreSQL on db, and its owner logs in through it; the app records the client's own address, never the balancer's", async function () {
    user = await phase("7 signup", () => signupStoredOnDb(vms, site(), marker));
    // The login's audit event: the address the app took from nginx (PROXY protocol, then X-Forwarded-For).
    const ip = await psql(vmOf("db"), `select host(ip) from audit_events where actor_user_id = '${user.userId}' and kind = 'auth.login' order by id desc limit 1`);
    assert.equal(ip, lb().link.host, `the app recorded ${ip || "no address"} for the login, not the host's ${lb().link.host}`);
  });

  it("7b. its welcome mail is sent by a critical worker on worker", async function () {
    needs(this, "worker");
    assert.ok(user, "no signed-up user (point 7)");
    // The mails are critical tasks: a critical worker sent it, not one of the others.
    await phase("7b welcome mail", () => welcomeMailedByWorker(vms, user!, ["worker-critical@*.service"]));
  });

  it("8. an upload through the balancer lands in the host's S3 server, on no VM's disk, and reads back", async function () {
    assert.ok(user, "no signed-up user (point 7)");
    assert.ifError(bucketTrust);
    figures.uploadObject = await phase("8 upload", () => assertUploadInBucketOnly(vms, site(), bucket!, user!));
  });

  it("9. the db server's backup reaches the host's S3 server, encrypted, and its restore drill passes", async function () {
    assert.ifError(bucketTrust);
    figures.backup = await phase("9 backup, restore drill", () => assertBackupAndDrill(vms, bucket!, { marker, secrets: user ? [user.email] : [], cacheDir: path.join(STACK_DIR, "restic-cache") }));
  });

  it("9b. the read replica on replica streams from db over TLS through its slot; the app servers read the audit log there while it keeps up (a write readable within the bound, the client's own address in it), and on db once it lags past the bound", async function () {
    needs(this, "replica");
    assert.ok(user, "no signed-up user (point 7)");
    const [joined] = await phase("9b the replica's boot, started after the others (waited for here)", () => joinLaterServers(vms));
    assert.ok(joined, "the replica was not booting in the background");
    figures.replicaBoot = joined.at;
    log(`replica: ${JSON.stringify(joined.at)} (seconds since the first QEMU start)`);
    await assertBootedAsRendered(vms, [joined]);
    figures.replica = await phase("9b read replica", async () => {
      const db = vmOf("db");
      const replica = vmOf("replica");
      const replicaAddress = server("replica").render.privateAddress!.split("/")[0]!;
      // The bound: the app's DATABASE_READ_MAX_LAG_SECONDS, its default (the render sets none).
      const boundSeconds = 10;
      for (const name of targets()) {
        const files = server(name).render.files;
        const env = files.get(WEB_ENV_FILE)!;
        for (const f of [env, files.get(APP_ENV_FILE)!]) assert.doesNotMatch(f, /^DATABASE_READ_MAX_LAG_SECONDS=/m);
        assert.match(env, new RegExp(`^DATABASE_READ_URL=postgres(ql)?://[^@]+@${replicaAddress.replaceAll(".", "\\.")}:`, "m"), `${name} does not read from the replica`);
      }
      // db streams to the replica's address over TLS, through the replica's own slot.
      let stream = "";
      for (let i = 0; i < 60 && !stream.includes("streaming"); i++) {
        stream = await psql(db, "select r.application_name, host(r.client_addr), r.state, s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid)");
        if (!stream.includes("streaming")) await sleep(1000);
      }
      assert.equal(stream, `replica_replica|${replicaAddress}|streaming|t`);
      assert.equal(await psql(db, "select slot_name, active, wal_status from pg_replication_slots"), "replica_replica|t|reserved");
      assert.equal(await psql(replica, "select pg_is_in_recovery()"), "t");
      // Each web instance's last word on the replica (its check runs every 5 s), until every one says `want`.
      const untilEveryWebSays = async (want: RegExp, timeoutMs: number) => {
        const by = Date.now() + timeoutMs;
        for (;;) {
          const words = (await Promise.all(targets().map((name) => lastWords(name, '"read replica (in use|left out)')))).flat();
          if (words.every((w) => want.test(w))) return words;
          if (Date.now() > by) assert.fail(`not every web instance says ${want} within ${timeoutMs / 1000} s: ${words.join(" | ")}`);
          await sleep(2000);
        }
      };
      const inUse = /read replica in use/;
      await untilEveryWebSays(inUse, 90000);
      // The web login's reads pool on the replica, from every app server.
      const readers = (await psql(replica, "select distinct host(client_addr) from pg_stat_activity where application_name = 'saas-app-web-reads' order by 1")).split("\n");
      for (const name of targets()) assert.ok(readers.includes(server(name).render.privateAddress!.split("/")[0]!), `${name} has no reads connection on the replica: ${readers.join(", ")}`);

      // A write on db is readable through the replica route within the bound.
      const t1 = Date.now();
      const first = await invite();
      let seen: ReturnType<typeof invited>;
      while (!(seen = invited(await auditLog(), first)) && Date.now() - t1 < boundSeconds * 1000) await sleep(100);
      const readableAfterMs = Date.now() - t1;
      assert.ok(seen, `the invitation was not in the audit log read through the balancer after ${readableAfterMs} ms (bound ${boundSeconds} s)`);
      // The app saw the client's own address (PROXY protocol, nginx's real IP), never the balancer's.
      assert.equal(seen.ip, lb().link.host, `the audit log has ${seen.ip} as the client, not the host's ${lb().link.host}`);

      // Replay paused on the replica: a new write is missing from the audit log while web still
      // trusts the replica, and there as soon as web's check finds it past the bound and reads on db.
      await psql(replica, "select pg_wal_replay_pause()");
      let fallbackAfterMs: number;
      let missedReads = 0;
      let everyOutAfterMs: number;
      try {
        const t2 = Date.now();
        const second = await invite();
        for (;;) {
          if (invited(await auditLog(), second)) break;
          missedReads++;
          if (Date.now() - t2 > (boundSeconds + 30) * 1000) assert.fail(`the paused replica's reads did not fall back to db within ${boundSeconds + 30} s`);
          await sleep(250);
        }
        fallbackAfterMs = Date.now() - t2;
        // Every instance finds the replica past the bound by its own check.
        // (pino puts the message after the fields: the reason comes first on the line.)
        await untilEveryWebSays(new RegExp(`^(?=.*read replica left out)(?=.*"reason":"lag \\d+ ms over ${boundSeconds * 1000} ms)`), 60000);
        everyOutAfterMs = Date.now() - t2;
      } finally {
        await psql(replica, "select pg_wal_replay_resume()");
      }
      assert.ok(missedReads > 0, "the audit log had the write at once: it was not read on the paused replica");
      const backInUse = Date.now();
      await untilEveryWebSays(inUse, 90000);
      const backInUseAfterMs = Date.now() - backInUse;

      // The replica's lag while writes arrive: projects made through the balancer one after the
      // other, the primary's view of the replica's replay lag sampled meanwhile.
      let writing = true;
      const samples: number[] = [];
      const sampling = (async () => {
        while (writing) {
          samples.push(Number(await psql(db, "select coalesce(round(extract(epoch from replay_lag) * 1000), 0) from pg_stat_replication where application_name = 'replica_replica'")));
        }
      })();
      const tw = Date.now();
      const writes = 60;
      try {
        for (let i = 0; i < writes; i++) assert.equal((await asOwner("POST", `/orgs/${user!.orgId}/projects`, { name: `replica lag ${i}` })).status, 201);
      } finally {
        writing = false;
        await sampling;
      }
      const writeSeconds = (Date.now() - tw) / 1000;
      const lagMs = [...samples].sort((a, b) => a - b);
      const result = {
        readableAfterMs, missedReads, fallbackAfterMs, everyOutAfterMs, backInUseAfterMs, boundSeconds,
        lagUnderWrites: { writesPerSecond: Math.round((writes / writeSeconds) * 10) / 10, samples: lagMs.length, medianMs: lagMs[lagMs.length >> 1], maxMs: lagMs.at(-1) },
      };
      log(`read replica: a write readable through it after ${readableAfterMs} ms; replay paused: ${missedReads} reads missed the next write, on db after ${fallbackAfterMs} ms; lag under writes ${JSON.stringify(result.lagUnderWrites)}`);
      return result;
    });
  });

  it("10. a new release rolled across the app servers in the program's order under GET and POST load through the balancer: each drained alone, no request fails, every server ends on it", async function () {
    assert.ok(user, "no signed-up user (point 7)");
    const B = crypto.randomBytes(8).toString("hex");
    const artifact = packArtifact(source(), B, path.dirname(source()));
    const watch = watchStates();
    const load = startLoad();
    const released: Record<string, ShippedRelease> = {};
    let report: LoadReport;
    let changes: Change[];
    try {
      await sleep(3000);
      await phase("10 roll across the app servers under load", async () => {
        // As the program chains the AppRelease commands: each server after the one before it.
        for (const name of targets()) released[name] = await shipRelease(vmOf(name), { stack: STACK, artifact, log });
        await untilAllUp(undrainSeconds(vms.render.loadBalancer!.healthCheck) * 1000 + 30000);
      });
      await sleep(2000);
    } finally {
      report = await load.stop();
      changes = await watch.stop();
    }
    const check = vms.render.loadBalancer!.healthCheck;
    const throughput = throughputByBalancerState(report, changes, targets());
    figures.rollUnderLoad = {
      seconds: phases["10 roll across the app servers under load"], requestsOk: report.ok, requestsFailed: report.failed.length, failures: report.failed.slice(0, 20),
      byMethodStatus: report.byMethodStatus, byRelease: report.byRelease, stateChanges: changes, lbOutSeconds: drainSeconds(check), lbInSeconds: undrainSeconds(check),
      releaseSeconds: Object.fromEntries(Object.entries(released).map(([n, r]) => [n, Math.round(r.releaseSeconds)])), throughput,
    };
    log(`roll under load: ${report.ok} requests ok (${JSON.stringify(report.byMethodStatus)}), ${report.failed.length} failed; by release ${JSON.stringify(report.byRelease)}; ` +
      `HAProxy: ${changes.map((c) => `${c.at} s ${c.name} ${c.state}`).join(" → ")}`);
    log(`throughput (answered requests per second, the load's 4 clients each pausing 0.5 s): all in ${throughput.allIn.perSecond} over ${throughput.allIn.seconds} s, ` +
      `one out ${throughput.oneOut.perSecond} over ${throughput.oneOut.seconds} s: ${throughput.ratio}x`);
    assert.deepEqual(report.failed.slice(0, 10), [], `${report.failed.length} failed requests of ${report.ok + report.failed.length}`);
    assert.ok(report.byMethodStatus["POST 201"] > 0 && report.byMethodStatus["GET 200"] > 0, JSON.stringify(report.byMethodStatus));
    for (const name of targets()) assert.match(released[name]!.output, /load balancer: draining/, `${name}'s release did not drain it at the balancer`);
    assertDrainedAlone(changes, targets(), targets());
    for (const name of targets()) assert.equal(await releaseOn(name), B, `${name} serves another release`);
    assert.ok(report.byRelease[B], `no answer from the new release through the balancer: ${JSON.stringify(report.byRelease)}`);
  });

  it("11. a release that cannot start on app-2: app takes it, app-2 fails its health gate and rolls back, the roll stops there; no request fails", async function () {
    assert.ok(user, "no signed-up user (point 7)");
    assert.deepEqual(targets(), ["app", "app-2"], "this point is written for the two app servers of the example stack");
    // B: what both serve now (the first release, or point 10's); C: the release app-2 cannot start.
    const B = await releaseOn("app-2");
    assert.equal(await releaseOn("app"), B);
    const C = crypto.randomBytes(8).toString("hex");
    const artifact = packArtifact(source(), C, path.dirname(source()), failsOnAppTwo(fs.readFileSync(path.join(source(), "bin/web"), "utf8")));
    const watch = watchStates();
    const load = startLoad();
    let onApp2: Error | undefined;
    let report: LoadReport;
    let changes: Change[];
    try {
      await sleep(3000);
      await phase("11 failed roll under load", async () => {
        await shipRelease(vmOf("app"), { stack: STACK, artifact, log });
        onApp2 = await shipRelease(vmOf("app-2"), { stack: STACK, artifact, log }).then(() => undefined, (e: Error) => e);
        // A failed release undrains after its rollback and exits without waiting for the balancer.
        await untilAllUp(undrainSeconds(vms.render.loadBalancer!.healthCheck) * 1000 + 30000);
      });
      await sleep(2000);
    } finally {
      report = await load.stop();
      changes = await watch.stop();
    }
    figures.failedRollUnderLoad = {
      seconds: phases["11 failed roll under load"], requestsOk: report.ok, requestsFailed: report.failed.length, failures: report.failed.slice(0, 20),
      byMethodStatus: report.byMethodStatus, byRelease: report.byRelease, stateChanges: changes,
    };
    log(`failed roll under load: ${report.ok} requests ok, ${report.failed.length} failed; by release ${JSON.stringify(report.byRelease)}; ` +
      `HAProxy: ${changes.map((c) => `${c.at} s ${c.name} ${c.state}`).join(" → ")}`);
    assert.ok(onApp2, "app-2's release must fail (the AppRelease command, and with it pulumi up)");
    assert.match(onApp2.message, /failed on the VM \(exit 1\)/);
    assert.match(onApp2.message, new RegExp(`rolled back; ${B} is serving`));
    assert.match(onApp2.message, /cannot start on this server|exited before \/health answered/);
    assert.deepEqual(report.failed.slice(0, 10), [], `${report.failed.length} failed requests of ${report.ok + report.failed.length}`);
    assertDrainedAlone(changes, targets(), targets());
    // The intended state after a failed roll: app on C, app-2 back on B, both in rotation and serving.
    assert.equal(await releaseOn("app"), C);
    assert.equal(await releaseOn("app-2"), B);
    assert.deepEqual(Object.keys(report.byRelease).filter((id) => id !== B && id !== C), [], `answers from neither release: ${JSON.stringify(report.byRelease)}`);
    assert.deepEqual(await states(), { app: "UP", "app-2": "UP" });
    figures.finishedAt = sinceStart(vms);
  });
});
