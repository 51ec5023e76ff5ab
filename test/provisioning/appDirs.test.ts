/**
 * The app's first-boot directories step (provisioning/assets/server/30-app-dirs) as shipped, run
 * by bash with the bootstrap.env the app role renders, its paths moved into a temp folder: with
 * uploads on the volume it makes the upload directory; with an uploads bucket there is none to
 * make, so a server without the data volume never needs it.
 */
import assert from "node:assert/strict";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { renderServer } from "../../provisioning/server";
import { loadScript } from "../../provisioning/scripts";
import { minimalRaw } from "../support/fixtures";
import { run, tempDir } from "../support/tools";

/** bootstrap.env's settings for the one server of a config (KEY="value" lines). */
function bootstrapSettings(raw: Record<string, string>): Map<string, string> {
  const config = parseStackConfig(raw);
  const [server] = planStack(config).servers;
  const { files } = renderServer(buildServerInput(config, server, { machine: "qemu", ...PLACEHOLDER_CONTEXT }));
  const env = files.find((f) => f.path === "/etc/saas-vps/bootstrap.env")!.content;
  return new Map(env.split("\n").filter((l) => /^[A-Z_]+="/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 2, -1)]));
}

/** Runs 30-app-dirs with those settings, every server path moved under a temp folder; `daemon` stands in for the app user. */
function runAppDirs(settings: Map<string, string>): { dir: string; status: number | null; stderr: string } {
  const dir = tempDir("app-dirs");
  const moved = new Map([...settings].map(([k, v]) => [k, v.startsWith("/") ? join(dir, v) : v]));
  moved.set("APP_USER", "daemon");
  const env = join(dir, "bootstrap.env");
  writeFileSync(env, [...moved].map(([k, v]) => `${k}="${v}"`).join("\n") + "\n");
  const script = join(dir, "30-app-dirs");
  writeFileSync(script, loadScript("server/30-app-dirs"));
  const r = run("bash", [script], { env: { ...process.env, BOOTSTRAP_ENV: env } });
  return { dir, status: r.status, stderr: r.stderr };
}

describe("30-app-dirs: the app's directories on first boot", function () {
  before(function () {
    if (process.getuid?.() !== 0) {
      console.warn("      SKIPPED: 30-app-dirs sets owners with install -o, which needs root; run the suite as root (npm run setup does)");
      this.skip();
    }
  });

  it("with uploads on the volume: makes UPLOAD_DIR, 0750 and the app user's, beside the release tree", () => {
    const settings = bootstrapSettings(minimalRaw("hetzner"));
    assert.equal(settings.get("UPLOAD_DIR"), "/srv/data/uploads");
    const r = runAppDirs(settings);
    assert.equal(r.status, 0, r.stderr);
    const uploads = statSync(join(r.dir, "/srv/data/uploads"));
    assert.equal(uploads.mode & 0o777, 0o750);
    assert.equal(uploads.uid, 1);
    assert.ok(statSync(join(r.dir, "/srv/app/releases")).isDirectory());
  });

  it("with an uploads bucket: bootstrap.env names no upload directory and the step makes none", () => {
    const settings = bootstrapSettings({ ...minimalRaw("digitalocean"), uploadsStorage: "bucket" });
    assert.equal(settings.has("UPLOAD_DIR"), false);
    const r = runAppDirs(settings);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(existsSync(join(r.dir, "/srv/data")), false, "something was made on the data volume's mount point");
    assert.equal(statSync(join(r.dir, "/srv/app/shared")).uid, 1);
  });
});
