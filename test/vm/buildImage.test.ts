/**
 * cli/vm/build-image.sh's cache and lock, without building anything: an image already in the
 * cache is used at once while another build holds the lock (CI prebuilds several images while the
 * first VM suite starts), and a missing one waits for the lock. The cached image here is two
 * placeholder files in a cache folder of the test's own (SAAS_VPS_VM_CACHE).
 */
import { strict as assert } from "node:assert";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "../support/tools";

const SCRIPT = path.join(__dirname, "..", "..", "cli", "vm", "build-image.sh");

describe("build-image.sh: a cached image does not wait for another image's build", function () {
  this.timeout(60_000);
  let cache: string;
  let env: NodeJS.ProcessEnv;
  let holder: ChildProcess | undefined;
  const listFile = (name: string, packages: string) => {
    const file = path.join(cache, name);
    fs.writeFileSync(file, packages);
    return file;
  };
  const run = (args: string[], timeoutMs = 20_000) => spawnSync("bash", [SCRIPT, ...args], { encoding: "utf8", env, timeout: timeoutMs, killSignal: "SIGKILL" });
  const keyOf = (list: string) => {
    const r = run(["--packages", list, "--print-key"]);
    assert.equal(r.status, 0, r.stderr);
    return /^KEY=([0-9a-f]{16})$/m.exec(r.stdout)![1]!;
  };

  before(function () {
    const missing = ["mmdebstrap", "mkfs.ext4", "qemu-img", "flock"].filter((t) => spawnSync("bash", ["-c", `command -v ${t}`]).status !== 0);
    if (process.getuid?.() !== 0 || missing.length > 0) {
      const why = `build-image.sh needs root and its tools (npm run setup)${missing.length ? `; missing: ${missing.join(", ")}` : ""}`;
      if (process.env.CI) throw new Error(why);
      console.log(`      SKIPPED LOUDLY: ${why}`);
      this.skip();
    }
    cache = tempDir("build-image-cache");
    env = { ...process.env, SAAS_VPS_VM_CACHE: cache };
    fs.mkdirSync(path.join(cache, "images"));
  });

  afterEach(() => {
    holder?.kill("SIGKILL");
    holder = undefined;
  });

  /** Another build holding the images' lock, as long as the test needs it. */
  const holdLock = async () => {
    holder = spawn("flock", [path.join(cache, "images", ".lock"), "sleep", "60"], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      if (spawnSync("flock", ["-n", path.join(cache, "images", ".lock"), "true"]).status !== 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail("the lock was never taken");
  };

  it("the key depends on the package list, not on its order or duplicates", () => {
    const a = keyOf(listFile("a.txt", "nginx postgresql\n"));
    assert.equal(keyOf(listFile("b.txt", "postgresql\nnginx nginx # the web server\n")), a);
    assert.notEqual(keyOf(listFile("c.txt", "nginx\n")), a);
  });

  it("an image in the cache: used at once while another build holds the lock", async () => {
    const list = listFile("cached.txt", "nginx\n");
    const dir = path.join(cache, "images", keyOf(list));
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "disk.qcow2"), "placeholder");
    fs.writeFileSync(path.join(dir, "build.json"), "{}");
    await holdLock();
    const t0 = Date.now();
    const r = run(["--packages", list]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").pop(), `IMAGE_DIR=${dir}`);
    assert.match(r.stderr, /cached image [0-9a-f]{16} /);
    assert.doesNotMatch(r.stderr, /another image build holds/);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  });

  it("an image not in the cache waits for the lock, saying so", async () => {
    await holdLock();
    const r = run(["--packages", listFile("missing.txt", "postgresql\n")], 3000);
    assert.equal(r.signal, "SIGKILL", `it did not wait: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /another image build holds .*\.lock; waiting/);
  });
});
