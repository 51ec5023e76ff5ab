/**
 * The app release on the VM, the way `pulumi up` ships it (components/appRelease.ts): build the
 * app here, upload the artifact, run the exact server command the AppRelease resource runs.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { artifactPathFrom, renderReleaseCommand } from "../../components/appRelease";
import { DEFAULTS } from "../../config/config";
import { projectConfigOf } from "../../config/keysFromPulumi";
import { readStackFile } from "../lib/renderStack";
import { PROJECT_DIR, stackFilePath } from "../lib/stacks";
import { stderrLog, type VmLogger } from "./log";
import { scpToVm, ssh } from "./ssh";
import { type Vm, elapsed } from "./vm";

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
  const log = opts.log ?? stderrLog;
  let appDir = path.join(PROJECT_DIR, DEFAULTS.appDir);
  let buildCommand = DEFAULTS.appBuildCommand;
  if (opts.stack && fs.existsSync(stackFilePath(opts.stack))) {
    const cfg = projectConfigOf(readStackFile(stackFilePath(opts.stack)).config);
    if (cfg.appDir) appDir = path.resolve(PROJECT_DIR, cfg.appDir);
    if (cfg.appBuildCommand) buildCommand = cfg.appBuildCommand;
  }
  log(`[vm] building the app: (cd ${path.relative(PROJECT_DIR, appDir) || "."} && ${buildCommand})`);
  const { code, stdout, stderr } = await runShell(buildCommand, appDir);
  if (code !== 0) throw new Error(`app build failed (exit ${code}):\n${stderr.trim().split("\n").slice(-20).join("\n")}`);
  return artifactPathFrom(stdout, appDir);
}

/**
 * Build the app, copy the tarball to /tmp on the VM and run the exact server command Pulumi's
 * AppRelease runs (renderReleaseCommand: install into /srv/app/artifacts, `sudo release`).
 */
export async function shipRelease(vm: Vm, opts: { stack?: string; log?: VmLogger; artifact?: string } = {}): Promise<ShippedRelease> {
  const log = opts.log ?? stderrLog;
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
