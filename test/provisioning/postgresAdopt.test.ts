/**
 * postgresql-adopt (the db and replica roles' steps): a data directory made on another server, as
 * a Debian cluster's is (its postgresql.conf, pg_hba.conf and pg_ident.conf live in /etc, not in
 * it), becomes this server's cluster with its data, with the configuration a new cluster here
 * gets and no trust access. On the host's PostgreSQL, with pg_createcluster's configuration root
 * in a folder of the test's own (PG_CLUSTER_CONF_ROOT), so /etc/postgresql is not touched.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { freePort, tempDir, userIds } from "../support/tools";

const SCRIPT = path.join(__dirname, "..", "..", "provisioning", "assets", "server", "postgresql-adopt");

describe("@real postgresql-adopt: a cluster made on another server, adopted with its data and a new cluster's configuration", function () {
  this.timeout(120_000);
  const cluster = `adopt-${randomBytes(3).toString("hex")}`;
  let dir: string;
  let version: string;
  let bindir: string;
  let env: NodeJS.ProcessEnv;
  const asPostgres = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    spawnSync("runuser", ["-u", "postgres", "--", ...args], { encoding: "utf8", env: { ...process.env, ...extraEnv }, timeout: 60_000 });

  before(function () {
    version = spawnSync("bash", ["-c", "ls /usr/lib/postgresql | sort -V | tail -n 1"], { encoding: "utf8" }).stdout.trim();
    bindir = `/usr/lib/postgresql/${version}/bin`;
    if (process.getuid?.() !== 0 || !version || spawnSync("bash", ["-c", "command -v pg_createcluster"]).status !== 0) {
      const why = "needs root, PostgreSQL's server and postgresql-common (npm run setup)";
      if (process.env.CI) throw new Error(`the postgresql-adopt test ${why}`);
      console.log(`      SKIPPED LOUDLY: ${why}`);
      this.skip();
    }
    dir = tempDir("postgres-adopt");
    fs.chmodSync(dir, 0o755);
    fs.mkdirSync(path.join(dir, "etc"));
    env = { ...process.env, PG_CLUSTER_CONF_ROOT: path.join(dir, "etc") };
  });

  after(() => {
    if (!env) return;
    spawnSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, cluster, "stop", "-m", "fast"], { env });
    spawnSync("pg_dropcluster", [version, cluster], { env });
  });

  it("a data directory without its configuration files (as on a Debian server's volume): adopted, its data kept, peer and scram-sha-256 access, never trust", async () => {
    // The other server's cluster: data written, then its configuration files gone (Debian keeps them in /etc).
    const data = path.join(dir, "data");
    const sock = path.join(dir, "sock");
    for (const d of [sock, data]) {
      fs.mkdirSync(d, { mode: 0o700 });
      fs.chownSync(d, ...userIds("postgres"));
    }
    const port = String(await freePort());
    assert.equal(asPostgres([`${bindir}/initdb`, "-D", data, "--no-sync", "-U", "postgres"]).status, 0);
    const opts = `-p ${port} -k ${sock} -c listen_addresses=''`;
    assert.equal(asPostgres([`${bindir}/pg_ctl`, "-D", data, "-o", opts, "-w", "start"]).status, 0);
    assert.equal(asPostgres(["psql", "-X", "-q", "-h", sock, "-p", port, "-d", "postgres", "-c", "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('from the other server')"]).status, 0);
    assert.equal(asPostgres([`${bindir}/pg_ctl`, "-D", data, "-w", "stop"]).status, 0);
    for (const f of ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]) fs.rmSync(path.join(data, f));
    // Without them, pg_createcluster itself refuses: what the step did before.
    const bare = spawnSync("pg_createcluster", [version, `${cluster}-bare`, "-d", data], { encoding: "utf8", env });
    assert.notEqual(bare.status, 0);
    assert.match(bare.stderr, /move_conffile: required configuration file .*postgresql\.conf does not exist/);

    const r = spawnSync(SCRIPT, [version, cluster, data], { encoding: "utf8", env, timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^the adopted cluster's postgresql\.conf pg_hba\.conf pg_ident\.conf: as a new cluster here gets them$/m);
    const listed = spawnSync("pg_lsclusters", ["--no-header"], { encoding: "utf8", env }).stdout;
    assert.match(listed, new RegExp(`^${version}\\s+${cluster}\\s+\\d+\\s+down\\s+postgres\\s+${data.replaceAll("/", "\\/")}\\s`, "m"));
    const confDir = path.join(dir, "etc", version, cluster);
    const hba = fs.readFileSync(path.join(confDir, "pg_hba.conf"), "utf8").split("\n").filter((l) => /^\s*(local|host)/.test(l));
    assert.ok(hba.length > 0);
    for (const line of hba) assert.match(line, /\s(peer|scram-sha-256)\s*$/, `access line: ${line}`);
    const conf = fs.readFileSync(path.join(confDir, "postgresql.conf"), "utf8");
    assert.match(conf, new RegExp(`^data_directory = '${data}'`, "m"));
    for (const f of ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]) assert.ok(!fs.existsSync(path.join(data, f)), `${f} left in the data directory`);

    // It starts as this server's cluster, with the other server's data.
    fs.writeFileSync(path.join(confDir, "postgresql.conf"), conf.replace(/^port = \d+/m, `port = ${port}`) + `\nunix_socket_directories = '${sock}'\nexternal_pid_file = ''\n`);
    const start = spawnSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, cluster, "start"], { encoding: "utf8", env });
    assert.equal(start.status, 0, start.stdout + start.stderr);
    const kept = asPostgres(["psql", "-X", "-At", "-h", sock, "-p", port, "-d", "postgres", "-c", "SELECT note FROM kept"]);
    assert.equal(kept.stdout.trim(), "from the other server", kept.stderr);
  });

  it("refuses a folder without a cluster, and a wrong call", () => {
    const empty = tempDir("postgres-adopt-empty");
    const r = spawnSync(SCRIPT, [version, `${cluster}-none`, empty], { encoding: "utf8", env });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds no PostgreSQL cluster/);
    assert.equal(spawnSync(SCRIPT, [version], { encoding: "utf8", env }).status, 2);
  });
});
