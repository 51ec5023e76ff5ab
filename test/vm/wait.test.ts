/**
 * The VM waits give up at once on a guest that can never answer: a kernel panic leaves QEMU
 * running, so only the console shows it. No VM: a console file and a process named like QEMU
 * (what isQemuAlive checks) stand in for one.
 */
import { strict as assert } from "node:assert";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Vm } from "../../cli/vm/vm";
import { GuestPanicError, waitForSsh } from "../../cli/vm/wait";

function fakeVm(dir: string, pid: number, console: string): Vm {
  const consoleLog = path.join(dir, "console.log");
  fs.writeFileSync(consoleLog, console);
  return {
    runDir: dir, pid, ports: { ssh: 1, http: 1, https: 1 } as Vm["ports"], sshUser: "admin",
    sshKeyPath: path.join(dir, "no-key"), consoleLog, qmpSocket: path.join(dir, "qmp"), startedAtMs: Date.now(),
    imageDir: dir, accel: "tcg", qemuArgs: [],
  };
}

describe("VM waits: a guest that can never answer (a panic, QEMU gone)", function () {
  let dir = "";
  let qemu: ChildProcess;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-wait-"));
    qemu = spawn("bash", ["-c", "exec -a qemu-system-x86_64-stand-in sleep 60"], { stdio: "ignore" });
  });
  afterEach(() => {
    qemu.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("waitForSsh fails at once, naming the panic and showing the console", async function () {
    const vm = fakeVm(dir, qemu.pid!, [
      "[   30.606591] Modules linked in: nfnetlink vsock_loopback",
      "[   30.607310] Kernel panic - not syncing: Fatal exception in interrupt",
      "[   30.618837] ---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---",
      "",
    ].join("\n"));
    const t = Date.now();
    await assert.rejects(waitForSsh(vm, { timeoutMs: 60000, log: () => {} }), (e: Error) => {
      assert.match(e.message, /guest kernel panicked while waiting for SSH/);
      // A panic before SSH is what bootStackVms boots again once: it needs to tell it apart.
      assert.ok(e instanceof GuestPanicError && e.what === "SSH", String(e));
      assert.match(e.message, /Fatal exception in interrupt/);
      return true;
    });
    assert.ok(Date.now() - t < 5000, "it waited instead of failing at once");
  });

  it("waitForSsh fails at once when QEMU is gone without a panic, saying so", async function () {
    const gone = spawn("true");
    await new Promise((r) => gone.on("exit", r));
    const vm = fakeVm(dir, gone.pid!, "[    7.604103] cdrom: Uniform CD-ROM driver Revision: 3.20\n");
    const t = Date.now();
    await assert.rejects(waitForSsh(vm, { timeoutMs: 60000, log: () => {} }), (e: Error) => {
      assert.ok(!(e instanceof GuestPanicError), String(e));
      assert.match(e.message, new RegExp(`QEMU \\(pid ${gone.pid}\\) exited while waiting for SSH; console tail:\n.*CD-ROM`));
      return true;
    });
    assert.ok(Date.now() - t < 5000, "it waited instead of failing at once");
  });
});
