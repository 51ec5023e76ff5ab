/**
 * The data half of the move from mvp to separated (README "Moving from mvp to separated"),
 * against real services: two PostgreSQL clusters (the old mvp server's and the new db server's),
 * restic and an S3 server. The old server's `backup now` (its timer's unit) uploads a dump of its
 * single-owner database; `backup restore-app` on the db server fills the app database its first
 * boot made, as the owner, and the web and worker logins get their rights from the owner's
 * default privileges, as they would for tables the owner's migrations create.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { BackupRenderOptions } from "../../provisioning/backup";
import { BACKUP_PATHS } from "../../provisioning/backup";
import { DATABASE_ROLE_NAMES } from "../../plan/database";
import { fingerprint, install, REPO_ROOT, run, runInstalled, runOk, runUnit, startPg, startS3, type Installed, type S3Server, type ScratchPg } from "./helpers";

const PASSWORD = "test-encryption-password-move-1";
const { owner: OWNER, web: WEB, worker: WORKER } = DATABASE_ROLE_NAMES;

/**
 * The mvp server's database: one role owns everything (its migrations made it), an app schema in
 * public, a job-queue schema of its own with a function (as graphile-worker's), sequences in use.
 */
const MVP_DATABASE = `
create role ${OWNER} login;
create database app owner ${OWNER};
\\c app
set role ${OWNER};
create table pgmigrations (id serial primary key, name text not null, run_on timestamp not null default now());
insert into pgmigrations (name) values ('001_init');
create table users (id bigserial primary key, email text unique not null, note text);
insert into users (email, note) select 'user' || g || '@example.com', 'written on the mvp server ' || g from generate_series(1, 3000) g;
create schema queue;
create table queue.jobs (id bigserial primary key, task text not null, payload json not null, attempts int not null default 0);
insert into queue.jobs (task, payload) select 'send_welcome_email', json_build_object('userId', g) from generate_series(1, 50) g;
create function queue.add_job(t text, p json) returns bigint language sql as $$ insert into queue.jobs (task, payload) values (t, p) returning id $$;
`;

/** The first-boot PostgreSQL step's logins and grants, where the tree has them as a file of their own. */
const LOGINS_SQL = join(REPO_ROOT, "provisioning", "assets", "server", "postgresql-logins.sql");

/**
 * What the db server's first boot gives a fresh stack-separated database before any migration:
 * three logins, the database owned by the owner, the data logins allowed to use the schema, and
 * the owner's default privileges that give them data rights (no DDL) on what the owner creates.
 * A stand-in used only while the step's own SQL (LOGINS_SQL) is not in the tree.
 */
const SEPARATED_LAYOUT = `
create role ${OWNER} login;
create role ${WEB} login;
create role ${WORKER} login;
create database app owner ${OWNER};
\\c app
revoke create on schema public from public;
grant usage on schema public to ${WEB}, ${WORKER};
alter default privileges for role ${OWNER} grant usage on schemas to ${WEB}, ${WORKER};
alter default privileges for role ${OWNER} grant select, insert, update, delete on tables to ${WEB}, ${WORKER};
alter default privileges for role ${OWNER} grant usage, select on sequences to ${WEB}, ${WORKER};
`;

describe("@real moving from mvp: backup on the old server, backup restore-app on the new db server", function () {
  this.timeout(180_000);
  let mvpPg: ScratchPg;
  let dbPg: ScratchPg;
  let s3: S3Server;
  let mvp: Installed;
  let db: Installed;
  const cleanup: string[] = [];

  const options = (bucket: string, over: Partial<BackupRenderOptions> = {}): BackupRenderOptions => ({
    schedule: "*-*-* 03:00:00 UTC",
    retentionDays: 14,
    databaseName: "app",
    bucket: { endpoint: s3.endpoint, name: bucket, region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    encryptionPassword: PASSWORD,
    ...over,
  });
  const installOn = (pg: ScratchPg, opts: BackupRenderOptions): Installed => {
    const inst = install(opts, { ...pg.env, SSL_CERT_FILE: s3.certFile });
    cleanup.push(inst.root);
    return inst;
  };
  const backup = (inst: Installed, ...args: string[]) => runInstalled(inst, BACKUP_PATHS.command, args);
  /** psql as one login over TCP, statements in order; the first error stops it. */
  const as = (pg: ScratchPg, login: string, sql: string) =>
    run("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", "app", "-U", login], { env: { ...process.env, ...pg.env, PGUSER: login }, input: sql });
  const snapshotCount = async (inst: Installed) => {
    const r = await run("bash", ["-c", 'set -a; . "$BACKUP_ENV_FILE"; set +a; exec restic --no-cache snapshots --json'], { env: inst.env });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as unknown[]).length;
  };

  before(async () => {
    [mvpPg, dbPg, s3] = await Promise.all([startPg(), startPg(), startS3(["move-bk", "move-empty"])]);
    await mvpPg.psql("postgres", MVP_DATABASE);
    await makeSeparatedLayout(dbPg);
    mvp = installOn(mvpPg, options("move-bk"));
    db = installOn(dbPg, options("move-bk"));
  });

  after(async () => {
    await Promise.all([mvpPg?.stop(), dbPg?.stop(), s3?.close()]);
    for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
  });

  it("a fresh database with no backup yet: refused, naming the repository; nothing restored", async () => {
    const r = await backup(db, "restore-app");
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot list the backups in s3:https:\/\/127\.0\.0\.1:\d+\/move-bk\/restic/);
    assert.equal((await dbPg.psql("app", "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')")).trim(), "0");
  });

  it("an empty repository: refused with 'no backup of database app'", async () => {
    const empty = installOn(dbPg, options("move-empty"));
    const init = await run("bash", ["-c", 'set -a; . "$BACKUP_ENV_FILE"; set +a; exec restic --no-cache init'], { env: empty.env });
    assert.equal(init.code, 0, init.stderr);
    const r = await backup(empty, "restore-app");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no backup of database app in s3:.*\/move-empty\/restic: nothing restored/);
  });

  it("the old server's backup.service, then restore-app on the db server: every row of every table, schemas included", async () => {
    const made = await runUnit(mvp, "backup.service");
    assert.equal(made.code, 0, made.stdout + made.stderr);
    const r = await backup(db, "restore-app");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /restoring backup [0-9a-f]{8} \(made .* on .*\) into database app as its owner app/);
    assert.match(r.stdout, /public\.users: 3000/);
    assert.match(r.stdout, /queue\.jobs: 50/);
    assert.deepEqual(await fingerprint(dbPg, "app"), await fingerprint(mvpPg, "app"));
    // The counts the README compares across the two servers before the switch.
    const [before, after] = await Promise.all([backup(mvp, "tables"), backup(db, "tables")]);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(after.stdout, before.stdout);
    assert.match(after.stdout, /^public\.pgmigrations: 1$/m);
  });

  it("everything restored belongs to the owner, and the planner has statistics", async () => {
    const owners = await dbPg.psql(
      "app",
      `select distinct pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'queue') and c.relkind in ('r', 'S', 'i')
       union select distinct pg_get_userbyid(nspowner) from pg_namespace where nspname = 'queue';`,
    );
    assert.deepEqual(owners.trim().split("\n"), [OWNER]);
    assert.equal((await dbPg.psql("app", "select reltuples::int from pg_class where oid = 'public.users'::regclass")).trim(), "3000");
  });

  for (const login of [WEB, WORKER]) {
    it(`${login} reads and writes the restored data, in both schemas, sequences included`, async () => {
      const r = await as(
        dbPg,
        login,
        `select count(*) from users;
         insert into users (email, note) values ('${login}@example.com', 'after the move') returning id > 3000;
         update users set note = 'edited by ${login}' where email = 'user1@example.com';
         delete from users where email = '${login}@example.com';
         select queue.add_job('send_welcome_email', '{"userId": 1}') > 50;
         update queue.jobs set attempts = attempts + 1 where id = 1;
         delete from queue.jobs where id = 2;`,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split("\n"), ["3000", "t", "t"]);
    });

    it(`${login} cannot change the schema: no CREATE, ALTER, DROP or TRUNCATE`, async () => {
      for (const [sql, error] of [
        ["create table intruder (id int)", /permission denied for schema public/],
        ["create table queue.intruder (id int)", /permission denied for schema queue/],
        ["alter table users add column hacked text", /must be owner of table users/],
        ["drop table queue.jobs", /must be owner of table jobs/],
        ["truncate users", /permission denied for table users/],
        ["create schema intruder", /permission denied for database app/],
      ] as const) {
        const r = await as(dbPg, login, `${sql};`);
        assert.notEqual(r.code, 0, `${login}: ${sql} succeeded`);
        assert.match(r.stderr, error, `${login}: ${sql}`);
      }
    });
  }

  it("a second restore-app is refused, naming the database and what it found; the data is untouched", async () => {
    const fingerprintBefore = await fingerprint(dbPg, "app");
    const r = await backup(db, "restore-app", "latest");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /database app is not empty: it has \d+ tables, views or sequences \(public\.pgmigrations \(table\), .*, \.\.\.\); restore-app never writes over data/);
    assert.deepEqual(await fingerprint(dbPg, "app"), fingerprintBefore);
  });

  it("a named backup that does not exist, a bad id and extra arguments are refused", async () => {
    await dbPg.psql("postgres", `create database app_fresh owner ${OWNER}`);
    const fresh = installOn(dbPg, options("move-bk", { databaseName: "app_fresh" }));
    const missing = await backup(fresh, "restore-app", "deadbeef");
    assert.equal(missing.code, 1, missing.stdout);
    assert.match(missing.stderr, /(no backup deadbeef of database app_fresh|cannot list the backups in .*: .*deadbeef)/);
    const bad = await backup(fresh, "restore-app", "yesterday");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /backup id must be "latest" or a hex id from "backup list"; got "yesterday"/);
    const extra = await backup(fresh, "restore-app", "latest", "more");
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /^usage: backup now/m);
  });

  it("a database that does not exist on this server is refused (restore-app runs where the first boot made it)", async () => {
    const elsewhere = installOn(dbPg, options("move-bk", { databaseName: "nowhere" }));
    const r = await backup(elsewhere, "restore-app");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /database nowhere does not exist here/);
  });

  it("standby (the db server before the switch): the timers' backup and drill do nothing and succeed; restore-app still works", async () => {
    const standby = installOn(dbPg, options("move-bk", { standby: true }));
    const before = await snapshotCount(standby);
    for (const unit of ["backup.service", "restore-drill.service"]) {
      const r = await runUnit(standby, unit);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.onFailure, undefined);
      assert.match(r.stdout, /skipped: this server's database is not the app's database yet/);
    }
    assert.equal(await snapshotCount(standby), before, "a standby server added a snapshot");
    // The same server, switched (the render without standby), backs up again.
    const made = await runUnit(db, "backup.service");
    assert.equal(made.code, 0, made.stderr);
    assert.equal(await snapshotCount(db), before + 1);
  });
});

/** The db server's first-boot layout: the step's own SQL when present, else the stand-in (said loudly). */
async function makeSeparatedLayout(pg: ScratchPg): Promise<void> {
  if (!existsSync(LOGINS_SQL)) {
    console.warn(`NOTE: ${LOGINS_SQL} is not in this tree: the db server's layout is this test's stand-in (SEPARATED_LAYOUT)`);
    await pg.psql("postgres", SEPARATED_LAYOUT);
    return;
  }
  await runOk("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", LOGINS_SQL, "-v", "db=app", "-v", `owner=${OWNER}`, "-v", `web=${WEB}`, "-v", `worker=${WORKER}`], {
    env: { ...process.env, ...pg.env, DB_PASSWORD: "owner-password-0123456789", DB_WEB_PASSWORD: "web-password-0123456789", DB_WORKER_PASSWORD: "worker-password-0123456789" },
  });
}
