/** Pulumi.yaml declares exactly the keys the parser knows, each with a description. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { DEFAULTS, KNOWN_KEYS, SECRET_KEYS } from "../../config/config";

describe("Pulumi.yaml config declarations", () => {
  const project = parse(readFileSync(join(__dirname, "..", "..", "Pulumi.yaml"), "utf8"));
  const declared: Record<string, { type: string; description?: string; default?: unknown; secret?: boolean }> = project.config;

  it("declares every key the parser knows, and no other", () => {
    assert.deepEqual(Object.keys(declared).sort(), [...KNOWN_KEYS].sort());
  });

  it("describes every key, marks credentials secret, and states the parser's defaults", () => {
    for (const [key, decl] of Object.entries(declared)) {
      assert.ok(decl.description && decl.description.length > 20, `${key} has no real description`);
      assert.equal(decl.secret === true, SECRET_KEYS.has(key), `${key}: secret flag differs from the parser's`);
      const parserDefault = (DEFAULTS as Record<string, unknown>)[key];
      if (parserDefault !== undefined) assert.equal(decl.default, parserDefault, `${key}: default differs from the parser's`);
    }
  });
});
