// Benchmark (not a test): what one abuse-limit count costs in each store the app can use, side
// by side in one run: the PostgreSQL store (one upsert on `rate_limits`, migrated by the app's
// own migrations) and the Valkey store (one Lua INCR over TLS with a password, as the stack runs
// it), both through auth/rate-limits.ts's own LimiterStore functions, on loopback. `--concurrency`
// counts run at once (requests of several web processes arriving together), each on a key of its
// own among `--keys`, for `--duration` seconds per store after a one-second warm-up; printed:
// counts/s, p50 and p99, and Valkey's figures as a ratio of PostgreSQL's.
//   npm run bench:rate-limits [-- --duration 5 --concurrency 10 --keys 1000]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { postgresLimiterStore, valkeyLimiterStore, type LimiterStore } from "../src/auth/rate-limits.js";
import { createValkey } from "../src/core/valkey.js";
import { createPool } from "../src/db/pool.js";
import { migrateUp } from "../src/db/migrate.js";
import { startValkeyServer } from "../test/helpers/valkey.js";

const appRoot = fileURLToPath(new URL("..", import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const DURATION_MS = arg("duration", 5) * 1000;
const CONCURRENCY = arg("concurrency", 10);
const KEYS = arg("keys", 1000);
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

interface Result { perSec: number; p50: number; p99: number }

/** Counts for `ms` with CONCURRENCY loops, each timing its own counts. */
async function measure(store: LimiterStore, ms: number): Promise<Result> {
  // A window long enough that no key runs out of points during the run.
  const limiter = store({ keyPrefix: `bench_${Date.now()}`, points: 1e9, duration: 3600 });
  const latencies: number[] = [];
  const end = performance.now() + ms;
  let n = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await limiter.consume(`k${n++ % KEYS}`);
      latencies.push(performance.now() - t0);
    }
  }));
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! * 100) / 100;
  return { perSec: Math.round(latencies.length / (ms / 1000)), p50: at(0.5), p99: at(0.99) };
}

const tmp = mkdtempSync(path.join(os.tmpdir(), "saas-app-bench-rl-"));
process.env.SAAS_APP_TEST_TMP ??= tmp; // where the Valkey helper keeps its certificate
const pgDir = path.join(tmp, "pg");
const pgScratch = path.join(appRoot, "..", "cli", "pg-scratch.sh");
const log = pino({ level: "warn" });
try {
  execFileSync("chmod", ["755", tmp]);
  const databaseUrl = execFileSync("bash", [pgScratch, "start", pgDir], { encoding: "utf8" }).trim();
  await migrateUp(databaseUrl, pino({ level: "silent" }));
  const server = await startValkeyServer();
  // The web process's own pool size and client settings.
  const pool = createPool(databaseUrl, log);
  const valkey = await createValkey(server.url, log, "saas-app-bench");
  try {
    await new Promise<void>((resolve) => (valkey.client.status === "ready" ? resolve() : valkey.client.once("ready", () => resolve())));
    const stores: Array<[string, LimiterStore]> = [["postgresql", postgresLimiterStore(pool)], ["valkey", valkeyLimiterStore(valkey)]];
    const results: Record<string, Result> = {};
    for (const [name, store] of stores) {
      say(`${name}: warm-up, then ${DURATION_MS / 1000} s at ${CONCURRENCY} at once over ${KEYS} keys`);
      await measure(store, 1000);
      results[name] = await measure(store, DURATION_MS);
    }
    const pgR = results.postgresql!;
    const vk = results.valkey!;
    console.log("\n| store | counts/s | p50 ms | p99 ms |\n|---|---|---|---|");
    for (const [name, r] of Object.entries(results)) console.log(`| ${name} | ${r.perSec} | ${r.p50} | ${r.p99} |`);
    console.log(`| valkey / postgresql | ${(vk.perSec / pgR.perSec).toFixed(2)} | ${(vk.p50 / pgR.p50).toFixed(2)} | ${(vk.p99 / pgR.p99).toFixed(2)} |`);
    console.log(`\nnode ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  } finally {
    await valkey.close();
    await pool.end();
    await server.close();
  }
} finally {
  execFileSync("bash", [pgScratch, "stop", pgDir]);
  rmSync(tmp, { recursive: true, force: true });
}
