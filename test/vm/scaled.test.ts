/**
 * @vm stage `scaled` in local VMs behind the load balancer's stand-in: the example stack
 * (Pulumi.scaled.yaml, rendered with the stage still under construction) with every server the
 * plan has — app servers, worker, db — each in a Debian 13 VM booted from its exact user-data on
 * the stack's private network, and the provider's balancer stood in for by HAProxy in a network
 * namespace on that network (cli/vm/balancer.ts), which the host reaches over a veth pair. Then,
 * from the host:
 *   1 every planned server booted (cloud-init done, every push ran); the balancer's targets are
 *     the plan's app servers; /health answers through the balancer
 *   2 through the balancer every app server answers; each one's nginx access log names the host's
 *     veth address as the client (from the PROXY header), never the balancer's
 *   3 an app server refuses port 80 (and the health port) to another server of the private network
 *     (db; the network between them works: app reaches PostgreSQL on db), while the balancer's
 *     health checks keep it UP
 *   4 `release` of a new release on app under a light load through the balancer: HAProxy takes app
 *     out (its health listener answers 503 while the drain file exists) and back; failed requests
 *     are counted (goal 0) and the new release answers through the balancer afterwards
 * Each phase's seconds are printed and written to .vm/e2e-scaled/figures.json.
 *
 * Not part of `npm test` (cli/test.sh says so): four VMs beside the others would not fit CI's
 * hour. Run it with `npm run test:scaled`. Needs root (namespaces, TAP) besides QEMU.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { balancerServerStates } from "../../cli/vm/balancer";
import { httpRequest } from "../../cli/vm/http";
import { lockRunDir } from "../../cli/vm/lock";
import { sleep } from "../../cli/vm/process";
import { shipRelease } from "../../cli/vm/release";
import { ssh } from "../../cli/vm/ssh";
import { type ServerVm, type StackVms, bootStackVms, releaseStackVms, sinceStart, stopStackVms } from "../../cli/vm/stackVms";
import { type Vm, consoleTail } from "../../cli/vm/vm";
import { parseStackConfig } from "../../config/config";
import { projectConfigOf } from "../../config/keysFromPulumi";
import { RENDER_UNBUILT_STAGES, readStackFile } from "../../cli/lib/renderStack";
import { stackFilePath } from "../../cli/lib/stacks";
import { planStack, POSTGRES_PORT } from "../../plan/plan";
import { drainSeconds, undrainSeconds } from "../../plan/scaled";
import { journalTail, privateCidrUnusedByHost, sh, skipUnlessQemu, vmBudgetMs } from "./guest";

const STACK = "scaled";
const STACK_DIR = path.join(PROJECT_DIR, ".vm", "e2e-scaled");
/** No SMTP server (the example's smtpUrl is a placeholder secret): the app logs each mail instead. */
const SETTINGS = { smtpUrl: null } as const;
const BUDGET_MS = vmBudgetMs(60);

const log = (m: string) => console.log(`      ${m}`);

/** The same build under another release id: what a second `pulumi up` with changed code ships. */
function artifactWithId(artifact: string, id: string, dir: string): string {
  const stage = fs.mkdtempSync(path.join(dir, "stage-"));
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  };
  run("tar", ["-xzf", artifact, "-C", stage]);
  const manifestFile = path.join(stage, "manifest.json");
  const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8")) as { id: string };
  assert.notEqual(manifest.id, id);
  fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, id }, null, 2) + "\n");
  const out = path.join(dir, `saas-app-${id}.tar.gz`);
  run("tar", ["-czf", out, "-C", stage, "."]);
  fs.rmSync(stage, { recursive: true, force: true });
  return out;
}

describe("@vm scaled: app servers, worker and db in VMs on one private network, behind the load balancer's stand-in (HAProxy in a namespace)", function () {
  this.timeout(BUDGET_MS);
  let t0 = 0;
  let unlock: (() => void) | undefined;
  let vms: StackVms;
  const figures: Record<string, unknown> = {};
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

  const server = (name: string): ServerVm => {
    const s = vms.servers.find((x) => x.render.server === name);
    assert.ok(s, `the stack has no server ${name}`);
    assert.ok(!s.error, `server ${name} did not come up: ${s.error?.message}`);
    return s;
  };
  const vmOf = (name: string): Vm => server(name).boot!.vm;
  const lb = () => {
    assert.ok(vms.balancer, `the balancer's stand-in did not start: ${vms.balancerError?.message}`);
    return vms.balancer;
  };
  const targets = () => vms.render.loadBalancer!.targets;
  /** One request through the balancer's frontend on port 80, on a connection of its own. */
  const throughBalancer = (p: string, timeoutMs = 10000) => httpRequest(80, { host: lb().link.balancer, path: p, agent: false, timeoutMs });
  const states = async () => (await balancerServerStates(lb().statsSocket))["lb-80"] ?? {};

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
    figures.hostLoadAtStart = os.loadavg()[0].toFixed(2);
    const privateNetworkCidr = privateCidrUnusedByHost();
    figures.privateNetworkCidr = privateNetworkCidr;
    vms = await phase("boot (images, QEMU, SSH, cloud-init, pushes; all servers at once)", () => bootStackVms({
      stack: STACK, stackDir: STACK_DIR, settings: { ...SETTINGS, privateNetworkCidr }, log,
      // Four emulated VMs at once: on a busy host (SAAS_VPS_VM_BUDGET_MINUTES raised) SSH may take longer than the default 15 minutes.
      // Cloud-init too: on that host three of the four took more than its default 20 minutes after SSH.
      sshTimeoutMs: Math.max(15 * 60000, BUDGET_MS / 2), cloudInitTimeoutMs: Math.max(20 * 60000, BUDGET_MS / 2),
      onRender: (r) => log(`rendered ${r.servers.map((s) => `${s.server} (${s.roles.join("+")}, ${s.privateAddress})`).join("; ")}; balancer ${r.loadBalancer?.privateIp} ports ${r.loadBalancer?.ports.join(",")}`),
    }));
    figures.boot = Object.fromEntries(vms.servers.map((s) => [s.render.server, { ...s.at, memoryMiB: s.vm?.qemuArgs[s.vm.qemuArgs.indexOf("-m") + 1], error: s.error?.message.split("\n")[0] }]));
    log(`boot, seconds since the first QEMU start: ${JSON.stringify(figures.boot)}`);
    if (vms.servers.every((s) => !s.error)) {
      await phase("first release on every app server in turn, /health through nginx and through the balancer", () => releaseStackVms(vms, { stack: STACK, log }));
      figures.balancerHealthyAt = vms.balancerHealthyAt;
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state !== "failed" || !vms) return;
    for (const s of vms.servers.filter((x) => x.vm)) {
      log(`--- ${s.render.server}: console tail ---\n${consoleTail(s.vm!, 10)}`);
      log(`--- ${s.render.server}: journal tail ---\n${await journalTail(s.vm!, undefined, 20)}`);
    }
    if (vms.balancer) log(`--- balancer: HAProxy's log ---\n${fs.readFileSync(path.join(vms.balancer.dir, "haproxy.log"), "utf8").split("\n").slice(-20).join("\n")}`);
  });

  after(async function () {
    figures.phases = phases;
    figures.totalSeconds = Math.round((Date.now() - t0) / 1000);
    figures.hostLoadAtEnd = os.loadavg()[0].toFixed(2);
    if (!unlock) return;
    if (vms) {
      log("timings, seconds since the first QEMU start:");
      for (const s of vms.servers) {
        log(`  ${s.render.server.padEnd(7)} QEMU ${s.at.qemuStarted ?? "-"}  SSH ${s.at.ssh ?? "-"}  cloud-init done ${s.at.cloudInitDone ?? "-"}  ` +
          `pushes done ${s.at.pushed ?? "-"}  released ${s.at.released ?? "-"}  healthy ${s.at.healthy ?? "-"}`);
      }
      log(`  balancer: /health through it ${vms.balancerHealthyAt ?? "-"}`);
      figures.timings = Object.fromEntries(vms.servers.map((s) => [s.render.server, s.at]));
    }
    log(`phases (seconds): ${JSON.stringify(phases)}`);
    log(`figures: ${JSON.stringify(figures)}`);
    fs.writeFileSync(path.join(STACK_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
    if (process.env.SAAS_VPS_VM_KEEP === "1") log("SAAS_VPS_VM_KEEP=1: leaving the VMs and the balancer running (npm run vm -- stop --name e2e-scaled)");
    else await stopStackVms(STACK_DIR, { log });
    unlock();
  });

  it("1. every planned server booted from its exact user-data (cloud-init done, every push ran); the balancer's targets are the plan's app servers; /health answers through it", async function () {
    const plan = planStack(parseStackConfig(projectConfigOf(readStackFile(stackFilePath(STACK)).config), RENDER_UNBUILT_STAGES));
    assert.deepEqual(vms.servers.map((s) => s.render.server), plan.servers.map((s) => s.name));
    const failed = vms.servers.filter((s) => s.error).map((s) => s.error!.message);
    assert.deepEqual(failed, [], failed.join("\n\n"));
    for (const s of vms.servers) {
      assert.equal(s.boot!.cloudInit.status, "done", s.render.server);
      assert.deepEqual(s.boot!.cloudInit.errors, [], s.render.server);
      assert.equal(s.pushes?.count, s.render.pushes.length, s.render.server);
    }
    assert.deepEqual(lb().targets.map((t) => t.name), plan.loadBalancer!.targets);
    assert.ok(targets().length >= 2, "stage scaled has at least two app servers");
    for (const t of lb().targets) assert.equal(`${t.address}/${vms.render.networkCidr!.split("/")[1]}`, server(t.name).render.privateAddress);
    assert.equal(lb().privateAddress.split("/")[0], plan.loadBalancer!.privateIp);
    assert.ok(vms.balancerHealthyAt, "no /health through the balancer");
    const s = await states();
    assert.deepEqual(Object.keys(s).sort(), [...targets()].sort());
    for (const name of targets()) assert.equal(s[name], "UP", `${name} in HAProxy: ${JSON.stringify(s)}`);
  });

  it("2. through the balancer every app server answers, and each one's nginx logs the host's veth address as the client (PROXY protocol), never the balancer's", async function () {
    await phase("2 requests through the balancer, access logs", async () => {
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

  it("3. an app server refuses port 80 and the health port to another server of the private network (db), while the balancer, from its planned address, gets through and keeps it UP", async function () {
    await phase("3 firewall from db", async () => {
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

  it("4. release on app under light load through the balancer: HAProxy takes app out while drained and back after; failed requests counted (goal 0)", async function () {
    const app = server("app");
    const newId = crypto.randomBytes(8).toString("hex");
    const artifact = artifactWithId(app.release!.artifact, newId, fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-scaled-")));
    const load = { ok: 0, failed: 0, failures: [] as string[], byRelease: {} as Record<string, number> };
    const stateLog: { at: number; app: string; others: string[] }[] = [];
    let stop = false;
    const t = Date.now();
    // Light load: two clients, one request every 250 ms each, each on a connection of its own.
    const client = async () => {
      while (!stop) {
        try {
          const r = await throughBalancer("/health", 15000);
          if (r.status === 200) {
            load.ok++;
            const id = String(r.headers["x-app-release"]);
            load.byRelease[id] = (load.byRelease[id] ?? 0) + 1;
          } else {
            load.failed++;
            load.failures.push(`${((Date.now() - t) / 1000).toFixed(1)} s: ${r.status}`);
          }
        } catch (e) {
          load.failed++;
          load.failures.push(`${((Date.now() - t) / 1000).toFixed(1)} s: ${(e as Error).message}`);
        }
        await sleep(250);
      }
    };
    const watcher = async () => {
      while (!stop) {
        const s = await states().catch(() => ({} as Record<string, string>));
        const last = stateLog.at(-1);
        if (!last || last.app !== s.app) stateLog.push({ at: Math.round((Date.now() - t) / 100) / 10, app: s.app ?? "?", others: targets().filter((n) => n !== "app").map((n) => `${n} ${s[n]}`) });
        await sleep(500);
      }
    };
    const running = [client(), client(), watcher()];
    let released: Awaited<ReturnType<typeof shipRelease>> | undefined;
    try {
      await sleep(3000);
      released = await phase("4 release on app with its balancer drain, under load", () => shipRelease(app.boot!.vm, { stack: STACK, artifact, log }));
      // Once it is back, load reaches the new release through the balancer.
      const by = Date.now() + 60000;
      while (!load.byRelease[newId] && Date.now() < by) await sleep(500);
      await sleep(2000);
    } finally {
      stop = true;
      await Promise.all(running);
    }
    const check = vms.render.loadBalancer!.healthCheck;
    figures.releaseUnderLoad = {
      seconds: phases["4 release on app with its balancer drain, under load"], requestsOk: load.ok, requestsFailed: load.failed, failures: load.failures.slice(0, 20),
      byRelease: load.byRelease, appStateChanges: stateLog, lbOutSeconds: drainSeconds(check), lbInSeconds: undrainSeconds(check),
    };
    log(`release under load: ${load.ok} requests ok, ${load.failed} failed${load.failed ? ` (${load.failures.slice(0, 10).join("; ")})` : ""}; ` +
      `by release ${JSON.stringify(load.byRelease)}; app in HAProxy: ${stateLog.map((s) => `${s.at} s ${s.app}`).join(" → ")}`);
    assert.match(released!.output, /load balancer: draining/, "the release drained the server at the balancer");
    assert.ok(stateLog.some((s) => s.app === "DOWN"), `HAProxy never took app out: ${JSON.stringify(stateLog)}`);
    const downAt = stateLog.findIndex((s) => s.app === "DOWN");
    assert.ok(stateLog.slice(downAt).some((s) => s.app === "UP"), `app never came back UP: ${JSON.stringify(stateLog)}`);
    assert.equal((await states()).app, "UP");
    // The other app servers served throughout.
    for (const s of stateLog) for (const o of s.others) assert.match(o, / UP$/, `while app was ${s.app}: ${o}`);
    assert.ok(load.byRelease[newId], `no answer from the new release ${newId} through the balancer: ${JSON.stringify(load.byRelease)}`);
    assert.equal(load.failed, 0, `failed requests through the balancer during the release: ${load.failures.join("; ")}`);
    figures.finishedAt = sinceStart(vms);
  });
});
