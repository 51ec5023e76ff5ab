/**
 * The replace guard's judgement over a preview document: which steps would replace or delete a
 * protected kind of resource (components/protection.ts), which of them an allowance lets through,
 * and how to say so on a terminal and in a pull-request comment. Pure: cli/guard.ts does the I/O.
 */
import { protectedKindOf } from "../../components/protection";
import type { PreviewDocument, PreviewStep, StepOp } from "./previewJson";

/** Operations that destroy the resource a step is about (or its replaced predecessor). */
export const DESTRUCTIVE_OPS: ReadonlySet<StepOp> = new Set<StepOp>([
  "replace",
  "create-replacement",
  "delete-replaced",
  "delete",
  "import-replacement",
  "remove-pending-replace",
]);

export interface Finding {
  urn: string;
  name: string;
  type: string;
  /** What it is (server, data volume, ...), from the protected kinds or from its protect flag. */
  kind: string;
  op: StepOp;
  replaceReasons: string[];
  /** Changed properties, "path (kind)" from the detailed diff, else the diff reasons. Names only: values may be secrets. */
  diffs: string[];
  /** The allowance that lets it through. */
  allowedBy?: string;
}

export interface GuardResult {
  /** Protected resources the preview would replace or delete, with no allowance: the guard fails. */
  blocked: Finding[];
  /** The same, let through by an allowance. */
  allowed: Finding[];
  /** Allowances that matched nothing (a typo, or a label left on the pull request). */
  unusedAllowances: string[];
  /** Protected resources whose protect flag the change removes (not a failure: the next change can delete them). */
  unprotected: PreviewStep[];
  /** Errors Pulumi reported during the preview (a refused replacement of a protected resource is one). */
  errors: string[];
}

/** Allowances from any number of comma- or whitespace-separated lists (flag values, GUARD_ALLOW). */
export function parseAllowances(...lists: Array<string | undefined>): string[] {
  return [...new Set(lists.flatMap((list) => (list ?? "").split(/[\s,]+/)).filter((item) => item !== ""))];
}

function kindOf(step: PreviewStep): string | undefined {
  return protectedKindOf(step.type) ?? (step.oldState?.protect || step.newState?.protect ? "protected resource" : undefined);
}

function diffsOf(step: PreviewStep): string[] {
  const detailed = Object.entries(step.detailedDiff).map(([path, kind]) => `${path} (${kind})`);
  return detailed.length > 0 ? detailed : step.diffReasons;
}

/** An allowance names a resource by its URN or by its name (the URN's last part). */
function allowanceFor(step: PreviewStep, allowances: string[]): string | undefined {
  return allowances.find((allowance) => allowance === step.urn || allowance === step.name);
}

export function guardPreview(doc: PreviewDocument, allowances: string[]): GuardResult {
  const blocked: Finding[] = [];
  const allowed: Finding[] = [];
  const used = new Set<string>();
  for (const step of doc.steps) {
    if (!DESTRUCTIVE_OPS.has(step.op)) continue;
    const kind = kindOf(step);
    if (kind === undefined) continue;
    const allowedBy = allowanceFor(step, allowances);
    const finding: Finding = { urn: step.urn, name: step.name, type: step.type, kind, op: step.op, replaceReasons: step.replaceReasons, diffs: diffsOf(step), allowedBy };
    if (allowedBy === undefined) blocked.push(finding);
    else {
      used.add(allowedBy);
      allowed.push(finding);
    }
  }
  const unprotected = doc.steps.filter((step) => step.oldState?.protect === true && step.newState !== undefined && !step.newState.protect);
  const errors = doc.diagnostics.filter((d) => d.severity === "error").map((d) => d.message.trim());
  return { blocked, allowed, unusedAllowances: allowances.filter((a) => !used.has(a)), unprotected, errors };
}

function findingLines(finding: Finding): string[] {
  const lines = [`${finding.op} ${finding.kind} ${finding.name} (${finding.type})`, `  urn: ${finding.urn}`];
  if (finding.replaceReasons.length > 0) lines.push(`  replaced because of: ${finding.replaceReasons.join(", ")}`);
  if (finding.diffs.length > 0) lines.push(`  changes: ${finding.diffs.join(", ")}`);
  if (finding.allowedBy) lines.push(`  allowed by: ${finding.allowedBy}`);
  return lines;
}

/** The terminal report. */
export function formatText(result: GuardResult): string {
  const out: string[] = [];
  if (result.blocked.length > 0) {
    out.push(`guard: ${result.blocked.length} protected resource change(s) would destroy something:`);
    for (const f of result.blocked) out.push(...findingLines(f).map((l) => `  ${l}`));
    out.push("guard: if this is deliberate, allow each by name: --allow <name>[,<name>] or GUARD_ALLOW=<name>,... (on a pull request: a label allow-replace:<name>).");
  }
  if (result.allowed.length > 0) {
    out.push(`guard: ${result.allowed.length} protected resource change(s) allowed:`);
    for (const f of result.allowed) out.push(...findingLines(f).map((l) => `  ${l}`));
  }
  for (const step of result.unprotected) out.push(`guard: note: ${step.name} (${step.type}) loses its protect flag; the next change can delete it.`);
  for (const allowance of result.unusedAllowances) out.push(`guard: warning: allowance ${allowance} matches no protected change in this preview.`);
  for (const error of result.errors) out.push(`guard: pulumi reported an error: ${error}`);
  if (result.blocked.length === 0) out.push("guard: no protected resource would be replaced or deleted without an allowance.");
  return out.join("\n");
}

const code = (text: string) => `\`${text.replace(/`/g, "'")}\``;

/** The pull-request comment (GitHub markdown). */
export function formatMarkdown(result: GuardResult, title: string): string {
  const out = [`### ${title}`, ""];
  const table = (findings: Finding[]) => {
    out.push("| operation | kind | resource | type | replaced because of | changes |", "|---|---|---|---|---|---|");
    for (const f of findings) {
      out.push(`| ${f.op} | ${f.kind} | ${code(f.name)} | ${code(f.type)} | ${f.replaceReasons.map(code).join(", ") || "—"} | ${f.diffs.map(code).join(", ") || "—"} |`);
    }
    out.push("");
  };
  if (result.blocked.length > 0) {
    out.push(`**Blocked: ${result.blocked.length} protected resource(s) would be replaced or deleted.**`, "");
    table(result.blocked);
    out.push("If this is deliberate, add a label `allow-replace:<resource>` per resource (the resource column), then re-run.", "");
  } else {
    out.push("No protected resource would be replaced or deleted without an allowance.", "");
  }
  if (result.allowed.length > 0) {
    out.push(`Allowed by label: ${result.allowed.length}.`, "");
    table(result.allowed);
  }
  for (const step of result.unprotected) out.push(`- Note: ${code(step.name)} loses its protect flag; the next change can delete it.`);
  for (const allowance of result.unusedAllowances) out.push(`- Warning: allowance ${code(allowance)} matches no protected change.`);
  for (const error of result.errors) out.push(`- Pulumi reported an error: ${code(error.split("\n")[0])}`);
  return out.join("\n") + "\n";
}
