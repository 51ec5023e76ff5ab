/**
 * The rendered backup units checked by `systemd-analyze verify` (shellcheck of the scripts is
 * in test/provisioning/shellcheck.test.ts, with every other script).
 *
 * `verify` refuses a unit whose ExecStart= binary is missing on this machine, and the
 * binaries live at server paths (/usr/local/sbin/backup). So the rendered files are written
 * into a temporary root and verified with `--root=`; that root also gets a copy of this
 * machine's /usr/lib/systemd/system (< 1 MB), without which verify cannot resolve the
 * default dependencies (sysinit.target, timers.target, ...).
 */
import assert from "node:assert/strict";
import { chmodSync, cpSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BACKUP_PATHS, type BackupRenderOptions } from "../../provisioning/backup";
import { install, run, type Installed } from "./helpers";
import { VALID } from "./fixtures";

const UNITS = ["backup.service", "backup.timer", "restore-drill.service", "restore-drill.timer", "alert@backup.service.service"];

async function verify(inst: Installed): Promise<{ code: number; output: string }> {
  cpSync("/usr/lib/systemd/system", join(inst.root, "usr/lib/systemd/system"), { recursive: true });
  const paths = UNITS.map((u) => `/etc/systemd/system/${u}`);
  const r = await run("systemd-analyze", ["verify", `--root=${inst.root}`, ...paths]);
  return { code: r.code, output: (r.stdout + r.stderr).trim() };
}

async function withInstalled<T>(opts: BackupRenderOptions, f: (inst: Installed) => Promise<T>): Promise<T> {
  const inst = install(opts, {});
  try {
    // The watchdog's notifier (installed beside the backup's files), as systemd would load it for OnFailure=alert@%n.service.
    cpSync(join(inst.root, "etc/systemd/system/alert@.service"), join(inst.root, "etc/systemd/system/alert@backup.service.service"));
    return await f(inst);
  } finally {
    rmSync(inst.root, { recursive: true, force: true });
  }
}

describe("backup files checked by the real tools", function () {
  this.timeout(30_000);

  it("systemd-analyze verify accepts every rendered unit without a warning", async () => {
    await withInstalled(VALID, async (inst) => {
      const r = await verify(inst);
      assert.equal(r.output, "");
      assert.equal(r.code, 0);
    });
  });

  it("systemd-analyze verify catches a bad schedule and a command that is not executable", async () => {
    await withInstalled({ ...VALID, schedule: "every night at three" }, async (inst) => {
      chmodSync(join(inst.root, BACKUP_PATHS.command), 0o644);
      const r = await verify(inst);
      assert.match(r.output, /Failed to parse calendar specification.*every night at three/);
      assert.match(r.output, /\/usr\/local\/sbin\/backup is not executable/);
      assert.notEqual(r.code, 0);
    });
  });
});
