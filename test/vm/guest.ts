/**
 * What the @vm end-to-end tests (e2e.test.ts: one server; separated.test.ts: a split stack) check
 * from the host, shared: commands in a guest, psql, systemd properties, listeners, the worker's
 * welcome email, a backup's proof in the host's S3 server.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { httpRequest } from "../../cli/vm/http";
import { sleep } from "../../cli/vm/process";
import { freePorts } from "../../cli/lib/ports";
import { type LocalBucket, startS3Bucket } from "../../cli/vm/s3";
import { ssh } from "../../cli/vm/ssh";
import type { VmBucketOverride } from "../../cli/vm/stack";
import { type Vm, qemuAvailable } from "../../cli/vm/vm";

/** Where the tests reach a stack's site: a VM's forwarded nginx port, or the balancer's frontend. */
export interface Site { host: string; port: number }

/** A VM's nginx through its port forwarded to the host's loopback. */
export function siteOfVm(vm: Vm): Site {
  return { host: "127.0.0.1", port: vm.ports.http };
}

export function siteUrl(site: Site, path: string): string {
  return `http://${site.host}:${site.port}${path}`;
}

/** Run a command in the guest; fail the test with its output unless it exits 0. */
export async function sh(vm: Vm, command: string, timeoutMs = 120000): Promise<string> {
  const r = await ssh(vm, command, { timeoutMs });
  if (r.code !== 0) throw new Error(`guest command failed (exit ${r.code}): ${command}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** psql as postgres in the app database (on the guest that runs PostgreSQL), tuples only. */
export function psql(vm: Vm, sql: string): Promise<string> {
  return sh(vm, `sudo -u postgres psql -X -q -At -v ON_ERROR_STOP=1 -d app -c '${sql.replace(/'/g, `'\\''`)}'`)
    .then((s) => s.trim());
}

/** Value of KEY='...' (bash single-quoted, as provisioning/backup.ts renders it) in an env file. */
export function envValue(text: string, key: string): string {
  const line = text.split("\n").find((l) => l.startsWith(`${key}=`));
  if (!line) throw new Error(`${key} not in env file`);
  const v = line.slice(key.length + 1);
  return v.startsWith("'") ? v.slice(1, -1).replace(/'\\''/g, "'") : v;
}

export function runHost(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  // Asynchronous on purpose: s3rver answers from this process's event loop.
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr }));
  });
}

/** `systemctl show` properties as a map. */
export async function unitProps(vm: Vm, unit: string, props: string[]): Promise<Record<string, string>> {
  const out = await sh(vm, `systemctl show ${unit} ${props.map((p) => `-p ${p}`).join(" ")}`);
  return Object.fromEntries(out.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

export interface Listener { proto: string; host: string; port: number; process: string; local: string }

/** Parse `ss -Hl[tu]np` lines. */
export function parseSs(out: string, proto: string): Listener[] {
  return out.trim().split("\n").filter(Boolean).map((line) => {
    const cols = line.trim().split(/\s+/);
    const local = cols[3];
    const at = local.lastIndexOf(":");
    const host = local.slice(0, at).replace(/^\[|\]$/g, "").replace(/%.*$/, "");
    const proc = /users:\(\("([^"]+)"/.exec(line)?.[1] ?? "?";
    return { proto, host, port: Number(local.slice(at + 1)), process: proc, local };
  });
}

export function isLoopback(host: string): boolean {
  return /^127\./.test(host) || host === "::1" || host === "[::1]";
}

/**
 * Waits until a worker (any of `units` on `workerVm`: by default every worker, the critical ones
 * too, which take the mails where the stack has them) has logged the welcome email to `email`
 * (no SMTP_URL: the app logs it) and `job done` for send_welcome_email; returns the log lines. The
 * default wait is generous: an emulated worker on a busy host takes minutes to (re)start.
 */
export async function waitForWelcomeEmail(workerVm: Vm, email: string, timeoutMs = 240000, units = ["worker@*.service", "worker-critical@*.service"]): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Every worker unit: with two, either may take the job (seen: worker@2 did, worker@1 idled).
    const out = await sh(workerVm, `sudo journalctl ${units.map((u) => `-u '${u}'`).join(" ")} -b -o cat --no-pager`);
    const lines = out.split("\n").filter((l) => l.startsWith("{"));
    const parsed = lines.map((l) => JSON.parse(l) as { message?: string; mail?: { to?: string }; task?: string });
    const mailed = parsed.some((l) => l.message?.includes("email logged") && l.mail?.to === email);
    const done = parsed.some((l) => l.message === "job done" && l.task === "send_welcome_email");
    if (mailed && done) return lines;
    if (Date.now() > deadline) assert.fail(`worker did not process the welcome email for ${email}:\n${out.slice(-2000)}`);
    await sleep(2000);
  }
}

/**
 * After a signup (202, no session): confirms the address the way an operator can, with SQL on the
 * database server (the verification token exists only in the mail, which the worker does not log
 * without SMTP), then logs in through nginx on `appVm`. Returns the user, the organization
 * signup created, and a session token.
 */
export async function verifyAndLogIn(dbVm: Vm, site: Site, email: string, password: string): Promise<{ userId: string; orgId: string; token: string }> {
  const userId = await psql(dbVm, `select id from users where email = '${email}'`);
  assert.match(userId, /^[0-9a-f-]{36}$/, `no user ${email}`);
  await psql(dbVm, `update users set email_verified_at = now() where id = '${userId}'`);
  const orgId = await psql(dbVm, `select org_id from memberships where user_id = '${userId}' and role = 'owner'`);
  assert.match(orgId, /^[0-9a-f-]{36}$/, `no organization for ${email}`);
  const login = await httpRequest(site.port, { host: site.host, method: "POST", path: "/auth/login", body: { email, password }, timeoutMs: 60000, agent: false });
  assert.equal(login.status, 200, login.body);
  const token = (JSON.parse(login.body) as { token: string }).token;
  assert.match(token, /^sess_/);
  return { userId, orgId, token };
}

/** No verification, reset or invitation token in these log lines (the mailer logs envelopes only). */
export function assertNoMailToken(lines: string[]): void {
  const leaked = lines.filter((l) => /\b(?:vrf|rst|inv)_[A-Za-z0-9_-]{43}/.test(l));
  assert.deepEqual(leaked, [], "a mail token in the worker's journal");
}

/**
 * The backup in the host's S3 server: a restic repository, nothing readable in any object
 * (`secrets`: strings that must not appear in clear), and restic on the host with the stack's
 * password dumps `/app.dump` = a pg_dump archive containing `marker`; a wrong password gets
 * nothing. Returns the object count and bytes.
 */
export async function assertBackupInBucket(bucket: LocalBucket, backupEnv: string, opts: { marker: string; secrets: string[]; cacheDir: string }): Promise<{ objects: number; bytes: number }> {
  const objects = bucket.objects();
  const keys = objects.map((o) => o.key);
  assert.ok(keys.includes("restic/config"), `no restic repository in the bucket: ${keys.join(", ")}`);
  assert.ok(keys.some((k) => k.startsWith("restic/data/")), `no data packs: ${keys.join(", ")}`);
  assert.ok(keys.some((k) => k.startsWith("restic/snapshots/")), `no snapshot: ${keys.join(", ")}`);
  for (const o of objects) {
    const bytes = fs.readFileSync(o.file);
    for (const secret of [opts.marker, "PGDMP", ...opts.secrets]) {
      assert.ok(!bytes.includes(secret), `${o.key} contains ${secret === "PGDMP" ? "a pg_dump header" : JSON.stringify(secret)} in clear`);
    }
  }
  const env = {
    ...process.env, SSL_CERT_FILE: bucket.certFile,
    RESTIC_REPOSITORY: `s3:${bucket.hostEndpoint}/${bucket.name}/restic`,
    RESTIC_PASSWORD: envValue(backupEnv, "RESTIC_PASSWORD"),
    AWS_ACCESS_KEY_ID: bucket.accessKeyId, AWS_SECRET_ACCESS_KEY: bucket.secretAccessKey,
    RESTIC_CACHE_DIR: path.resolve(opts.cacheDir),
  };
  const dump = await runHost("restic", ["dump", "--no-lock", "latest", "/app.dump"], env);
  assert.equal(dump.code, 0, dump.stderr);
  assert.ok(dump.stdout.subarray(0, 5).equals(Buffer.from("PGDMP")), "the restored object is not a pg_dump archive");
  assert.ok(dump.stdout.includes(opts.marker), "the decrypted dump does not contain the marker row");
  const wrong = await runHost("restic", ["snapshots", "--no-lock"], { ...env, RESTIC_PASSWORD: "not the password" });
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /wrong password|no key found/i);
  return { objects: objects.length, bytes: objects.reduce((n, o) => n + o.size, 0) };
}

/** The last lines of a guest's journal (a unit's, or everything), for failure messages; never throws. */
export async function journalTail(vm: Vm, unit?: string, lines = 40): Promise<string> {
  const r = await ssh(vm, `sudo journalctl -b -o short-monotonic --no-pager -n ${lines}${unit ? ` -u '${unit}'` : ""}`, { timeoutMs: 30000 })
    .catch((e: Error) => ({ code: 1, stdout: "", stderr: e.message }));
  return r.code === 0 ? r.stdout : `(journal unavailable: ${r.stderr.trim()})`;
}

/**
 * A private network CIDR the host has no address or route in right now: other tests on a shared
 * machine make network namespaces with veth pairs in 10.20/16 (the example's range), and the
 * check that the host cannot reach the VMs' private addresses must not meet one of those.
 */
export function privateCidrUnusedByHost(): string {
  for (let second = 200; second < 250; second++) {
    const cidr = `10.${second}.0.0/16`;
    const addrs = spawnSync("ip", ["-4", "-o", "address", "show", "to", cidr], { encoding: "utf8" }).stdout.trim();
    const routes = spawnSync("ip", ["-4", "route", "show", "match", `10.${second}.0.1`], { encoding: "utf8" }).stdout.trim();
    if (addrs === "" && routes.split("\n").every((r) => r.startsWith("default "))) return cidr;
  }
  throw new Error("no 10.200-249.0.0/16 network is free of host addresses and routes");
}

/**
 * A VM test's time budget: `minutes` (what CI on an otherwise idle 2-core machine must meet), or
 * SAAS_VPS_VM_BUDGET_MINUTES when set, for a machine busy with other work, where emulated boots
 * take several times longer.
 */
export function vmBudgetMs(minutes: number): number {
  const override = process.env.SAAS_VPS_VM_BUDGET_MINUTES;
  if (override === undefined || override === "") return minutes * 60000;
  const n = Number(override);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`SAAS_VPS_VM_BUDGET_MINUTES must be a positive number of minutes; got ${JSON.stringify(override)}`);
  return n * 60000;
}

/**
 * Skips the suite (loudly) when QEMU cannot run on this machine; with CI=true that is a failure.
 * Call first in the suite's `before`, with its `this`.
 */
export function skipUnlessQemu(ctx: Mocha.Context, test: string): void {
  const q = qemuAvailable();
  if (q.ok) return;
  if (process.env.CI === "true") throw new Error(`CI=true and QEMU cannot run: ${q.reason}`);
  const bar = "!".repeat(78);
  console.warn(`\n${bar}\n!! SKIPPING the @vm ${test} test: QEMU cannot run on this machine.\n!! ${q.reason}\n` +
    `!! Install qemu-system-x86 (npm run setup) to run it. In CI (CI=true) this is a failure.\n${bar}\n`);
  ctx.skip();
}

/** A fresh local S3 server for a stack's VMs (backups, and uploads in their own bucket): `<stackDir>/bucket`, store emptied. */
export async function startStackBucket(stackDir: string, names: { backups: string; uploads: string }): Promise<LocalBucket> {
  const dir = path.join(stackDir, "bucket");
  fs.rmSync(path.join(dir, "data"), { recursive: true, force: true });
  const [port] = await freePorts(1);
  return startS3Bucket({ dir, name: names.backups, port, uploads: names.uploads });
}

/** What bootStackVms and renderStackServersForVm take to point a stack's buckets at that server. */
export function stackBucketOverride(bucket: LocalBucket): VmBucketOverride & { certFile: string } {
  return {
    endpoint: bucket.guestEndpoint, name: bucket.name, accessKeyId: bucket.accessKeyId, secretAccessKey: bucket.secretAccessKey, certFile: bucket.certFile,
    uploads: { name: bucket.uploads!.name, accessKeyId: bucket.uploads!.accessKeyId, secretAccessKey: bucket.uploads!.secretAccessKey },
  };
}
