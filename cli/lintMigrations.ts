/**
 * npm run lint:migrations -- [files...]
 * Reviews SQL migrations before they roll out (cli/lib/migrationLint.ts): the app's
 * app/migrations/*.sql by default, or the files given. Exit 0: nothing to fix; 1: findings
 * (each with file, line, rule and the safe alternative); 2: bad command line or the tool failed.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parseCommandLine, USAGE_EXIT } from "./lib/args";
import { formatFinding, lintMigration, LintToolError, type Finding } from "./lib/migrationLint";
import { PROJECT_DIR } from "./lib/stacks";

const USAGE = "usage: npm run lint:migrations -- [file.sql ...]   (default: app/migrations/*.sql)";
const DEFAULT_DIR = join(PROJECT_DIR, "app", "migrations");

function defaultFiles(): string[] {
  return readdirSync(DEFAULT_DIR).filter((f) => f.endsWith(".sql")).sort().map((f) => join(DEFAULT_DIR, f));
}

function main(): number {
  const { positionals } = parseCommandLine("lint:migrations", USAGE, { options: {}, allowPositionals: true });
  // npm runs scripts in the project root; INIT_CWD is where the user typed the command.
  const cwd = process.env.INIT_CWD ?? process.cwd();
  const files = positionals.length ? positionals.map((f) => resolve(cwd, f)) : defaultFiles();
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) {
    console.error(`lint:migrations: no such file: ${missing.map((f) => relative(cwd, f)).join(", ")}`);
    return USAGE_EXIT;
  }
  const findings: Finding[] = [];
  try {
    for (const file of files) findings.push(...lintMigration(relative(cwd, file) || file, readFileSync(file, "utf8")));
  } catch (err) {
    if (!(err instanceof LintToolError)) throw err;
    console.error(`lint:migrations: ${err.message}`);
    return USAGE_EXIT;
  }
  for (const f of findings) console.log(formatFinding(f));
  const summary = `${files.length} migration(s), ${findings.length} finding(s)`;
  if (findings.length) {
    console.log(`lint:migrations: ${summary}: each must become safe for the release still serving, or carry "-- lint:allow <rule> because <reason>"`);
    return 1;
  }
  console.log(`lint:migrations: ${summary}`);
  return 0;
}

process.exitCode = main();
