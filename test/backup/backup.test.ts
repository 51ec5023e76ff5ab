/**
 * Backups (docs/ARCHITECTURE.md, decision 6), proven against real services: PostgreSQL (cli/pg-scratch.sh), an
 * S3-compatible server (s3rver over TLS), restic, and a local webhook. The scripts run are
 * the rendered files, started the way their systemd units start them (see runUnit).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { BackupRenderOptions } from "../../provisioning/backup";
import {
  databases,
  fingerprint,
  install,
  run,
  runInstalled,
  runUnit,
  startPg,
  startS3,
  startWebhook,
  tempDir,
  type Installed,
  type S3Server,
  type ScratchPg,
  type Webhook,
} from "./helpers";

const PASSWORD = "test-encryption-password-6f1c";
/** Strings that appear in the table data: none may reach the bucket readable. */
const MARKERS = ["SECRET-NOTE-12345", "user4242@example.com"];

const FIXTURE = `
create table pgmigrations (id serial primary key, name text not null, run_on timestamp not null default now());
insert into pgmigrations (name) values ('1700000000000_init'), ('1700000000001_orders');
create table customers (id bigserial primary key, email text unique not null, name text not null);
insert into customers (email, name) select 'user' || g || '@example.com', 'Customer ' || g from generate_series(1, 5000) g;
create table orders (id bigserial primary key, customer_id bigint not null references customers (id), total numeric(10, 2), note text);
insert into orders (customer_id, total, note) select 1 + g % 5000, g / 7.0, 'SECRET-NOTE-' || g from generate_series(1, 20000) g;
create index on orders (customer_id);
analyze;
`;

const readState = (inst: Installed, name: string): Record<string, string> | undefined => {
  const file = join(inst.stateDir, name);
  if (!existsSync(file)) return undefined;
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
};

describe("@real backups: PostgreSQL -> restic -> S3, restore, retention, alerts, drill", function () {
  this.timeout(120_000);
  let pg: ScratchPg;
  let s3: S3Server;
  let hook: Webhook;
  const cleanup: string[] = [];

  before(async () => {
    [pg, s3, hook] = await Promise.all([
      startPg(),
      startS3(["bk-main", "bk-retention", "bk-fail", "bk-drill", "bk-nomig"]),
      startWebhook(),
    ]);
    await pg.psql("postgres", "create database app; create database nomig;");
    await pg.psql("app", FIXTURE);
    await pg.psql("nomig", "create table notes (id int primary key, body text); insert into notes values (1, 'hello');");
  });

  after(async () => {
    await Promise.all([pg?.stop(), s3?.close(), hook?.close()]);
    for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
  });

  const options = (bucket: string, over: Partial<BackupRenderOptions> = {}): BackupRenderOptions => ({
    schedule: "*-*-* 03:00:00 UTC",
    retentionDays: 14,
    databaseName: "app",
    bucket: { endpoint: s3.endpoint, name: bucket, region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    encryptionPassword: PASSWORD,
    heartbeatUrl: `${hook.url}/heartbeat/${bucket}`,
    ...over,
  });

  const installFor = (opts: BackupRenderOptions, env: Record<string, string> = {}): Installed => {
    const inst = install(opts, { ...pg.env, SSL_CERT_FILE: s3.certFile, ...env }, `${hook.url}/alert`);
    cleanup.push(inst.root);
    return inst;
  };

  /** restic by hand with the rendered env file, as its header comment tells people to. */
  const restic = (inst: Installed, args: string[], opts: { input?: Buffer; env?: Record<string, string> } = {}) =>
    run("bash", ["-c", 'set -a; . "$BACKUP_ENV_FILE"; RESTIC_PASSWORD=${TEST_PASSWORD:-$RESTIC_PASSWORD}; set +a; exec restic --no-cache "$@"', "restic", ...args], {
      env: { ...inst.env, ...opts.env },
      input: opts.input,
    });

  const snapshots = async (inst: Installed) => {
    const r = await restic(inst, ["snapshots", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { id: string; time: string; tags?: string[] }[];
  };

  const alertsFor = (unit: string) =>
    hook.received
      .filter((r) => r.method === "POST" && r.path === "/alert")
      .map((r) => JSON.parse(r.body) as { check: string; event: string; text: string; server: string })
      .filter((a) => a.check === `failed-unit:${unit}`);

  describe("a good backup", () => {
    let inst: Installed;

    it("backup.service uploads an encrypted dump: objects in the bucket, no table data in clear", async () => {
      inst = installFor(options("bk-main"));
      const r = await runUnit(inst, "backup.service");
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.onFailure, undefined);

      const state = readState(inst, "last-success");
      // restic 0.14 reports the short id, 0.17+ the full one.
      assert.match(state?.snapshot ?? "", /^[0-9a-f]{8,64}$/);
      assert.ok(Number(state!.dump_bytes) > 0 && Number(state!.uploaded_bytes) > 0);
      const objects = s3.objects("bk-main", "restic/");
      assert.ok(objects.some((o) => o.key.startsWith(`restic/snapshots/${state!.snapshot}`)), "the recorded snapshot is in the bucket");
      assert.ok(objects.filter((o) => o.key.startsWith("restic/data/")).length > 0, "data objects in the bucket");

      // The same dump unencrypted does contain the markers, so their absence below means something.
      const plainDir = tempDir("backup-plain-");
      cleanup.push(plainDir);
      await run("pg_dump", ["--format=custom", "--compress=0", "-f", join(plainDir, "app.dump"), "app"], { env: { ...process.env, ...pg.env } });
      const plain = readFileSync(join(plainDir, "app.dump"));
      for (const m of MARKERS) assert.ok(plain.includes(m), `fixture check: plain dump contains ${m}`);
      for (const o of objects) {
        const bytes = readFileSync(o.file);
        for (const m of MARKERS) assert.ok(!bytes.includes(m), `${o.key} contains "${m}" in clear`);
      }
      // Encrypted, not merely compressed: without the password the repository does not open.
      const wrong = await restic(inst, ["snapshots"], { env: { TEST_PASSWORD: "not-the-password" } });
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /wrong password/);

      assert.ok(hook.received.some((h) => h.method === "GET" && h.path === "/heartbeat/bk-main"), "heartbeat pinged");
    });

    it("backup restore <id> --into a new database reproduces every row, and never overwrites one", async () => {
      const id = readState(inst, "last-success")!.snapshot;
      const original = await fingerprint(pg, "app");
      assert.deepEqual(Object.keys(original), ["public.customers", "public.orders", "public.pgmigrations"]);

      const r = await runInstalled(inst, "/usr/local/sbin/backup", ["restore", id.slice(0, 8), "--into", "app_copy"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(await fingerprint(pg, "app_copy"), original);

      await pg.psql("app_copy", "delete from orders where id % 2 = 0;");
      const changed = await fingerprint(pg, "app_copy");
      const again = await runInstalled(inst, "/usr/local/sbin/backup", ["restore", "latest", "--into", "app_copy"]);
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /app_copy already exists/);
      assert.deepEqual(await fingerprint(pg, "app_copy"), changed);

      const list = await runInstalled(inst, "/usr/local/sbin/backup", ["list"]);
      assert.equal(list.code, 0, list.stderr);
      assert.ok(list.stdout.includes(id.slice(0, 8)));
    });
  });

  it("retention removes backups older than the window, keeps the rest, and frees their space", async () => {
    const inst = installFor(options("bk-retention", { retentionDays: 3 }));
    const first = await runUnit(inst, "backup.service");
    assert.equal(first.code, 0, first.stdout + first.stderr);

    // Older backups, each with 1 MiB of data no other backup shares.
    const at = (daysAgo: number) => {
      const d = new Date(Date.now() - daysAgo * 86_400_000);
      const p = (n: number) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    };
    for (const days of [10, 5, 2]) {
      const r = await restic(inst, ["backup", "--quiet", "--stdin", "--stdin-filename", "app.dump", "--time", at(days), "--tag", `old-${days}d`], {
        input: randomBytes(1 << 20),
      });
      assert.equal(r.code, 0, r.stderr);
    }
    const dataBytes = () => s3.objects("bk-retention", "restic/data/").reduce((n, o) => n + o.size, 0);
    const before = dataBytes();
    assert.equal((await snapshots(inst)).length, 4);

    const second = await runUnit(inst, "backup.service");
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const kept = await snapshots(inst);
    const tags = kept.flatMap((s) => s.tags ?? []).filter((t) => t.startsWith("old-"));
    assert.deepEqual(tags, ["old-2d"]);
    assert.equal(kept.length, 3, "the two new backups and the 2-day-old one");
    assert.ok(kept.some((s) => s.id.startsWith(readState(inst, "last-success")!.snapshot)));
    assert.ok(dataBytes() < before - (1 << 20), `pruned: ${before} -> ${dataBytes()} bytes`);
  });

  describe("a failing backup alerts, records nothing and leaves the database alone", () => {
    const closedPort = async () => {
      const srv = createServer().listen(0, "127.0.0.1");
      await new Promise((r) => srv.once("listening", r));
      const { port } = srv.address() as { port: number };
      await new Promise((r) => srv.close(r));
      return port;
    };
    /** pg_dump that streams a complete dump and then fails, like a stage dying late. */
    const failingPgDump = () => {
      const dir = tempDir("backup-bin-");
      cleanup.push(dir);
      chmodSync(dir, 0o755); // runs as the postgres user
      writeFileSync(join(dir, "pg_dump"), '#!/bin/sh\n/usr/bin/pg_dump "$@"\nexit 3\n', { mode: 0o755 });
      return { PATH: `${dir}:${process.env.PATH}` };
    };

    const cases: { name: string; setup: () => Promise<[Partial<BackupRenderOptions>, Record<string, string>]>; stderr: RegExp }[] = [
      {
        name: "bucket unreachable",
        setup: async () => [{ bucket: { ...options("bk-fail").bucket, endpoint: `https://127.0.0.1:${await closedPort()}` } }, {}],
        stderr: /cannot open the repository.*connection refused/,
      },
      {
        name: "wrong credentials",
        setup: async () => [{ bucket: { ...options("bk-fail").bucket, accessKeyId: "NOT-A-KEY" } }, {}],
        stderr: /cannot open the repository.*Access Denied/,
      },
      {
        name: "pg_dump fails after streaming (pipefail)",
        setup: async () => [{}, failingPgDump()],
        stderr: /pg_dump exited 3, restic exited 0/,
      },
    ];

    for (const c of cases) {
      it(`${c.name}: non-zero exit, webhook alerted, nothing recorded, database untouched`, async () => {
        const [over, env] = await c.setup();
        const inst = installFor(options("bk-fail", over), env);
        const dbBefore = await fingerprint(pg, "app");
        const alertsBefore = alertsFor("backup.service").length;

        const r = await runUnit(inst, "backup.service");
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, c.stderr);
        assert.match(r.stderr, /backup FAILED/);
        assert.equal(r.onFailure?.unit, "alert@backup.service.service");
        assert.equal(r.onFailure?.code, 0, r.onFailure?.stderr);
        assert.match(r.onFailure!.stderr, /ALERT test\/db: failed-unit:backup\.service is failed/);
        const alerts = alertsFor("backup.service");
        assert.equal(alerts.length, alertsBefore + 1);
        assert.equal(alerts.at(-1)!.event, "alert");

        assert.equal(readState(inst, "last-success"), undefined);
        assert.deepEqual(s3.objects("bk-fail", "restic/snapshots/"), [], "no snapshot kept");
        assert.deepEqual(await fingerprint(pg, "app"), dbBefore);
        assert.ok(!hook.received.some((h) => h.path === "/heartbeat/bk-fail"), "no heartbeat");
      });
    }
  });

  describe("restore drill", () => {
    let inst: Installed;
    const leftovers = async () => (await databases(pg)).filter((d) => d.startsWith("backup_drill_"));

    it("passes on a good backup: restores, checks, records the duration, drops the scratch database", async () => {
      inst = installFor(options("bk-drill"));
      const b = await runUnit(inst, "backup.service");
      assert.equal(b.code, 0, b.stdout + b.stderr);

      const r = await runUnit(inst, "restore-drill.service");
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.onFailure, undefined);
      const drill = readState(inst, "last-drill")!;
      assert.ok(drill.snapshot.startsWith(readState(inst, "last-success")!.snapshot), "the drill tested the latest backup");
      assert.match(drill.restore_seconds, /^\d+\.\d{3}$/);
      const live = await fingerprint(pg, "app");
      const liveRows = Object.values(live).reduce((n, f) => n + Number(f.split(":")[0]), 0);
      assert.equal(Number(drill.tables), Object.keys(live).length);
      assert.equal(Number(drill.rows), liveRows);
      assert.match(r.stdout, /restore drill OK/);
      assert.deepEqual(await leftovers(), []);
    });

    it("fails loudly on a corrupted object in the bucket, alerts, and still drops the scratch database", async () => {
      const before = readFileSync(join(inst.stateDir, "last-drill"), "utf8");
      // Damage every data pack restic has not cached locally (those hold the dump's bytes).
      const cacheRoot = join(inst.env.BACKUP_CACHE_DIR);
      const cached = new Set(
        readdirSync(cacheRoot, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name),
      );
      const packs = s3.objects("bk-drill", "restic/data/").filter((o) => !cached.has(o.key.split("/").pop()!));
      assert.ok(packs.length > 0);
      for (const p of packs) {
        const bytes = readFileSync(p.file);
        for (let i = bytes.length >> 1; i < (bytes.length >> 1) + 32; i++) bytes[i] ^= 0xff;
        writeFileSync(p.file, bytes);
      }

      const r = await runUnit(inst, "restore-drill.service");
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /RESTORE DRILL FAILED: backup [0-9a-f]{8} does not restore/);
      assert.equal(r.onFailure?.code, 0, r.onFailure?.stderr);
      assert.equal(alertsFor("restore-drill.service").length, 1);
      assert.deepEqual(await leftovers(), []);
      assert.equal(readFileSync(join(inst.stateDir, "last-drill"), "utf8"), before, "a failed drill is not recorded as passed");
    });

    it("fails when the restore has no migrations table", async () => {
      const nomig = installFor(options("bk-nomig", { databaseName: "nomig" }));
      assert.equal((await runUnit(nomig, "backup.service")).code, 0);
      const r = await runUnit(nomig, "restore-drill.service");
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /RESTORE DRILL FAILED: migrations table pgmigrations is missing/);
      assert.deepEqual(await leftovers(), []);
      mkdirSync(nomig.stateDir, { recursive: true });
      assert.equal(readState(nomig, "last-drill"), undefined);
    });
  });
});
