/** Pulumi.yaml declares exactly the keys of config/keys.ts, as that table states them. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { renderPulumiConfig } from "../../config/keyDocs";
import { KEYS, KNOWN_KEYS, SECRET_KEYS, type KeySpec } from "../../config/keys";

describe("Pulumi.yaml config declarations", () => {
  const text = readFileSync(join(__dirname, "..", "..", "Pulumi.yaml"), "utf8");
  const declared: Record<string, { type: string; description?: string; default?: unknown; secret?: boolean; items?: { type: string } }> = parse(text).config;

  it("declares every key the parser knows, and no other, in the table's order", () => {
    assert.deepEqual(Object.keys(declared), [...KNOWN_KEYS]);
  });

  it("states each key's type, description, secret flag and default as the table does", () => {
    for (const key of KNOWN_KEYS) {
      const spec = KEYS[key] as KeySpec<unknown>;
      const decl = declared[key];
      assert.ok(decl.description && decl.description.length > 20, `${key} has no real description`);
      assert.equal(decl.type, spec.type, `${key}: type`);
      assert.equal(decl.description, spec.description, `${key}: description`);
      assert.equal(decl.secret === true, SECRET_KEYS.has(key), `${key}: secret flag differs from the parser's`);
      assert.equal(decl.default, spec.default, `${key}: default differs from the parser's`);
      if (spec.type === "array") assert.deepEqual(decl.items, { type: "string" }, `${key}: items`);
    }
  });

  it("has the config block config/writeKeyDocs.ts writes (run it after editing config/keys.ts)", () => {
    assert.equal(text.slice(text.search(/^# Every saas-vps:<key>/m)), renderPulumiConfig());
  });
});
