/**
 * Golden files of everything the renderers produce, for review as diffs. After an intended
 * change: UPDATE_GOLDEN=1 npx mocha test/provisioning/golden.test.ts, then read `git diff test/golden`.
 * Secrets in them are the mocks' FAKE values or the documented placeholders, never real ones.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { renderAllCases, type RenderCase } from "../support/renderCases";

const GOLDEN = join(__dirname, "..", "golden");
const UPDATE = process.env.UPDATE_GOLDEN === "1";

function expectedTree(c: RenderCase): Map<string, string> {
  const tree = new Map<string, string>([["user-data.yaml", c.userData]]);
  for (const [path, content] of c.files) tree.set(join("files", path), content);
  return tree;
}

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    return statSync(full).isDirectory() ? listFiles(full) : [full];
  });
}

describe("golden files of the rendered output", function () {
  this.timeout(60_000);
  let cases: RenderCase[];
  before(async () => {
    cases = await renderAllCases();
  });

  it("every case matches test/golden/<case>/ byte for byte", () => {
    const stale: string[] = [];
    for (const c of cases) {
      const dir = join(GOLDEN, c.name);
      const tree = expectedTree(c);
      if (UPDATE) {
        rmSync(dir, { recursive: true, force: true });
        for (const [rel, content] of tree) {
          mkdirSync(dirname(join(dir, rel)), { recursive: true });
          writeFileSync(join(dir, rel), content);
        }
        continue;
      }
      const onDisk = listFiles(dir).map((f) => relative(dir, f)).sort();
      assert.deepEqual(onDisk, [...tree.keys()].sort(), `${c.name}: golden file list differs (UPDATE_GOLDEN=1 to rewrite)`);
      for (const [rel, content] of tree) {
        if (readFileSync(join(dir, rel), "utf8") !== content) stale.push(`${c.name}/${rel}`);
      }
    }
    assert.deepEqual(stale, [], "rendered output differs from the goldens; review and rewrite with UPDATE_GOLDEN=1");
  });
});
