/**
 * npm run guard -- <preview.json> [--allow <urn-or-name>[,...]] [--markdown <file>] [--title <text>]
 *
 * Reads what `pulumi preview --json` printed and fails when a protected kind of resource
 * (components/protection.ts: servers, volumes, fixed IPs, buckets, databases, load balancers,
 * networks, generated secrets) would be replaced or deleted. Each is printed with its URN, type,
 * operation and the properties that force it. `--allow` and the GUARD_ALLOW environment variable
 * (comma-separated) name resources, by URN or name, whose replacement or deletion is deliberate.
 * `--markdown` also writes the report as a pull-request comment.
 *
 * Exit status: 0 nothing protected is destroyed (or all of it is allowed); 1 something is;
 * 2 the command line or the document is not usable (the guard never passes what it cannot read).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseCommandLine, USAGE_EXIT, usageError } from "./lib/args";
import { formatMarkdown, formatText, guardPreview, parseAllowances } from "./lib/guard";
import { PreviewFormatError, readPreview } from "./lib/previewJson";

const USAGE = "usage: npm run guard -- <preview.json> [--allow <urn-or-name>[,...]] [--markdown <file>] [--title <text>]  (env GUARD_ALLOW: more allowances)";

function main(): number {
  const { values, positionals } = parseCommandLine("guard", USAGE, {
    options: { allow: { type: "string", multiple: true }, markdown: { type: "string" }, title: { type: "string" } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) usageError("guard", USAGE, positionals.length === 0 ? "which preview document? (pulumi preview --json > preview.json)" : `one preview document, got ${positionals.length}`);
  const [file] = positionals;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    console.error(`guard: cannot read ${file}: ${(err as Error).message}`);
    return USAGE_EXIT;
  }
  let doc;
  try {
    doc = readPreview(text);
  } catch (err) {
    if (!(err instanceof PreviewFormatError)) throw err;
    console.error(`guard: ${file} is not a pulumi preview --json document: ${err.message}`);
    if (values.markdown) writeFileSync(values.markdown, `### ${values.title ?? "Replace guard"}\n\n**Failed: the preview document could not be read** (${err.message}).\n`);
    return USAGE_EXIT;
  }
  const result = guardPreview(doc, parseAllowances(...(values.allow ?? []), process.env.GUARD_ALLOW));
  console.log(formatText(result));
  if (values.markdown) writeFileSync(values.markdown, formatMarkdown(result, values.title ?? "Replace guard"));
  return result.blocked.length > 0 ? 1 : 0;
}

process.exitCode = main();
