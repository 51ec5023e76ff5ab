/**
 * Backup benchmark (docs/ARCHITECTURE.md, decision 6), not a test: `npx tsx bench/backup.ts`.
 *
 * On a generated database of at least 1 GB in a scratch cluster, all measured in this run:
 *   - backup throughput (MB of database per second) of `backup now` (pg_dump | restic -> S3)
 *     as a ratio of plain `pg_dump -Fc > /dev/null`;            goal >= 0.8
 *   - peak local disk used during the backup;                   goal: far below the DB size
 *   - restore time of `backup restore` (S3 -> restic dump | pg_restore) as a ratio of
 *     `pg_restore` from a local dump file;                       goal <= 1.5
 * The S3 server (s3rver) keeps its objects in /dev/shm, so the bucket's bytes are not counted
 * as local disk. Env: BENCH_DB_MB (default 1100) sets the database size to generate.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync, statfsSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { install, runInstalled, runOk, startPg, startS3, tempDir } from "../test/backup/helpers";

const TARGET_MB = Number(process.env.BENCH_DB_MB ?? 1100);
const MB = 1e6;

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const v = await f();
  return [Number(process.hrtime.bigint() - t0) / 1e9, v];
}

/** Bytes of files the backup's processes hold open under `dir`, deleted temp files included. */
function openFileBytes(dir: string): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(dir)) total += statSync(`/proc/${pid}/fd/${fd}`).size;
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return total;
}

function treeBytes(dir: string): number {
  let total = 0;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (e.isFile()) total += statSync(join(e.parentPath ?? e.path, e.name)).size;
    }
  } catch {
    /* not there yet */
  }
  return total;
}

function fsUsedBytes(path: string): number {
  const s = statfsSync(path);
  return (s.blocks - s.bfree) * s.bsize;
}

async function main() {
  console.log(`backup benchmark: load average at start ${loadavg().map((l) => l.toFixed(2)).join(" ")} (2 shared cores)`);
  const pg = await startPg();
  const s3 = await startS3(["bench-backups"], "/dev/shm");
  const work = tempDir("backup-bench-");
  try {
    const pgEnv = { ...process.env, ...pg.env };
    // ---- generate the database
    await pg.psql("postgres", "create database app;");
    await pg.psql(
      "app",
      `create table pgmigrations (id serial primary key, name text not null, run_on timestamp not null default now());
       insert into pgmigrations (name) values ('1_init'), ('2_events');
       create table accounts (id serial primary key, email text not null unique, plan text not null, created_at timestamptz not null);
       insert into accounts (email, plan, created_at)
         select 'user' || g || '@example.com', (array['free','pro','team'])[1 + g % 3], now() - g * interval '1 minute'
         from generate_series(1, 200000) g;
       create table events (id bigserial primary key, account_id int not null, kind text not null,
         created_at timestamptz not null, amount numeric(12,2), body text not null);`,
    );
    const sizeMB = async () => Number(await pg.psql("app", "select pg_database_size('app');")) / MB;
    const [genSecs] = await timed(async () => {
      while ((await sizeMB()) < TARGET_MB * 0.85) {
        // Half random hex (incompressible-ish), half repetitive text, like real rows.
        await pg.psql(
          "app",
          `insert into events (account_id, kind, created_at, amount, body)
           select 1 + (random() * 199999)::int, (array['login','purchase','refund','view'])[1 + g % 4],
                  now() - g * interval '1 second', (random() * 1000)::numeric(12,2),
                  md5(g::text) || md5(random()::text) || ' status=ok region=eu-central plan=pro source=web'
           from generate_series(1, 500000) g;`,
        );
      }
      await pg.psql("app", "create index on events (account_id); create index on events (created_at); vacuum analyze;");
      while ((await sizeMB()) < TARGET_MB) {
        await pg.psql("app", "insert into events (account_id, kind, created_at, amount, body) select account_id, kind, created_at, amount, body from events limit 200000;");
      }
    });
    const dbMB = await sizeMB();
    console.log(`database: ${dbMB.toFixed(0)} MB (generated in ${genSecs.toFixed(0)} s)`);

    // ---- backup: plain pg_dump vs `backup now`
    const asPg = (args: string[]) => ["-u", "postgres", "--", ...args];
    const plainDump = () =>
      timed(() => runOk("bash", ["-c", 'runuser -u postgres -- pg_dump -Fc "$1" >/dev/null', "bash", "app"], { env: pgEnv }));
    const [plain1] = await plainDump();
    console.log(`pg_dump -Fc > /dev/null: ${plain1.toFixed(1)} s`);

    const inst = install(
      {
        schedule: "*-*-* 03:00:00 UTC",
        retentionDays: 14,
        databaseName: "app",
        bucket: { endpoint: s3.endpoint, name: "bench-backups", region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
        encryptionPassword: "bench-encryption-password",
      },
      { ...pg.env, SSL_CERT_FILE: s3.certFile },
    );
    const tmp = inst.env.TMPDIR;
    const fsBase = fsUsedBytes(tmp);
    let peakLocal = 0;
    let peakFs = 0;
    const sampler = setInterval(() => {
      peakLocal = Math.max(peakLocal, openFileBytes(tmp) + treeBytes(tmp) + treeBytes(inst.env.BACKUP_CACHE_DIR));
      peakFs = Math.max(peakFs, fsUsedBytes(tmp) - fsBase);
    }, 100);
    const [ours, r] = await timed(() => runInstalled(inst, "/usr/local/sbin/backup", ["now"]));
    clearInterval(sampler);
    if (r.code !== 0) throw new Error(`backup now failed:\n${r.stdout}\n${r.stderr}`);
    console.log(`backup now (dump, encrypt, upload, retention): ${ours.toFixed(1)} s`);
    const streamed = Number(/^seconds=(.*)$/m.exec(readFileSync(join(inst.stateDir, "last-success"), "utf8"))![1]);
    const [plain2] = await plainDump();
    console.log(`pg_dump -Fc > /dev/null (again): ${plain2.toFixed(1)} s`);
    const plain = (plain1 + plain2) / 2;
    const bucketMB = s3.objects("bench-backups").reduce((n, o) => n + o.size, 0) / MB;

    // ---- restore: pg_restore from a local file vs `backup restore`
    const file = join(work, "app.dump");
    await runOk("chmod", ["0777", work]); // pg_dump writes the file as postgres
    await runOk("runuser", asPg(["pg_dump", "-Fc", "-f", file, "app"]), { env: pgEnv });
    const localFileMB = statSync(file).size / MB;
    await pg.psql("postgres", "create database local_restore;");
    const [local] = await timed(() => runOk("runuser", asPg(["pg_restore", "--exit-on-error", "-d", "local_restore", file]), { env: pgEnv }));
    console.log(`pg_restore from a local file: ${local.toFixed(1)} s`);
    await pg.psql("postgres", "drop database local_restore;");
    const [remote, rr] = await timed(() => runInstalled(inst, "/usr/local/sbin/backup", ["restore", "latest", "--into", "bucket_restore"]));
    if (rr.code !== 0) throw new Error(`backup restore failed:\n${rr.stdout}\n${rr.stderr}`);
    console.log(`backup restore latest (S3 -> restic dump | pg_restore): ${remote.toFixed(1)} s`);
    const rows = await pg.psql("bucket_restore", "select count(*) from events;");
    const liveRows = await pg.psql("app", "select count(*) from events;");
    if (rows !== liveRows) throw new Error(`restore has ${rows.trim()} events, live has ${liveRows.trim()}`);

    const ratio = plain / ours;
    const restoreRatio = remote / local;
    console.log("\nresults");
    console.log(`  database size                        ${dbMB.toFixed(0)} MB (events rows: ${liveRows.trim()})`);
    console.log(`  pg_dump -Fc > /dev/null (mean of 2)  ${plain.toFixed(1)} s = ${(dbMB / plain).toFixed(1)} MB/s`);
    console.log(`  backup now                           ${ours.toFixed(1)} s = ${(dbMB / ours).toFixed(1)} MB/s`);
    console.log(`  backup / pg_dump throughput          ${ratio.toFixed(2)}  (goal >= 0.8) ${ratio >= 0.8 ? "MET" : "NOT MET"}`);
    console.log(`  of which dump+encrypt+upload stream  ${streamed.toFixed(1)} s = ${(dbMB / streamed).toFixed(1)} MB/s, ratio ${(plain / streamed).toFixed(2)}`);
    console.log(`  peak local disk of the backup        ${(peakLocal / MB).toFixed(1)} MB (restic temp packs + cache)`);
    console.log(`  peak filesystem growth during backup ${(peakFs / MB).toFixed(1)} MB (whole disk, other work included)`);
    console.log(`  bucket after backup                  ${bucketMB.toFixed(0)} MB (local pg_dump -Fc file: ${localFileMB.toFixed(0)} MB)`);
    console.log(`  pg_restore from local file           ${local.toFixed(1)} s`);
    console.log(`  backup restore from the bucket       ${remote.toFixed(1)} s`);
    console.log(`  restore time ratio                   ${restoreRatio.toFixed(2)}  (goal <= 1.5) ${restoreRatio <= 1.5 ? "MET" : "NOT MET"}`);
    console.log(`  load average at end                  ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    rmSync(inst.root, { recursive: true, force: true });
  } finally {
    await pg.stop();
    await s3.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
