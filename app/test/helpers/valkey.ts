// A real valkey-server for tests, set up as the stack's: TLS only (a self-signed certificate
// made here with openssl, as the server makes its own), clients not asked for certificates, a
// password, nothing written to disk. It can be stopped and started again on the same port, or
// frozen (SIGSTOP) to play a server that accepts connections but answers nothing.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Valkey as ValkeyClient } from "iovalkey";
import { tmpDir } from "./app.js";
import { freePort } from "./proc.js";
import { waitFor } from "./wait.js";

export interface ValkeyServer {
  /** rediss://default:<password>@127.0.0.1:<port>, as VALKEY_URL carries it. */
  url: string;
  password: string;
  port: number;
  /** Kills the server (SIGKILL: no goodbye to its clients) and waits for its exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing is saved). */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: connections stay open, nothing is answered. */
  freeze(): void;
  thaw(): void;
  /** A client of the test's own, to look at what the app stored. */
  inspect(): ValkeyClient;
  close(): Promise<void>;
}

export async function startValkeyServer(): Promise<ValkeyServer> {
  const dir = tmpDir("valkey");
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=valkey-test", "-keyout", key, "-out", cert], { stdio: "ignore" });
  // Characters a URL must escape, so the client's decoding of VALKEY_URL is tested too.
  const password = `pw/${randomBytes(12).toString("hex")}@:`;
  const port = await freePort();
  const url = `rediss://default:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const args = [
    "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1",
    "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
    "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "",
  ];
  let child: ChildProcess | undefined;
  let inspector: ValkeyClient | undefined;

  const start = async (): Promise<void> => {
    const c = spawn("valkey-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    let out = "";
    c.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor(`valkey-server ready on ${port}`, () => {
      if (c.exitCode !== null) throw new Error(`valkey-server exited ${c.exitCode}: ${out}`);
      return out.includes("Ready to accept connections");
    }, 10000, 20);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  };
  await start();
  return {
    url,
    password,
    port,
    stop,
    start,
    freeze: () => child?.kill("SIGSTOP"),
    thaw: () => child?.kill("SIGCONT"),
    inspect: () => {
      if (!inspector) {
        inspector = new ValkeyClient(url, { tls: { rejectUnauthorized: false }, maxRetriesPerRequest: 1 });
        inspector.on("error", () => {}); // while the server is stopped on purpose; a command's own error fails the test
      }
      return inspector;
    },
    close: async () => {
      inspector?.disconnect();
      await stop();
    },
  };
}
