/**
 * Evaluates the real program for a stack file under Pulumi mocks (no CLI, no cloud) and
 * returns, per server, the exact user-data handed to the provider, the day-2 pushes `pulumi up`
 * runs on it right after creating it, and every file it ends up with (the user-data's and the
 * pushed ones). Secret values in the stack file are replaced by clearly fake placeholders.
 */
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { createProgram } from "../../program/program";
import { BUNDLE_PATH, readBundle } from "../../provisioning/cloudInit";
import type { MachineKind } from "../../provisioning/server";
import { PROJECT } from "../../config/config";
import { qualifyKey } from "../../config/keysFromPulumi";
import { isWrappedSecret, RecordingMocks, type RecordedResource, unwrapSecrets, valueOf } from "./pulumiMocks";

export interface StackFile {
  /** Fully qualified keys (saas-vps:provider, hcloud:token, ...) to the strings Pulumi would hand the program. */
  config: Record<string, string>;
  /** Keys whose values are secrets (`secure:` in the file). */
  secretKeys: string[];
}

/** One day-2 push as the program declares it (components/filePush.ts): what `pulumi up` runs over SSH. */
export interface RecordedPush {
  /** The command:remote:Command resource's name. */
  resourceName: string;
  /** The file it writes (read back from the command). */
  path: string;
  /** The mode it installs the file with, e.g. "0755" (read back from the command). */
  mode: string;
  /** `create`: the exact shell command run as the admin user. */
  command: string;
  /** `stdin`: the file's content. */
  stdin: string;
  /** Whether the program holds the content as a secret. */
  secret: boolean;
}

export interface RenderedServerOutput {
  name: string;
  userData: string;
  /** Every file the server gets: the user-data's, then the pushed ones (absolute path → content). */
  files: Map<string, string>;
  /** Paths that arrive only by a day-2 push, not in the user-data. */
  pushOnly: string[];
  /** The server's day-2 pushes, in the order the program registers them. */
  pushes: RecordedPush[];
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
  if (/stripeSecretKey$/.test(key)) return "sk_test_FAKEplaceholder";
  if (/stripeWebhookSecret$/.test(key)) return "whsec_FAKEplaceholder";
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
  const config = { ...file.config };
  const secretKeys = new Set(file.secretKeys);
  for (const [key, value] of Object.entries(overrides)) {
    config[qualifyKey(key)] = value;
    secretKeys.delete(qualifyKey(key));
  }
  for (const [key, value] of Object.entries(secretOverrides)) {
    config[qualifyKey(key)] = value;
    secretKeys.add(qualifyKey(key));
  }
  return { config, secretKeys: [...secretKeys] };
}

/** `machineKind` qemu renders for the local VM (npm run vm); default: the stack's provider. */
export async function renderStack(stack: string, file: StackFile, machineKind?: MachineKind): Promise<StackRender> {
  const mocks = new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, PROJECT, stack, false);
  pulumi.runtime.setAllConfig(file.config, file.secretKeys);
  // The mocks see resources when their inputs resolve; the order `pulumi up` starts them in is
  // the order the program registers them, which a transformation sees.
  const registered: string[] = [];
  const recordOrder: pulumi.ResourceTransformation = (args) => {
    registered.push(args.name);
    return undefined;
  };
  const outputs = createProgram(stack, { transformations: [recordOrder] }, machineKind);
  // The server resources are registered once their outputs resolve.
  await Promise.all([valueOf(outputs.ipv6), valueOf(outputs.userDataBytes)]);
  // Let every registration (day-2 pushes included) finish before reading the record.
  await pulumi.runtime.disconnect();
  const prefix = `saas-${stack}-`;
  const names = mocks.resources
    .filter((r) => r.type === "hcloud:index/server:Server" || r.type === "digitalocean:index/droplet:Droplet")
    .map((r) => ({ name: r.name.slice(prefix.length).replace(/-server$/, ""), userData: unwrapSecrets(r.inputs.userData) as string }));
  const pushes = pushesByServer(mocks.ofType(PUSH_TYPE), names.map((n) => `${prefix}${n.name}`), registered);
  const servers = names.map(({ name, userData }) => {
    const own = pushes.get(`${prefix}${name}`) ?? [];
    return { name, userData, ...serverFiles(decodeWriteFiles(userData), own), pushes: own };
  });
  return { stack, servers, mocks, outputs };
}

const PUSH_TYPE = "command:remote:Command";

/**
 * Every file a server ends up with: what its user-data writes at first boot, then what the
 * pushes write (a push lands after first boot, so its content is what stays).
 */
export function serverFiles(fromUserData: Map<string, string>, pushes: RecordedPush[]): { files: Map<string, string>; pushOnly: string[] } {
  const files = new Map(fromUserData);
  for (const push of pushes) files.set(push.path, push.stdin);
  return { files, pushOnly: pushes.map((p) => p.path).filter((p) => !fromUserData.has(p)) };
}

/**
 * The day-2 pushes (components/vpsServer.ts names them `<server>-push-<path>`) per server
 * resource name, in registration order. Other remote commands (the app release) are not pushes.
 */
export function pushesByServer(commands: RecordedResource[], serverNames: string[], registered: string[]): Map<string, RecordedPush[]> {
  const byServer = new Map<string, RecordedPush[]>(serverNames.map((n) => [n, []]));
  const order = (name: string) => {
    const at = registered.indexOf(name);
    if (at < 0) throw new Error(`resource ${name} reached the mocks but was never registered`);
    return at;
  };
  for (const c of [...commands].sort((a, b) => order(a.name) - order(b.name))) {
    // The longest server name that prefixes it: server "app" must not claim "app-db"'s pushes.
    const owner = serverNames.filter((n) => c.name.startsWith(`${n}-push-`)).sort((a, b) => b.length - a.length)[0];
    if (!owner) continue;
    const command: string = unwrapSecrets(c.inputs.create);
    byServer.get(owner)!.push({
      resourceName: c.name,
      ...pushedFileOf(command),
      command,
      stdin: unwrapSecrets(c.inputs.stdin),
      secret: isWrappedSecret(c.inputs.stdin),
    });
  }
  return byServer;
}

/**
 * The destination a push command writes and the mode it installs (provisioning/push.ts:
 * `sudo sh -c '<script>'` whose script sets `dest='<path>'` and `want='<mode> <owner>'`).
 * Throws when the command is not in that form.
 */
export function pushedFileOf(command: string): { path: string; mode: string } {
  // The quoted script spans several lines: it is everything after `sudo sh -c `, to the end.
  const at = command.search(/(^|\n)sudo sh -c '/);
  const script = at < 0 ? undefined : unquoteShell(command.slice(command.indexOf("sudo sh -c ", at) + "sudo sh -c ".length));
  const valueOf = (name: string) => {
    const line = script?.split("\n").find((l) => l.startsWith(`${name}=`));
    return line === undefined ? undefined : unquoteShell(line.slice(name.length + 1));
  };
  const path = valueOf("dest");
  const mode = valueOf("want")?.split(" ")[0];
  if (path === undefined || !path.startsWith("/") || mode === undefined || !/^0[0-7]{3}$/.test(mode)) {
    throw new Error(`not a day-2 push command (no sudo sh -c '... dest=/path ... want=<mode> <owner> ...'): ${command.slice(0, 200)}`);
  }
  return { path, mode };
}

/** The destination a push command writes; see pushedFileOf. */
export function pushedPathOf(command: string): string {
  return pushedFileOf(command).path;
}

/** The value of one POSIX sh word made of '...' runs and \' (what shellQuote writes); undefined otherwise. */
function unquoteShell(word: string): string | undefined {
  let out = "";
  let rest = word;
  while (rest.length > 0) {
    const m = /^'([^']*)'|^\\'/.exec(rest);
    if (!m) return undefined;
    out += m[1] ?? "'";
    rest = rest.slice(m[0].length);
  }
  return out;
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
