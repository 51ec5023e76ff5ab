/**
 * Test harness for the release script: a throwaway server root, real nginx, real PostgreSQL
 * (cli/pg-scratch.sh), artifacts, a load generator. Shared by test/release and bench/release.ts.
 *
 * Why a service shim and not systemd: this machine has no systemd as PID 1 (containers), so
 * `systemctl start web@3001` cannot work here. The release script takes its service manager
 * from RELEASE_SERVICE_CTL; fixtures/service-shim.sh implements the three verbs it uses
 * (start, stop, is-active) by running the instances as local processes with the same
 * environment, working directory and stop signal as the rendered units. Everything else —
 * the script file, nginx, PostgreSQL, the app — is the real thing.
 */
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { hashSourceTree } from "../../plan/appSource";
import { renderNginxSite } from "../../provisioning/nginx";
import { freePort, freePorts } from "../support/tools";
import { renderReleaseFiles } from "../../provisioning/release";

export { freePort, freePorts };

export const REPO = path.resolve(__dirname, "../..");
/** The script exactly as the server gets it (rendered: comments stripped), so tests run what ships. */
export const RELEASE_SCRIPT = writeShippedScript();

function writeShippedScript(): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "release-script-")), "release");
  fs.writeFileSync(file, renderReleaseFiles({ webPorts: [3001], workerUnits: [], migrate: true })[0].content, { mode: 0o755 });
  return file;
}
export const SERVICE_SHIM = path.join(__dirname, "fixtures/service-shim.sh");
export const STANDIN_APP = path.join(__dirname, "fixtures/standin");

export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  fs.chmodSync(dir, 0o755); // PostgreSQL runs as "postgres" and must reach its data dir inside
  return dir;
}


// ---------------------------------------------------------------- PostgreSQL

export function startPostgres(dir: string): string {
  return execFileSync(path.join(REPO, "cli/pg-scratch.sh"), ["start", dir], { encoding: "utf8" }).trim();
}

export function stopPostgres(dir: string): void {
  execFileSync(path.join(REPO, "cli/pg-scratch.sh"), ["stop", dir], { stdio: "ignore" });
}

/**
 * Marks an account's address verified in the app's database, as following the link in the
 * verification mail would (no mail catcher here); logins of unverified accounts are refused.
 * psql interpolates :'email' (quoted as a literal) in what it reads, not in a -c command.
 */
export function markVerified(databaseUrl: string, email: string): void {
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", databaseUrl, "-v", `email=${email}`], {
    input: "update users set email_verified_at = now() where email = :'email';",
    stdio: ["pipe", "ignore", "pipe"],
  });
}

// ---------------------------------------------------------------- nginx

export interface Nginx {
  port: number;
  url: string;
  dir: string;
  stop(): void;
}

/**
 * Real nginx with the site the lead renders (provisioning/nginx.ts), on a free loopback port,
 * inside a minimal main config with its own prefix, pid, logs and temp paths.
 * `upstreamExtra` adds lines to the upstream block (e.g. a `backup` surge server).
 */
export async function startNginx(dir: string, webPorts: number[], upstreamExtra: string[] = []): Promise<Nginx> {
  const port = await freePort();
  fs.mkdirSync(path.join(dir, "tmp"), { recursive: true });
  let site = renderNginxSite({ webPorts, httpPort: port, listenAddress: "127.0.0.1", accessLog: path.join(dir, "access.log") });
  if (upstreamExtra.length) site = site.replace(/(\n\s*keepalive \d+;)/, `\n    ${upstreamExtra.join("\n    ")}$1`);
  fs.writeFileSync(path.join(dir, "site.conf"), site);
  const tmp = (name: string) => `${name}_temp_path ${path.join(dir, "tmp", name)};`;
  fs.writeFileSync(
    path.join(dir, "nginx.conf"),
    [
      "worker_processes 1;",
      `pid ${path.join(dir, "nginx.pid")};`,
      `error_log ${path.join(dir, "error.log")} warn;`,
      "events { worker_connections 1024; }",
      "http {",
      "  include /etc/nginx/mime.types;",
      // Client side only: autocannon ignores `Connection: close`, so when nginx ends a client
      // keep-alive connection after keepalive_requests (default 1000) autocannon writes the next
      // request into the closed socket and counts an ECONNRESET — measured with nginx answering
      // `return 200` and no upstream at all (5 resets in 74k requests). Browsers and wrk honour the
      // header; raising the limit keeps such resets out of the release's error count.
      "  keepalive_requests 1000000;",
      `  ${tmp("client_body")} ${tmp("proxy")} ${tmp("fastcgi")} ${tmp("uwsgi")} ${tmp("scgi")}`,
      `  include ${path.join(dir, "site.conf")};`,
      "}",
      "",
    ].join("\n"),
  );
  const args = ["-p", dir, "-c", path.join(dir, "nginx.conf")];
  execFileSync("nginx", [...args, "-t", "-q"], { stdio: "pipe" });
  execFileSync("nginx", args, { stdio: "pipe" });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    stop() {
      try {
        execFileSync("nginx", [...args, "-s", "stop"], { stdio: "ignore" });
      } catch {
        /* already gone */
      }
    },
  };
}

// ---------------------------------------------------------------- a throwaway server

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface ServerOptions {
  webPorts: number[];
  workerUnits?: string[];
  /** release.conf MIGRATE: whether this server runs migrations. Default true. */
  migrate?: boolean;
  env: Record<string, string>;
  /** Extra release.conf lines, e.g. "HEALTH_TIMEOUT=5". */
  conf?: string[];
  /**
   * A network namespace the release runs in (`ip netns exec`), and with it every instance it
   * starts: servers whose web instances and nginx use the same ports, as two real servers do.
   */
  netns?: string;
}

/** APP_ROOT, release.conf, env file and service-shim state for one simulated server. */
export class FakeServer {
  readonly root: string;
  readonly appRoot: string;
  readonly confFile: string;
  readonly envFile: string;
  readonly shimState: string;

  constructor(readonly dir: string, readonly opts: ServerOptions) {
    this.root = dir;
    this.appRoot = path.join(dir, "srv/app");
    this.confFile = path.join(dir, "etc/release.conf");
    this.envFile = path.join(dir, "etc/app.env");
    this.shimState = path.join(dir, "shim");
    fs.mkdirSync(path.dirname(this.confFile), { recursive: true });
    fs.writeFileSync(
      this.confFile,
      [
        `WEB_PORTS="${opts.webPorts.join(" ")}"`,
        `WORKER_UNITS="${(opts.workerUnits ?? []).join(" ")}"`,
        `MIGRATE="${opts.migrate === false ? "no" : "yes"}"`,
        "APP_USER=root",
        ...(opts.conf ?? []),
        "",
      ].join("\n"),
    );
    fs.writeFileSync(this.envFile, Object.entries(opts.env).map(([k, v]) => `${k}=${v}`).join("\n") + "\n", { mode: 0o600 });
  }

  /** Runs the real release script with this server's paths and the service shim. */
  run(args: string[], extraEnv: Record<string, string> = {}): Promise<RunResult> {
    return this.start(args, extraEnv).result;
  }

  /** Like run(), but also gives the script's pid (to signal it). */
  start(args: string[], extraEnv: Record<string, string> = {}): { pid: number; result: Promise<RunResult> } {
    const t0 = Date.now();
    let pid = 0;
    const result = new Promise<RunResult>((resolve, reject) => {
      const [command, argv] = this.opts.netns ? ["ip", ["netns", "exec", this.opts.netns, RELEASE_SCRIPT, ...args]] : [RELEASE_SCRIPT, args];
      const child = spawn(command, argv, {
        env: {
          ...process.env,
          RELEASE_CONF: this.confFile,
          APP_ROOT: this.appRoot,
          ENV_FILE: this.envFile,
          // The script keeps only its own variables: the shim's state directory travels on its command line.
          RELEASE_SERVICE_CTL: `/usr/bin/env SHIM_STATE=${this.shimState} ${SERVICE_SHIM}`,
          ...extraEnv,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - t0 }));
      pid = child.pid ?? 0;
    });
    return { pid, result };
  }

  currentId(): string | undefined {
    try {
      return path.basename(fs.readlinkSync(path.join(this.appRoot, "current")));
    } catch {
      return undefined;
    }
  }

  releaseIds(): string[] {
    const dir = path.join(this.appRoot, "releases");
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => !n.startsWith(".")).sort() : [];
  }

  /** Stops every instance the shim started (test teardown). */
  stopAll(): void {
    if (!fs.existsSync(this.shimState)) return;
    for (const f of fs.readdirSync(this.shimState).filter((n) => n.endsWith(".pid"))) {
      try {
        execFileSync(SERVICE_SHIM, ["stop", f.replace(/\.pid$/, "")], { env: { ...process.env, SHIM_STATE: this.shimState, SHIM_STOP_TIMEOUT: "5" } });
      } catch {
        /* best effort */
      }
    }
  }

  /** Last lines of every instance log, for failure messages. */
  logs(): string {
    if (!fs.existsSync(this.shimState)) return "";
    return fs
      .readdirSync(this.shimState)
      .filter((n) => n.endsWith(".log"))
      .map((n) => `--- ${n}\n${fs.readFileSync(path.join(this.shimState, n), "utf8").split("\n").slice(-15).join("\n")}`)
      .join("\n");
  }
}

// ---------------------------------------------------------------- artifacts

/**
 * Packs `srcDir` as saas-app-<id>.tar.gz with manifest.json's id set to `id` (other manifest
 * fields kept) and `overrides` (relative path -> file content, executable) written over it.
 * This is how the tests get versions A, B and a broken C from one build of the app.
 */
export function packArtifact(srcDir: string, id: string, outDir: string, overrides: Record<string, string> = {}): string {
  const stage = path.join(outDir, `stage-${id}`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  // cp -a keeps modes (bin/*) and symlinks, and is far faster than a JS copy.
  execFileSync("cp", ["-a", `${srcDir}/.`, stage]);
  const manifestPath = path.join(stage, "manifest.json");
  const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  fs.writeFileSync(manifestPath, JSON.stringify({ ...manifest, id }, null, 2) + "\n");
  for (const [rel, content] of Object.entries(overrides)) {
    fs.rmSync(path.join(stage, rel), { force: true });
    fs.writeFileSync(path.join(stage, rel), content, { mode: 0o755 });
  }
  const out = path.join(outDir, `saas-app-${id}.tar.gz`);
  execFileSync("tar", ["-czf", out, "-C", stage, "."]);
  fs.rmSync(stage, { recursive: true, force: true });
  return out;
}

/**
 * Builds the real app (app/, `npm run build`, whose last stdout line is the tarball path) and
 * unpacks it into `dir`, ready for packArtifact. Throws with the build output if it fails.
 * One build per app source tree on this machine: test files running in parallel take a lock
 * (the build writes app/dist) and the later ones unpack the tarball the first one made.
 */
export function buildRealApp(dir: string): string {
  const cache = path.join(os.tmpdir(), "saas-vps-app-build");
  fs.mkdirSync(cache, { recursive: true });
  const tarball = path.join(cache, `saas-app-${hashSourceTree(path.join(REPO, "app"))}.tar.gz`);
  const script = 'test -s "$1" && exit 0; out=$(npm run --silent build) || { printf "%s\\n" "$out"; exit 1; }; ' +
    'built=$(printf "%s\\n" "$out" | tail -n 1); test -s "$built" || { printf "%s\\n" "$out"; exit 1; }; cp "$built" "$1.tmp" && mv "$1.tmp" "$1"';
  try {
    execFileSync("flock", [path.join(cache, "build.lock"), "sh", "-c", script, "sh", tarball], { cwd: path.join(REPO, "app"), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`app build failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
  fs.mkdirSync(dir, { recursive: true });
  execFileSync("tar", ["-xzf", tarball, "-C", dir]);
  return dir;
}

/** A release id that is a valid 16-hex id and easy to tell apart in logs. */
export function fakeId(letter: "a" | "b" | "c" | "d" | "e" | "f"): string {
  return letter.repeat(4) + crypto.randomBytes(6).toString("hex");
}

/**
 * Overrides for packArtifact that make bin/web start, listen and answer /health 503 as
 * release <id>: up, but never healthy. The server is a .cjs file so it runs whatever the
 * app's package.json "type" says.
 */
export function unhealthyWeb(id: string): Record<string, string> {
  return {
    "bin/web": '#!/bin/sh\nexec node "$(dirname "$(readlink -f "$0")")/unhealthy-web.cjs"\n',
    "bin/unhealthy-web.cjs": `// Broken release for tests: the process runs and listens but /health always says 503.
require("node:http").createServer((req, res) => {
  res.setHeader("X-App-Release", ${JSON.stringify(id)});
  res.statusCode = 503;
  res.end('{"status":"unavailable"}');
}).listen(Number(process.env.PORT), process.env.HOST || "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`,
  };
}

// ---------------------------------------------------------------- load

export interface Sample {
  t: number;
  status: number;
  release: string;
}

export interface LoadResult {
  samples: Sample[];
  /** Requests that got no HTTP response at all (connection errors, resets). */
  errors: number;
  /** Error code or message -> count. */
  errorKinds: Record<string, number>;
  timeouts: number;
  non2xx: number;
  total: number;
  startedAt: number;
  stoppedAt: number;
}

export interface Load {
  stop(): Promise<LoadResult>;
}

export interface LoadOptions {
  connections?: number;
  /** Default GET. A POST is what nginx will not retry on another instance once it was sent. */
  method?: "GET" | "POST";
  body?: string;
}

/** autocannon against `url` until stop(); records status and X-App-Release of every response. */
export function startLoad(url: string, connections = 8, opts: LoadOptions = {}): Load {
  const samples: Sample[] = [];
  let errors = 0;
  const startedAt = Date.now();
  let resolveDone: (r: autocannon.Result) => void = () => {};
  let rejectDone: (e: unknown) => void = () => {};
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const instance = autocannon({
    url,
    connections,
    duration: 3600,
    timeout: 10,
    requests: [
      {
        method: opts.method ?? "GET",
        ...(opts.body === undefined ? {} : { body: opts.body, headers: { "content-type": "application/json" } }),
        onResponse: (status: number, _body: string, _ctx: unknown, headers: Record<string, string | string[]>) => {
          const key = Object.keys(headers ?? {}).find((k) => k.toLowerCase() === "x-app-release");
          const release = key ? String(headers[key]) : "";
          samples.push({ t: Date.now(), status, release });
        },
      } as autocannon.Request,
    ],
  }, (err, result) => (err ? rejectDone(err) : resolveDone(result)));
  const errorKinds: Record<string, number> = {};
  instance.on("reqError", (err: Error & { code?: string }) => {
    errors++;
    const kind = err.code ?? err.message;
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  });
  return {
    async stop() {
      const stoppedAt = Date.now();
      instance.stop();
      const result = await done;
      return {
        samples,
        errors: Math.max(errors, result.errors),
        errorKinds,
        timeouts: result.timeouts,
        non2xx: samples.filter((s) => s.status < 200 || s.status > 299).length,
        total: samples.length,
        startedAt,
        stoppedAt,
      };
    },
  };
}

/** Counts of responses per X-App-Release value. */
export function byRelease(samples: Sample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) out[s.release] = (out[s.release] ?? 0) + 1;
  return out;
}

export async function fetchRelease(url: string): Promise<{ status: number; release: string | null }> {
  const res = await fetch(url, { headers: { connection: "close" } });
  await res.arrayBuffer();
  return { status: res.status, release: res.headers.get("x-app-release") };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
