/** Drift in a refresh preview: the resources whose real state no longer matches the stack's state. */
import type { PreviewDocument, PreviewStep } from "./previewJson";

/** A refresh step that found nothing changed keeps its op "refresh" (or "same"); anything else is drift. */
const UNCHANGED = new Set(["refresh", "same"]);

export function driftedSteps(doc: PreviewDocument): PreviewStep[] {
  return doc.steps.filter((step) => !UNCHANGED.has(step.op));
}

export function formatDrift(drifted: PreviewStep[]): string {
  if (drifted.length === 0) return "drift: none; every resource matches the stack's state.";
  const lines = [`drift: ${drifted.length} resource(s) differ from the stack's state:`];
  for (const step of drifted) {
    const what = step.op === "delete" ? "gone (deleted outside Pulumi)" : `changed outside Pulumi${Object.keys(step.detailedDiff).length ? `: ${Object.entries(step.detailedDiff).map(([p, k]) => `${p} (${k})`).join(", ")}` : ""}`;
    lines.push(`  ${step.name} (${step.type}) ${what}`, `    urn: ${step.urn}`);
  }
  lines.push("drift: 'pulumi up' puts the code's settings back; 'pulumi refresh' accepts what is there now into the state.");
  return lines.join("\n");
}
