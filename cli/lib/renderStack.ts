/**
 * Evaluates the real program for a stack file under Pulumi mocks (no CLI, no cloud) and
 * returns, per server, the exact user-data handed to the provider and the files it installs.
 * Secret values in the stack file are replaced by clearly fake placeholders.
 */
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { createProgram } from "../../program/program";
import { BUNDLE_PATH, readBundle } from "../../provisioning/cloudInit";
import type { MachineKind } from "../../provisioning/server";
import { PROJECT } from "../../config/config";
import { RecordingMocks, unwrapSecrets, valueOf } from "./pulumiMocks";

export interface StackFile {
  /** Fully qualified keys (saas-vps:provider, hcloud:token, ...) to the strings Pulumi would hand the program. */
  config: Record<string, string>;
  /** Keys whose values are secrets (`secure:` in the file). */
  secretKeys: string[];
}

export interface RenderedServerOutput {
  name: string;
  userData: string;
  /** Files the user-data writes, decoded: absolute path → content. */
  files: Map<string, string>;
}

export interface StackRender {
  stack: string;
  servers: RenderedServerOutput[];
  mocks: RecordingMocks;
  outputs: ReturnType<typeof createProgram>;
}

/** A placeholder that passes the key's own validation and is obviously not a real secret. */
export function placeholderFor(key: string): string {
  if (/smtpUrl$/.test(key)) return "smtps://placeholder:fake-secret@smtp.placeholder.invalid:465";
  if (/(Url|Dsn)$/.test(key)) return `https://placeholder.invalid/fake-secret-${key.replace(/^.*:/, "")}`;
  if (/PrivateKey$/.test(key)) return "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-PLACEHOLDER\n-----END OPENSSH PRIVATE KEY-----";
  return `FAKE-SECRET-${key.replace(/[^A-Za-z0-9]+/g, "-")}`;
}

/** Reads Pulumi.<stack>.yaml the way the CLI hands it to the program: objects and lists as JSON text. */
export function readStackFile(path: string): StackFile {
  const doc = parse(readFileSync(path, "utf8")) ?? {};
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  for (const [key, value] of Object.entries<unknown>(doc.config ?? {})) {
    if (value && typeof value === "object" && !Array.isArray(value) && "secure" in value) {
      config[key] = placeholderFor(key);
      secretKeys.push(key);
    } else {
      config[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
  }
  return { config, secretKeys };
}

/**
 * Applies `saas-vps:<key>=<value>` overrides (e.g. the local VM's extra SSH key); `secretOverrides`
 * are held as secrets, as `pulumi config set --secret` would.
 */
export function withOverrides(file: StackFile, overrides: Record<string, string>, secretOverrides: Record<string, string> = {}): StackFile {
  const qualify = (key: string) => (key.includes(":") ? key : `${PROJECT}:${key}`);
  const config = { ...file.config };
  const secretKeys = new Set(file.secretKeys);
  for (const [key, value] of Object.entries(overrides)) {
    config[qualify(key)] = value;
    secretKeys.delete(qualify(key));
  }
  for (const [key, value] of Object.entries(secretOverrides)) {
    config[qualify(key)] = value;
    secretKeys.add(qualify(key));
  }
  return { config, secretKeys: [...secretKeys] };
}

/** `machineKind` qemu renders for the local VM (npm run vm); default: the stack's provider. */
export async function renderStack(stack: string, file: StackFile, machineKind?: MachineKind): Promise<StackRender> {
  const mocks = new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, PROJECT, stack, false);
  pulumi.runtime.setAllConfig(file.config, file.secretKeys);
  const outputs = createProgram(stack, undefined, machineKind);
  // The server resources are registered once their outputs resolve.
  await Promise.all([valueOf(outputs.ipv6), valueOf(outputs.userDataBytes)]);
  // Let every registration (day-2 pushes included) finish before reading the record.
  await pulumi.runtime.disconnect();
  const prefix = `saas-${stack}-`;
  const servers = mocks.resources
    .filter((r) => r.type === "hcloud:index/server:Server" || r.type === "digitalocean:index/droplet:Droplet")
    .map((r) => {
      const userData: string = unwrapSecrets(r.inputs.userData);
      return { name: r.name.slice(prefix.length).replace(/-server$/, ""), userData, files: decodeWriteFiles(userData) };
    });
  return { stack, servers, mocks, outputs };
}

/** The files a user-data installs: its bundle's and its plain write_files entries (see provisioning/cloudInit.ts). */
export function decodeWriteFiles(userData: string): Map<string, string> {
  return new Map([...readUserDataBundle(userData)].map(([path, f]) => [path, f.content]));
}

interface WriteFileEntry { path: string; content: string; encoding?: string; permissions?: string; owner?: string }

/** Every file the user-data installs with content, mode and owner: the bundle's, then the plain entries. */
export function readUserDataBundle(userData: string): ReturnType<typeof readBundle> {
  const entries: WriteFileEntry[] = parse(userData).write_files ?? [];
  const bundle = entries.find((f) => f.path === BUNDLE_PATH);
  if (!bundle) throw new Error(`user-data has no ${BUNDLE_PATH} entry`);
  const files = readBundle(Buffer.from(bundle.content, "base64"));
  for (const f of entries) {
    if (f.path === BUNDLE_PATH) continue;
    if (f.encoding) throw new Error(`write_files entry ${f.path}: unexpected encoding ${f.encoding}`);
    files.set(f.path, { content: f.content, mode: f.permissions ?? "0644", owner: f.owner ?? "root:root" });
  }
  return files;
}
