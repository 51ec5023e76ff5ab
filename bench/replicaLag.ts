/**
 * Benchmark of a streaming read replica (not a test): how far behind it falls under a write load,
 * and what streaming to it costs the primary's writes. One run, two sides with the same pgbench
 * write load (TPC-B-like: 3 updates and an insert per transaction) on a scratch primary
 * (cli/pg-scratch.sh):
 *   baseline  the primary alone, no replica;
 *   replica   the same primary with a hot standby streaming from it (pg-scratch.sh replica:
 *             pg_basebackup -R, physical replication over 127.0.0.1).
 * Rounds alternate which side goes first. During each replica run the primary's
 * pg_stat_replication is sampled every 100 ms: replay_lag (the time from a commit on the primary
 * to its replay on the replica, as the primary measures it) and the bytes of WAL not yet
 * replayed. Prints tps per side and their ratio, and the lag's p50, p99 and max under load, and
 * the bytes behind while idle (idle, replay_lag only repeats the last figure measured for a while,
 * then is empty: PostgreSQL's own behaviour, so it is not printed).
 *
 *   npx tsx bench/replicaLag.ts [--seconds 15] [--rounds 2] [--clients 4] [--scale 10]
 *   npm run -s bench:replica-lag -- ...
 *
 * Both clusters run on this machine with fsync off (the scratch settings), so the figures are the
 * replication protocol's and the replay's cost, not a disk's or a network's: a provider's private
 * network adds its round trip to the replay lag.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const ROOT = path.join(__dirname, "..");
const PG_SCRATCH = path.join(ROOT, "cli", "pg-scratch.sh");
const { values } = parseArgs({
  options: { seconds: { type: "string", default: "15" }, rounds: { type: "string", default: "2" }, clients: { type: "string", default: "4" }, scale: { type: "string", default: "10" } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CLIENTS = Number(values.clients);
const SCALE = Number(values.scale);
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const bindir = execFileSync("bash", ["-c", "printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"], { encoding: "utf8" }).trim();

const psql = (url: string, sql: string) => execFileSync("psql", ["-XAtq", url, "-c", sql], { encoding: "utf8" }).trim();
const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};

/** pgbench's write load for SECONDS; resolves with its tps (excluding connection time). */
function pgbench(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(bindir, "pgbench"), ["-n", "-c", String(CLIENTS), "-j", String(Math.min(CLIENTS, 2)), "-T", String(SECONDS), url], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => {
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1];
      if (code !== 0 || !tps) reject(new Error(`pgbench exited ${code}:\n${out}`));
      else resolve(Number(tps));
    });
  });
}

interface LagSamples { replayMs: number[]; bytes: number[] }

/** Samples the primary's view of the replica every 100 ms until `until` settles. */
async function sampleLag(primaryUrl: string, until: Promise<unknown>): Promise<LagSamples> {
  const samples: LagSamples = { replayMs: [], bytes: [] };
  let done = false;
  void until.finally(() => (done = true));
  while (!done) {
    const [ms, bytes] = psql(primaryUrl, "SELECT coalesce(extract(epoch FROM replay_lag) * 1000, 0), pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication").split("|");
    if (ms !== undefined && bytes !== undefined) {
      samples.replayMs.push(Number(ms));
      samples.bytes.push(Number(bytes));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return samples;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "saas-vps-bench-replica-"));
  // The clusters run as postgres: it must reach their folders.
  chmodSync(tmp, 0o755);
  const [primaryDir, replicaDir] = [path.join(tmp, "primary"), path.join(tmp, "replica")];
  let replicaUp = false;
  try {
    const primaryUrl = execFileSync("bash", [PG_SCRATCH, "start", primaryDir], { encoding: "utf8" }).trim().split("\n").pop()!;
    say(`pgbench -i -s ${SCALE} (about ${SCALE * 15} MB)`);
    execFileSync(path.join(bindir, "pgbench"), ["-i", "-q", "-s", String(SCALE), primaryUrl], { stdio: "ignore" });
    const replicaUrl = execFileSync("bash", [PG_SCRATCH, "replica", replicaDir, new URL(primaryUrl).port], { encoding: "utf8" }).trim().split("\n").pop()!;
    replicaUp = true;
    const pauseReplica = () => execFileSync("runuser", ["-u", "postgres", "--", path.join(bindir, "pg_ctl"), "-D", path.join(replicaDir, "data"), "-m", "fast", "-w", "stop"], { stdio: "ignore" });
    const resumeReplica = () => execFileSync("runuser", ["-u", "postgres", "--", path.join(bindir, "pg_ctl"), "-D", path.join(replicaDir, "data"), "-l", path.join(replicaDir, "server.log"), "-w", "-t", "60", "start"], { stdio: "ignore" });
    const streaming = async () => {
      for (let i = 0; i < 100; i++) {
        if (psql(primaryUrl, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") === "1") return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error("the replica does not stream");
    };
    await streaming();
    say(`replica at ${new URL(replicaUrl).host}: idle lag for 3 s`);
    const idle = await sampleLag(primaryUrl, new Promise((r) => setTimeout(r, 3000)));

    const tps: Record<"baseline" | "replica", number[]> = { baseline: [], replica: [] };
    const loaded: LagSamples = { replayMs: [], bytes: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 ? (["replica", "baseline"] as const) : (["baseline", "replica"] as const)) {
        say(`round ${round + 1}/${ROUNDS}: ${side}, ${CLIENTS} clients, ${SECONDS} s`);
        if (side === "baseline") {
          // No replica: stopped, so it neither receives nor holds anything; its slot-less
          // connection ends, and the primary writes as a lone server would.
          pauseReplica();
          tps.baseline.push(await pgbench(primaryUrl));
          resumeReplica();
          await streaming();
          // Let it catch up with what it missed, so the replica side starts level.
          for (let i = 0; i < 300 && psql(primaryUrl, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication") !== "0"; i++) await new Promise((r) => setTimeout(r, 100));
        } else {
          const run = pgbench(primaryUrl);
          const s = await sampleLag(primaryUrl, run);
          tps.replica.push(await run);
          loaded.replayMs.push(...s.replayMs);
          loaded.bytes.push(...s.bytes);
        }
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rows: string[][] = [["", "baseline (no replica)", "with a replica", "ratio"]];
    rows.push([`tps, mean of ${ROUNDS} runs of ${SECONDS} s`, mean(tps.baseline).toFixed(0), mean(tps.replica).toFixed(0), (mean(tps.replica) / mean(tps.baseline)).toFixed(2)]);
    const lagRow = (what: string, xs: number[], digits: number) => [what, quantile(xs, 0.5).toFixed(digits), quantile(xs, 0.99).toFixed(digits), Math.max(...xs).toFixed(digits)];
    const lag: string[][] = [["replica lag", "p50", "p99", "max"]];
    lag.push(lagRow(`idle: WAL bytes not replayed`, idle.bytes, 0));
    lag.push(lagRow(`under load: replay_lag ms (${loaded.replayMs.length} samples)`, loaded.replayMs, 1));
    lag.push(lagRow(`under load: WAL bytes not replayed`, loaded.bytes, 0));
    say(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}, PostgreSQL ${psql(primaryUrl, "SHOW server_version")}`);
    for (const table of [rows, lag]) {
      const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
      for (const r of table) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
      console.log("");
    }
  } finally {
    if (replicaUp) execFileSync("bash", [PG_SCRATCH, "stop", replicaDir], { stdio: "ignore" });
    execFileSync("bash", [PG_SCRATCH, "stop", primaryDir], { stdio: "ignore" });
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
