/** Running the real tools from tests: one place that captures status, stdout and stderr, and one for temp folders. */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

/**
 * A new empty folder under the system temp dir, removed when the process exits (a test run
 * leaves nothing behind); KEEP_TMP=1 keeps them all for a look after a failure.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `saas-vps-${prefix}-`));
  if (createdDirs.length === 0) process.on("exit", removeCreatedDirs);
  createdDirs.push(dir);
  return dir;
}

const createdDirs: string[] = [];

function removeCreatedDirs(): void {
  if (process.env.KEEP_TMP) {
    console.error(`KEEP_TMP: kept ${createdDirs.length} temp folders, e.g. ${createdDirs[0]}`);
    return;
  }
  // Removal must never turn a finished run into a crash: a folder still in use stays behind.
  for (const dir of createdDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* left for the system's tmp cleaner */
    }
  }
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

/** A local user's uid and gid (as `id` reports them), e.g. for chown to postgres. */
export function userIds(user: string): [number, number] {
  const id = (flag: string) => Number(spawnSync("id", [flag, user], { encoding: "utf8" }).stdout.trim());
  return [id("-u"), id("-g")];
}
