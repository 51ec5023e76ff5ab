/** One process at a time per run dir: mocha runs and the benchmark never drive or stop the same VM. */
import * as fs from "node:fs";
import * as path from "node:path";
import { stderrLog, type VmLogger } from "./log";
import { sleep } from "./process";
import { stopVm } from "./vm";

/**
 * Take `<runDir>/.lock` so two processes (mocha runs, the benchmark) never drive or stop the
 * same VM. Waits while a live owner holds it; takes over a dead owner's lock and stops its
 * orphaned VM. Returns the release function.
 */
export async function lockRunDir(runDir: string, log: VmLogger = stderrLog): Promise<() => void> {
  fs.mkdirSync(runDir, { recursive: true });
  const lockFile = path.join(runDir, ".lock");
  for (let waited = 0; ; waited += 5) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: "wx" });
      return () => {
        try {
          if (fs.readFileSync(lockFile, "utf8").trim() === String(process.pid)) fs.rmSync(lockFile, { force: true });
        } catch { /* gone */ }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = Number(fs.readFileSync(lockFile, "utf8").trim());
    let alive = false;
    try { process.kill(owner, 0); alive = owner !== process.pid; } catch { alive = false; }
    if (!alive) {
      fs.rmSync(lockFile, { force: true });
      await stopVm(runDir, { log: () => {} }); // its VM, orphaned
      continue;
    }
    if (waited % 30 === 0) log(`[vm] another process (pid ${owner}) is using ${runDir}; waiting`);
    await sleep(5000);
  }
}
