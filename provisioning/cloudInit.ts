/**
 * Assembles the first-boot user-data (#cloud-config) from rendered files. Built as an object
 * and dumped by the `yaml` library, never concatenated by hand.
 * Format: https://cloudinit.readthedocs.io/en/latest/reference/modules.html
 */
import { gzipSync } from "node:zlib";
import { stringify } from "yaml";
import { ADMIN_USER, APP_USER, LIB_DIR } from "./layout";
import type { RenderedFile } from "./files";

/** Hetzner's user-data cap; DigitalOcean allows 64 KiB. We stay under the smaller one everywhere. */
export const USER_DATA_LIMIT_BYTES = 32 * 1024;
/** Files larger than this are shipped gzip+base64 (cloud-init `encoding: gz+b64`) to save user-data room. */
export const COMPRESS_ABOVE_BYTES = 1024;

export interface CloudConfigInput {
  hostname: string;
  sshPublicKeys: string[];
  packages: string[];
  files: RenderedFile[];
  /** Commands run once, at the end of first boot, after packages and files. */
  runcmd: string[][];
}

export function renderCloudConfig(input: CloudConfigInput): string {
  const config = {
    hostname: input.hostname,
    manage_etc_hosts: true,
    // The locale module fails (status "error") when the image lacks the configured locale.
    locale: "C.UTF-8",
    timezone: "UTC",
    disable_root: true,
    ssh_pwauth: false,
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
    write_files: input.files.map(toWriteFile),
    runcmd: input.runcmd,
  };
  return "#cloud-config\n" + stringify(config, { lineWidth: 0 });
}

function toWriteFile(file: RenderedFile): Record<string, unknown> {
  const compress = Buffer.byteLength(file.content) > COMPRESS_ABOVE_BYTES;
  return {
    path: file.path,
    permissions: file.mode,
    owner: file.owner ?? "root:root",
    ...(compress
      ? { encoding: "gz+b64", content: gzipSync(file.content, { level: 9 }).toString("base64") }
      : { content: file.content }),
    ...(file.defer ? { defer: true } : {}),
  };
}

export const BOOTSTRAP_PATH = `${LIB_DIR}/bootstrap`;

export function userDataSize(userData: string): number {
  return Buffer.byteLength(userData, "utf8");
}
