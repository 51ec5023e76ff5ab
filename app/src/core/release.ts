// The release id answers "which build is this process?". The build writes manifest.json at the
// package root; in a source checkout there is none and the id is "dev".
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Package root: the nearest directory at or above this module's that holds package.json — app/
 * in a checkout (this file is src/core/release.ts), the release root in an artifact (the bundler
 * put this code into dist/<entry>.js or dist/chunks/). Files read at run time (manifest.json,
 * migrations/) are found from here, never relative to import.meta.url: in a bundle every module
 * has the URL of the output file it landed in.
 */
export const packageRoot = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json in ${start} or any directory above it`);
  }
}

export function readReleaseId(root = packageRoot): string {
  try {
    const manifest = JSON.parse(readFileSync(path.join(root, "manifest.json"), "utf8")) as { id?: unknown };
    return typeof manifest.id === "string" && manifest.id !== "" ? manifest.id : "dev";
  } catch {
    return "dev";
  }
}
