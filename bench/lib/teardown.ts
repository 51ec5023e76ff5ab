/**
 * The end of every bench that starts the real app: what it started is stopped whatever happened,
 * and its temporary directory goes (kept with KEEP_TMP=1, to read the logs); a failure prints and
 * exits 1.
 */
import fs from "node:fs";
import { stopPostgres } from "../../test/release/harness";

export interface BenchStarted {
  /** Fake servers whose units are still running (stopAll), in any state. */
  servers?: ({ stopAll(): void } | undefined)[];
  nginx?: { stop(): void };
  /** The PostgreSQL cluster's directory, once the cluster has started. */
  pgDir?: string;
}

export function tearDownBench(dir: string, started: BenchStarted): void {
  for (const server of started.servers ?? []) server?.stopAll();
  started.nginx?.stop();
  if (started.pgDir) stopPostgres(started.pgDir);
  if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
}

export function runBench(main: () => Promise<unknown>): void {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
