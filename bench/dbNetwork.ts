/**
 * Benchmark of what stage separated costs the app's requests (not a test): PostgreSQL on another
 * host, reached over the private network with TLS, against PostgreSQL on the same host as the app
 * (stage mvp), both measured in ONE run with the same load.
 *
 *   npx tsx bench/dbNetwork.ts [--seconds 4] [--rounds 2] [--connections 16] [--rtt-us 300] [--local tcp|socket] [--no-tls] [--no-pin]
 *   npm run -s bench:db-network -- ...
 *
 * What it measures: the authenticated list route, GET /orgs/:orgId/projects (a bearer token, 20
 * rows, as bench/proxy.ts), through the rendered nginx site to the real app (app/) on 2 web
 * instances, on two sides that differ only in how the app reaches PostgreSQL:
 *   local    a cluster on this host, over 127.0.0.1 as the mvp server's DATABASE_URL does
 *            (--local socket: over its Unix socket instead);
 *   network  a cluster inside a network namespace joined by a veth pair (bench/lib/privateLink.ts:
 *            its own address in the stack's default private network, at the planner's host
 *            numbers for app and db, Hetzner's private MTU of 1450), with `ssl = on` and a
 *            self-signed certificate, pg_hba allowing the app's login only by `hostssl` from the
 *            app's address, and the app connecting with `sslmode=require&uselibpqcompat=true`.
 * Both clusters run the rendered postgresql.conf and the app's scram-sha-256 login. Under
 * node-postgres 8 (pg-connection-string 2.x) a bare `sslmode=require` means verify-full and
 * refuses a self-signed certificate; `uselibpqcompat=true` gives libpq's meaning (encrypt, do not
 * verify). The run checks in pg_stat_ssl that every app connection to the network side is TLS.
 * --no-tls: the network side in plain TCP (pg_hba `host`), to tell the hop's cost from TLS's.
 *
 * Two conditions, each with both sides: the veth pair as it is (a few µs of round trip: the cost
 * of TCP+TLS and of leaving the loopback), and with --rtt-us of netem delay added (half on each
 * end; default 300 µs, the order of a provider's private network round trip; 0 skips it). netem
 * needs CONFIG_NET_SCH_NETEM: a kernel without it gets the first condition and a loud SKIPPED for
 * the second. Per condition two passes: "light" (2 connections, a 2 ms pause after each answer:
 * latency with no queue) and "loaded" (--connections, no pause: throughput). Rounds alternate
 * which side goes first so a drift in the machine's load falls on both alike. Prints per
 * condition, pass and side: req/s, p50/p99, non-2xx and socket errors, CPU time per request of
 * nginx, the app and PostgreSQL, the app's statements per request (pg_stat_statements: each one a
 * network round trip), then the ratio network/local of loaded req/s (goal >= 0.8), the ratio of
 * server CPU time per request local/network (what the throughput ratio tends to when the server
 * side is CPU-bound, and far steadier on a shared machine), the p50/p99 the network adds, and
 * the round trip of a TCP handshake to the network side's PostgreSQL (the link's own, measured
 * per condition).
 *
 * Set up on both cores; measured with both clusters, nginx and the instances on CPU 0 and wrk on
 * CPU 1 (--no-pin: all share both), so the figures isolate the transport, not the CPU a real db
 * server takes off the app's server.
 * Instances run through the test service shim (no systemd as PID 1 here; see test/release/harness.ts).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { DEFAULTS } from "../config/keys";
import { hostAddress } from "../config/validators";
import { POSTGRES_PORT, PRIVATE_HOSTS } from "../plan/plan";
import { DATABASE_NAME } from "../provisioning/layout";
import { DATABASE_ROLE_NAMES } from "../plan/database";

/** The bench connects as the schema owner, as the all-in-one app did before it had a login per process. */
const DATABASE_USER = DATABASE_ROLE_NAMES.owner;
import { FakeServer, REPO, buildRealApp, fakeId, freePort, freePorts, packArtifact, sleep, tempDir } from "../test/release/harness";
import { startServerNginx, type BenchNginx } from "./lib/nginx";
import { createPrivateLink, netemProblem, type PrivateLink } from "./lib/privateLink";
import { startCluster, type PostgresCluster } from "./lib/postgresCluster";
import { childPids, cpuUsed, postgresPids, sampleCpu, type CpuGroup } from "./lib/procCpu";
import { seedTenant, type BenchTenant } from "./lib/tenant";
import { runWrk, summarizeRuns, writeWrkScript, type MeasuredRun, type RunSummary, type WrkTarget } from "./lib/wrk";

// ---------------------------------------------------------------- options

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
function intArg(name: string, dflt: number, min: number): number {
  const raw = argValue(name);
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be a whole number >= ${min}; got ${JSON.stringify(raw)}`);
  return v;
}
const SECONDS = intArg("seconds", 4, 1);
const ROUNDS = intArg("rounds", 2, 1);
const CONNECTIONS = intArg("connections", 16, 1);
const RTT_US = intArg("rtt-us", 300, 0);
const LOCAL = argValue("local") ?? "tcp";
if (LOCAL !== "tcp" && LOCAL !== "socket") throw new Error(`--local must be tcp (127.0.0.1, as the mvp server) or socket; got ${JSON.stringify(LOCAL)}`);
const PIN = !process.argv.includes("--no-pin");
/** The network side without TLS: what the hop alone costs, to tell it from what TLS costs. */
const NETWORK_TLS = !process.argv.includes("--no-tls");

const WEB_INSTANCES = 2;
const WARMUP_SECONDS = 2;
/** The memory of a cx23, the example stacks' server type: the rendered postgresql.conf's tuning. */
const DB_MEMORY_MIB = 4096;
const SERVER_CPU = "0";
const LOAD_CPU = "1";

const SIDES = ["local", "network"] as const;
type SideName = (typeof SIDES)[number];

interface Pass {
  name: string;
  connections: number;
  seconds: number;
  pauseMs: number;
}
const PASSES: Pass[] = [
  { name: "light", connections: WEB_INSTANCES, seconds: 3, pauseMs: 2 },
  { name: "loaded", connections: CONNECTIONS, seconds: SECONDS, pauseMs: 0 },
];

// ---------------------------------------------------------------- one side: a cluster, the app, nginx

interface Side {
  cluster: PostgresCluster;
  nginx: BenchNginx;
  server: FakeServer;
  cpuGroups: CpuGroup[];
}

/** The app's DATABASE_URL for a cluster: how each side reaches PostgreSQL is all that differs. */
function databaseUrl(side: SideName, cluster: PostgresCluster, link: PrivateLink): string {
  const login = `${DATABASE_USER}:${cluster.password}`;
  if (side === "network") {
    const tls = NETWORK_TLS ? "?sslmode=require&uselibpqcompat=true" : "";
    return `postgres://${login}@${link.peerAddress}:${cluster.port}/${DATABASE_NAME}${tls}`;
  }
  // The app checks DATABASE_URL as a WHATWG URL, which wants a host: "localhost" there, the socket's directory in ?host=.
  if (LOCAL === "socket") return `postgres://${login}@localhost/${DATABASE_NAME}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`;
  return `postgres://${login}@127.0.0.1:${cluster.port}/${DATABASE_NAME}`;
}

/** Starts one side; each part goes into `parts` as soon as it runs, so a failure later still stops it. */
async function startSide(name: SideName, dir: string, artifact: string, link: PrivateLink, parts: Partial<Side>): Promise<Side> {
  const cluster = parts.cluster = name === "network"
    ? startCluster(path.join(dir, "pg"), {
      memoryMiB: DB_MEMORY_MIB, listenAddress: link.peerAddress, port: POSTGRES_PORT,
      access: { kind: "tcp", from: link.hostAddress, tls: NETWORK_TLS }, inNamespace: link.inNamespace,
    })
    : startCluster(path.join(dir, "pg"), {
      memoryMiB: DB_MEMORY_MIB, listenAddress: "127.0.0.1", port: await freePort(),
      access: LOCAL === "socket" ? { kind: "socket" } : { kind: "tcp", from: "127.0.0.1", tls: false },
    });
  const webPorts = await freePorts(WEB_INSTANCES);
  const nginx = parts.nginx = startServerNginx(path.join(dir, "nginx"), webPorts, await freePort());
  const nginxUrl = `http://127.0.0.1:${nginx.port}`;
  const server = parts.server = new FakeServer(path.join(dir, "server"), {
    webPorts,
    // Quoted: the test service shim sources app.env with bash, where the URL's `&` would end the
    // assignment; systemd's EnvironmentFile and the release script strip the quotes alike.
    env: { DATABASE_URL: `'${databaseUrl(name, cluster, link)}'`, SECRET_KEY: "x".repeat(48), APP_URL: nginxUrl, LOG_LEVEL: "info" },
    conf: ["HEALTH_TIMEOUT=30", "SETTLE_SECONDS=0"],
  });
  const release = await server.run([artifact]);
  if (release.code !== 0) throw new Error(`${name}: release failed:\n${release.stdout}${release.stderr}\n${server.logs()}`);
  const webPids = webPorts.map((p) => Number(fs.readFileSync(path.join(server.shimState, `web@${p}.pid`), "utf8").trim()));
  const cpuGroups = [
    { name: "nginx", pids: () => childPids(nginx.masterPid) },
    { name: "app", pids: () => webPids },
    { name: "pg", pids: () => postgresPids(cluster.dataDir) },
  ];
  return { cluster, nginx, server, cpuGroups };
}

function stopSide(side: Partial<Side>): void {
  side.server?.stopAll();
  side.nginx?.stop();
  side.cluster?.stop();
}

/** Statements the app's login has run on a cluster so far (pg_stat_statements). */
function appStatements(cluster: PostgresCluster): number {
  return Number(cluster.admin(`SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE userid = '${DATABASE_USER}'::regrole`, DATABASE_NAME));
}

/** The network side's app connections, which must all be TLS (none with --no-tls): "N connections, TLSv1.3 <cipher>". */
function tlsOfAppConnections(cluster: PostgresCluster): string {
  const rows = cluster.admin(
    `SELECT s.ssl, coalesce(s.version, '-'), coalesce(s.cipher, '-') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
     WHERE a.usename = '${DATABASE_USER}' AND a.client_addr IS NOT NULL`,
  ).split("\n").filter((l) => l);
  if (!rows.length) throw new Error("network side: no app connection over TCP found in pg_stat_activity");
  const plain = rows.filter((r) => !r.startsWith("t|"));
  if (!NETWORK_TLS) {
    if (plain.length !== rows.length) throw new Error(`network side (--no-tls): ${rows.length - plain.length} of ${rows.length} app connections are TLS`);
    return `${rows.length} connections, none TLS (--no-tls)`;
  }
  if (plain.length) throw new Error(`network side: ${plain.length} of ${rows.length} app connections are not TLS`);
  const kinds = [...new Set(rows.map((r) => r.split("|").slice(1).join(" ")))];
  return `${rows.length} connections, all TLS (${kinds.join(", ")})`;
}

/** The smallest part of node-postgres this file uses; it is the app's dependency (app/node_modules), not the project's. */
interface PgClient {
  connect(): Promise<void>;
  query(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}
const pgClient = createRequire(path.join(REPO, "app", "package.json"))("pg").Client as new (o: object) => PgClient;

/**
 * What the app's driver (node-postgres, the app's version) does with each sslmode against the
 * network side's self-signed certificate: the reason the bench's URL carries uselibpqcompat=true,
 * checked on every run rather than assumed. verify-full with the certificate as sslrootcert is
 * the verifying alternative (the certificate names the db's address).
 */
async function sslModeOutcomes(cluster: PostgresCluster, link: PrivateLink): Promise<string[]> {
  const base = `postgres://${DATABASE_USER}:${cluster.password}@${link.peerAddress}:${cluster.port}/${DATABASE_NAME}`;
  const modes = ["sslmode=require", "sslmode=require&uselibpqcompat=true", `sslmode=verify-full&sslrootcert=${encodeURIComponent(cluster.certificate ?? "")}`];
  const out: string[] = [];
  for (const mode of modes) {
    const client = new pgClient({ connectionString: `${base}?${mode}`, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      const { rows } = await client.query("SELECT version AS v FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      out.push(`${mode.replace(/sslrootcert=[^&]*/, "sslrootcert=<its certificate>")}: connected, ${String(rows[0]?.v)}`);
    } catch (e) {
      out.push(`${mode}: refused: ${(e as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return out;
}

// ---------------------------------------------------------------- measuring

interface Run extends MeasuredRun {
  statements: number;
}

interface Figures extends RunSummary {
  statementsPerRequest: number;
}

function summarize(runs: Run[]): Figures {
  const summary = summarizeRuns(runs);
  return { ...summary, statementsPerRequest: runs.reduce((n, r) => n + r.statements, 0) / summary.requests };
}

type Pair = Record<SideName, Figures>;

interface ConditionResult {
  title: string;
  pairs: Pair[];
  tls: string;
  /** TCP handshake round trip to the network side's PostgreSQL. */
  linkRttMs: number;
}

/** Pins every process of a side to `cpu` (all threads); PostgreSQL's later backends inherit it from the postmaster. */
function pinSide(side: Side, cpu: string): void {
  for (const pid of side.cpuGroups.flatMap((g) => g.pids())) execFileSync("taskset", ["-a", "-p", "-c", cpu, String(pid)], { stdio: "ignore" });
  execFileSync("taskset", ["-p", "-c", cpu, String(side.nginx.masterPid)], { stdio: "ignore" });
}

/** Round trip of a TCP handshake to address:port (the kernel answers it: no server work in it), min of `samples`, in ms. */
async function connectRttMs(address: string, port: number, samples = 20): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < samples; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: address, port }, () => {
        socket.destroy();
        resolve();
      });
      socket.on("error", reject);
    });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const t0 = Date.now();
/** Progress on stderr (the figures go to stdout). */
const progress = (m: string) => process.stderr.write(`[+${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}\n`);

async function main() {
  const dir = tempDir("db-network-bench");
  const parts: Record<SideName, Partial<Side>> = { local: {}, network: {} };
  let link: PrivateLink | undefined;
  // Also on Ctrl-C or a timeout's SIGTERM: the namespace, its route and the clusters must not outlive the run.
  const cleanup = () => {
    for (const name of SIDES) stopSide(parts[name]);
    link?.remove();
    if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`${signal}: stopping the clusters, nginx and the instances, removing the namespace`);
      cleanup();
      process.exit(1);
    });
  }
  try {
    const netemMissing = RTT_US > 0 ? netemProblem() : undefined;
    const artifact = packArtifact(buildRealApp(path.join(dir, "app")), fakeId("a"), dir);
    progress("app built and packed");
    const network = DEFAULTS.privateNetworkCidr;
    link = createPrivateLink(hostAddress(network, PRIVATE_HOSTS.app), hostAddress(network, PRIVATE_HOSTS.db), Number(network.split("/")[1]));
    const started = await Promise.all(SIDES.map((name) => startSide(name, path.join(dir, name), artifact, link!, parts[name])));
    progress("both sides released");
    const ready = Object.fromEntries(SIDES.map((name, i) => [name, started[i]])) as Record<SideName, Side>;
    // Set up on both cores; measured with the server side on one and wrk on the other.
    if (PIN) for (const name of SIDES) pinSide(ready[name], SERVER_CPU);
    await sleep(2500); // nginx's fail_timeout from the ports being down before the release started
    const sslModes = NETWORK_TLS ? await sslModeOutcomes(ready.network.cluster, link) : [];
    const tenants = {} as Record<SideName, BenchTenant>;
    for (const name of SIDES) tenants[name] = await seedTenant(`http://127.0.0.1:${ready[name].nginx.port}`, (sql) => ready[name].cluster.admin(sql, DATABASE_NAME));

    const scriptFile = writeWrkScript(dir);
    const target = (side: SideName, pass: Pass): WrkTarget => ({
      addrs: [`127.0.0.1:${ready[side].nginx.port}`], path: tenants[side].listPath, headers: tenants[side].auth,
      connections: pass.connections, pauseMs: pass.pauseMs,
    });
    const wrk = (side: SideName, pass: Pass, seconds: number) =>
      runWrk(scriptFile, target(side, pass), { threads: WEB_INSTANCES, seconds, cpu: PIN ? LOAD_CPU : undefined });
    const measure = async (side: SideName, pass: Pass): Promise<Run> => {
      const { cpuGroups, cluster } = ready[side];
      const cpuBefore = sampleCpu(cpuGroups);
      const statementsBefore = appStatements(cluster);
      const r = await wrk(side, pass, pass.seconds);
      return { ...r, cpu: cpuUsed(cpuBefore, sampleCpu(cpuGroups)), statements: appStatements(cluster) - statementsBefore };
    };

    const conditions = [{ title: "veth pair, no added delay", rttUs: 0 }];
    if (RTT_US > 0 && !netemMissing) conditions.push({ title: `veth pair + ${RTT_US} µs round trip (netem)`, rttUs: RTT_US });
    const load0 = os.loadavg()[0];
    const results: ConditionResult[] = [];
    for (const condition of conditions) {
      link.setRoundTripMs(condition.rttUs / 1000);
      const linkRttMs = await connectRttMs(link.peerAddress, POSTGRES_PORT);
      // Warm-up (JIT, the pools' connections, nginx's upstream connections), not counted.
      for (const side of SIDES) await wrk(side, PASSES[1], WARMUP_SECONDS);
      const pairs: Pair[] = [];
      for (const pass of PASSES) {
        progress(`${condition.title}: ${pass.name}`);
        const runs: Record<SideName, Run[]> = { local: [], network: [] };
        for (let round = 0; round < ROUNDS; round++) {
          for (const side of round % 2 === 0 ? SIDES : [...SIDES].reverse()) runs[side].push(await measure(side, pass));
        }
        pairs.push({ local: summarize(runs.local), network: summarize(runs.network) });
      }
      results.push({ title: condition.title, pairs, tls: tlsOfAppConnections(ready.network.cluster), linkRttMs });
    }
    link.setRoundTripMs(0);

    // ---------------------------------------------------------------- report
    const pgVersion = ready.local.cluster.admin("SHOW server_version");
    console.log(`\nPostgreSQL over the private network vs on the app's host — real app (app/): ${WEB_INSTANCES} web instances, ` +
      `GET /orgs/:orgId/projects (auth, 20 rows) through the rendered nginx site; PostgreSQL ${pgVersion}, rendered postgresql.conf for ${DB_MEMORY_MIB} MiB`);
    console.log(`  local    ${LOCAL === "socket" ? "Unix socket" : "127.0.0.1"} on this host, scram-sha-256, no TLS`);
    console.log(`  network  ${link.peerAddress}:${POSTGRES_PORT} in namespace ${link.namespace} (veth, MTU 1450) from ${link.hostAddress}, ` +
      (NETWORK_TLS ? "hostssl scram-sha-256, self-signed certificate, sslmode=require&uselibpqcompat=true" : "host scram-sha-256, NO TLS (--no-tls)"));
    if (NETWORK_TLS) console.log(`node-postgres against the self-signed certificate:\n${sslModes.map((l) => `  ${l}`).join("\n")}`);
    console.log(`per pass ${ROUNDS} rounds per side, alternating which side goes first; light: ${PASSES[0].connections} connections, ` +
      `${PASSES[0].pauseMs} ms pause after each answer, ${PASSES[0].seconds} s rounds; loaded: ${CONNECTIONS} connections, no pause, ${SECONDS} s rounds`);
    console.log(PIN ? `pinned: server side (both clusters, nginx, instances) on CPU ${SERVER_CPU}, wrk on CPU ${LOAD_CPU}` : "not pinned: everything shares every core");
    console.log(`${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), load average ${load0.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end, ${new Date().toISOString()}`);
    console.log("µs: CPU time per request of nginx's workers, the app instances, PostgreSQL; stmt/req: the app's statements per request (pg_stat_statements)");
    const head = ["", "req/s", "p50 ms", "p99 ms", "non-2xx", "errors", "nginx µs", "app µs", "pg µs", "stmt/req", "  req/s per round"];
    const widths = [16, 7, 8, 8, 8, 7, 9, 9, 9, 9, 0];
    const line = (cells: string[]) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : widths[i] ? c.padStart(widths[i]) : `  ${c}`)).join(""));
    const ms = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(2)} ms`;
    const goal = (ok: boolean) => (ok ? "met" : "MISSED");
    for (const r of results) {
      console.log(`\n${r.title}: TCP handshake to the db ${r.linkRttMs.toFixed(3)} ms (min of 20); network side: ${r.tls}`);
      line(head);
      r.pairs.forEach((pair, i) => {
        for (const side of SIDES) {
          const s = pair[side];
          line([`${PASSES[i].name} ${side}`, s.rps.toFixed(0), s.p50.toFixed(2), s.p99.toFixed(2), String(s.non2xx), String(s.errors),
            ...s.cpuUs.map((x) => x.toFixed(0)), s.statementsPerRequest.toFixed(2), s.rpsPerRound.map((x) => x.toFixed(0)).join(" ")]);
        }
      });
      r.pairs.forEach((pair, i) => {
        const ratio = pair.network.rps / pair.local.rps;
        const throughput = PASSES[i].pauseMs ? "" : `req/s network/local ${ratio.toFixed(3)} (goal >= 0.8: ${goal(ratio >= 0.8)}), `;
        const cpu = (f: Figures) => f.cpuUs.reduce((n, x) => n + x, 0);
        const cpuRatio = `server CPU/request local/network ${(cpu(pair.local) / cpu(pair.network)).toFixed(3)}, `;
        console.log(`${PASSES[i].name.padEnd(7)} ${throughput}${cpuRatio}p99 local ${pair.local.p99.toFixed(2)} ms, network ${pair.network.p99.toFixed(2)} ms; ` +
          `network adds p50 ${ms(pair.network.p50 - pair.local.p50)}, p99 ${ms(pair.network.p99 - pair.local.p99)}`);
      });
    }
    if (RTT_US > 0 && netemMissing) {
      const statements = results[0].pairs[0].network.statementsPerRequest;
      console.log(`\nSKIPPED: the condition with ${RTT_US} µs of round trip: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), ` +
        `so no delay can be added to the link. ${netemMissing}`);
      console.log(`Not measured, an estimate: each of the ${statements.toFixed(2)} statements per request waits one round trip, so ` +
        `${RTT_US} µs would add about ${((statements * RTT_US) / 1000).toFixed(2)} ms to every request's latency.`);
    }
  } finally {
    cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
