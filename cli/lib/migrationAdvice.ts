/**
 * The safe alternative for each squawk rule `npm run lint:migrations` can report, in one line:
 * what to write instead so the release still serving keeps working on the new schema while the
 * next one rolls in (expand now, contract in a later release; README "Migrations that survive a
 * rolling release"). Every rule squawk checks with .squawk.toml's settings has a line here
 * (test/migrationLint.test.ts), so a finding always says what to do.
 */
export const SAFE_ALTERNATIVE: Readonly<Record<string, string>> = {
  "ban-drop-column": "contract in a later release: first release code that no longer reads or writes the column, then drop it (with a lint:allow saying which release stopped using it)",
  "ban-drop-table": "contract in a later release: first release code that no longer uses the table, then drop it (with a lint:allow saying which release stopped using it)",
  "renaming-column": "expand/contract: add the new column, write both and backfill, release code that reads the new one, drop the old one in a later release",
  "renaming-table": "expand/contract: create the new table (or a view under the new name), move the code over, drop the old name in a later release",
  "changing-column-type": "add a column of the new type, write both and backfill, switch reads in a release, drop the old column in a later one",
  "adding-required-field": "add the column nullable (or with a constant DEFAULT), backfill, then add NOT NULL in a later release",
  "adding-not-nullable-field": "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL (PostgreSQL skips the scan) and drop the check",
  "constraint-missing-not-valid": "add the constraint NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later migration, which does not block writes",
  "adding-foreign-key-constraint": "add the foreign key NOT VALID, then VALIDATE CONSTRAINT in a later migration",
  "disallowed-unique-constraint": "build a unique index by hand with CREATE UNIQUE INDEX CONCURRENTLY before the release, then ADD CONSTRAINT ... UNIQUE USING INDEX (with a lint:allow saying so)",
  "adding-serial-primary-key-field": "build a unique index by hand with CREATE UNIQUE INDEX CONCURRENTLY before the release, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX (with a lint:allow saying so)",
  "adding-field-with-default": "use a constant (non-volatile) DEFAULT, or add the column nullable and backfill in batches",
  "require-concurrent-index-creation": "the migrator's transaction refuses CONCURRENTLY: build the index by hand with CREATE INDEX CONCURRENTLY IF NOT EXISTS before the release, and keep a CREATE INDEX IF NOT EXISTS here with a lint:allow saying so (a table created in this same file needs neither)",
  "require-concurrent-index-deletion": "the migrator's transaction refuses CONCURRENTLY: drop the index by hand with DROP INDEX CONCURRENTLY before the release, and keep a DROP INDEX IF EXISTS here with a lint:allow saying so",
  "ban-concurrent-index-creation-in-transaction": "the app's migrations run in one transaction, where CONCURRENTLY fails: build the index by hand before the release (see require-concurrent-index-creation)",
  "ban-drop-not-null": "only when every serving release copes with NULL in the column: say so in a lint:allow; usually release the code first",
  "ban-drop-database": "never from a migration: databases are made and dropped by the stack and the backup tool",
  "ban-truncate-cascade": "delete the rows you mean, by name; CASCADE reaches every table that references this one",
  "ban-alter-domain-with-add-constraint": "add a CHECK constraint on the columns instead (NOT VALID, then VALIDATE), not on the domain",
  "ban-create-domain-with-constraint": "put CHECK constraints on the columns, where they can be added NOT VALID and validated later",
  "ban-uncommitted-transaction": "remove BEGIN/COMMIT: the migrator runs every migration inside its own transaction",
  "transaction-nesting": "remove BEGIN/COMMIT/ROLLBACK: the migrator runs every migration inside its own transaction",
  "prefer-text-field": "use text with a CHECK (length(col) <= n) constraint added NOT VALID: a varchar length change locks and may rewrite the table",
  "require-enum-value-ordering": "add the enum value with BEFORE or AFTER so its place is explicit",
};

/** The rules `-- lint:allow` may name: those with a safe alternative above. */
export const EXEMPTABLE_RULES: ReadonlySet<string> = new Set(Object.keys(SAFE_ALTERNATIVE));
