/** The GitHub Actions workflows we ship for users, checked by action-validator (npm). */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, tempDir } from "./support/tools";

const WORKFLOWS = join(__dirname, "..", ".github", "workflows");
const validator = join(__dirname, "..", "node_modules", ".bin", "action-validator");

describe("GitHub Actions workflows for users", () => {
  const files = readdirSync(WORKFLOWS).filter((f) => f.endsWith(".yml"));

  it("ships a pull-request preview, a scheduled drift check, a deploy and a rollback", () => {
    assert.deepEqual(files.sort(), ["deploy.yml", "drift.yml", "preview.yml", "rollback.yml"]);
    const drift = readFileSync(join(WORKFLOWS, "drift.yml"), "utf8");
    assert.match(drift, /pulumi preview --stack "\$STACK" --refresh --expect-no-changes/);
    assert.match(drift, /"\$code" -eq 7/);
    assert.match(readFileSync(join(WORKFLOWS, "preview.yml"), "utf8"), /command: preview/);
  });

  for (const file of files) {
    it(`${file} passes action-validator`, () => {
      const result = run(validator, [join(WORKFLOWS, file)]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  }

  it("action-validator rejects a broken workflow (the check can fail)", () => {
    const bad = join(tempDir("workflow"), "bad.yml");
    writeFileSync(bad, "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n");
    assert.notEqual(run(validator, [bad]).status, 0);
  });
});
