/**
 * Static scripts (provisioning/assets/) as the server gets them. The repository copy is
 * fully commented for the people who maintain it; the shipped copy drops full-line comments
 * (never shebangs, shellcheck directives or heredoc bodies) because user-data must stay
 * under Hetzner's 32 KiB cap, and comments were about a quarter of its compressed size.
 * A header points the reader on the server to the commented source.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ASSETS = join(__dirname, "assets");

/** The shipped form of assets/<relativePath>. */
export function loadScript(relativePath: string): string {
  return stripComments(readFileSync(join(ASSETS, relativePath), "utf8"), `provisioning/assets/${relativePath}`);
}

export function stripComments(script: string, source: string): string {
  const lines = script.split("\n");
  const out: string[] = [];
  let heredocEnd: { word: string; tabs: boolean } | undefined;
  lines.forEach((line, i) => {
    if (heredocEnd) {
      out.push(line);
      const body = heredocEnd.tabs ? line.replace(/^\t+/, "") : line;
      if (body === heredocEnd.word) heredocEnd = undefined;
      return;
    }
    if (i === 0 && line.startsWith("#!")) {
      out.push(line, `# Shipped without comments (user-data size); commented source: ${source} in the saas-vps repository.`);
      return;
    }
    const isComment = /^\s*#/.test(line) && !/^\s*#\s*shellcheck\s/.test(line);
    if (!isComment) out.push(line);
    const start = /<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/.exec(line.replace(/'[^']*'|"(?:[^"\\]|\\.)*"/g, (q) => (q.includes("<<") ? "''" : q)));
    if (start && !isComment) heredocEnd = { word: start[3], tabs: start[1] === "-" };
  });
  return out.join("\n");
}
