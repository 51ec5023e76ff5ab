// The release id answers "which build is this process?". The build writes manifest.json at the
// package root; in a source checkout there is none and the id is "dev".
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Package root: src/core/ in a checkout, dist/core/ in a release; both two levels down. */
export const packageRoot = fileURLToPath(new URL("../../", import.meta.url));

export function readReleaseId(root = packageRoot): string {
  try {
    const manifest = JSON.parse(readFileSync(`${root}/manifest.json`, "utf8")) as { id?: unknown };
    return typeof manifest.id === "string" && manifest.id !== "" ? manifest.id : "dev";
  } catch {
    return "dev";
  }
}
