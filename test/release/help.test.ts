/**
 * Help that works on the server. The shipped copy of every script has its full-line comments
 * stripped (provisioning/scripts.ts), so help printed from the script's own comments prints code
 * there, and help must not need the configuration of a configured server.
 */
import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadScript } from "../../provisioning/scripts";
import { run, tempDir } from "../support/tools";

const ASSETS = join(__dirname, "..", "..", "provisioning", "assets");

/** The shipped copy of `release` in a file, as the server gets it. */
function shippedRelease(): string {
  const file = join(tempDir("release-help"), "release");
  writeFileSync(file, loadScript("release/release"), { mode: 0o755 });
  return file;
}

/** A command reading its own file (sed/awk/grep/head/tail/cat on $0 or BASH_SOURCE): behaviour that lives in comments. */
const READS_ITSELF = /\b(sed|awk|grep|head|tail|cat|less|more)\b[^\n;|]*("?\$\{?0\}?"?|\$\{?BASH_SOURCE)/;

describe("help of the shipped scripts", () => {
  it("release --help, -h and help list every command on a box with no release.conf, and print text, not code", () => {
    const script = shippedRelease();
    const env = { ...process.env, RELEASE_CONF: "/nonexistent/release.conf", APP_ROOT: "/nonexistent/app" };
    for (const arg of ["--help", "-h", "help"]) {
      const r = run(script, [arg], { env });
      assert.equal(r.status, 0, `${arg}: ${r.stderr}`);
      for (const command of ["<saas-app-<id>.tar.gz>", "rollback [<id>]", "restart", "status", "help"]) {
        assert.ok(r.stdout.includes(`release ${command}`), `${arg}: "release ${command}" missing from\n${r.stdout}`);
      }
      assert.match(r.stdout, /^exit codes: 0 done; 1 failed/m);
      assert.doesNotMatch(r.stdout, /\b(set -euo|readonly|local |shopt)\b|\(\) \{/, "help must be text, not code");
    }
  });

  it("release without arguments prints the same text on stderr and exits 2", () => {
    const script = shippedRelease();
    const env = { ...process.env, RELEASE_CONF: "/nonexistent/release.conf" };
    const none = run(script, [], { env });
    assert.equal(none.status, 2);
    assert.match(none.stderr, /^usage: release <saas-app-<id>\.tar\.gz>/);
    assert.equal(none.stdout, "");
  });

  it("no shipped script reads its own text (its comments are not shipped)", () => {
    // The check itself: the line that printed code as help on the server.
    assert.match(`-h | --help | help) sed -n '2,12p' "$0" ;;`, READS_ITSELF);
    const offenders: string[] = [];
    for (const folder of readdirSync(ASSETS)) {
      for (const name of readdirSync(join(ASSETS, folder)).filter((n) => !n.endsWith(".md"))) {
        loadScript(`${folder}/${name}`)
          .split("\n")
          .forEach((line, i) => {
            if (READS_ITSELF.test(line)) offenders.push(`${folder}/${name}:${i + 1}: ${line.trim()}`);
          });
      }
    }
    assert.deepEqual(offenders, []);
  });
});
