/**
 * The old mvp server's switch while its stack moves to separated (provisioning/mvpDatabase.ts):
 * the shipped `mvp-database` command with its rendered env file, against a real PostgreSQL. Only
 * systemctl is a stand-in (there is no systemd to drive here): it records what it was asked.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DATABASE_ROLE_NAMES } from "../../plan/database";
import { MVP_DATABASE_PATHS, renderMvpDatabase } from "../../provisioning/mvpDatabase";
import type { MvpDatabaseState } from "../../config/stages";
import { run, startPg, tempDir, type ScratchPg } from "./helpers";

const ROLES = Object.values(DATABASE_ROLE_NAMES);

describe("@real mvp-database: the old server's PostgreSQL, backup timers and workers at the switch and back", function () {
  this.timeout(60_000);
  let pg: ScratchPg;
  let dir: string;
  let systemctlLog: string;

  before(async () => {
    pg = await startPg();
    dir = tempDir("mvp-database-");
    chmodSync(dir, 0o755);
    await pg.psql("postgres", `${ROLES.map((r) => `create role ${r} login;`).join("\n")}\ncreate database app owner ${DATABASE_ROLE_NAMES.owner};`);
    // systemctl: `cat` finds the units listed in FAKE_UNITS; every other call is recorded.
    const bin = join(dir, "bin");
    mkdirSync(bin);
    systemctlLog = join(dir, "systemctl.log");
    writeFileSync(
      join(bin, "systemctl"),
      `#!/bin/sh\nif [ "$1" = cat ]; then case " $FAKE_UNITS " in *" $2 "*) exit 0 ;; *) exit 1 ;; esac; fi\necho "$*" >> '${systemctlLog}'\n`,
    );
    chmodSync(join(bin, "systemctl"), 0o755);
  });

  after(async () => {
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Installs both files as the server gets them and runs the command as the push does. */
  async function apply(state: MvpDatabaseState | "no env file", units = "backup.timer restore-drill.timer", pgEnv = pg.env, args: string[] = []) {
    const root = join(dir, `root-${Math.random().toString(36).slice(2)}`);
    const files = renderMvpDatabase(state === "no env file" ? "live" : state).files;
    for (const f of files) {
      if (state === "no env file" && f.path === MVP_DATABASE_PATHS.envFile) continue;
      const p = join(root, f.path);
      mkdirSync(join(p, ".."), { recursive: true });
      writeFileSync(p, f.content);
      chmodSync(p, parseInt(f.mode, 8));
    }
    chmodSync(root, 0o755);
    writeFileSync(systemctlLog, "");
    const r = await run(join(root, MVP_DATABASE_PATHS.command), args, {
      env: { ...process.env, ...pgEnv, PGUSER: "", PATH: `${join(dir, "bin")}:${process.env.PATH}`, FAKE_UNITS: units, MVP_DATABASE_ENV_FILE: join(root, MVP_DATABASE_PATHS.envFile) },
    });
    return { ...r, systemctl: readFileSync(systemctlLog, "utf8").trim().split("\n").filter(Boolean) };
  }

  const canLogin = async () => (await pg.psql("postgres", `select rolname || '=' || rolcanlogin from pg_roles where rolname in (${ROLES.map((r) => `'${r}'`).join(", ")}) order by 1`)).trim().split("\n");

  it("kept: no login of the app's can log in, open sessions end; backup timers stopped and disabled; old workers stopped; the data stays", async () => {
    // An old worker still connected as the owner when the switch lands.
    const session = spawn("psql", ["-X", "-d", "app", "-U", DATABASE_ROLE_NAMES.owner, "-c", "select pg_sleep(60)"], { env: { ...process.env, ...pg.env } });
    const ended = new Promise<number | null>((done) => session.on("close", done));
    await waitFor(async () => (await pg.psql("postgres", `select count(*) from pg_stat_activity where usename = '${DATABASE_ROLE_NAMES.owner}'`)).trim() === "1");
    await pg.psql("app", "create table kept_data (id int); insert into kept_data values (42);");

    const r = await apply("kept");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.systemctl, ["disable --now backup.timer restore-drill.timer", "stop worker@*.service worker-critical@*.service"]);
    assert.deepEqual(await canLogin(), ["app=false", "app_web=false", "app_worker=false"]);
    assert.notEqual(await ended, 0, "the open session outlived the switch");
    assert.match(r.stdout, /ended 1 open sessions/);
    const login = await run("psql", ["-X", "-d", "app", "-U", DATABASE_ROLE_NAMES.web, "-c", "select 1"], { env: { ...process.env, ...pg.env } });
    assert.notEqual(login.code, 0);
    assert.match(login.stderr, /role "app_web" is not permitted to log in/);
    assert.equal((await pg.psql("app", "select id from kept_data")).trim(), "42");
  });

  it("kept again (a re-run): the same actions, nothing fails", async () => {
    const r = await apply("kept");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await canLogin(), ["app=false", "app_web=false", "app_worker=false"]);
  });

  it("live (going back): every login may log in again; the backup timers are enabled and started, and the app's processes", async () => {
    const r = await apply("live");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.systemctl, ["enable --now backup.timer restore-drill.timer", "start saas-app.target"]);
    assert.deepEqual(await canLogin(), ["app=true", "app_web=true", "app_worker=true"]);
  });

  it("freeze (the start of the move's window): the app's processes stop and its logins are locked out; the timers are left for the switch", async () => {
    const r = await apply("live", undefined, undefined, ["freeze"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.systemctl, ["stop saas-app.target worker@*.service worker-critical@*.service"]);
    assert.deepEqual(await canLogin(), ["app=false", "app_web=false", "app_worker=false"]);
    assert.match(r.stdout, /writes have stopped: now run "sudo backup now" here/);
    // Called off before the switch: the state file's own state undoes it.
    const undo = await apply("live");
    assert.equal(undo.code, 0, undo.stderr);
    assert.deepEqual(await canLogin(), ["app=true", "app_web=true", "app_worker=true"]);
  });

  it("freeze after the switch, or an unknown argument: refused", async () => {
    const late = await apply("kept", undefined, undefined, ["freeze"]);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /freeze is for the start of the move \(state live\); the state is kept/);
    assert.deepEqual(late.systemctl, []);
    const bad = await apply("live", undefined, undefined, ["thaw"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /usage: mvp-database \[freeze\|live\|kept\]/);
  });

  it("going back after the switch: 'live' applies now, whatever the file still says (kept)", async () => {
    await apply("kept");
    const r = await apply("kept", undefined, undefined, ["live"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.systemctl, ["enable --now backup.timer restore-drill.timer", "start saas-app.target"]);
    assert.deepEqual(await canLogin(), ["app=true", "app_web=true", "app_worker=true"]);
  });

  it("timers that never arrived are left alone; a stopped cluster is reported, not an error", async () => {
    const r = await apply("kept", "", { ...pg.env, PGPORT: "1" });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.systemctl, ["stop worker@*.service worker-critical@*.service"]);
    assert.match(r.stdout, /the old cluster is not running: nothing can use it/);
  });

  it("run by the command's own push before the env file's: does nothing, says so, succeeds", async () => {
    const r = await apply("no env file");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.systemctl, []);
    assert.match(r.stdout, /mvp-database\.env is not here yet: its own push runs this again/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((done) => setTimeout(done, 100));
  }
}
