/**
 * The day-2 pushes on the VM, as `pulumi up` runs them right after creating a server
 * (components/filePush.ts): each recorded command:remote:Command's exact `create` command, run
 * over SSH as the admin user with its exact `stdin`, one after the other in the order the
 * program registers them. They share one multiplexed SSH connection, so ~35 pushes cost ~35
 * channels rather than ~35 logins (seconds each under emulation).
 */
import type { RecordedPush } from "../lib/renderStack";
import { stderrLog, type VmLogger } from "./log";
import { openSshMaster, ssh } from "./ssh";
import { type Vm, elapsed } from "./vm";

export interface PushRun {
  count: number;
  /** Wall-clock seconds for all of them, the SSH master's login included. */
  seconds: number;
  /** Paths whose push replaced the file (`updated:`), i.e. ran its onChange action. */
  updated: string[];
  /** Paths the server already had with the same content, mode and owner (the push said nothing else). */
  unchanged: string[];
}

/** Runs every push in order; the first failure throws with that push's output. */
export async function runPushes(vm: Vm, pushes: RecordedPush[], opts: { log?: VmLogger; timeoutMs?: number } = {}): Promise<PushRun> {
  const log = opts.log ?? stderrLog;
  const t0 = Date.now();
  const updated: string[] = [];
  const unchanged: string[] = [];
  log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] running the ${pushes.length} day-2 pushes of \`pulumi up\` over one SSH connection`);
  const master = openSshMaster(vm);
  try {
    for (const [i, push] of pushes.entries()) {
      const r = await ssh(vm, push.command, { input: push.stdin, master, timeoutMs: opts.timeoutMs ?? 10 * 60000 });
      if (r.code !== 0) {
        throw new Error(`day-2 push ${i + 1} of ${pushes.length} (${push.resourceName}: ${push.path}) failed (exit ${r.code}):\n` +
          `${r.stdout}${r.stderr}`.trim().split("\n").slice(-30).join("\n"));
      }
      (r.stdout.includes(`updated: ${push.path}`) ? updated : unchanged).push(push.path);
    }
  } finally {
    master.close();
  }
  const seconds = Math.round((Date.now() - t0) / 100) / 10;
  log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] ${pushes.length} pushes in ${seconds.toFixed(1)} s: ` +
    `${updated.length} updated${updated.length ? ` (${updated.join(", ")})` : ""}, ${unchanged.length} unchanged`);
  return { count: pushes.length, seconds, updated, unchanged };
}
