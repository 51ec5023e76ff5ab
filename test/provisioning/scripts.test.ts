import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadScript, stripComments } from "../../provisioning/scripts";
import { run, tempDir } from "../support/tools";

describe("shipped scripts (comments stripped for user-data size)", () => {
  it("drops full-line comments but keeps the shebang, shellcheck directives, heredoc bodies and code", () => {
    const source = [
      "#!/usr/bin/env bash",
      "# what this does",
      "set -eu",
      "  # indented comment",
      "# shellcheck disable=SC2034",
      "x=1 # trailing comment stays",
      "cat <<'EOF'",
      "# a heredoc line that looks like a comment",
      "EOF",
      "cat <<-END",
      "\t# tab-indented heredoc line",
      "\tEND",
      'echo "# not a comment"',
      "",
    ].join("\n");
    assert.equal(
      stripComments(source, "x.sh"),
      [
        "#!/usr/bin/env bash",
        "# Shipped without comments (user-data size); commented source: x.sh in the saas-vps repository.",
        "set -eu",
        "# shellcheck disable=SC2034",
        "x=1 # trailing comment stays",
        "cat <<'EOF'",
        "# a heredoc line that looks like a comment",
        "EOF",
        "cat <<-END",
        "\t# tab-indented heredoc line",
        "\tEND",
        'echo "# not a comment"',
        "",
      ].join("\n"),
    );
  });

  // shellcheck of the shipped copies: test/provisioning/shellcheck.test.ts.
  it("every shipped shell asset still parses (bash -n; SQL files are run by psql in test/provisioning/postgresAccess.test.ts)", () => {
    const dir = tempDir("shipped");
    const assets = join(__dirname, "..", "..", "provisioning", "assets");
    for (const folder of readdirSync(assets)) {
      for (const name of readdirSync(join(assets, folder)).filter((n) => !n.endsWith(".md") && !n.endsWith(".sql"))) {
        const shipped = loadScript(`${folder}/${name}`);
        const file = join(dir, `${folder}-${name}`);
        writeFileSync(file, shipped);
        const parsed = run("bash", ["-n", file]);
        assert.equal(parsed.status, 0, `${folder}/${name} does not parse after stripping: ${parsed.stderr}`);
      }
    }
  });
});
