/** Running the real tools from tests: one place that captures status, stdout and stderr. */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], options: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): ToolResult {
  const result = spawnSync(cmd, args, { encoding: "utf8", input: options.input, cwd: options.cwd, env: options.env ?? process.env, timeout: 120_000 });
  if (result.error) throw new Error(`${cmd} could not run: ${result.error.message} (run: npm run setup)`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `saas-vps-${prefix}-`));
}

/** Writes `files` (absolute server paths) below `root`, creating folders; returns root. */
export function writeTree(root: string, files: Map<string, string>, modes?: Map<string, string>): string {
  for (const [path, content] of files) {
    const target = join(root, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content, { mode: parseInt(modes?.get(path) ?? "0644", 8) });
  }
  return root;
}

/** True for files the server executes as scripts (shebang). */
export function isScript(content: string): boolean {
  return /^#!\s*\/(usr\/)?bin\/(env )?(ba)?sh\b/.test(content);
}

// One implementation of free-port picking, shared with the VM runner.
export { freePort, freePorts } from "../../cli/lib/ports";
