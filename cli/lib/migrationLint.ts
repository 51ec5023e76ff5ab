/**
 * Lints one SQL migration with squawk (.squawk.toml) the way it will run: only its up part (the
 * release never runs down-migrations), inside the migrator's transaction, and with our
 * exemptions. An exemption is a comment on a statement's last line or above the statement:
 *
 *   -- lint:allow ban-drop-column because release 3f2a... stopped reading users.nickname
 *
 * It silences the named rules on that one statement, and only with a reason. Statements and
 * comments come from squawk's own parser (`--debug parse`), so a "-- lint:allow" inside a string
 * is not an exemption and a statement's lines are what PostgreSQL would see.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { EXEMPTABLE_RULES, SAFE_ALTERNATIVE } from "./migrationAdvice";
import { PROJECT_DIR } from "./stacks";

/**
 * squawk's binary from its platform package (package.json lists linux-x64 as an optional
 * dependency: the registry our CI installs from carries only that one). Called directly: the
 * squawk-cli wrapper (a Node process that spawns the same binary) costs more than the lint itself.
 */
export const SQUAWK = squawkBinary();

function squawkBinary(): string {
  const pkg = `@squawk-cli/${process.platform}-${process.arch}`;
  try {
    return require.resolve(`${pkg}/bin/squawk`, { paths: [PROJECT_DIR] });
  } catch {
    // Reported when the linter runs, not when this module loads: other commands share it.
    return `squawk-not-installed: npm install --save-optional ${pkg} (squawk's binary for this platform)`;
  }
}
export const SQUAWK_CONFIG = join(PROJECT_DIR, ".squawk.toml");

/** Our own findings about the file itself, with the fix for each. */
const OWN_RULES: Readonly<Record<string, string>> = {
  "syntax-error": "fix the SQL: PostgreSQL would refuse this migration and the release would stop at it",
  "exemption-without-reason": "say why it is safe: -- lint:allow <rule> because <reason>",
  "exemption-malformed": "write it as -- lint:allow <rule>[, <rule>] because <reason>",
  "exemption-unknown-rule": `name rules the linter reports: ${[...EXEMPTABLE_RULES].sort().join(", ")}`,
  "exemption-unused": "remove it, or move it onto the statement it is meant for (on its last line or just above it)",
  "squawk-ignore-comment": "use -- lint:allow <rule> because <reason>: an exemption must carry its reason",
};

export interface Finding {
  file: string;
  /** 1-based. */
  line: number;
  rule: string;
  message: string;
  /** The safe alternative (or the fix, for our own rules). */
  advice: string;
}

/** A failure of the tool itself (squawk missing, its config refused): not a finding. */
export class LintToolError extends Error {}

interface Span {
  startLine: number;
  endLine: number;
  startByte: number;
  endByte: number;
}

interface Exemption {
  line: number;
  rules: string[];
  target?: Span;
  used: boolean;
}

/**
 * The part node-pg-migrate runs going up (its sqlMigration.getActions, same markers and the same
 * slicing), with every other line emptied so line numbers stay those of the file.
 */
export function upPartOnly(sql: string): string {
  const marker = (direction: string) => sql.search(new RegExp(`^\\s*--[\\s-]*${direction}\\s+migration`, "im"));
  const up = marker("up");
  const down = marker("down");
  if (up < 0) return sql;
  const end = down < up ? sql.length : down;
  const blank = (text: string) => text.replace(/[^\n]/g, "");
  return blank(sql.slice(0, up)) + sql.slice(up, end) + blank(sql.slice(end));
}

function squawk(args: string[], input: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(SQUAWK, args, { input, encoding: "utf8", cwd: PROJECT_DIR, maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new LintToolError(`squawk could not run (${SQUAWK}): ${result.error.message}; run npm ci`);
  return result;
}

/** 1-based line of a UTF-8 byte offset (squawk's parse tree counts bytes). */
function lineAtByte(bytes: Buffer, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < bytes.length; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

/** Top-level statements and comments of the file, from squawk's concrete syntax tree. */
function parseTree(sql: string, file: string): { statements: Span[]; comments: (Span & { text: string })[] } {
  const result = squawk(["--debug", "parse", "--stdin-filepath", file], sql);
  if (result.status !== 0) throw new LintToolError(`squawk --debug parse failed on ${file}: ${result.stderr.trim() || result.stdout.trim()}`);
  const bytes = Buffer.from(sql, "utf8");
  const statements: Span[] = [];
  const comments: (Span & { text: string })[] = [];
  for (const match of result.stdout.matchAll(/^ {2}([A-Z_]+)@(\d+)\.\.(\d+)/gm)) {
    const [kind, startByte, endByte] = [match[1], Number(match[2]), Number(match[3])];
    if (kind === "WHITESPACE" || kind === "SEMICOLON") continue;
    const span = { startByte, endByte, startLine: lineAtByte(bytes, startByte), endLine: lineAtByte(bytes, Math.max(startByte, endByte - 1)) };
    if (kind === "COMMENT") comments.push({ ...span, text: bytes.subarray(startByte, endByte).toString("utf8") });
    else statements.push(span);
  }
  return { statements, comments };
}

interface SquawkViolation {
  line: number;
  rule_name: string;
  message: string;
  help: string | null;
}

function violations(sql: string, file: string): SquawkViolation[] {
  const result = squawk(["--reporter", "json", "--config", SQUAWK_CONFIG, "--stdin-filepath", file], sql);
  try {
    const parsed: unknown = JSON.parse(result.stdout);
    if (Array.isArray(parsed)) return parsed as SquawkViolation[];
  } catch {
    /* not JSON: squawk stopped before linting, reported below */
  }
  throw new LintToolError(`squawk failed on ${file} (exit ${result.status}): ${(result.stderr || result.stdout).trim()}`);
}

/** The statement a comment exempts: the one it trails on its last line, else the next one. */
function targetOf(comment: Span, statements: Span[]): Span | undefined {
  return statements.find((s) => s.endLine === comment.startLine && s.endByte <= comment.startByte) ?? statements.find((s) => s.startByte > comment.endByte);
}

const EXEMPTION = /^--\s*lint:allow\b(.*)$/s;
const EXEMPTION_BODY = /^\s+([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)(?:\s+because\b(.*))?$/s;

/**
 * What the migrator sends for a migration: its up part and then, in the same transaction, the row
 * that marks it as run (node-pg-migrate's Migration._getMarkAsRun). squawk judges a file of one
 * statement as if nothing wrapped it; the appended row is what makes even a one-statement
 * migration a transaction, as it is on the server. It goes after the last line, so every line of
 * the file keeps its number.
 */
export function asMigratorRunsIt(sql: string): string {
  return `${upPartOnly(sql)}\nINSERT INTO "public"."pgmigrations" (name, run_on) VALUES ('migration', NOW());\n`;
}

/** squawk's own ignore comments disarmed (same length, so offsets hold): only reasoned exemptions count. */
function withoutSquawkIgnores(sql: string, comments: Span[]): string {
  const bytes = Buffer.from(sql, "utf8");
  for (const c of comments) {
    const text = bytes.subarray(c.startByte, c.endByte);
    const disarmed = Buffer.from(text.toString("latin1").replace(/squawk-(ignore|disable)/g, "squawk_$1"), "latin1");
    disarmed.copy(bytes, c.startByte);
  }
  return bytes.toString("utf8");
}

/** Every finding of one migration file whose contents are `sql`, reported as `file`. */
export function lintMigration(file: string, sql: string): Finding[] {
  const up = asMigratorRunsIt(sql);
  const { statements, comments } = parseTree(up, file);
  const findings: Finding[] = [];
  const own = (line: number, rule: string, message: string) => findings.push({ file, line, rule, message, advice: OWN_RULES[rule] });
  const exemptions: Exemption[] = [];

  for (const comment of comments) {
    if (/squawk-(ignore|disable)/.test(comment.text)) own(comment.startLine, "squawk-ignore-comment", "squawk's own ignore comment carries no reason");
    const head = EXEMPTION.exec(comment.text.trim());
    if (!head) continue;
    const body = EXEMPTION_BODY.exec(head[1]);
    if (!body) {
      own(comment.startLine, "exemption-malformed", `cannot read ${JSON.stringify(comment.text.trim())}`);
      continue;
    }
    const rules = body[1].split(",").map((r) => r.trim());
    const unknown = rules.filter((r) => !EXEMPTABLE_RULES.has(r));
    if (unknown.length) own(comment.startLine, "exemption-unknown-rule", `no such rule: ${unknown.join(", ")}`);
    if (!body[2]?.trim()) {
      own(comment.startLine, "exemption-without-reason", `lint:allow ${rules.join(", ")} gives no reason, so it exempts nothing`);
      continue;
    }
    exemptions.push({ line: comment.startLine, rules, target: targetOf(comment, statements), used: false });
  }

  for (const v of violations(withoutSquawkIgnores(up, comments), file)) {
    const line = v.line + 1; // squawk's JSON counts lines from 0
    if (v.rule_name === "syntax-error") {
      own(line, "syntax-error", `does not parse: ${v.message}`);
      continue;
    }
    const statement = statements.find((s) => s.startLine <= line && line <= s.endLine);
    const exemption = exemptions.find((e) => e.target !== undefined && e.target === statement && e.rules.includes(v.rule_name));
    if (exemption) {
      exemption.used = true;
      continue;
    }
    const advice = SAFE_ALTERNATIVE[v.rule_name] ?? `${v.help ?? "see squawk's documentation of this rule"} (no advice of ours for this rule yet)`;
    findings.push({ file, line, rule: v.rule_name, message: v.message, advice });
  }

  for (const e of exemptions.filter((x) => !x.used && x.rules.every((r) => EXEMPTABLE_RULES.has(r)))) {
    own(e.line, "exemption-unused", `lint:allow ${e.rules.join(", ")} matches no finding on ${e.target ? `the statement at line ${e.target.startLine}` : "any statement (none follows it)"}`);
  }
  return findings.sort((a, b) => a.line - b.line || a.rule.localeCompare(b.rule));
}

/** `file:line: rule: message` and under it the safe alternative (or, for our own rules, the fix). */
export function formatFinding(f: Finding): string {
  return `${f.file}:${f.line}: ${f.rule}: ${f.message}\n    ${f.rule in OWN_RULES ? "fix" : "safe"}: ${f.advice}`;
}
