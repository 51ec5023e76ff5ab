/**
 * Assembles the first-boot user-data (#cloud-config). Built as an object and dumped by the
 * `yaml` library, never concatenated by hand.
 * Format: https://cloudinit.readthedocs.io/en/latest/reference/modules.html
 *
 * Why one bundle instead of a write_files entry per file: Hetzner caps user-data at 32 KiB.
 * Per-file gzip+base64 plus YAML framing of ~30 files (scripts for bootstrap, backups and
 * releases among them) measured 30-35 KiB; one gzipped tar of the same files, base64 once,
 * is ~25 % smaller and leaves room to grow. cloud-init writes the bundle (write_files,
 * 0600 root) and runcmd unpacks it with owners and modes, then runs bootstrap. The files
 * are byte for byte the ones the day-2 push installs; `npm run render` writes them out.
 *
 * Files marked pushOnly (the large release and backup commands, ~60 % of the bundle) are left
 * out: they arrive with the push right after first boot, and nothing on first boot runs them.
 */
import { gzipSync, gunzipSync } from "node:zlib";
import { createTar, parseTar } from "nanotar";
import { stringify } from "yaml";
import { ADMIN_USER, APP_USER, LIB_DIR } from "./layout";
import type { RenderedFile } from "./files";

/** Hetzner's user-data cap; DigitalOcean allows 64 KiB. We stay under the smaller one everywhere. */
export const USER_DATA_LIMIT_BYTES = 32 * 1024;
/** DigitalOcean's user-data cap (the policy pack checks each provider's own). */
export const DIGITALOCEAN_USER_DATA_LIMIT_BYTES = 64 * 1024;
/**
 * What a rendered user-data may use: half of Hetzner's cap, so the roles of the next stages
 * (and a server holding several of them) still fit without another round of trimming.
 */
export const USER_DATA_BUDGET_BYTES = USER_DATA_LIMIT_BYTES / 2;
/** Where cloud-init drops the files bundle before runcmd unpacks it. */
export const BUNDLE_PATH = "/var/lib/saas-vps/first-boot-files.tar.gz";
export const BOOTSTRAP_PATH = `${LIB_DIR}/bootstrap`;

/** The server's SSH host key (ED25519, OpenSSH formats), made and pinned by the Pulumi program. */
export interface HostKeyPair {
  privateKey: string;
  publicKey: string;
}

export interface CloudConfigInput {
  hostname: string;
  sshPublicKeys: string[];
  /** Installed as sshd's ED25519 host key before sshd first starts; day-2 SSH pins its public half. */
  hostKey?: HostKeyPair;
  packages: string[];
  /** Every file of the server; the pushOnly ones are left out of the user-data. */
  files: RenderedFile[];
}

export function renderCloudConfig(input: CloudConfigInput): string {
  const firstBoot = input.files.filter((f) => !f.pushOnly);
  const config = {
    hostname: input.hostname,
    manage_etc_hosts: true,
    // The locale module fails (status "error") when the image lacks the configured locale.
    locale: "C.UTF-8",
    timezone: "UTC",
    disable_root: true,
    ssh_pwauth: false,
    // A host key the program knows, so every day-2 connection can verify the server.
    ...(input.hostKey ? { ssh_keys: { ed25519_private: input.hostKey.privateKey, ed25519_public: input.hostKey.publicKey.trim() } } : {}),
    users: [
      {
        name: ADMIN_USER,
        groups: ["sudo"],
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
        ssh_authorized_keys: input.sshPublicKeys,
      },
      { name: APP_USER, system: true, no_create_home: true, homedir: "/srv/app", shell: "/usr/sbin/nologin" },
    ],
    package_update: true,
    packages: input.packages,
    // write_files runs in cloud-init's network stage, before the package step of the final stage.
    write_files: [
      ...firstBoot.filter((f) => f.beforePackages).map(plainWriteFile),
      { path: BUNDLE_PATH, encoding: "b64", permissions: "0600", owner: "root:root", content: renderBundle(firstBoot.filter((f) => !f.beforePackages)).toString("base64") },
    ],
    // runcmd runs after packages and users exist: owners resolve by name, package files get replaced.
    // The bundle holds every first-boot secret: once unpacked, bootstrap (and any re-run of it)
    // needs only the files, so it goes before bootstrap starts.
    runcmd: [["sh", "-c", `tar -xzpf ${BUNDLE_PATH} -C / && rm -f ${BUNDLE_PATH} && exec ${BOOTSTRAP_PATH}`]],
  };
  return "#cloud-config\n" + stringify(config, { lineWidth: 0 });
}

/**
 * cloud-init's defaults for a write_files entry (docs: write_files): spelled out only where a
 * file differs, since every byte of user-data counts.
 */
const WRITE_FILES_DEFAULTS = { permissions: "0644", owner: "root:root" } as const;

function plainWriteFile(file: RenderedFile): Record<string, string> {
  if (file.secret) throw new Error(`${file.path}: a secret file cannot be written before packages (it would sit in clear in user-data)`);
  const owner = file.owner ?? WRITE_FILES_DEFAULTS.owner;
  return {
    path: file.path,
    ...(file.mode === WRITE_FILES_DEFAULTS.permissions ? {} : { permissions: file.mode }),
    ...(owner === WRITE_FILES_DEFAULTS.owner ? {} : { owner }),
    content: file.content,
  };
}

/** A gzipped tar of the files with their modes and owners; deterministic (mtime 0, sorted). */
export function renderBundle(files: RenderedFile[]): Buffer {
  const entries = [...files]
    .sort((a, b) => a.path.localeCompare(b.path))
    .map((file) => {
      const [user, group] = (file.owner ?? "root:root").split(":");
      return {
        name: file.path.replace(/^\//, ""),
        data: Buffer.from(file.content, "utf8"),
        attrs: { mode: file.mode.replace(/^0(?=\d{3})/, ""), uid: 0, gid: 0, user, group, mtime: 0 },
      };
    });
  return gzipSync(createTar(entries), { level: 9 });
}

/** The files a bundle carries: absolute path → content and mode (for tests and `npm run render`). */
export function readBundle(bundle: Buffer): Map<string, { content: string; mode: string; owner: string }> {
  const files = new Map<string, { content: string; mode: string; owner: string }>();
  for (const item of parseTar(gunzipSync(bundle))) {
    if (item.type !== "file") continue;
    const mode = (item.attrs?.mode ?? "644").padStart(4, "0").slice(-4);
    files.set(`/${item.name}`, { content: item.text, mode, owner: `${item.attrs?.user}:${item.attrs?.group}` });
  }
  return files;
}

export function userDataSize(userData: string): number {
  return Buffer.byteLength(userData, "utf8");
}
