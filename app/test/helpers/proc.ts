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

async function isFree(port: number, host: string): Promise<boolean> {
  const s = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    s.once("error", () => resolve(false));
    s.listen(port, host, () => resolve(true));
  });
  if (ok) await new Promise((r) => s.close(r));
  return ok;
}

export interface MetricsPorts {
  web: [number, number];
  workerId: number;
  /** METRICS_PORT_OFFSET */
  offset: number;
}

/**
 * Two web ports (each free on every address), a worker id and a METRICS_PORT_OFFSET whose three
 * metrics ports are free on 127.0.0.1 now. Web ports 20000-29000 and offsets 30000-35000 keep
 * every sum a valid port (at most 64,001).
 */
export async function pickMetricsPorts(): Promise<MetricsPorts> {
  for (let i = 0; i < 50; i++) {
    const first = 20000 + Math.floor(Math.random() * 9000);
    const web: [number, number] = [first, first + 1];
    const workerId = 1 + Math.floor(Math.random() * 999);
    const offset = 30000 + Math.floor(Math.random() * 5000);
    const ports = [...web.map((p) => [p, "0.0.0.0"] as const), ...[...web, workerId].map((n) => [n + offset, "127.0.0.1"] as const)];
    let allFree = true;
    for (const [port, host] of ports) allFree &&= await isFree(port, host);
    if (allFree) return { web, workerId, offset };
  }
  throw new Error("no free set of ports found in 50 tries");
}
