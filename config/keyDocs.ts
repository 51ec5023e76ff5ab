/**
 * The two documents that list the config keys, rendered from the table in config/keys.ts:
 * Pulumi.yaml's `config:` block and the README's "Stack config" table. `writeKeyDocs.ts`
 * writes them; test/config/keyDocs.test.ts fails when a committed copy differs.
 */
import { KEYS, KNOWN_KEYS, type ConfigKey, type KeySpec } from "./keys";
import { STAGES } from "./stages";

const spec = (key: ConfigKey) => KEYS[key] as KeySpec<unknown>;

/** Pulumi.yaml from its `config:` line to the end (JSON strings are valid YAML scalars). */
export function renderPulumiConfig(): string {
  const lines = [
    "# Every saas-vps:<key> the program reads, written from config/keys.ts by",
    "# `npx tsx config/writeKeyDocs.ts` (edit the table there). The program's own parser is the",
    "# real guard: it runs before any resource is declared and reports every bad key at once.",
    "config:",
  ];
  for (const key of KNOWN_KEYS) {
    const s = spec(key);
    lines.push(`  ${key}:`, `    type: ${s.type}`);
    if (s.type === "array") lines.push("    items:", "      type: string");
    if (s.secret) lines.push("    secret: true");
    lines.push(`    description: ${JSON.stringify(s.description)}`);
    if (s.default !== undefined) lines.push(`    default: ${JSON.stringify(s.default)}`);
  }
  return `${lines.join("\n")}\n`;
}

export const README_BEGIN = "<!-- stack-config-table: written by `npx tsx config/writeKeyDocs.ts` from config/keys.ts -->";
export const README_END = "<!-- /stack-config-table -->";

/** The README's table of keys, between its markers. */
export function renderReadmeTable(): string {
  const rows = KNOWN_KEYS.map((key) => {
    const s = spec(key);
    const name = `\`${key}\`${s.secret ? " (secret)" : ""}`;
    const fallback = s.default === undefined ? s.defaultText ?? "none" : typeof s.default === "number" ? String(s.default) : `\`${String(s.default)}\``;
    const stages = s.stages.length === STAGES.length ? "" : ` (stage ${s.stages.join(", ")} only)`;
    return `| ${name} | ${fallback} | ${s.rule}${stages} |`;
  });
  return [README_BEGIN, "| key | default | rule |", "|---|---|---|", ...rows, README_END].join("\n");
}

/** `text` with the part from `begin` through `end` replaced by `replacement`. */
export function replaceBetween(text: string, begin: string, end: string, replacement: string, what: string): string {
  const from = text.indexOf(begin);
  const to = text.indexOf(end, from);
  if (from < 0 || to < 0) throw new Error(`${what}: markers ${begin} ... ${end} not found`);
  return text.slice(0, from) + replacement + text.slice(to + end.length);
}

/** Pulumi.yaml with its config block (the comment before `config:` and all after) rendered anew. */
export function withPulumiConfig(pulumiYaml: string): string {
  const start = pulumiYaml.search(/^# Every saas-vps:<key>/m);
  const config = pulumiYaml.search(/^config:/m);
  if (config < 0) throw new Error("Pulumi.yaml: no config: block");
  return pulumiYaml.slice(0, start >= 0 && start < config ? start : config) + renderPulumiConfig();
}
