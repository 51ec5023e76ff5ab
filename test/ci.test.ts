import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { run, tempDir } from "./support/tools";

// .ci/run's closing line and exit status come from .ci/test-summary.sh. A green `npm test`
// must give exit 0: an earlier version aborted under `set -o pipefail` when no "failing" line
// existed, turning every fully green run red.
const SCRIPT = path.join(__dirname, "..", ".ci", "test-summary.sh");

function summarize(logText: string, status: number): { code: number | null; stdout: string; stderr: string } {
  const log = path.join(tempDir("test-summary"), "log");
  fs.writeFileSync(log, logText);
  const r = run("bash", [SCRIPT, log, String(status)]);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("CI summary (.ci/test-summary.sh, used by .ci/run)", function () {
  it("exits 0 and sums every mocha run when nothing failed", function () {
    const log = "  auth\n    ✔ logs in\n\n  161 passing (16m)\n  1 pending\n\n> saas-app test\n\n  45 passing (18s)\n";
    const r = summarize(log, 0);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "tests: 206 passed, 0 failed, 1 skipped\n");
  });

  it("passes a failing status through with the failure count", function () {
    const r = summarize("  158 passing (22m)\n  2 failing\n\n  1) e2e\n     2 failing lines in a message are not a summary\n", 1);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "tests: 158 passed, 2 failed, 0 skipped\n");
  });

  it("counts a crash before any mocha summary as a failure", function () {
    const r = summarize("error TS2304: Cannot find name 'x'.\n", 2);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "tests: 0 passed, 1 failed, 0 skipped\n");
  });

  it(".ci/run hands its closing line to this script", function () {
    const ciRun = fs.readFileSync(path.join(__dirname, "..", ".ci", "run"), "utf8");
    assert.match(ciRun, /^bash .ci\/test-summary\.sh "\$log" "\$status"$/m);
  });
});

describe("test commands (package.json scripts, README)", function () {
  const ROOT = path.join(__dirname, "..");
  const scripts: Record<string, string> = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts;
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8").replace(/\s+/g, " ");

  /** Test files (repository-relative) with a describe or it title carrying `tag`. */
  function taggedFiles(tag: string): string[] {
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
        const rel = `${dir}/${entry.name}`;
        if (entry.isDirectory()) walk(rel);
        else if (rel.endsWith(".test.ts") && new RegExp(`\\b(describe|it)\\(\\s*["'\`][^"'\`]*${tag}\\b`).test(fs.readFileSync(path.join(ROOT, rel), "utf8"))) found.push(rel);
      }
    };
    walk("test");
    return found.sort();
  }

  it("npm test (what CI runs) type-checks, runs the suites without VMs three at a time, then the VM suites one after the other (the e2e, then stage scaled's balanced part and replica; stage separated's own suite is left to test:separated, every scaled server to test:scaled and the move rehearsal to test:move, each saying so), each VM suite picked once, with the app's suite beside them; every part runs and a failed one fails the whole", () => {
    assert.equal(scripts.test, "bash cli/test.sh");
    // cli/test.sh with npm and npx stood in by a recorder; the part without VMs fails.
    const bin = tempDir("test-sh-bin");
    const calls = path.join(bin, "calls");
    const recorder = `#!/bin/sh\necho "$(basename "$0") $*" >> ${calls}\ncase "$*" in *--invert*) exit 1;; *--prefix\\ app*) echo "app suite says this"; exit 3;; esac\n`;
    for (const tool of ["npm", "npx"]) fs.writeFileSync(path.join(bin, tool), recorder, { mode: 0o755 });
    const r = run("bash", [path.join(ROOT, "cli", "test.sh")], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    // The app suite runs beside the VM suites: its failure counts, and its output is printed after theirs.
    assert.match(r.stderr, /npm test: failed: suites without VMs app suite\n/);
    assert.match(r.stdout, /== npm test: app suite \(it ran beside the VM suites\)\napp suite says this\n/);
    const made = fs.readFileSync(calls, "utf8").trim().split("\n");
    assert.deepEqual(made.slice(0, 2), ["npm run -s typecheck", "npx mocha test/**/*.test.ts --grep @vm --invert --parallel --jobs 3"]);
    const mocha = (grep: string) => `npx mocha test/**/*.test.ts --grep ${grep}`;
    const vmCalls = made.slice(2).filter((c) => c !== "npm test --prefix app");
    assert.deepEqual(vmCalls, [mocha("^@vm e2e:"), mocha("^@vm scaled")]);
    assert.equal(made.slice(2).length, 3, made.join(" | "));
    assert.match(r.stdout, /npm test: NOT RUN: stage separated's own three VMs .* run it with: npm run test:separated\n/);
    assert.match(r.stdout, /npm test: NOT RUN: stage scaled's worker and cache servers .* run it with: npm run test:scaled\n/);
    assert.doesNotMatch(r.stdout, /read replica/);
    assert.match(r.stdout, /npm test: NOT RUN: the move rehearsal .* run it with: npm run test:move\n/);
    // test:scaled is npm test's scaled suite with every server booted (npm test: its default part).
    const grepOf = (script: string) => /--grep '(.*)'$/.exec(scripts[script])![1]!;
    assert.match(scripts["test:scaled"], /^SAAS_VPS_VM_SERVERS=all mocha /);
    assert.equal(grepOf("test:scaled"), vmCalls[1]!.split(" --grep ")[1]);
    // Every @vm suite's title is picked by exactly one of those greps (mocha reads them as JS
    // regexps), or by test:move's or test:separated's, which npm test names as not run.
    const greps = [...vmCalls.map((call) => call.split(" --grep ")[1]!), grepOf("test:move"), grepOf("test:separated")].map((g) => new RegExp(g));
    const titles = taggedFiles("@vm").flatMap((file) =>
      [...fs.readFileSync(path.join(ROOT, file), "utf8").matchAll(/\bdescribe\(\s*"(@vm [^"]*)"/g)].map((m) => m[1]!));
    assert.ok(titles.length >= 3, `@vm suite titles found: ${titles.join(" | ")}`);
    for (const title of titles) assert.equal(greps.filter((g) => g.test(title)).length, 1, `picked by ${greps.filter((g) => g.test(title)).join(", ") || "no grep"}: ${title}`);
  });

  // No tag in this title: test:fast would leave this test out too.
  it("test:fast runs every suite but the VM ones, in parallel, and README names each VM suite it leaves out", () => {
    assert.equal(scripts["test:fast"], "mocha 'test/**/*.test.ts' --grep @vm --invert --parallel --jobs 3");
    const left = taggedFiles("@vm");
    assert.ok(left.includes("test/vm/e2e.test.ts"), `tagged suites not found: ${left.join(", ")}`);
    const unnamed = left.filter((file) => !readme.includes(`\`${file}\``));
    assert.deepEqual(unnamed, [], "README's test:fast paragraph must name every suite test:fast leaves out");
  });
});
