// Running the real entrypoints (src/web.ts, src/worker.ts, or a release's bin/*) as child
// processes, as systemd would.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

export interface Proc {
  child: ChildProcess;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once a log line contains `text`. */
  waitForLog(text: string, timeoutMs?: number): Promise<string>;
}

export function startEntrypoint(name: "web" | "worker" | "migrate", env: Record<string, string | undefined>): Proc {
  const entry = fileURLToPath(new URL(`../../src/${name}.ts`, import.meta.url));
  return startProcess(process.execPath, ["--import", "tsx", entry], env);
}

/** Runs `file` with only PATH and `env` in its environment, collecting its output lines. */
export function startProcess(file: string, args: string[], env: Record<string, string | undefined>, cwd?: string): Proc {
  const child = spawn(file, args, {
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    cwd,
  });
  const output: string[] = [];
  const waiters: Array<{ text: string; resolve: (line: string) => void }> = [];
  const onLine = (line: string) => {
    output.push(line);
    for (const w of [...waiters]) if (line.includes(w.text)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = "";
    stream.on("data", (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    output,
    exited,
    waitForLog: (text, timeoutMs = 15000) => {
      const found = output.find((l) => l.includes(text));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line with ${JSON.stringify(text)} within ${timeoutMs} ms; output:\n${output.join("\n")}`)), timeoutMs);
        waiters.push({ text, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
  };
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
