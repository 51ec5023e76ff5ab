/**
 * `npm run lint:migrations`: the real squawk with the repository's .squawk.toml, on the app's own
 * migrations and on fixtures of each unsafe kind, their safe counterparts and exemptions. Exit
 * codes come from the real command (spawned); per-fixture findings from the same code in-process
 * (each still runs squawk), which keeps the suite to a few spawns of tsx.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SAFE_ALTERNATIVE } from "../cli/lib/migrationAdvice";
import { lintMigration, SQUAWK, upPartOnly } from "../cli/lib/migrationLint";
import { run, tempDir } from "./support/tools";

const ROOT = join(__dirname, "..");
const FIXTURES = join(__dirname, "fixtures", "migrations");
const tsx = join(ROOT, "node_modules", ".bin", "tsx");

function lintCommand(files: string[]) {
  return run(tsx, [join(ROOT, "cli", "lintMigrations.ts"), ...files], { cwd: ROOT, env: { ...process.env, INIT_CWD: ROOT } });
}

function fixture(kind: "safe" | "unsafe", name: string): string {
  return join(FIXTURES, kind, name);
}

function findingsOf(kind: "safe" | "unsafe", name: string) {
  return lintMigration(name, readFileSync(fixture(kind, name), "utf8")).map((f) => `${f.line} ${f.rule}`);
}

/** Each unsafe kind: the findings it must give (line and rule), nothing more. */
const UNSAFE: Record<string, string[]> = {
  "drop_column.sql": ["2 ban-drop-column"],
  "drop_table.sql": ["2 ban-drop-table"],
  "rename_column.sql": ["2 renaming-column"],
  "rename_table.sql": ["2 renaming-table"],
  "change_type.sql": ["2 changing-column-type"],
  "add_required_column.sql": ["2 adding-required-field"],
  "set_not_null.sql": ["2 adding-not-nullable-field"],
  "index_existing_table.sql": ["2 require-concurrent-index-creation"],
  // One statement, yet the migrator runs it in its transaction, where CONCURRENTLY is refused.
  "index_concurrently_in_transaction.sql": ["2 ban-concurrent-index-creation-in-transaction"],
  "foreign_key.sql": ["3 adding-foreign-key-constraint", "3 constraint-missing-not-valid"],
  "check_constraint.sql": ["2 constraint-missing-not-valid"],
  "validate_in_same_transaction.sql": ["3 constraint-missing-not-valid"],
  "exemption_without_reason.sql": ["2 exemption-without-reason", "3 ban-drop-column"],
  "exemption_empty_reason.sql": ["2 ban-drop-column", "2 exemption-without-reason"],
  "exemption_wrong_rule.sql": ["2 exemption-unused", "3 ban-drop-column"],
  "exemption_unknown_rule.sql": ["2 exemption-unknown-rule", "3 ban-drop-column"],
  "exemption_on_other_statement.sql": ["2 exemption-unused", "4 ban-drop-column"],
  // squawk would honour its own comment; ours disarms it and says why.
  "squawk_ignore.sql": ["2 squawk-ignore-comment", "3 ban-drop-column"],
  "does_not_parse.sql": ["6 syntax-error"],
};

describe("lint:migrations (squawk, .squawk.toml, lint:allow exemptions)", function () {
  this.timeout(120_000);

  it("the fixtures on disk are exactly the ones listed here", () => {
    assert.deepEqual(readdirSync(join(FIXTURES, "unsafe")).sort(), Object.keys(UNSAFE).sort());
  });

  it("passes the app's own migrations (tables and their indexes created in one migration); exit 0", () => {
    const result = lintCommand([]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /lint:migrations: [1-9]\d* migration\(s\), 0 finding\(s\)/);
  });

  for (const [name, expected] of Object.entries(UNSAFE)) {
    it(`finds ${name}: ${expected.join("; ")}`, () => {
      assert.deepEqual(findingsOf("unsafe", name), expected);
    });
  }

  const safe = readdirSync(join(FIXTURES, "safe")).sort();
  for (const name of safe) {
    it(`passes the safe counterpart ${name}`, () => {
      assert.deepEqual(findingsOf("safe", name), []);
    });
  }

  it("the command exits 0 on every safe counterpart together", () => {
    const result = lintCommand(safe.map((name) => fixture("safe", name)));
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`${safe.length} migration\\(s\\), 0 finding\\(s\\)`));
  });

  it("one unsafe file among safe ones fails the run (exit 1) with file, line, rule and the safe alternative", () => {
    const result = lintCommand([...safe.map((name) => fixture("safe", name)), fixture("unsafe", "drop_column.sql")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /^test\/fixtures\/migrations\/unsafe\/drop_column\.sql:2: ban-drop-column: .+\n {4}safe: contract in a later release/m);
    assert.match(result.stdout, /1 finding\(s\)/);
  });

  it("every unsafe fixture fails the command, and every finding carries our advice", () => {
    const result = lintCommand(Object.keys(UNSAFE).map((name) => fixture("unsafe", name)));
    assert.equal(result.status, 1, result.stdout + result.stderr);
    for (const name of Object.keys(UNSAFE)) assert.match(result.stdout, new RegExp(`unsafe/${name.replace(".", "\\.")}:\\d+: `));
    assert.doesNotMatch(result.stdout, /no advice of ours/);
    const findings = result.stdout.split("\n").filter((l) => /^\S+\.sql:\d+: /.test(l)).length;
    const advice = result.stdout.split("\n").filter((l) => /^ {4}(safe|fix): \S/.test(l)).length;
    assert.equal(advice, findings);
  });

  it("a migration that does not parse fails with the parser's message and line", () => {
    const result = lintCommand([fixture("unsafe", "does_not_parse.sql")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /does_not_parse\.sql:6: syntax-error: does not parse: expected R_PAREN/);
  });

  it("a file that does not exist is a usage error (exit 2) naming it", () => {
    const result = lintCommand(["app/migrations/999_missing.sql"]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /no such file: app\/migrations\/999_missing\.sql/);
  });

  it("lints only what node-pg-migrate runs going up, keeping line numbers", () => {
    const sql = "-- Down Migration\nDROP TABLE a;\n-- Up Migration\nALTER TABLE b DROP COLUMN c;\n";
    const up = upPartOnly(sql);
    assert.equal(up.split("\n").length, sql.split("\n").length);
    assert.doesNotMatch(up, /DROP TABLE/);
    const file = join(tempDir("migration-lint"), "down_first.sql");
    writeFileSync(file, sql);
    assert.deepEqual(lintMigration("down_first.sql", sql).map((f) => `${f.line} ${f.rule}`), ["4 ban-drop-column"]);
  });

  it("README's expand/contract example passes, each step as the migration it shows", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("**Example: replacing"), readme.indexOf("Fixtures of each unsafe kind"));
    const steps = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1].replace(/^ {3}/gm, ""));
    assert.equal(steps.length, 3);
    steps.forEach((sql, i) => assert.deepEqual(lintMigration(`step ${i + 1}`, sql), [], sql));
    assert.match(steps[2], /-- lint:allow ban-drop-column because /);
  });

  it("every rule with advice is a rule squawk knows (squawk refuses unknown names in its config)", () => {
    const dir = tempDir("squawk-rules");
    const empty = join(dir, "empty.sql");
    writeFileSync(empty, "SELECT 1;\n");
    const config = join(dir, ".squawk.toml");
    const rules = Object.keys(SAFE_ALTERNATIVE).map((rule) => JSON.stringify(rule));
    writeFileSync(config, `excluded_rules = [${rules.join(", ")}]\n`);
    const known = run(SQUAWK, ["--config", config, empty]);
    assert.equal(known.status, 0, known.stderr);
    writeFileSync(config, `excluded_rules = [${[...rules, '"no-such-rule"'].join(", ")}]\n`);
    const unknown = run(SQUAWK, ["--config", config, empty]);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /invalid rule name no-such-rule/);
  });
});
