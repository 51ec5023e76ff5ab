/** Writes one server's render to disk: `<dir>/user-data.yaml` and every file under `<dir>/files/<absolute path>`. */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { RenderedServerOutput } from "./renderStack";

/**
 * Replaces `<outDir>/<server>/` with the server's user-data and files; returns that folder.
 * Everything is owner-only (0600 files, 0700 folders): renders hold generated secrets.
 */
export function writeServerRender(outDir: string, server: Pick<RenderedServerOutput, "name" | "userData" | "files">): string {
  const dir = join(outDir, server.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "files"), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "user-data.yaml"), server.userData, { mode: 0o600 });
  for (const [path, content] of server.files) {
    const target = join(dir, "files", path);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    writeFileSync(target, content, { mode: 0o600 });
  }
  return dir;
}
