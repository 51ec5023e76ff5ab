/**
 * The app's identity before it is built: a hash of its source tree. `pulumi preview` needs to
 * know whether a release is coming without paying for a build; `pulumi up` then builds it.
 * Build outputs and dependencies are left out (they follow from the sources).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";

/** Folders that never count: dependencies, build output, local state. */
export const SOURCE_EXCLUDES = ["node_modules", "dist", ".git", "uploads", "coverage"];

export function listSourceFiles(dir: string, excludes: readonly string[] = SOURCE_EXCLUDES): string[] {
  const files: string[] = [];
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      if (excludes.includes(entry.name)) continue;
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) files.push(relative(dir, full).split(sep).join("/"));
    }
  };
  walk(dir);
  return files.sort();
}

/** 16 hex characters of sha256 over every source file's path and content. */
export function hashSourceTree(dir: string): string {
  const hash = createHash("sha256");
  for (const file of listSourceFiles(dir)) {
    hash.update(`${file}\0${createHash("sha256").update(readFileSync(join(dir, file))).digest("hex")}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}
