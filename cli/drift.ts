/**
 * npm run drift -- <refresh.json>
 *
 * Reads what `pulumi refresh --preview-only --json` printed and lists every resource whose real
 * state differs from the stack's state: the refresh steps that became "update" (changed outside
 * Pulumi) or "delete" (gone). A refresh compares the cloud with the state only, never with the
 * program, so a code change not yet deployed is not drift.
 *
 * Exit status: 0 no drift; 1 drift (each resource printed); 2 the document is not usable.
 */
import { readFileSync } from "node:fs";
import { parseCommandLine, USAGE_EXIT, usageError } from "./lib/args";
import { driftedSteps, formatDrift } from "./lib/drift";
import { PreviewFormatError, readPreview } from "./lib/previewJson";

const USAGE = "usage: npm run drift -- <refresh.json>   (from: pulumi refresh --preview-only --json)";

function main(): number {
  const { positionals } = parseCommandLine("drift", USAGE, { options: {}, allowPositionals: true });
  if (positionals.length !== 1) usageError("drift", USAGE, "one refresh document");
  let doc;
  try {
    doc = readPreview(readFileSync(positionals[0], "utf8"));
  } catch (err) {
    if (!(err instanceof PreviewFormatError) && (err as NodeJS.ErrnoException).code === undefined) throw err;
    console.error(`drift: ${positionals[0]} is not a pulumi refresh --json document: ${(err as Error).message}`);
    return USAGE_EXIT;
  }
  const drifted = driftedSteps(doc);
  console.log(formatDrift(drifted));
  return drifted.length > 0 ? 1 : 0;
}

process.exitCode = main();
