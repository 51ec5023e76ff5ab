/**
 * The deploy and rollback workflows we ship for users, read as YAML: prod is reached only through
 * the `prod` environment's approval, `pulumi up` only after the replace guard passed on that
 * job's own preview, the secrets check before any pulumi step, one deploy per stack at a time.
 * Each rule is a checker run on the real file (no problems) and on a copy broken in that one
 * way (the problem named), so none of these checks can pass vacuously.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { run, tempDir } from "./support/tools";

const WORKFLOWS = join(__dirname, "..", ".github", "workflows");
const validator = join(__dirname, "..", "node_modules", ".bin", "action-validator");

interface Step {
  name?: string;
  id?: string;
  uses?: string;
  run?: string;
  if?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
  "continue-on-error"?: unknown;
}
interface Job {
  needs?: string | string[];
  if?: string;
  environment?: string | { name: string };
  concurrency?: { group: string; "cancel-in-progress"?: boolean } | string;
  env?: Record<string, string>;
  steps: Step[];
  "continue-on-error"?: unknown;
}
interface Workflow {
  on: Record<string, { inputs?: Record<string, { options?: string[] }>; branches?: string[] } | null>;
  env?: Record<string, string>;
  jobs: Record<string, Job>;
}

function load(file: string): Workflow {
  return parse(readFileSync(join(WORKFLOWS, file), "utf8")) as Workflow;
}

const isUp = (s: Step) => /\bpulumi up\b/.test(s.run ?? "");
const isGuard = (s: Step) => /^npm run guard -- "?\$RUNNER_TEMP\/preview\.json"?$/m.test(s.run ?? "");
const isPreviewJson = (s: Step) => /\bpulumi preview\b[^\n]*--json[^\n]*>\s*"?\$RUNNER_TEMP\/preview\.json"?/.test(s.run ?? "");
const isPulumi = (s: Step) => /\bpulumi\s/.test(s.run ?? "") || (s.uses ?? "").startsWith("pulumi/actions");
const isSecretsCheck = (s: Step) => /npm run -s deploy:check-secrets -- --stack "\$STACK" --for (deploy|rollback)/.test(s.run ?? "");
const needsOf = (job: Job) => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);
const environmentOf = (job: Job) => (typeof job.environment === "object" ? job.environment.name : job.environment);

/** A step condition that runs even after an earlier step failed. */
function runsAfterFailure(condition: string | undefined): boolean {
  return condition !== undefined && /\b(always|failure)\s*\(|!\s*cancelled\s*\(/.test(condition);
}

/** The stacks a job deploys: its STACK (a literal, or every option of the stack input it names). */
function stacksOf(workflow: Workflow, job: Job): string[] {
  const stack = job.env?.STACK ?? "";
  if (!stack.includes("${{")) return [stack];
  const options = workflow.on.workflow_dispatch?.inputs?.stack?.options ?? [];
  return /inputs\.stack/.test(stack) ? options : [];
}

/** Problems with how a workflow reaches its stacks (empty: none). */
function deployProblems(workflow: Workflow): string[] {
  const problems: string[] = [];
  const jobs = workflow.jobs;
  /** The job runs in the prod environment, or only after a job (transitively) that did. */
  const gatedByProd = (name: string, seen = new Set<string>()): boolean => {
    const job = jobs[name];
    if (!job || seen.has(name)) return false;
    seen.add(name);
    return environmentOf(job) === "prod" || needsOf(job).some((n) => gatedByProd(n, seen));
  };
  for (const [workflowEnvKey, value] of Object.entries(workflow.env ?? {})) {
    if (/secrets\./.test(value)) problems.push(`workflow env ${workflowEnvKey} holds a secret (every step would see it)`);
  }
  for (const [name, job] of Object.entries(jobs)) {
    const steps = job.steps ?? [];
    const pulumiAt = steps.findIndex(isPulumi);
    for (const [key, value] of Object.entries(job.env ?? {})) {
      if (/secrets\./.test(value)) problems.push(`${name}: job env ${key} holds a secret (every step would see it)`);
    }
    if (pulumiAt < 0) continue;
    const checkAt = steps.findIndex(isSecretsCheck);
    if (checkAt < 0 || checkAt > pulumiAt) problems.push(`${name}: the secrets check does not come before the first pulumi step`);
    else {
      const check = steps[checkAt];
      if (check.if !== undefined || check["continue-on-error"]) problems.push(`${name}: the secrets check may be skipped or ignored`);
      for (const [key, value] of Object.entries(check.env ?? {})) {
        if (!/^\$\{\{ secrets\.\w+ != '' && 'set' \|\| '' \}\}$/.test(value)) problems.push(`${name}: the secrets check sees ${key}'s value, not only whether it is set`);
      }
    }
    if (job["continue-on-error"]) problems.push(`${name}: continue-on-error on a job that runs pulumi`);
    const stacks = stacksOf(workflow, job);
    if (stacks.includes("prod") && !gatedByProd(name) && environmentOf(job) !== "${{ inputs.stack }}") {
      problems.push(`${name}: reaches prod without the prod environment (on the job or a job it needs)`);
    }
    const upAt = steps.findIndex(isUp);
    if (upAt >= 0 || stacks.length) {
      const concurrency = typeof job.concurrency === "object" ? job.concurrency : undefined;
      if (!concurrency || concurrency["cancel-in-progress"] !== false) problems.push(`${name}: no per-stack concurrency group without cancel-in-progress`);
      else for (const stack of stacks) {
        const group = concurrency.group.replace("${{ inputs.stack }}", stack);
        if (group !== `deploy-${stack}`) problems.push(`${name}: concurrency group ${concurrency.group} is not deploy-${stack}`);
      }
    }
    if (upAt < 0) continue;
    const guardAt = steps.findIndex(isGuard);
    const previewAt = steps.findIndex(isPreviewJson);
    if (guardAt < 0 || guardAt > upAt) problems.push(`${name}: no replace guard before pulumi up`);
    if (previewAt < 0 || (guardAt >= 0 && previewAt > guardAt)) problems.push(`${name}: the guard does not read this job's own pulumi preview --json`);
    if (guardAt >= 0) {
      const guard = steps[guardAt];
      if (guard.if !== undefined || guard["continue-on-error"]) problems.push(`${name}: the guard may be skipped or its failure ignored`);
      if (!/inputs\.guard_allow/.test(guard.env?.GUARD_ALLOW ?? "")) problems.push(`${name}: GUARD_ALLOW does not come from the run's guard_allow input`);
      for (const step of steps.slice(guardAt + 1, upAt + 1)) {
        if (runsAfterFailure(step.if) || step["continue-on-error"]) problems.push(`${name}: step ${step.name ?? step.run} runs even when the guard failed`);
      }
    }
  }
  return problems;
}

/** A deep copy of a workflow, changed by `edit`. */
function broken(workflow: Workflow, edit: (w: Workflow) => void): Workflow {
  const copy = structuredClone(workflow);
  edit(copy);
  return copy;
}

function stepIndex(job: Job, test: (s: Step) => boolean): number {
  const at = job.steps.findIndex(test);
  assert.ok(at >= 0);
  return at;
}

describe("deploy and rollback workflows (approval, guard, secrets check, one deploy per stack)", () => {
  const deploy = load("deploy.yml");
  const rollback = load("rollback.yml");

  for (const file of ["deploy.yml", "rollback.yml"]) {
    it(`${file} passes action-validator, and a copy with an unknown key does not`, () => {
      const ok = run(validator, [join(WORKFLOWS, file)]);
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      const bad = join(tempDir("workflow"), file);
      writeFileSync(bad, readFileSync(join(WORKFLOWS, file), "utf8").replace("cancel-in-progress: false", "cancel-in-progres: false"));
      assert.notEqual(run(validator, [bad]).status, 0);
    });
  }

  it("deploy.yml: staging on every push to main after the tests; prod after staging or by a manual run", () => {
    assert.deepEqual(deploy.on.push?.branches, ["main"]);
    assert.deepEqual(deploy.on.workflow_dispatch?.inputs?.stack?.options, ["staging", "prod"]);
    assert.deepEqual(needsOf(deploy.jobs.staging), ["test"]);
    assert.deepEqual(needsOf(deploy.jobs.prod).sort(), ["staging", "test"]);
    assert.ok(deploy.jobs.test.steps.some((s) => s.run === "npm run -s lint:migrations"), "the tests include the migration review");
    assert.equal(environmentOf(deploy.jobs.prod), "prod");
  });

  it("deploy.yml and rollback.yml have none of the problems the checker knows", () => {
    assert.deepEqual(deployProblems(deploy), []);
    assert.deepEqual(deployProblems(rollback), []);
  });

  it("prod without the prod environment is caught (on the job, or inherited through needs)", () => {
    assert.match(deployProblems(broken(deploy, (w) => delete w.jobs.prod.environment)).join("\n"), /prod: reaches prod without the prod environment/);
    // The approval may sit on a job prod needs: moving it there passes, on a job it does not need fails.
    const gate = broken(deploy, (w) => {
      delete w.jobs.prod.environment;
      w.jobs.approve = { environment: "prod", steps: [{ run: "true" }] };
      w.jobs.prod.needs = [...needsOf(w.jobs.prod), "approve"];
    });
    assert.deepEqual(deployProblems(gate), []);
    const loose = broken(gate, (w) => (w.jobs.prod.needs = needsOf(w.jobs.prod).filter((n) => n !== "approve")));
    assert.match(deployProblems(loose).join("\n"), /reaches prod without the prod environment/);
    assert.match(deployProblems(broken(rollback, (w) => (w.jobs.rollback.environment = "staging"))).join("\n"), /rollback: reaches prod without/);
  });

  it("pulumi up before the guard, a skippable guard, or up running after a failed guard is caught", () => {
    const swapped = broken(deploy, (w) => {
      const steps = w.jobs.staging.steps;
      const [g, u] = [stepIndex(w.jobs.staging, isGuard), stepIndex(w.jobs.staging, isUp)];
      [steps[g], steps[u]] = [steps[u], steps[g]];
    });
    assert.match(deployProblems(swapped).join("\n"), /staging: no replace guard before pulumi up/);
    const ignored = broken(deploy, (w) => (w.jobs.prod.steps[stepIndex(w.jobs.prod, isGuard)]["continue-on-error"] = true));
    assert.match(deployProblems(ignored).join("\n"), /prod: the guard may be skipped or its failure ignored/);
    const forced = broken(deploy, (w) => (w.jobs.prod.steps[stepIndex(w.jobs.prod, isUp)].if = "always()"));
    assert.match(deployProblems(forced).join("\n"), /prod: step pulumi up runs even when the guard failed/);
    const removed = broken(deploy, (w) => (w.jobs.prod.steps = w.jobs.prod.steps.filter((s) => !isGuard(s))));
    assert.match(deployProblems(removed).join("\n"), /prod: no replace guard before pulumi up/);
    const stalePreview = broken(deploy, (w) => (w.jobs.staging.steps = w.jobs.staging.steps.filter((s) => !isPreviewJson(s))));
    assert.match(deployProblems(stalePreview).join("\n"), /staging: the guard does not read this job's own pulumi preview --json/);
  });

  it("the secrets check after a pulumi step, or seeing secret values, is caught", () => {
    const late = broken(deploy, (w) => {
      const steps = w.jobs.staging.steps;
      const [check] = steps.splice(stepIndex(w.jobs.staging, isSecretsCheck), 1);
      steps.splice(stepIndex(w.jobs.staging, isPreviewJson) + 1, 0, check);
    });
    assert.match(deployProblems(late).join("\n"), /staging: the secrets check does not come before the first pulumi step/);
    const lateRollback = broken(rollback, (w) => (w.jobs.rollback.steps = w.jobs.rollback.steps.filter((s) => !isSecretsCheck(s))));
    assert.match(deployProblems(lateRollback).join("\n"), /rollback: the secrets check does not come before/);
    const leaky = broken(deploy, (w) => (w.jobs.prod.steps[stepIndex(w.jobs.prod, isSecretsCheck)].env!.SSH_PRIVATE_KEY = "${{ secrets.SSH_PRIVATE_KEY }}"));
    assert.match(deployProblems(leaky).join("\n"), /prod: the secrets check sees SSH_PRIVATE_KEY's value/);
    const jobWide = broken(deploy, (w) => (w.jobs.staging.env!.PULUMI_ACCESS_TOKEN = "${{ secrets.PULUMI_ACCESS_TOKEN }}"));
    assert.match(deployProblems(jobWide).join("\n"), /staging: job env PULUMI_ACCESS_TOKEN holds a secret/);
  });

  it("a shared or cancelling concurrency group is caught; rollback shares each stack's deploy group", () => {
    const cancelling = broken(deploy, (w) => ((w.jobs.prod.concurrency as { "cancel-in-progress": boolean })["cancel-in-progress"] = true));
    assert.match(deployProblems(cancelling).join("\n"), /prod: no per-stack concurrency group/);
    const shared = broken(deploy, (w) => ((w.jobs.prod.concurrency as { group: string }).group = "deploy-staging"));
    assert.match(deployProblems(shared).join("\n"), /prod: concurrency group deploy-staging is not deploy-prod/);
    assert.equal((rollback.jobs.rollback.concurrency as { group: string }).group, "deploy-${{ inputs.stack }}");
  });

  it("rollback.yml runs the release tool's rollback over SSH on the stack's releaseSshTargets, with the id checked first", () => {
    const steps = rollback.jobs.rollback.steps;
    assert.match(steps[0].run ?? "", /\^\[0-9a-f\]\{16\}\$/);
    assert.ok(steps.some((s) => /pulumi stack output --stack "\$STACK" releaseSshTargets --json/.test(s.run ?? "")));
    assert.ok(steps.some((s) => /bash cli\/ci\/rollback\.sh "\$RUNNER_TEMP\/targets\.json" "\$RELEASE_ID"/.test(s.run ?? "")));
    assert.match(readFileSync(join(__dirname, "..", "cli", "ci", "rollback.sh"), "utf8"), /sudo release rollback \$\{id:\+"\$id"\}/);
  });
});
