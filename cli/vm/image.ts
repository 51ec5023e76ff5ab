/**
 * The VM's disk image: a Debian 13 root filesystem with the server's packages pre-installed,
 * built once per package list by cli/vm/build-image.sh (mmdebstrap, needs root) and cached.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { stderrLog, type VmLogger } from "./log";

/**
 * Packages pre-installed in the image when the user-data has no `packages:` list (a stack's
 * user-data always has one): what the rendered servers use, and jq, which their scripts read
 * JSON with.
 */
export const DEFAULT_PACKAGES = [
  "nginx", "postgresql", "nodejs", "restic", "unattended-upgrades", "certbot", "fail2ban", "curl", "jq",
  "ca-certificates",
];

export const BUILD_IMAGE_SCRIPT = path.join(__dirname, "build-image.sh");

export interface ImageInfo {
  dir: string;
  /** ext4 root filesystem as qcow2 (no partition table: root=/dev/vda). */
  disk: string;
  kernel: string;
  initrd: string;
  key: string;
  packages: string[];
  /** Seconds the build took (from build.json; the cached build's figure on a cache hit). */
  buildSeconds?: number;
  diskBytes?: number;
  /** True when this call built the image, false on a cache hit. */
  built: boolean;
}

/**
 * The `packages:` list of a cloud-config document, in apt syntax (`[name, version]` entries
 * become `name=version`). Returns undefined when the document has no `packages:` key.
 */
export function packagesFromUserData(userData: string): string[] | undefined {
  const doc = parseYaml(userData) as Record<string, unknown> | null;
  if (!doc || typeof doc !== "object" || !("packages" in doc)) return undefined;
  const list = doc.packages;
  if (!Array.isArray(list)) throw new Error("user-data: `packages` is not a list");
  return list.map((entry) => {
    if (typeof entry === "string") return entry;
    if (Array.isArray(entry) && entry.length === 2) return `${entry[0]}=${entry[1]}`;
    throw new Error(`user-data: unsupported packages entry ${JSON.stringify(entry)}`);
  });
}

/**
 * Build the image for this package list, or reuse the cached one (key = hash of the list and
 * of build-image.sh). Needs root. Progress lines go to `log`.
 */
export async function ensureImage(opts: {
  packages?: string[];
  rebuild?: boolean;
  log?: VmLogger;
} = {}): Promise<ImageInfo> {
  const log = opts.log ?? stderrLog;
  const packages = opts.packages ?? DEFAULT_PACKAGES;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-pkgs-"));
  const listFile = path.join(tmp, "packages.txt");
  fs.writeFileSync(listFile, packages.join("\n") + "\n");
  const args = [BUILD_IMAGE_SCRIPT, "--packages", listFile];
  if (opts.rebuild) args.push("--rebuild");
  let built = false;
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      const child = spawn("bash", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      const tail: string[] = [];
      child.stdout.on("data", (d) => { out += d; });
      let buf = "";
      child.stderr.on("data", (d) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          tail.push(line);
          if (tail.length > 40) tail.shift();
          if (line.includes("building image")) built = true;
          // mmdebstrap is chatty: show our own progress lines and a heartbeat of apt's.
          if (!line.startsWith("[mmdebstrap]") || /^\[mmdebstrap\] (I:|E:|W:)/.test(line)) log(line);
        }
      });
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve(out);
        else reject(new Error(`build-image.sh exited ${code}; last output:\n${tail.join("\n")}`));
      });
    });
    const m = /^IMAGE_DIR=(.+)$/m.exec(stdout);
    if (!m) throw new Error(`build-image.sh printed no IMAGE_DIR: ${stdout}`);
    return readImage(m[1].trim(), built);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function readImage(dir: string, built: boolean): ImageInfo {
  const info = JSON.parse(fs.readFileSync(path.join(dir, "build.json"), "utf8"));
  return {
    dir,
    disk: path.join(dir, "disk.qcow2"),
    kernel: path.join(dir, "vmlinuz"),
    initrd: path.join(dir, "initrd.img"),
    key: info.key,
    packages: fs.readFileSync(path.join(dir, "packages.txt"), "utf8").split("\n").filter(Boolean),
    buildSeconds: info.buildSeconds,
    diskBytes: info.diskBytes,
    built,
  };
}
