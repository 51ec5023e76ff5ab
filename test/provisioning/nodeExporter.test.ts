/**
 * The metrics exporter's rendered settings, checked by the real tools: this machine's Debian
 * prometheus-node-exporter runs with exactly the rendered flags (only the port changed, so it
 * cannot clash with anything here) and reports exactly the collectors we mean; systemd-analyze
 * verifies the package's unit with our drop-in and scores its sandbox. Debian 13's exporter
 * and systemd run the same files in the VM e2e test (`npm run ops -- status` there).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse } from "yaml";
import { freePort, run, tempDir, writeTree } from "../support/tools";
import { renderAllCases } from "../support/renderCases";

const BINARY = "/usr/bin/prometheus-node-exporter";
const PACKAGE_UNIT = "/usr/lib/systemd/system/prometheus-node-exporter.service";
const SETTINGS = "/etc/default/prometheus-node-exporter";
const DROP_IN = "/etc/systemd/system/prometheus-node-exporter.service.d/50-saas-vps.conf";
/** What a small box needs, and nothing else (provisioning/nodeExporter.ts says why each). */
const EXPECTED_COLLECTORS = ["cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname", "vmstat"];

/** The command line systemd would run: the drop-in's last ExecStart, with $ARGS from the settings file. */
function commandLine(files: Map<string, string>): string[] {
  const args = /^ARGS="([^"]*)"$/m.exec(files.get(SETTINGS)!)![1];
  const execStarts = [...files.get(DROP_IN)!.matchAll(/^ExecStart=(.*)$/gm)].map((m) => m[1]);
  assert.equal(execStarts[0], "", "the drop-in does not reset the package's ExecStart first");
  return execStarts[execStarts.length - 1].replace("$ARGS", args).split(" ").filter(Boolean);
}

async function scrape(url: string, child: ChildProcess, stderr: () => string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`the exporter exited ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(url);
      if (res.ok) return await res.text();
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no answer from ${url}: ${stderr()}`);
}

describe("node exporter: the rendered flags and unit on the real tools", function () {
  this.timeout(120_000);
  let files: Map<string, string>;
  let userData: string;

  before(async function () {
    if (!existsSync(BINARY)) {
      console.log(`      SKIPPED: ${BINARY} is not installed here (apt-get install prometheus-node-exporter; cli/setup.sh does)`);
      this.skip();
    }
    const cases = await renderAllCases();
    ({ files, userData } = cases.find((c) => c.name === "stack-prod-app")!);
    // Every server gets the same two files.
    for (const c of cases) {
      assert.equal(c.files.get(SETTINGS), files.get(SETTINGS), c.name);
      assert.equal(c.files.get(DROP_IN), files.get(DROP_IN), c.name);
    }
  });

  it("settings: listens on 127.0.0.1:9100 and nowhere else; first boot writes it before the package step", () => {
    assert.equal(files.get(SETTINGS), 'ARGS="--web.listen-address=127.0.0.1:9100"\n');
    // A write_files entry of its own (cloud-init writes those before the package step), not in the bundle.
    const writeFiles = (parse(userData) as { write_files: Array<{ path: string; content: string }> }).write_files;
    assert.deepEqual(writeFiles.find((f) => f.path === SETTINGS)?.content, files.get(SETTINGS));
    assert.ok(!writeFiles.some((f) => f.path === DROP_IN), "the drop-in is pushOnly");
  });

  it("the exporter runs with exactly the rendered flags, on loopback, with only the collectors a small box needs", async () => {
    const [binary, ...flags] = commandLine(files);
    assert.equal(binary, BINARY);
    const port = await freePort();
    const listen = flags.findIndex((f) => f === "--web.listen-address=127.0.0.1:9100");
    assert.ok(listen >= 0, flags.join(" "));
    flags[listen] = `--web.listen-address=127.0.0.1:${port}`;
    const child = spawn(binary, flags, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => { stderr += d; });
    try {
      const metrics = await scrape(`http://127.0.0.1:${port}/metrics`, child, () => stderr);
      const collectors = [...metrics.matchAll(/^node_scrape_collector_success\{collector="([^"]+)"\} (\d)$/gm)];
      assert.deepEqual(collectors.map((m) => m[1]).sort(), EXPECTED_COLLECTORS);
      for (const m of collectors) assert.equal(m[2], "1", `collector ${m[1]} failed: ${stderr}`);
      assert.match(metrics, /^node_memory_MemAvailable_bytes \d/m);
      assert.match(metrics, /^node_filesystem_avail_bytes\{[^}]*mountpoint="\/"/m);
      const ss = run("ss", ["-Hltnp", `sport = :${port}`]).stdout.trim().split("\n");
      assert.deepEqual(ss.map((l) => l.split(/\s+/)[3]), [`127.0.0.1:${port}`]);
    } finally {
      child.kill("SIGTERM");
    }
  });

  it("systemd-analyze verifies Debian's unit with our drop-in, and its sandbox scores 3.0 or better", () => {
    assert.ok(existsSync(PACKAGE_UNIT), `${PACKAGE_UNIT} missing`);
    const root = tempDir("node-exporter");
    mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
    cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true });
    writeTree(root, new Map([[DROP_IN, files.get(DROP_IN)!], [SETTINGS, files.get(SETTINGS)!]]));
    // verify wants every command the unit runs: the exporter, and the package's ExecReload (kill).
    for (const bin of [BINARY, "/bin/kill"]) {
      mkdirSync(dirname(join(root, bin)), { recursive: true });
      cpSync(bin, join(root, bin));
    }
    const verify = run("systemd-analyze", ["verify", `--root=${root}`, "prometheus-node-exporter.service"]);
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(verify.stderr.trim(), "", verify.stderr);
    const security = run("systemd-analyze", ["security", "--offline=true", `--root=${root}`, "prometheus-node-exporter.service"]);
    const match = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(security.stdout);
    assert.ok(match, `no exposure score in ${security.stdout}${security.stderr}`);
    console.log(`      prometheus-node-exporter.service with the drop-in: exposure ${match[1]} ${match[2]}`);
    assert.ok(Number(match[1]) <= 3.0, security.stdout);
  });
});
