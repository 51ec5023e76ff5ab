// Benchmark (not a test): how fast a release starts, and how big it is, bundled (scripts/build.mjs)
// next to the previous file-by-file layout (build.mjs --unbundled: tsc output + node_modules),
// both built from the same sources in this run and started alternately, so both see the same
// machine load. Per layout: artifact bytes and files, unpack time (tar -xzf into tmpfs), and the
// median over --runs of: bin/web from spawn to its first 200 on /health (and its p90: a rolling
// release waits for the slow starts too), bin/worker to "worker started", bin/migrate on an
// up-to-date schema to its exit; each as wall time and as the CPU time (user+sys) the process
// used, which is what predicts a slower or emulated machine, and its resident memory at that
// moment.
//   npm run bench:startup [-- --runs 10] [--unbundled <tarball>] [--bundled <tarball>]
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { freePort } from "../test/helpers/proc.js";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const appRoot = fileURLToPath(new URL("..", import.meta.url));
const option = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(option("runs") ?? 10);
/** --unbundled / --bundled <tarball>: measure an artifact built before instead of building it. */
const given = (layout: Layout) => option(layout);
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));

type Layout = "unbundled" | "bundled";
interface Sample { wallMs: number; cpuMs: number; rssMiB?: number }

/** user+sys CPU of a running process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Resident set size of a running process, from /proc/<pid>/status (VmRSS, in kB). */
function rssMiBOf(pid: number): number {
  const kB = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  if (kB === undefined) throw new Error(`no VmRSS for ${pid} (exited?)`);
  return Number(kB) / 1024;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
/** Nearest-rank percentile: the slowest starts matter to a rolling release, not only the typical one. */
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)]!;

function build(layout: Layout, outDir: string): string {
  say(`building the ${layout} layout`);
  const args = [path.join(appRoot, "scripts", "build.mjs"), "--out-dir", outDir, ...(layout === "unbundled" ? ["--unbundled"] : [])];
  return execFileSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!;
}

function regularFiles(tarball: string): number {
  return Number(execFileSync("sh", ["-c", 'tar -tzvf "$1" | grep -c "^-"', "sh", tarball], { encoding: "utf8" }).trim());
}

function unpackMs(tarball: string, into: string): number {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  const t0 = performance.now();
  execFileSync("tar", ["-xzf", tarball, "-C", into]);
  return performance.now() - t0;
}

/** bin/web from spawn until /health answers 200. */
async function startWeb(release: string, env: NodeJS.ProcessEnv): Promise<Sample> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(path.join(release, "bin", "web"), [], { env: { ...env, PORT: String(port) }, stdio: "ignore" });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status === 200, () => false);
      if (ok) return { wallMs: performance.now() - t0, cpuMs: cpuMsOf(child.pid!), rssMiB: rssMiBOf(child.pid!) };
      if (child.exitCode !== null) throw new Error(`bin/web exited ${child.exitCode} before it was healthy`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/** bin/worker from spawn until it logs "worker started". */
async function startWorker(release: string, env: NodeJS.ProcessEnv): Promise<Sample> {
  const t0 = performance.now();
  const child = spawn(path.join(release, "bin", "worker"), [], { env: { ...env, LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    return await new Promise<Sample>((resolve, reject) => {
      let out = "";
      const onData = (d: Buffer) => {
        out += d.toString();
        // The message alone, not its key: an artifact built before the log key was "message" logged "msg".
        if (out.includes('"worker started"')) {
          // Once: the lines it writes while stopping would measure a process on its way out.
          child.stdout!.off("data", onData);
          resolve({ wallMs: performance.now() - t0, cpuMs: cpuMsOf(child.pid!), rssMiB: rssMiBOf(child.pid!) });
        }
      };
      child.stdout!.on("data", onData);
      child.once("exit", (code) => reject(new Error(`bin/worker exited ${code} before it started:\n${out}`)));
    });
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/** bin/migrate on an up-to-date schema, spawn to exit; CPU from GNU time. */
function runMigrate(release: string, env: NodeJS.ProcessEnv): Sample {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "cpu %U %S", path.join(release, "bin", "migrate")], { env, encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  const wallMs = performance.now() - t0;
  const cpu = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !cpu) throw new Error(`bin/migrate failed (${r.status}):\n${r.stderr}`);
  return { wallMs, cpuMs: (Number(cpu[1]) + Number(cpu[2])) * 1000 };
}

const tmp = mkdtempSync(path.join(os.tmpdir(), "saas-app-bench-startup-"));
const shm = mkdtempSync(path.join("/dev/shm", "saas-app-bench-"));
const pgDir = path.join(tmp, "pg");
const pgScratch = path.join(appRoot, "..", "cli", "pg-scratch.sh");
let pgStarted = false;
try {
  execFileSync("chmod", ["755", tmp]);
  const layouts: Layout[] = ["unbundled", "bundled"];
  const tarballs = Object.fromEntries(layouts.map((l) => [l, given(l) ?? build(l, path.join(tmp, l))])) as Record<Layout, string>;
  const fileCount = Object.fromEntries(layouts.map((l) => [l, regularFiles(tarballs[l])])) as Record<Layout, number>;
  const files = (l: Layout) => fileCount[l];
  const releases = Object.fromEntries(layouts.map((l) => [l, path.join(shm, l)])) as Record<Layout, string>;
  const figures: Record<string, Record<Layout, number[]>> = {};
  const add = (what: string, layout: Layout, v: number) => ((figures[what] ??= { unbundled: [], bundled: [] })[layout].push(v));

  for (let i = 0; i < RUNS; i++) for (const l of layouts) add("unpack into tmpfs (ms)", l, unpackMs(tarballs[l], releases[l]));

  const databaseUrl = execFileSync("bash", [pgScratch, "start", pgDir], { encoding: "utf8" }).trim().split("\n").pop()!;
  pgStarted = true;
  const env = { PATH: process.env.PATH, DATABASE_URL: databaseUrl, SECRET_KEY: "bench-secret-key-0123456789abcdef", APP_URL: "http://bench.example.test", LOG_LEVEL: "warn" };
  execFileSync(path.join(releases.bundled, "bin", "migrate"), [], { env, stdio: ["ignore", "ignore", "inherit"] });

  for (let i = 0; i < RUNS; i++) {
    say(`run ${i + 1}/${RUNS}`);
    // Alternate which layout goes first, so neither always runs right after the other.
    for (const l of i % 2 ? [...layouts].reverse() : layouts) {
      const web = await startWeb(releases[l], env);
      add("web: spawn to /health 200, wall (ms)", l, web.wallMs);
      add("web: CPU user+sys until healthy (ms)", l, web.cpuMs);
      add("web: RSS when healthy (MiB)", l, web.rssMiB!);
      const worker = await startWorker(releases[l], env);
      add("worker: spawn to started, wall (ms)", l, worker.wallMs);
      add("worker: CPU user+sys until started (ms)", l, worker.cpuMs);
      add("worker: RSS when started (MiB)", l, worker.rssMiB!);
      const migrate = runMigrate(releases[l], env);
      add("migrate (up to date): spawn to exit, wall (ms)", l, migrate.wallMs);
      add("migrate: CPU user+sys (ms)", l, migrate.cpuMs);
    }
  }

  const rows: string[][] = [["", "unbundled", "bundled", "bundled/unbundled"]];
  const size = (l: Layout) => statSync(tarballs[l]).size;
  rows.push(["artifact (bytes)", String(size("unbundled")), String(size("bundled")), (size("bundled") / size("unbundled")).toFixed(3)]);
  rows.push(["artifact (files)", String(files("unbundled")), String(files("bundled")), (files("bundled") / files("unbundled")).toFixed(4)]);
  for (const [what, v] of Object.entries(figures)) {
    const [a, b] = [median(v.unbundled), median(v.bundled)];
    const digits = what.includes("MiB") ? 1 : 0;
    rows.push([`${what}, median of ${v.bundled.length}`, a.toFixed(digits), b.toFixed(digits), (b / a).toFixed(2)]);
    if (what.startsWith("web: spawn")) {
      const [a90, b90] = [percentile(v.unbundled, 90), percentile(v.bundled, 90)];
      rows.push([`${what}, p90 of ${v.bundled.length}`, a90.toFixed(0), b90.toFixed(0), (b90 / a90).toFixed(2)]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  say(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
} finally {
  if (pgStarted) execFileSync("bash", [pgScratch, "stop", pgDir], { stdio: "ignore" });
  rmSync(tmp, { recursive: true, force: true });
  rmSync(shm, { recursive: true, force: true });
}
