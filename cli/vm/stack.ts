/**
 * A stack on the local VM: render its exact user-data for machine kind `qemu` (what
 * `npm run render -- --stack <name> --machine qemu` writes), ship the app release the way
 * Pulumi does (components/appRelease.ts), and probe the site through nginx.
 *
 * The VM's stack config differs from the cloud's only where it must:
 *  - `sshPublicKeys`: the run dir's key is ADDED to the stack's keys (to log in);
 *  - machine kind `qemu`: the data volume is /dev/disk/by-id/virtio-saas-data;
 *  - optionally the backup bucket (`backupBucketProvider=s3` + endpoint/name/keys) pointing
 *    at a local s3rver, because the cloud bucket's provider API is not there.
 * Secret keys given as overrides (backupSecretAccessKey) are marked secret, which is what
 * `pulumi config set --secret` does; `npm run render --set` cannot do that (it would reject
 * the key as a plaintext credential), hence the programmatic render here.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { artifactPathFrom, renderReleaseCommand } from "../../components/appRelease";
import { DEFAULTS, PROJECT, SECRET_KEYS, parseStackConfig } from "../../config/config";
import { readStackFile, renderStack, withOverrides } from "../lib/renderStack";
import { REPO_ROOT, Vm, VmLogger, elapsed, scpToVm, sleep, ssh } from "./qemu";

export interface VmBucketOverride {
  endpoint: string;
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface VmRender {
  stack: string;
  /** Server name in the stack (stage mvp: "app"). */
  server: string;
  /** <outDir>/<server>/user-data.yaml: the exact bytes the VM boots with. */
  userDataFile: string;
  userData: string;
  /** Files the user-data installs: absolute path → content. */
  files: Map<string, string>;
  /** The overrides applied to the stack file (fully qualified keys). */
  overrides: Record<string, string>;
  secretOverrides: string[];
  /** Memory of the stack's serverType: the render (PostgreSQL settings) is tuned for it. */
  serverMemoryMiB: number;
}

/** Memory of the stack's server type, from its config (the parser applies the defaults). */
function serverMemoryOf(config: Record<string, string>): number {
  const prefix = `${PROJECT}:`;
  const raw = Object.fromEntries(Object.entries(config).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  return parseStackConfig(raw).serverMemoryMiB;
}

export function stackFilePath(stack: string): string {
  return path.join(REPO_ROOT, `Pulumi.${stack}.yaml`);
}

export function listStacks(): string[] {
  return fs.readdirSync(REPO_ROOT).map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1]).filter((s): s is string => Boolean(s)).sort();
}

/** The overrides a stack needs on the local VM (see the module comment). */
export function vmOverrides(stackConfig: Record<string, string>, publicKey: string, bucket?: VmBucketOverride): Record<string, string> {
  const keysKey = `${PROJECT}:sshPublicKeys`;
  let keys: string[] = [];
  try {
    const parsed = JSON.parse(stackConfig[keysKey] ?? "[]");
    if (Array.isArray(parsed)) keys = parsed.map(String);
  } catch { /* the stack's parser reports a malformed list */ }
  const overrides: Record<string, string> = {
    [keysKey]: JSON.stringify(keys.includes(publicKey) ? keys : [...keys, publicKey]),
  };
  if (bucket) {
    Object.assign(overrides, {
      [`${PROJECT}:backupBucketProvider`]: "s3",
      [`${PROJECT}:backupBucketEndpoint`]: bucket.endpoint,
      [`${PROJECT}:backupBucketName`]: bucket.name,
      [`${PROJECT}:backupAccessKeyId`]: bucket.accessKeyId,
      [`${PROJECT}:backupSecretAccessKey`]: bucket.secretAccessKey,
    });
  }
  return overrides;
}

/** Render the stack for the local VM and write <outDir>/<server>/user-data.yaml + files/. */
export async function renderStackForVm(opts: {
  stack: string;
  publicKey: string;
  bucket?: VmBucketOverride;
  outDir: string;
}): Promise<VmRender> {
  const file = stackFilePath(opts.stack);
  if (!fs.existsSync(file)) {
    throw new Error(`no stack file Pulumi.${opts.stack}.yaml; stacks here: ${listStacks().join(", ") || "none"}`);
  }
  const stackFile = readStackFile(file);
  const overrides = vmOverrides(stackFile.config, opts.publicKey, opts.bucket);
  const withVm = withOverrides(stackFile, overrides);
  // Overridden credentials are secrets, as `pulumi config set --secret` would make them.
  const secretOverrides = Object.keys(overrides).filter((k) => SECRET_KEYS.has(k.replace(/^.*:/, "")));
  withVm.secretKeys = [...new Set([...withVm.secretKeys, ...secretOverrides])];
  const result = await renderStack(opts.stack, withVm, "qemu");
  if (result.servers.length !== 1) {
    throw new Error(`stack ${opts.stack} renders ${result.servers.length} servers (${result.servers.map((s) => s.name).join(", ")}); ` +
      "the local VM runner boots one (stage mvp)");
  }
  const server = result.servers[0];
  const dir = path.join(path.resolve(opts.outDir), server.name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "files"), { recursive: true, mode: 0o700 });
  const userDataFile = path.join(dir, "user-data.yaml");
  fs.writeFileSync(userDataFile, server.userData, { mode: 0o600 });
  for (const [p, content] of server.files) {
    const target = path.join(dir, "files", p);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, content, { mode: 0o600 });
  }
  return {
    stack: opts.stack, server: server.name, userDataFile, userData: server.userData, files: server.files,
    overrides, secretOverrides, serverMemoryMiB: serverMemoryOf(withVm.config),
  };
}

// ---------------------------------------------------------------------------------------------
// App release

export interface ShippedRelease {
  artifact: string;
  /** Release id from the artifact name (saas-app-<id>.tar.gz). */
  id: string;
  buildSeconds: number;
  /** Seconds for upload + `release` on the server. */
  releaseSeconds: number;
  /** Output of the server's release command. */
  output: string;
}

/** `npm run --silent build` (or the stack's appBuildCommand) in the app dir; returns the tarball path. */
export async function buildApp(opts: { stack?: string; log?: VmLogger } = {}): Promise<string> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  let appDir = path.join(REPO_ROOT, DEFAULTS.appDir);
  let buildCommand = DEFAULTS.appBuildCommand;
  if (opts.stack && fs.existsSync(stackFilePath(opts.stack))) {
    const cfg = readStackFile(stackFilePath(opts.stack)).config;
    if (cfg[`${PROJECT}:appDir`]) appDir = path.resolve(REPO_ROOT, cfg[`${PROJECT}:appDir`]);
    if (cfg[`${PROJECT}:appBuildCommand`]) buildCommand = cfg[`${PROJECT}:appBuildCommand`];
  }
  log(`[vm] building the app: (cd ${path.relative(REPO_ROOT, appDir) || "."} && ${buildCommand})`);
  const { code, stdout, stderr } = await runShell(buildCommand, appDir);
  if (code !== 0) throw new Error(`app build failed (exit ${code}):\n${stderr.trim().split("\n").slice(-20).join("\n")}`);
  return artifactPathFrom(stdout, appDir);
}

/**
 * Build the app, copy the tarball to /tmp on the VM and run the exact server command Pulumi's
 * AppRelease runs (renderReleaseCommand: install into /srv/app/artifacts, `sudo release`).
 */
export async function shipRelease(vm: Vm, opts: { stack?: string; log?: VmLogger; artifact?: string } = {}): Promise<ShippedRelease> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const t0 = Date.now();
  const artifact = opts.artifact ?? await buildApp({ stack: opts.stack, log });
  const buildSeconds = (Date.now() - t0) / 1000;
  const name = path.basename(artifact);
  const id = /^saas-app-(.+)\.tar\.gz$/.exec(name)?.[1] ?? name;
  const upload = `/tmp/${name}`;
  log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] uploading ${name} (${(fs.statSync(artifact).size / 1048576).toFixed(1)} MiB) and running release`);
  const t1 = Date.now();
  await scpToVm(vm, artifact, upload);
  log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] uploaded in ${((Date.now() - t1) / 1000).toFixed(1)} s; running release`);
  const r = await ssh(vm, renderReleaseCommand(upload, name), { timeoutMs: 15 * 60 * 1000 });
  const output = `${r.stdout}${r.stderr}`;
  if (r.code !== 0) {
    throw new Error(`release ${id} failed on the VM (exit ${r.code}):\n${output.trim().split("\n").slice(-30).join("\n")}`);
  }
  const releaseSeconds = (Date.now() - t1) / 1000;
  log(`[vm ${elapsed(vm).toFixed(1).padStart(6)} s] release ${id} done (build ${buildSeconds.toFixed(0)} s, upload + release ${releaseSeconds.toFixed(0)} s); its timeline:`);
  for (const line of output.split("\n").filter((l) => /^release \[\+/.test(l))) log(`    ${line}`);
  return { artifact, id, buildSeconds, releaseSeconds, output };
}

// ---------------------------------------------------------------------------------------------
// HTTP through the forwarded nginx port

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });

export function httpRequest(port: number, opts: {
  method?: string; path?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number; agent?: http.Agent | false;
} = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = http.request({
      host: "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path ?? "/",
      agent: opts.agent === undefined ? keepAlive : opts.agent,
      timeout: opts.timeoutMs ?? 10000,
      headers: { ...(payload ? { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) } : {}), ...opts.headers },
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 10000} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Whether a response is the app's health answer: 200 {"status":"ok"} (not nginx's default page). */
export function isHealthy(r: HttpResult): boolean {
  if (r.status !== 200) return false;
  try {
    return JSON.parse(r.body)?.status === "ok";
  } catch {
    return false;
  }
}

/** Poll GET /health through nginx until healthy; resolves with seconds since VM start and the release header. */
export async function waitForHealth(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<{ seconds: number; release: string }> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const deadline = Date.now() + (opts.timeoutMs ?? 120000);
  let last = "";
  for (;;) {
    try {
      const r = await httpRequest(vm.ports.http, { path: "/health", timeoutMs: 5000, agent: false });
      if (isHealthy(r)) {
        const s = elapsed(vm);
        log(`[vm ${s.toFixed(1).padStart(6)} s] GET /health through nginx: 200 ${r.body.trim()} (X-App-Release ${r.headers["x-app-release"]})`);
        return { seconds: s, release: String(r.headers["x-app-release"] ?? "") };
      }
      last = `${r.status} ${r.body.slice(0, 80).replace(/\s+/g, " ")}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`GET /health through nginx (127.0.0.1:${vm.ports.http}) not healthy after ${elapsed(vm)} s; last: ${last}`);
    await sleep(500);
  }
}

function runShell(command: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
