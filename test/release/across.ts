/**
 * Two app servers of stage scaled behind HAProxy (the provider's balancer stand-in), for a release
 * rolled across them: shared by test/release/acrossServers.test.ts and bench/rollAcross.ts.
 *
 * What is real: the program under Pulumi mocks renders a scaled stack (2 app servers, no domain),
 * and each stand-in server gets that server's nginx site and release.conf, and runs the release
 * command that server's AppRelease runs, in the order the program chains them; real nginx in
 * balancer mode (PROXY protocol on port 80, the health listener on 8081); the real app built from
 * app/ through the release script and its service shim (harness.ts); one real PostgreSQL for both;
 * HAProxy from Debian in TCP mode with send-proxy and the plan's health check.
 *
 * Each server is a network namespace (both nginx listen on 80 and 8081, both servers' web
 * instances on 3001 and 3002, as on two machines) at its planned private address, on a bridge in
 * the balancer's namespace, which holds the balancer's planned private address (the only source
 * nginx takes a PROXY header from); the client is a namespace of its own on the balancer's public
 * side. PostgreSQL runs on the host and the servers reach it over its Unix socket (a path, which
 * network namespaces do not hide): what is under test is the balancer and the releases, not the
 * database link (bench/dbNetwork.ts is about that).
 *
 * What is changed, and why: the files' host paths (drain file, access log) move into the temp dir,
 * since both namespaces share one filesystem; APP_USER is root (the harness runs instances as
 * root); and the balancer's check timing is whatever the caller passes, LB_OUT_SECONDS and
 * LB_IN_SECONDS following from it by the plan's own formulas (drainSeconds, undrainSeconds).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { ARTIFACTS_DIR } from "../../components/appRelease";
import { unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { drainSeconds, undrainSeconds, type LoadBalancerHealthCheck } from "../../plan/scaled";
import { APP_ROOT, LB_DRAIN_FILE } from "../../provisioning/layout";
import { NGINX_SITE_PATH } from "../../provisioning/nginx";
import { RELEASE_PATHS } from "../../provisioning/release";
import { haproxyServerStates, type StateChange, standInHaproxyConfig, waitHaproxyState, watchHaproxyStates } from "../support/haproxy";
import type { LoadPlan, LoadReport } from "../support/httpLoad";
import { minimalRaw, scaledRaw } from "../support/fixtures";
import { runProgramOf, pushOf, type MockRun } from "../support/mockProgram";
import { bridgeNamespaces, ip, linkNamespaces } from "../support/netns";
import { forHostNginx } from "../support/nginx";
import { tempDir } from "../support/tools";
import { FakeServer, REPO, type RunResult, buildRealApp, markVerified, startPostgres, stopPostgres } from "./harness";

/** The balancer's public side and the client out on the internet (documentation ranges). */
const PUBLIC = { lb: "203.0.113.1", client: "203.0.113.10" };
const LOAD_SCRIPT = path.join(REPO, "test/support/httpLoad.ts");

/**
 * The plan's check with its interval cut from 5 s to 1 s and its timeout from 3 s to 2 s, the
 * thresholds as planned (2 to take a server out, 2 to put it back): a drain then waits 5 s at the
 * balancer each way instead of 18 s (drainSeconds, undrainSeconds), which keeps a roll across two
 * servers, and a second roll that fails on app-2, near a minute. The timeout stays above a second:
 * on a busy 2-core machine a shorter one failed checks of healthy servers (see
 * test/provisioning/loadBalancerDrain.test.ts).
 */
export function fasterCheck(planned: LoadBalancerHealthCheck): LoadBalancerHealthCheck {
  return { ...planned, intervalSeconds: 1, timeoutSeconds: 2 };
}

/** The scaled stack the stand-ins are rendered from: two app servers, no domain (port 80 only). */
export const SCALED_RAW = { ...minimalRaw("hetzner"), ...scaledRaw("hetzner", 2, false) };

export interface AppServerStandIn {
  /** Plan name: app, app-2. */
  name: string;
  ns: string;
  /** Its planned private address. */
  address: string;
  server: FakeServer;
  drainFile: string;
  accessLog: string;
  /** The release command's artifact path as the program renders it (under ARTIFACTS_DIR, named by the source hash). */
  releasedArtifact: string;
}

/** What the program renders for each app server of the scaled stack, and the order it releases them in. */
export interface ScaledRender {
  /** App server names in the order their releases run (each waits for the one before). */
  order: string[];
  files: Record<string, { releaseConf: string; nginxSite: string; releaseCommand: string }>;
  privateIps: Record<string, string>;
  balancerPrivateIp: string;
  networkPrefixLength: number;
  ports: number[];
  check: LoadBalancerHealthCheck;
  sourceHash: string;
}

/** The URNs of the resources a resource was declared to depend on. */
async function dependsOnNames(run: MockRun, name: string): Promise<string[]> {
  const deps = (run.options.get(name)?.dependsOn ?? []) as pulumi.Resource[];
  return (await Promise.all(deps.map((d) => valueOf(d.urn)))).map((urn) => urn.slice(urn.lastIndexOf("::") + 2));
}

export async function renderScaled(): Promise<ScaledRender> {
  const run = await runProgramOf(SCALED_RAW);
  const plan = planStack(parseStackConfig(SCALED_RAW));
  const lb = plan.loadBalancer;
  assert.ok(lb && plan.network, "a scaled plan has a load balancer and a private network");
  const releaseName = (server: string) => `saas-test-${server}-app-release`;
  const files: ScaledRender["files"] = {};
  for (const name of lb.targets) {
    const content = (p: string) => String(unwrapSecrets(pushOf(run, name, p).inputs).stdin);
    const command = run.mocks.ofType("command:remote:Command").find((c) => c.name === releaseName(name));
    assert.ok(command, `the program releases onto ${name}`);
    files[name] = { releaseConf: content(RELEASE_PATHS.config), nginxSite: content(NGINX_SITE_PATH), releaseCommand: String(unwrapSecrets(command.inputs).create) };
  }
  // The order `pulumi up` runs the releases in: a release runs once those it depends on are done.
  const after = Object.fromEntries(await Promise.all(lb.targets.map(async (name) => {
    const deps = await dependsOnNames(run, releaseName(name));
    return [name, lb.targets.filter((other) => deps.includes(releaseName(other)))] as const;
  })));
  const order: string[] = [];
  while (order.length < lb.targets.length) {
    const next: string[] = lb.targets.filter((n) => !order.includes(n) && after[n]!.every((d) => order.includes(d)));
    assert.equal(next.length, 1, `exactly one release may run next after ${JSON.stringify(order)}: ${JSON.stringify(after)}`);
    order.push(next[0]!);
  }
  const sourceHash = String(run.mocks.ofType("command:remote:Command").find((c) => c.name === releaseName(order[0]!))!.inputs.triggers[0]);
  return {
    order,
    files,
    privateIps: Object.fromEntries(plan.servers.filter((s) => lb.targets.includes(s.name)).map((s) => [s.name, s.privateIp!])),
    balancerPrivateIp: lb.privateIp,
    networkPrefixLength: Number(plan.network.cidr.split("/")[1]),
    ports: lb.ports,
    check: lb.healthCheck,
    sourceHash,
  };
}

/** A release.conf with `key` set to `value`; throws if the rendered file has no such key. */
function withConfKey(conf: string, key: string, value: string | number): string {
  const line = new RegExp(`^${key}=.*$`, "m");
  assert.match(conf, line, `the rendered release.conf has ${key}`);
  return conf.replace(line, `${key}="${value}"`);
}

/** The release command's artifact: `release '<ARTIFACTS_DIR>/saas-app-<hash>.tar.gz'` at its end. */
function releasedArtifactOf(command: string): string {
  const m = new RegExp(`${RELEASE_PATHS.command} '(${ARTIFACTS_DIR}/saas-app-[0-9a-f]+\\.tar\\.gz)'$`).exec(command);
  assert.ok(m, `the AppRelease command ends with the release of the uploaded artifact: ${command}`);
  return m[1]!;
}

export interface Across {
  dir: string;
  /** The unpacked build of app/ to pack releases from. */
  src: string;
  /** In the order the program releases them. */
  servers: AppServerStandIn[];
  render: ScaledRender;
  /** The check HAProxy runs (the plan's, or a faster one the caller chose). */
  check: LoadBalancerHealthCheck;
  clientAddress: string;
  /** The client's namespace, and the site's URL there (the balancer's public address). */
  clientNs: string;
  appUrl: string;
  balancerPrivateIp: string;
  /** PostgreSQL over TCP on the host (for psql from the test). */
  databaseUrl: string;
  /**
   * What the server's AppRelease does with an artifact: installs it under ARTIFACTS_DIR as
   * `saas-app-<id>.tar.gz` and runs `release <that path>` (the command's own argument, with
   * APP_ROOT and the source hash swapped for this stand-in's root and the artifact's id).
   */
  release(server: AppServerStandIn, artifact: string, id: string): Promise<RunResult>;
  states(): Promise<Record<string, "up" | "down" | "partial">>;
  waitState(name: string, want: "up" | "down", timeoutMs?: number): Promise<number>;
  /** Starts the client's GET/POST load through the balancer, as the signed-in account. */
  startLoad(loops?: number): { stop(): Promise<LoadReport> };
  /** Every change of the balancer's view of a server from now until stop(), polled every 50 ms. */
  watchStates(): { stop(): Promise<StateChange[]> };
  stop(): void;
}

/**
 * Sets everything up, releases `first` (a first release: no drain) on every server in order and
 * waits until the balancer has them all, then signs an account in through the balancer.
 * `check`: the balancer's check timing (default: the plan's).
 */
export async function startAcross(opts: { check?: (planned: LoadBalancerHealthCheck) => LoadBalancerHealthCheck; firstRelease: (src: string, dir: string) => { artifact: string; id: string } }): Promise<Across> {
  // Removed when the process exits (KEEP_TMP=1 keeps it); PostgreSQL (as postgres) and nginx's workers (nobody) reach inside.
  const dir = tempDir("roll-across");
  fs.chmodSync(dir, 0o755);
  const procs: ChildProcess[] = [];
  const id = randomBytes(3).toString("hex");
  const namespaces: Record<string, string> = { lb: `rxl-${id}`, client: `rxc-${id}` };
  let pgDir: string | undefined;
  const standIns: AppServerStandIn[] = [];
  const stop = () => {
    for (const s of standIns) s.server.stopAll();
    for (const p of procs) p.kill("SIGTERM");
    for (const n of Object.values(namespaces)) spawnSync("ip", ["netns", "del", n]);
    if (pgDir) stopPostgres(pgDir);
  };
  try {
    const render = await renderScaled();
    const check = opts.check ? opts.check(render.check) : render.check;
    const src = buildRealApp(path.join(dir, "app"));
    pgDir = path.join(dir, "pg");
    const databaseUrl = startPostgres(pgDir);
    // The same cluster through its socket in pgDir: reachable from every namespace.
    const socketUrl = `${databaseUrl.replace("127.0.0.1", "localhost")}?host=${pgDir}`;

    // Namespaces: one per app server (named by its order, e.g. rx0-<id>), the balancer's, the client's.
    render.order.forEach((name, i) => (namespaces[name] = `rx${i}-${id}`));
    const peers = Object.fromEntries(render.order.map((name) => [name, render.privateIps[name]!]));
    // Interface names: the tag plus the peer name's first letter, so the peers need distinct letters.
    const tagged = Object.fromEntries(render.order.map((name, i) => [String.fromCharCode(97 + i), name]));
    bridgeNamespaces({ lb: namespaces.lb!, client: namespaces.client!, ...Object.fromEntries(Object.entries(tagged).map(([k, name]) => [k, namespaces[name]!])) }, "lb",
      Object.fromEntries(Object.entries(tagged).map(([k, name]) => [k, peers[name]!])), render.networkPrefixLength, `x${id}`);
    ip("-n", namespaces.lb!, "addr", "add", `${render.balancerPrivateIp}/${render.networkPrefixLength}`, "dev", "br0");
    linkNamespaces({ ns: namespaces.lb!, address: PUBLIC.lb }, { ns: namespaces.client!, address: PUBLIC.client }, 24, [`x${id}p`, `x${id}pc`]);

    const appUrl = `http://${PUBLIC.lb}`;
    for (const name of render.order) {
      const files = render.files[name]!;
      const home = path.join(dir, name);
      fs.mkdirSync(home, { recursive: true, mode: 0o755 });
      const drainFile = path.join(home, "lb-drain");
      const accessLog = path.join(home, "access.log");
      // nginx's workers (nobody) stat the drain file in here.
      fs.chmodSync(home, 0o755);
      const server = new FakeServer(path.join(home, "server"), {
        webPorts: [],
        netns: namespaces[name],
        // The same secret on every app server (a session token signed in on one works on the other);
        // STANDIN_SERVER lets a test's release behave differently on one server.
        env: { DATABASE_URL: socketUrl, SECRET_KEY: "r".repeat(48), APP_URL: appUrl, LOG_LEVEL: "warn", STANDIN_SERVER: name },
      });
      let conf = withConfKey(files.releaseConf, "APP_USER", "root");
      conf = withConfKey(conf, "LB_DRAIN_FILE", drainFile);
      conf = withConfKey(conf, "LB_OUT_SECONDS", drainSeconds(check));
      conf = withConfKey(conf, "LB_IN_SECONDS", undrainSeconds(check));
      fs.writeFileSync(server.confFile, conf);

      const accessLine = /^(\s*access_log )\/\S+( saas_json;)$/gm;
      assert.match(files.nginxSite, accessLine, `${name}'s nginx site logs requests`);
      assert.ok(files.nginxSite.includes(LB_DRAIN_FILE), `${name}'s nginx site answers the balancer's check by ${LB_DRAIN_FILE}`);
      const site = forHostNginx(files.nginxSite.replace(accessLine, `$1${accessLog}$2`).replaceAll(LB_DRAIN_FILE, drainFile));
      fs.writeFileSync(path.join(home, "site.conf"), site);
      fs.writeFileSync(path.join(home, "nginx.conf"),
        `daemon off; pid ${home}/nginx.pid; error_log ${home}/error.log warn; events {} http { include /etc/nginx/mime.types; ` +
          `client_body_temp_path ${home}; proxy_temp_path ${home}; include ${home}/site.conf; }\n`);
      const test = spawnSync("nginx", ["-t", "-q", "-c", path.join(home, "nginx.conf"), "-p", home], { encoding: "utf8" });
      assert.equal(test.status, 0, test.stderr);
      procs.push(spawn("ip", ["netns", "exec", namespaces[name]!, "nginx", "-c", path.join(home, "nginx.conf"), "-p", home], { stdio: "ignore" }));
      standIns.push({ name, ns: namespaces[name]!, address: peers[name]!, server, drainFile, accessLog, releasedArtifact: releasedArtifactOf(files.releaseCommand) });
    }

    const release = async (s: AppServerStandIn, artifact: string, releaseId: string) => {
      const target = s.releasedArtifact.replace(APP_ROOT, s.server.appRoot).replace(render.sourceHash, releaseId);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.copyFileSync(artifact, target);
      fs.chmodSync(target, 0o644);
      return s.server.run([target]);
    };

    // A first release on each server, in order, before the balancer checks them.
    const first = opts.firstRelease(src, dir);
    for (const s of standIns) {
      const r = await release(s, first.artifact, first.id);
      assert.equal(r.code, 0, `first release on ${s.name}: ${r.stdout}${r.stderr}${s.server.logs()}`);
    }

    const statsSocket = path.join(dir, "haproxy.sock");
    const haproxyCfg = standInHaproxyConfig({ publicAddress: PUBLIC.lb, ports: render.ports, servers: standIns.map((s) => ({ name: s.name, address: s.address })), check, statsSocket });
    fs.writeFileSync(path.join(dir, "haproxy.cfg"), haproxyCfg);
    const checked = spawnSync("haproxy", ["-c", "-f", path.join(dir, "haproxy.cfg")], { encoding: "utf8" });
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
    procs.push(spawn("ip", ["netns", "exec", namespaces.lb!, "haproxy", "-db", "-f", path.join(dir, "haproxy.cfg")], { stdio: "ignore" }));
    const waitState = (name: string, want: "up" | "down", timeoutMs = 60_000) => waitHaproxyState(statsSocket, name, want, timeoutMs);
    for (const s of standIns) await waitState(s.name, "up");

    // An account with an organization, signed in through the balancer from the client.
    const curlJson = (urlPath: string, body: unknown, headers: string[] = []) => {
      const r = spawnSync("ip", ["netns", "exec", namespaces.client!, "curl", "-sS", "-m", "20", "-w", "\n%{http_code}", "-H", "content-type: application/json",
        ...headers.flatMap((h) => ["-H", h]), "--data-binary", JSON.stringify(body), `${appUrl}${urlPath}`], { encoding: "utf8" });
      const lines = r.stdout.trimEnd().split("\n");
      return { status: Number(lines.pop()), body: lines.join("\n"), stderr: r.stderr };
    };
    const account = { email: "roll@example.test", password: "a long enough password", name: "Roll" };
    const registered = curlJson("/auth/register", account);
    assert.equal(registered.status, 202, registered.body + registered.stderr);
    markVerified(databaseUrl, account.email);
    const login = curlJson("/auth/login", { email: account.email, password: account.password });
    assert.equal(login.status, 200, login.body + login.stderr);
    const token = (JSON.parse(login.body) as { token: string }).token;
    const org = curlJson("/orgs", { name: "Roll" }, [`authorization: Bearer ${token}`]);
    assert.equal(org.status, 201, org.body + org.stderr);
    const orgId = (JSON.parse(org.body) as { organization: { id: string } }).organization.id;

    const startLoad = (loops = 6) => {
      const plan: LoadPlan = {
        base: appUrl,
        getPath: `/orgs/${orgId}/projects?limit=1`,
        postPath: `/orgs/${orgId}/projects`,
        postBody: { name: "load {n}" },
        headers: { authorization: `Bearer ${token}` },
        loops,
        timeoutSeconds: 15,
      };
      const child = spawn("ip", ["netns", "exec", namespaces.client!, process.execPath, "--import", "tsx", LOAD_SCRIPT, JSON.stringify(plan)], { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
      procs.push(child);
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      // "close", not "exit": the report may still be in the pipe when the process has exited.
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      return {
        async stop(): Promise<LoadReport> {
          child.stdin!.write("stop\n");
          const code = await exited;
          assert.equal(code, 0, `the load generator exited with ${code}: ${out.slice(0, 500)}`);
          return JSON.parse(out) as LoadReport;
        },
      };
    };

    const watchStates = () => watchHaproxyStates(statsSocket, 50);

    return {
      dir, src, servers: standIns, render, check, clientAddress: PUBLIC.client, clientNs: namespaces.client!, appUrl, balancerPrivateIp: render.balancerPrivateIp, databaseUrl,
      release, states: () => haproxyServerStates(statsSocket), waitState, startLoad, watchStates, stop,
    };
  } catch (e) {
    stop();
    throw e;
  }
}
