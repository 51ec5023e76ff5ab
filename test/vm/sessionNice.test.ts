/**
 * (no VM) The runner hands its nice value to each QEMU's session: QEMU is spawned detached, in a
 * session of its own, and under the kernel's autogroup scheduling a session's share of the CPU
 * ignores its processes' nice values (`nice npm test` should leave the machine's other work its share, VMs included).
 */
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { setSessionNice } from "../../cli/vm/vm";

describe("VM runner: a detached QEMU's session gets the runner's nice value", function () {
  it("a process spawned detached runs in an autogroup of its own, at the nice value given", async function () {
    if (fs.readFileSync("/proc/sys/kernel/sched_autogroup_enabled", "utf8").trim() !== "1") {
      console.log("      !! SKIPPED: this kernel does not group sessions for scheduling (sched_autogroup_enabled is not 1): nothing to carry over");
      this.skip();
    }
    // As vm.ts spawns QEMU: detached, so in a session (and an autogroup) of its own.
    const child = spawn("sleep", ["30"], { detached: true, stdio: "ignore" });
    try {
      const pid = child.pid!;
      const group = () => fs.readFileSync(`/proc/${pid}/autogroup`, "utf8").trim();
      const own = fs.readFileSync(`/proc/${process.pid}/autogroup`, "utf8").trim().split(" ")[0];
      assert.notEqual(group().split(" ")[0], own, "the detached child shares the runner's autogroup");
      assert.match(group(), / nice 0$/);
      assert.equal(setSessionNice(pid, 5), true);
      assert.match(group(), new RegExp(`^${group().split(" ")[0]} nice 5$`));
      assert.equal(setSessionNice(2 ** 22 + 7, 5), false, "a pid that does not exist");
    } finally {
      child.kill("SIGKILL");
    }
  });
});
