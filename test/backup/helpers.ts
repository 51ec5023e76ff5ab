/**
 * Real services for the backup tests and the benchmark: a scratch PostgreSQL cluster
 * (cli/pg-scratch.sh), an S3-compatible server (s3rver, in process, over TLS), a webhook
 * listener, and a small stand-in for systemd that runs a rendered unit's ExecStart= and, when
 * it fails, its OnFailure= unit (the watchdog's alert@, installed beside the backup's files), so
 * the tests exercise the unit wiring as well as the scripts.
 *
 * Everything runs asynchronously: s3rver answers from this process's event loop, so a
 * synchronous child process would deadlock against it.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { BackupRenderOptions } from "../../provisioning/backup";
import { renderBackupFiles } from "../../provisioning/backup";
import { DEFAULT_WATCHDOG_THRESHOLDS } from "../../config/watchdog";
import { renderWatchdogFiles } from "../../provisioning/watchdog";

export const REPO_ROOT = resolve(__dirname, "..", "..");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string } = {},
): Promise<RunResult> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (b: Buffer) => out.push(b));
  child.stderr.on("data", (b: Buffer) => err.push(b));
  child.stdin.on("error", () => undefined); // the child may exit before reading everything
  child.stdin.end(opts.input ?? "");
  const [code, signal] = (await once(child, "close")) as [number | null, string | null];
  return { code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** Like run(), but throws with the output when the command fails. */
export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

// ---------------------------------------------------------------- PostgreSQL

export interface ScratchPg {
  dir: string;
  host: string;
  port: number;
  /** libpq environment for psql/pg_dump and for the backup scripts. */
  env: Record<string, string>;
  psql(db: string, sql: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startPg(): Promise<ScratchPg> {
  const dir = tempDir("backup-pg-");
  const script = join(REPO_ROOT, "cli", "pg-scratch.sh");
  const url = new URL((await runOk("bash", [script, "start", dir])).trim());
  const env = { PGHOST: url.hostname, PGPORT: url.port, PGUSER: "postgres" };
  return {
    dir,
    host: url.hostname,
    port: Number(url.port),
    env,
    psql: (db, sql) =>
      runOk("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db], { env: { ...process.env, ...env }, input: sql }),
    stop: async () => void (await run("bash", [script, "stop", dir])),
  };
}

/**
 * Per table: row count and an md5 of all rows in a stable order, so two databases compare
 * equal only if every row is the same.
 */
export async function fingerprint(pg: ScratchPg, db: string): Promise<Record<string, string>> {
  const out = await pg.psql(
    db,
    `select format('%I.%I', schemaname, tablename) || ' ' ||
       (xpath('/row/f/text()', query_to_xml(format(
         'select count(*) || '':'' || coalesce(md5(string_agg(t::text, E''\\n'' order by t::text)), '''') as f from %I.%I t',
         schemaname, tablename), false, true, '')))[1]::text
     from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1;`,
  );
  return Object.fromEntries(
    out
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => line.split(" ") as [string, string]),
  );
}

export async function databases(pg: ScratchPg): Promise<string[]> {
  return (await pg.psql("postgres", "select datname from pg_database order by 1;")).trim().split("\n");
}

// ---------------------------------------------------------------- S3

export interface S3Server {
  endpoint: string;
  /** s3rver keeps each object as <dir>/<bucket>/<key>._S3rver_object. */
  dir: string;
  /** Self-signed certificate of the endpoint: trusted by restic through SSL_CERT_FILE. */
  certFile: string;
  objects(bucket: string, prefix?: string): { key: string; file: string; size: number }[];
  close(): Promise<void>;
}

/**
 * s3rver over TLS. Over plain HTTP, restic (minio-go) signs uploads with aws-chunked
 * streaming signatures, which s3rver stores verbatim (chunk headers inside the object), so
 * the repository is unreadable; over HTTPS minio-go sends plain bodies. Real endpoints are
 * HTTPS anyway.
 */
export async function startS3(buckets: string[], parentDir = tmpdir()): Promise<S3Server> {
  const base = mkdtempSync(join(parentDir, "backup-s3-"));
  const certFile = join(base, "cert.pem");
  const keyFile = join(base, "key.pem");
  await runOk("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1",
  ]);
  const dir = join(base, "data");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require("s3rver");
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    key: readFileSync(keyFile),
    cert: readFileSync(certFile),
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const addr: AddressInfo = await server.run();
  return {
    endpoint: `https://127.0.0.1:${addr.port}`,
    dir,
    certFile,
    objects: (bucket, prefix = "") => listObjects(join(dir, bucket), prefix),
    close: async () => {
      await server.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

function listObjects(bucketDir: string, prefix: string): { key: string; file: string; size: number }[] {
  const found: { key: string; file: string; size: number }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith("._S3rver_object")) {
        const key = p.slice(bucketDir.length + 1, -"._S3rver_object".length);
        if (key.startsWith(prefix)) found.push({ key, file: p, size: statSync(p).size });
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

// ---------------------------------------------------------------- webhook

export interface Received {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Webhook {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

export async function startWebhook(): Promise<Webhook> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(204).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

// ---------------------------------------------------------------- rendered server

/** A server root on this machine: the rendered files at their paths under `root`. */
export interface Installed {
  root: string;
  stateDir: string;
  /** Environment the units' processes get: only what systemd would give plus test overrides. */
  env: Record<string, string>;
}

/** `alertWebhookUrl`: where the watchdog's notifier posts a failed job (none: the journal line only). */
export function install(opts: BackupRenderOptions, extraEnv: Record<string, string>, alertWebhookUrl?: string): Installed {
  const root = tempDir("backup-root-");
  const watchdog = renderWatchdogFiles({ stack: "test", server: "db", thresholds: DEFAULT_WATCHDOG_THRESHOLDS, alertWebhookUrl });
  for (const f of [...renderBackupFiles(opts), ...watchdog]) {
    const p = join(root, f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content);
    chmodSync(p, parseInt(f.mode, 8));
  }
  const stateDir = join(root, "var/lib/saas-vps/backup");
  const tmp = join(root, "tmp");
  mkdirSync(tmp, { recursive: true });
  return {
    root,
    stateDir,
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      LANG: "C.UTF-8",
      TMPDIR: tmp,
      HOME: tmp,
      BACKUP_ENV_FILE: join(root, "etc/saas-vps/backup.env"),
      BACKUP_STATE_DIR: stateDir,
      BACKUP_CACHE_DIR: join(root, "var/cache/saas-vps/restic"),
      WATCHDOG_ENV_FILE: join(root, "etc/saas-vps/watchdog.env"),
      WATCHDOG_STATE_DIR: join(root, "var/lib/saas-vps/watchdog"),
      ...extraEnv,
    },
  };
}

/** Runs an installed command (a path on the server) with the installed environment. */
export function runInstalled(inst: Installed, serverPath: string, args: string[], env: Record<string, string> = {}) {
  return run(join(inst.root, serverPath), args, { env: { ...inst.env, ...env } });
}

export interface UnitRun extends RunResult {
  /** The OnFailure= unit's run, when the unit failed and has one. */
  onFailure?: RunResult & { unit: string };
}

/**
 * What systemd does for a oneshot service here: run ExecStart= (specifiers %i, %n expanded),
 * and when it exits non-zero start each OnFailure= unit. Only the directives our units use.
 */
export async function runUnit(inst: Installed, unit: string): Promise<UnitRun> {
  const result: UnitRun = await execUnit(inst, unit);
  if (result.code !== 0) {
    const onFailure = directive(inst, unit, "OnFailure");
    if (onFailure) {
      const name = expand(onFailure, unit);
      result.onFailure = { unit: name, ...(await execUnit(inst, name)) };
    }
  }
  return result;
}

function unitFile(inst: Installed, unit: string): string {
  const template = unit.replace(/@.+\.(service|timer)$/, "@.$1");
  return readFileSync(join(inst.root, "etc/systemd/system", template), "utf8");
}

function directive(inst: Installed, unit: string, key: string): string | undefined {
  const line = unitFile(inst, unit)
    .split("\n")
    .find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}

function expand(value: string, unit: string): string {
  const instance = /@(.+)\.(service|timer)$/.exec(unit)?.[1] ?? "";
  return value.replace(/%i/g, instance).replace(/%n/g, unit);
}

async function execUnit(inst: Installed, unit: string): Promise<RunResult> {
  const exec = directive(inst, unit, "ExecStart");
  if (!exec) throw new Error(`${unit} has no ExecStart=`);
  const [path, ...args] = expand(exec, unit).split(" ");
  return run(join(inst.root, path), args, { env: inst.env });
}
