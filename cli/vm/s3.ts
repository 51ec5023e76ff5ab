/**
 * A local S3-compatible bucket for the VM's backups: s3rver on the host, over TLS, reachable
 * from the guest as https://10.0.2.2:<port> (QEMU user networking maps 10.0.2.2 to the host's
 * loopback) and from the host as https://127.0.0.1:<port>.
 *
 * Why TLS: over plain HTTP restic (minio-go) signs uploads with aws-chunked streaming
 * signatures, which s3rver stores verbatim (chunk headers inside the objects), and the
 * repository is unreadable (found by the backup tests, test/backup/helpers.ts). Over HTTPS
 * minio-go sends plain bodies. The certificate is self-signed, so the guest must trust it:
 * `trustBucketCaInGuest` installs it into the guest's CA store. That is LOCAL-VM-ONLY setup
 * (a real bucket has a publicly trusted certificate); it is not part of the stack's user-data.
 *
 * Two ways to run it: in process (`startS3Bucket`, the e2e test and the benchmark) or as a
 * detached background process that outlives `npm run vm` (`spawnS3Bucket`, stopped by
 * `npm run vm -- stop`): `tsx cli/vm/s3.ts serve --dir DIR --port N --bucket NAME`.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import * as path from "node:path";
import { PROJECT_DIR } from "../lib/stacks";
import { sleep } from "./process";
import { ssh } from "./ssh";
import type { Vm } from "./vm";
import { GUEST_HOST_ADDRESS } from "./stack";

/** s3rver accepts any key pair; these are what the stack is rendered with. */
export const LOCAL_S3_ACCESS_KEY_ID = "S3RVER";
export const LOCAL_S3_SECRET_ACCESS_KEY = "S3RVER";
/**
 * A second key pair, for the uploads bucket: the stack refuses the backup bucket's key there (the
 * app holds it). s3rver knows one account; the pair is added to it (see startS3Bucket).
 */
export const LOCAL_S3_UPLOADS_ACCESS_KEY_ID = "S3RVERUPLOADS";
export const LOCAL_S3_UPLOADS_SECRET_ACCESS_KEY = "S3RVERUPLOADSSECRET";

/** The uploads bucket beside the backup one, on the same server. */
export interface LocalUploadsBucket {
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
  objects(prefix?: string): { key: string; file: string; size: number }[];
}

export interface LocalBucket {
  name: string;
  port: number;
  /** Endpoint as the guest reaches it (what goes into the stack's backupBucketEndpoint). */
  guestEndpoint: string;
  /** Endpoint as the host reaches it (for restic on the host). */
  hostEndpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Directory holding cert.pem, key.pem and data/ (s3rver's store). */
  dir: string;
  /** Self-signed certificate (SAN IP:10.0.2.2, IP:127.0.0.1). */
  certFile: string;
  /** Every stored object of the bucket: key, file on disk, size. */
  objects(prefix?: string): { key: string; file: string; size: number }[];
  /** The uploads bucket, when one was asked for. */
  uploads?: LocalUploadsBucket;
  close(): Promise<void>;
}

/** Self-signed certificate for the endpoint's two addresses (kept across runs in `dir`). */
export function ensureCertificate(dir: string): { certFile: string; keyFile: string } {
  fs.mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    const r = spawnSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "30", "-subj", "/CN=saas-vps local VM bucket",
      "-addext", `subjectAltName=IP:${GUEST_HOST_ADDRESS},IP:127.0.0.1`,
    ], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr || r.error}`);
  }
  return { certFile, keyFile };
}

function bucketInfo(dir: string, name: string, port: number, uploads?: string): Omit<LocalBucket, "close"> {
  const dataDir = path.join(dir, "data");
  return {
    ...(uploads ? {
      uploads: {
        name: uploads, accessKeyId: LOCAL_S3_UPLOADS_ACCESS_KEY_ID, secretAccessKey: LOCAL_S3_UPLOADS_SECRET_ACCESS_KEY,
        objects: (prefix = "") => listObjects(path.join(dataDir, uploads), prefix),
      },
    } : {}),
    name,
    port,
    guestEndpoint: `https://${GUEST_HOST_ADDRESS}:${port}`,
    hostEndpoint: `https://127.0.0.1:${port}`,
    accessKeyId: LOCAL_S3_ACCESS_KEY_ID,
    secretAccessKey: LOCAL_S3_SECRET_ACCESS_KEY,
    dir,
    certFile: path.join(dir, "cert.pem"),
    objects: (prefix = "") => listObjects(path.join(dataDir, name), prefix),
  };
}

/** s3rver in this process, on 127.0.0.1:<port> (0: any free port). */
export async function startS3Bucket(opts: { dir: string; name: string; port?: number; uploads?: string }): Promise<LocalBucket> {
  const { certFile, keyFile } = ensureCertificate(opts.dir);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require("s3rver");
  if (opts.uploads) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require("s3rver/lib/models/account").DUMMY_ACCOUNT.createKeyPair(LOCAL_S3_UPLOADS_ACCESS_KEY_ID, LOCAL_S3_UPLOADS_SECRET_ACCESS_KEY);
  }
  const server = new S3rver({
    address: "127.0.0.1",
    port: opts.port ?? 0,
    silent: true,
    directory: path.join(opts.dir, "data"),
    key: fs.readFileSync(keyFile),
    cert: fs.readFileSync(certFile),
    configureBuckets: [{ name: opts.name }, ...(opts.uploads ? [{ name: opts.uploads }] : [])],
  });
  const addr: AddressInfo = await server.run();
  return { ...bucketInfo(opts.dir, opts.name, addr.port, opts.uploads), close: () => server.close() };
}

const PID_FILE = "s3rver.pid";

/**
 * s3rver as a detached background process (survives the caller), pid in <dir>/s3rver.pid,
 * log in <dir>/s3rver.log. Resolves once it accepts connections.
 */
export async function spawnS3Bucket(opts: { dir: string; name: string; port: number; uploads?: string }): Promise<Omit<LocalBucket, "close">> {
  await stopS3Bucket(opts.dir);
  ensureCertificate(opts.dir);
  const logFd = fs.openSync(path.join(opts.dir, "s3rver.log"), "w");
  const tsx = path.join(PROJECT_DIR, "node_modules", ".bin", "tsx");
  const child = spawn(tsx, [__filename, "serve", "--dir", opts.dir, "--port", String(opts.port), "--bucket", opts.name,
    ...(opts.uploads ? ["--uploads", opts.uploads] : [])],
    { detached: true, stdio: ["ignore", logFd, logFd], cwd: PROJECT_DIR });
  fs.closeSync(logFd);
  let exited: number | null | undefined;
  child.on("exit", (code) => { exited = code; });
  child.unref();
  fs.writeFileSync(path.join(opts.dir, PID_FILE), `${child.pid}\n`);
  for (const deadline = Date.now() + 30000; Date.now() < deadline;) {
    if (exited !== undefined) break;
    if (await canConnect(opts.port)) return bucketInfo(opts.dir, opts.name, opts.port, opts.uploads);
    await sleep(200);
  }
  const log = fs.readFileSync(path.join(opts.dir, "s3rver.log"), "utf8");
  try { process.kill(child.pid!, "SIGTERM"); } catch { /* gone */ }
  throw new Error(`local S3 bucket did not start on 127.0.0.1:${opts.port}: ${log.trim()}`);
}

/** Stop the detached s3rver of this dir, if one runs. Returns whether one was stopped. */
export async function stopS3Bucket(dir: string): Promise<boolean> {
  const file = path.join(dir, PID_FILE);
  if (!fs.existsSync(file)) return false;
  const pid = Number(fs.readFileSync(file, "utf8").trim());
  fs.rmSync(file, { force: true });
  if (!pid || !isOurServer(pid)) return false;
  try { process.kill(pid, "SIGTERM"); } catch { return false; }
  for (let i = 0; i < 40; i++) {
    try { process.kill(pid, 0); } catch { return true; }
    await sleep(100);
  }
  try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  return true;
}

function isOurServer(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("s3.ts");
  } catch {
    return false;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}

/**
 * LOCAL-VM-ONLY: make the guest trust the bucket's self-signed certificate (Debian's CA store,
 * which restic, curl and Debian's node read). A cloud bucket has a publicly trusted certificate
 * and needs nothing.
 *
 * What `update-ca-certificates` would leave, for this one certificate only: the file under
 * /usr/local/share/ca-certificates (so a later run of the tool keeps it), its link and hash link
 * in /etc/ssl/certs, and its PEM appended to the bundle. The tool itself re-hashes every
 * certificate of the store: 30 s of a VM's emulated CPU alone, over 150 s with three VMs booting.
 */
export async function trustBucketCaInGuest(vm: Vm, certFile: string): Promise<void> {
  const crt = "/usr/local/share/ca-certificates/saas-vps-local-vm-bucket.crt";
  const pem = "/etc/ssl/certs/saas-vps-local-vm-bucket.pem";
  const r = await ssh(vm, "set -e\n" +
    `sudo install -D -m 0644 /dev/stdin ${crt}\n` +
    `sudo ln -sfn ${crt} ${pem}\n` +
    `sudo ln -sfn saas-vps-local-vm-bucket.pem "/etc/ssl/certs/$(openssl x509 -hash -noout -in ${crt}).0"\n` +
    `sudo grep -qxF "$(sed -n 2p ${crt})" /etc/ssl/certs/ca-certificates.crt || sudo tee -a /etc/ssl/certs/ca-certificates.crt < ${crt} >/dev/null\n` +
    "echo trusted\n",
    { input: fs.readFileSync(certFile, "utf8"), timeoutMs: 10 * 60000 });
  if (r.code !== 0 || !r.stdout.includes("trusted")) {
    throw new Error(`could not install the local bucket's CA in the guest (exit ${r.code}): ${r.stderr.trim()}`);
  }
}

function listObjects(bucketDir: string, prefix: string): { key: string; file: string; size: number }[] {
  const found: { key: string; file: string; size: number }[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith("._S3rver_object")) {
        const key = p.slice(bucketDir.length + 1, -"._S3rver_object".length);
        if (key.startsWith(prefix)) found.push({ key, file: p, size: fs.statSync(p).size });
      }
    }
  };
  try {
    walk(bucketDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  return found;
}

// `tsx cli/vm/s3.ts serve --dir DIR --port N --bucket NAME [--uploads NAME]`: the detached server.
if (require.main === module) {
  const args = process.argv.slice(2);
  const get = (k: string) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : undefined; };
  if (args[0] !== "serve" || !get("dir") || !get("port") || !get("bucket")) {
    process.stderr.write("usage: tsx cli/vm/s3.ts serve --dir DIR --port N --bucket NAME [--uploads NAME]\n");
    process.exit(2);
  }
  startS3Bucket({ dir: get("dir")!, name: get("bucket")!, port: Number(get("port")), uploads: get("uploads") }).then((b) => {
    process.stdout.write(`local bucket ${b.name} on ${b.hostEndpoint} (guest: ${b.guestEndpoint})\n`);
    const stop = () => { b.close().finally(() => process.exit(0)); };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  }, (e) => {
    process.stderr.write(`s3rver: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
