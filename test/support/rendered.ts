/** Reading a rendered server in tests: one file by path, and bootstrap.env as a map. */
import assert from "node:assert/strict";
import type { RenderedFile } from "../../provisioning/files";
import type { RenderedServer } from "../../provisioning/server";

export function renderedFile(server: RenderedServer, path: string): RenderedFile {
  const found = server.files.find((f) => f.path === path);
  assert.ok(found, `no ${path}`);
  return found;
}

export const renderedContent = (server: RenderedServer, path: string): string => renderedFile(server, path).content;

/** bootstrap.env as a map (values are double-quoted, without escapes: the renderer refuses any). */
export function bootstrapEnv(server: RenderedServer): Map<string, string> {
  const lines = renderedContent(server, "/etc/saas-vps/bootstrap.env").split("\n").filter((l) => /^[A-Z][A-Z0-9_]*=/.test(l));
  return new Map(lines.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 2, -1)]));
}
