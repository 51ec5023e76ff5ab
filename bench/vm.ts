/**
 * VM boot benchmark, not a test: `npx tsx bench/vm.ts [--stack staging]`.
 *
 * Boots, one after the other on the same cached image (one VM at a time), and measures seconds
 * from QEMU start:
 *   baseline  a minimal user-data that only creates the admin user (for SSH) and installs the
 *             same package list as the stack (`packages:`, which implies an apt update):
 *             SSH up, cloud-init done, first HTTP 200 from nginx (its default page)
 *   full      the stack's exact render for the VM (npm run vm): SSH up, cloud-init done
 *             (bootstrap included), then the day-2 pushes and the release the way `pulumi up`
 *             runs them, and the
 *             first GET /health through nginx answering 200 {"status":"ok"}
 * and prints the ratios full / baseline (goal <= 1.3). The app tarball is built before either
 * VM starts (Pulumi builds it while the server is created), so neither figure includes it.
 * Figures also go to .vm/bench/figures.json. Needs root for a first image build.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { PROJECT_DIR } from "../cli/lib/stacks";
import { bootVm } from "../cli/vm/boot";
import { httpRequest, waitForHealth } from "../cli/vm/http";
import { packagesFromUserData } from "../cli/vm/image";
import { lockRunDir } from "../cli/vm/lock";
import { sleep } from "../cli/vm/process";
import { runPushes } from "../cli/vm/pushes";
import { buildApp, shipRelease } from "../cli/vm/release";
import { ensureSshKey, ssh } from "../cli/vm/ssh";
import { type VmRender, renderStackForVm } from "../cli/vm/stack";
import { type Vm, qemuAvailable, stopVm } from "../cli/vm/vm";

const RUN_DIR = path.join(PROJECT_DIR, ".vm", "bench");
const log = (m: string) => process.stderr.write(`${m}\n`);

interface Run {
  ssh: number;
  cloudInitDone: number;
  cloudInitStatus: string;
  /** baseline: first HTTP 200 from nginx; full: first healthy /health through nginx. */
  firstHttp: number | null;
  /** full: seconds the day-2 pushes took (between cloud-init done and the release). */
  pushSeconds?: number;
  blame?: string;
}

/** Poll HTTP on the VM's forwarded port from QEMU start; resolves the first time `ok` holds. */
function firstHttpProbe(getVm: () => Vm | undefined, ok: (status: number, body: string) => boolean) {
  let stop = false;
  let seen: number | null = null;
  const done = (async () => {
    while (!stop && seen === null) {
      const vm = getVm();
      if (vm) {
        try {
          const r = await httpRequest(vm.ports.http, { path: "/", timeoutMs: 3000, agent: false });
          if (ok(r.status, r.body)) seen = Math.round((Date.now() - vm.startedAtMs) / 100) / 10;
        } catch { /* not up yet */ }
      }
      await sleep(500);
    }
  })();
  return { result: async () => { stop = true; await done; return seen; } };
}

async function bootOnce(kind: "baseline" | "full", userDataFile: string, artifact: string, stack: string, render?: VmRender): Promise<Run> {
  let current: Vm | undefined;
  const probe = kind === "baseline" ? firstHttpProbe(() => current, (s) => s === 200) : undefined;
  try {
    const boot = await bootVm({ runDir: RUN_DIR, userDataFile, hostname: `bench-${kind}`, log, onStart: (v) => { current = v; } });
    const vm = boot.vm;
    let firstHttp: number | null;
    let pushSeconds: number | undefined;
    if (kind === "baseline") {
      const deadline = Date.now() + 60000;
      let seen: number | null = null;
      while (seen === null && Date.now() < deadline) {
        try {
          const r = await httpRequest(vm.ports.http, { path: "/", timeoutMs: 3000, agent: false });
          if (r.status === 200) seen = Math.round((Date.now() - vm.startedAtMs) / 100) / 10;
        } catch { /* keep trying */ }
        if (seen === null) await sleep(500);
      }
      const early = await probe!.result();
      firstHttp = early ?? seen;
    } else {
      if (boot.cloudInit.status !== "done") {
        throw new Error(`full boot: cloud-init ${boot.cloudInit.extendedStatus}: ${boot.cloudInit.errors.join("; ")}`);
      }
      pushSeconds = (await runPushes(vm, render!.pushes, { log })).seconds;
      await shipRelease(vm, { stack, artifact, log });
      firstHttp = (await waitForHealth(vm, { timeoutMs: 120000, log })).seconds;
    }
    const blame = (await ssh(vm, "sudo cloud-init analyze blame 2>/dev/null | sed -n '2,9p'; systemd-analyze blame --no-pager 2>/dev/null | head -8")).stdout;
    return { ssh: boot.sshSeconds, cloudInitDone: boot.cloudInit.seconds, cloudInitStatus: boot.cloudInit.extendedStatus, firstHttp, pushSeconds, blame };
  } finally {
    if (probe) await probe.result();
    await stopVm(RUN_DIR, { log });
  }
}

async function main(): Promise<number> {
  const stack = process.argv.includes("--stack") ? process.argv[process.argv.indexOf("--stack") + 1] : "staging";
  const q = qemuAvailable();
  if (!q.ok) {
    log(`bench/vm: QEMU cannot run here: ${q.reason}`);
    return 1;
  }
  const release = await lockRunDir(RUN_DIR, log);
  try {
    await stopVm(RUN_DIR, { log: () => {} });
    const key = ensureSshKey(RUN_DIR);
    const render = await renderStackForVm({ stack, publicKey: key.publicKey, outDir: path.join(RUN_DIR, "render") });
    const packages = packagesFromUserData(render.userData);
    if (!packages) throw new Error(`stack ${stack}'s user-data has no packages: list`);
    // Baseline: the admin user for SSH and the same packages, nothing else.
    const baselineFile = path.join(RUN_DIR, "baseline-user-data.yaml");
    const baseline = {
      users: [{ name: "admin", groups: ["sudo"], shell: "/bin/bash", sudo: "ALL=(ALL) NOPASSWD:ALL", lock_passwd: true, ssh_authorized_keys: [key.publicKey] }],
      package_update: true,
      packages: (require("yaml").parse(render.userData) as { packages: unknown[] }).packages,
    };
    fs.writeFileSync(baselineFile, `#cloud-config\n${stringify(baseline)}`);
    // Same image for both (same package list), built or found before either clock starts.
    const artifact = await buildApp({ stack, log });
    const loadStart = os.loadavg()[0];
    log("\n== baseline: minimal user-data (admin user + the same packages) ==");
    const base = await bootOnce("baseline", baselineFile, artifact, stack);
    log(`\n== full: stack ${stack}'s exact render + release ==`);
    const full = await bootOnce("full", render.userDataFile, artifact, stack, render);
    const loadEnd = os.loadavg()[0];

    const ratio = (a: number | null, b: number | null) => (a && b ? (a / b).toFixed(2) : "n/a");
    const fmt = (v: number | null) => (v === null ? "never" : v.toFixed(1));
    const rows = [
      ["", "baseline", "full", "full / baseline"],
      ["SSH up (s)", fmt(base.ssh), fmt(full.ssh), ratio(full.ssh, base.ssh)],
      ["cloud-init done (s)", fmt(base.cloudInitDone), fmt(full.cloudInitDone), ratio(full.cloudInitDone, base.cloudInitDone)],
      ["first HTTP 200 via nginx (s)", `${fmt(base.firstHttp)} (default page)`, `${fmt(full.firstHttp)} (/health ok)`, ratio(full.firstHttp, base.firstHttp)],
      ["serving: full /health vs baseline cloud-init done", fmt(base.cloudInitDone), fmt(full.firstHttp), ratio(full.firstHttp, base.cloudInitDone)],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
    process.stdout.write(`\nVM boot benchmark, stack ${stack}, seconds from QEMU start (TCG, 2 vCPU, 2 GiB); host load ${loadStart.toFixed(1)} -> ${loadEnd.toFixed(1)}\n` +
      `${table}\ncloud-init status: baseline ${base.cloudInitStatus}, full ${full.cloudInitStatus}. Goal: full <= 1.3 x baseline.\n` +
      `full: ${render.pushes.length} day-2 pushes in ${full.pushSeconds?.toFixed(1) ?? "?"} s after cloud-init done, before the release.\n` +
      `\nwhere the full boot's time went (cloud-init analyze blame / systemd-analyze blame):\n${full.blame}\n`);
    fs.writeFileSync(path.join(RUN_DIR, "figures.json"), JSON.stringify({ stack, baseline: base, full, loadStart, loadEnd }, null, 2) + "\n");
    return 0;
  } finally {
    release();
  }
}

main().then((code) => process.exit(code), (err) => {
  log(`bench/vm: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
