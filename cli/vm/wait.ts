/** Waiting on a booting VM over SSH: until it logs in, until cloud-init has finished. Both fail fast if QEMU dies or the guest kernel panics. */
import { stderrLog, type VmLogger } from "./log";
import { sleep } from "./process";
import { ssh } from "./ssh";
import { type Vm, consoleTail, elapsed, isQemuAlive } from "./vm";

/** The line a Linux guest prints as it stops for good; QEMU keeps running, so only the console tells. */
const KERNEL_PANIC = "Kernel panic - not syncing";

/** The guest kernel stopped for good; `what` was being waited for (e.g. "SSH": before any user-data ran). */
export class GuestPanicError extends Error {
  constructor(readonly what: string, tail: string) {
    super(`the guest kernel panicked while waiting for ${what}; console tail:\n${tail}`);
  }
}

function ensureAlive(vm: Vm, what: string): void {
  // Seen once under TCG (a fault in the kernel's own allocator 30 s into boot): without this the
  // wait ran into its full timeout on a guest that could never answer. Asked first: a panic is
  // the cause to report (and the one bootStackVms boots again for) whether or not QEMU is still up.
  const tail = consoleTail(vm, 40);
  if (tail.includes(KERNEL_PANIC)) {
    throw new GuestPanicError(what, tail);
  }
  if (!isQemuAlive(vm.pid)) {
    throw new Error(`QEMU (pid ${vm.pid}) exited while waiting for ${what}; console tail:\n${consoleTail(vm, 30)}`);
  }
}

/** Poll until `ssh true` succeeds. Resolves with seconds since VM start. */
export async function waitForSsh(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<number> {
  const log = opts.log ?? stderrLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 600000);
  let lastReport = 0;
  for (;;) {
    ensureAlive(vm, "SSH");
    const r = await ssh(vm, "true", { timeoutMs: 30000 });
    if (r.code === 0) {
      const s = elapsed(vm);
      log(`[vm ${s.toFixed(1).padStart(6)} s] SSH is up (${vm.sshUser}@127.0.0.1:${vm.ports.ssh})`);
      return s;
    }
    if (Date.now() > deadline) {
      throw new Error(`no SSH after ${elapsed(vm)} s (last: ${r.stderr.trim()}); console tail:\n${consoleTail(vm, 30)}`);
    }
    if (Date.now() - lastReport > 10000) {
      lastReport = Date.now();
      log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] waiting for SSH; console: ${consoleTail(vm).slice(0, 110)}`);
    }
    await sleep(2000);
  }
}

export interface CloudInitResult {
  /** `status` of `cloud-init status --format json`: done, error, ... */
  status: string;
  extendedStatus: string;
  errors: string[];
  /** Warnings/deprecations by level, e.g. { WARNING: [...] }. */
  recoverableErrors: Record<string, string[]>;
  /** Seconds since VM start when cloud-init was seen finished. */
  seconds: number;
  raw: Record<string, unknown>;
}

/** Poll `cloud-init status --format json` over SSH until it is no longer running. */
export async function waitForCloudInit(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<CloudInitResult> {
  const log = opts.log ?? stderrLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 1200000);
  let lastDetail = "";
  for (;;) {
    ensureAlive(vm, "cloud-init");
    const r = await ssh(vm, "cloud-init status --format json", { timeoutMs: 60000 });
    let raw: Record<string, unknown> | undefined;
    try {
      raw = JSON.parse(r.stdout);
    } catch {
      raw = undefined;
    }
    if (raw) {
      const status = String(raw.status ?? "");
      const detail = `${status}: ${String(raw.detail ?? "").replace(/\s+/g, " ")}`;
      if (detail !== lastDetail) {
        lastDetail = detail;
        log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] cloud-init ${detail.slice(0, 120)}`);
      }
      if (status !== "running" && status !== "not started" && status !== "not run") {
        return {
          status,
          extendedStatus: String(raw.extended_status ?? status),
          errors: (raw.errors as string[] | undefined) ?? [],
          recoverableErrors: (raw.recoverable_errors as Record<string, string[]> | undefined) ?? {},
          seconds: elapsed(vm),
          raw,
        };
      }
    } else if (r.code !== 0 && Date.now() - deadline > -5000) {
      log(`[vm] cloud-init status failed: ${r.stderr.trim()}`);
    }
    if (Date.now() > deadline) throw new Error(`cloud-init not finished after ${elapsed(vm)} s (${lastDetail})`);
    await sleep(3000);
  }
}
