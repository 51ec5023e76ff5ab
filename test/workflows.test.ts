/**
 * The GitHub Actions workflows we ship for users, checked by action-validator (npm), and the
 * shell of their guard-rail steps run for real: the replace guard with pull-request labels, and
 * the drift check with a stand-in `pulumi` that prints a recorded refresh document.
 */
import assert from "node:assert/strict";
import { chmodSync, copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { run, tempDir } from "./support/tools";

const ROOT = join(__dirname, "..");
const WORKFLOWS = join(ROOT, ".github", "workflows");
const FIXTURES = join(__dirname, "guard", "fixtures");
const validator = join(ROOT, "node_modules", ".bin", "action-validator");

interface Step {
  name?: string;
  run?: string;
  uses?: string;
  env?: Record<string, string>;
}

function workflowText(file: string): string {
  return readFileSync(join(WORKFLOWS, file), "utf8");
}

/** The steps of a workflow's job (its only one, or the one named). */
function stepsOf(file: string, job?: string): Step[] {
  const jobs = parse(workflowText(file)).jobs as Record<string, { steps: Step[] }>;
  if (job) {
    assert.ok(jobs[job], `${file}: no job ${job}`);
    return jobs[job].steps;
  }
  assert.equal(Object.keys(jobs).length, 1, `${file}: one job`);
  return Object.values(jobs)[0].steps;
}

function step(file: string, name: string, job?: string): Step {
  const found = stepsOf(file, job).find((s) => s.name === name);
  assert.ok(found?.run, `${file} has no step "${name}" with a script`);
  return found!;
}

/** Runs a step's script with bash -e (as GitHub's default shell), from the project root, with npm and node on PATH. */
function runStep(script: string, env: Record<string, string>) {
  return run("bash", ["-e", "-c", script], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME!, ...env } });
}

describe("GitHub Actions workflows for users", function () {
  // The steps' scripts start npm and tsx: up to a minute each on a loaded machine.
  this.timeout(300_000);
  const files = readdirSync(WORKFLOWS).filter((f) => f.endsWith(".yml"));

  it("ships a pull-request preview with the guard rails and the migration review, a scheduled drift check, a deploy and a rollback", () => {
    assert.deepEqual(files.sort(), ["deploy.yml", "drift.yml", "preview.yml", "rollback.yml"]);
    const preview = workflowText("preview.yml");
    assert.match(preview, /command: preview/);
    assert.match(preview, /pulumi preview --stack "\$STACK" --policy-pack policy/);
    assert.match(preview, /pulumi preview --stack "\$STACK" --json --non-interactive > "\$RUNNER_TEMP\/preview.json"/);
    assert.match(preview, /npm run -s guard -- "\$RUNNER_TEMP\/preview.json"/);
    assert.match(preview, /gh pr comment/);
    assert.match(preview, /types: \[opened, synchronize, reopened, labeled, unlabeled\]/);
    assert.match(preview, /bash cli\/ci\/migration-review\.sh "\$BASE_SHA"/);
    const drift = workflowText("drift.yml");
    assert.match(drift, /pulumi refresh --stack "\$STACK" --preview-only --expect-no-changes --json/);
    assert.match(drift, /"\$code" -eq 7/);
    // A preview runs the program: a code change not yet deployed would look like drift.
    assert.doesNotMatch(drift, /pulumi preview/);
  });

  for (const file of files) {
    it(`${file} passes action-validator`, () => {
      const result = run(validator, [join(WORKFLOWS, file)]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  }

  it("action-validator rejects a broken workflow (the check can fail)", () => {
    const bad = join(tempDir("workflow"), "bad.yml");
    writeFileSync(bad, "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n");
    assert.notEqual(run(validator, [bad]).status, 0);
  });

  it("action-validator rejects our preview workflow with its guard step broken (a step both uses an action and runs a script)", () => {
    const text = workflowText("preview.yml");
    const broken = text.replace("      - name: Replace guard\n", "      - name: Replace guard\n        uses: actions/checkout@v4\n");
    assert.notEqual(broken, text);
    const file = join(tempDir("workflow"), "preview.yml");
    writeFileSync(file, broken);
    const result = run(validator, [file]);
    assert.notEqual(result.status, 0, result.stdout + result.stderr);
  });

  describe("the replace guard step, run with pull-request labels", () => {
    const guardStep = () => step("preview.yml", "Replace guard", "preview");
    const runGuard = (labels: string[]) => {
      const temp = tempDir("guard-step");
      copyFileSync(join(FIXTURES, "replace-server.json"), join(temp, "preview.json"));
      const result = runStep(guardStep().run!, { RUNNER_TEMP: temp, STACK: "prod", LABELS: JSON.stringify(labels) });
      return { ...result, markdown: readFileSync(join(temp, "guard.md"), "utf8") };
    };

    it("reads labels only from the environment", () => {
      assert.equal(guardStep().env?.LABELS, "${{ toJSON(github.event.pull_request.labels.*.name) }}");
      assert.doesNotMatch(guardStep().run!, /\$\{\{/);
    });

    it("without an allow-replace label the server replacement fails the step and is written for the comment", () => {
      const result = runGuard(["bug", "allow-replace:saas-prod-app-fw"]);
      assert.equal(result.status, 1, result.stdout + result.stderr);
      assert.match(result.markdown, /^### Replace guard: prod\n/);
      assert.match(result.markdown, /Blocked: 1 protected resource/);
    });

    it("a label allow-replace:<resource> lets that replacement through", () => {
      const result = runGuard(["allow-replace:saas-prod-app-server", "needs review"]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /allowed by: saas-prod-app-server/);
    });
  });

  describe("the drift step, run with a stand-in pulumi", () => {
    /** A `pulumi` that prints a recorded refresh document and exits as the real one does with --expect-no-changes. */
    function runDrift(fixture: string, exitCode: number) {
      const temp = tempDir("drift-step");
      const bin = join(temp, "bin");
      run("mkdir", [bin]);
      writeFileSync(join(bin, "pulumi"), `#!/bin/sh\ncat '${join(FIXTURES, fixture)}'\nexit ${exitCode}\n`);
      chmodSync(join(bin, "pulumi"), 0o755);
      const summary = join(temp, "summary.md");
      writeFileSync(summary, "");
      const script = step("drift.yml", "pulumi refresh --preview-only --expect-no-changes").run!;
      const result = run("bash", ["-e", "-c", script], { cwd: ROOT, env: { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME!, RUNNER_TEMP: temp, STACK: "prod", GITHUB_STEP_SUMMARY: summary } });
      return { ...result, summary: readFileSync(summary, "utf8") };
    }

    it("fails loudly on drift, naming each drifted resource", () => {
      const result = runDrift("refresh-drift.json", 7);
      assert.equal(result.status, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /::error title=Drift on prod::saas-prod-app-fw \(hcloud:index\/firewall:Firewall\) changed outside Pulumi: rules\[3\] \(add\);saas-prod-app-app-data-attach \(hcloud:index\/volumeAttachment:VolumeAttachment\) gone/);
      assert.match(result.summary, /### Drift on prod/);
    });

    it("passes when nothing drifted", () => {
      const result = runDrift("refresh-clean.json", 0);
      assert.equal(result.status, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /No drift on prod\./);
    });

    it("fails when the refresh itself fails, with its exit code", () => {
      const result = runDrift("refresh-clean.json", 255);
      assert.equal(result.status, 255, result.stdout + result.stderr);
      assert.match(result.stdout, /::error title=Refresh failed on prod::pulumi refresh exited 255/);
    });
  });
});
