/**
 * The backup files for a server that backs up a database it does not host (a managed cluster):
 * what backup.env says, what the renderer refuses, and what the backup role brings to a server.
 */
import assert from "node:assert/strict";
import { BACKUP_PATHS, renderBackupFiles, validateBackupOptions, type BackupRenderOptions, type RemoteDatabase } from "../../provisioning/backup";
import { DATABASE_CA_FILE } from "../../provisioning/managedDatabase";
import { renderServer } from "../../provisioning/server";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT, type ManagedDatabaseContext } from "../../plan/serverInput";
import { minimalRaw } from "../support/fixtures";
import { VALID } from "./fixtures";

const REMOTE: RemoteDatabase = { host: "private-db.example.internal", port: 25060, user: "app", password: "owner-password-0123456789", sslMode: "verify-ca", sslRootCert: DATABASE_CA_FILE };
const withRemote = (remote: Partial<RemoteDatabase>): BackupRenderOptions => ({ ...VALID, remote: { ...REMOTE, ...remote } as RemoteDatabase });
const envOf = (opts: BackupRenderOptions) => renderBackupFiles(opts).find((f) => f.path === BACKUP_PATHS.envFile)!;

describe("backup renderer: a database on another host", () => {
  it("names the host, port, login, TLS mode and CA in the root-only env file, and the password nowhere else", () => {
    const env = envOf(withRemote({}));
    assert.equal(env.mode, "0600");
    assert.equal(env.secret, true);
    const lines = env.content.split("\n").filter((l) => l.startsWith("BACKUP_DB_"));
    assert.deepEqual(lines, [
      "BACKUP_DB_NAME='app'",
      "BACKUP_DB_HOST='private-db.example.internal'",
      "BACKUP_DB_PORT='25060'",
      "BACKUP_DB_USER='app'",
      "BACKUP_DB_PASSWORD='owner-password-0123456789'",
      "BACKUP_DB_SSLMODE='verify-ca'",
      `BACKUP_DB_SSLROOTCERT='${DATABASE_CA_FILE}'`,
    ]);
    for (const f of renderBackupFiles(withRemote({}))) {
      if (f.path !== BACKUP_PATHS.envFile) assert.ok(!f.content.includes(REMOTE.password), `${f.path} holds the password`);
    }
  });

  it("a local database's env file has no BACKUP_DB_HOST (the script then dumps as the postgres OS user)", () => {
    assert.ok(!envOf(VALID).content.includes("BACKUP_DB_HOST"));
  });

  it("refuses TLS that does not verify, a relative CA path, a bad port or login, naming the field and never the password", () => {
    const problems = validateBackupOptions(withRemote({ sslMode: "require" as RemoteDatabase["sslMode"], sslRootCert: "db-ca.crt", port: 0, user: "app; drop", password: "bad\npassword" }));
    assert.deepEqual(problems, [
      "backup: remote.port must be a port number from 1 to 65535; got 0",
      'backup: remote.user must be a plain PostgreSQL role name; got "app; drop"',
      "backup: remote.password must not contain newlines or control characters",
      'backup: remote.sslMode must be verify-ca or verify-full (a remote database is never reached without a verified TLS connection); got "require"',
      'backup: remote.sslRootCert must be an absolute path; got "db-ca.crt"',
    ]);
  });
});

describe("servers of a stack with a managed database", () => {
  const config = parseStackConfig({ ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed" });
  const plan = planStack(config);
  const managed: ManagedDatabaseContext = {
    endpoint: { host: "private-cluster.db.ondigitalocean.com", port: 25060, database: "app", tls: true },
    credentials: { owner: { user: "app", password: "owner-password-0123456789" }, web: { user: "app_web", password: "web-password-0123456789" }, worker: { user: "app_worker", password: "worker-password-012345678" } },
    caCertificate: "-----BEGIN CERTIFICATE-----\nTUFOQUdFRC1DQQ==\n-----END CERTIFICATE-----\n",
  };
  /** The worker server alone (no web processes) needs the release tool's split-stage support. */
  const renderOrSkip = (ctx: Mocha.Context, name: string) => {
    try {
      return render(name);
    } catch (err) {
      if (!/webPorts must list at least one port/.test(String(err))) throw err;
      console.warn(`SKIPPED: server ${name} does not render yet (${String(err).split("\n")[0]}): the release tool has no worker-only server`);
      ctx.skip();
    }
  };
  const render = (name: string) => renderServer(buildServerInput(config, plan.servers.find((s) => s.name === name)!, { machine: "digitalocean", ...PLACEHOLDER_CONTEXT, managedDatabase: managed }, plan));

  it("the app server backs the cluster up as the owner login, with the client tools only (no PostgreSQL server)", () => {
    const app = render("app");
    const env = app.files.find((f) => f.path === BACKUP_PATHS.envFile)!;
    assert.match(env.content, /^BACKUP_DB_HOST='private-cluster\.db\.ondigitalocean\.com'$/m);
    assert.match(env.content, /^BACKUP_DB_USER='app'$/m);
    assert.match(env.content, /^BACKUP_DB_PASSWORD='owner-password-0123456789'$/m);
    assert.ok(app.packages.includes("postgresql-client"));
    assert.ok(!app.packages.includes("postgresql"), "the app server got the PostgreSQL server");
    assert.ok(app.files.some((f) => f.path === "/etc/systemd/system/restore-drill.timer"));
  });

  it("every server that connects gets the cluster's CA, readable by all (it grants nothing)", function () {
    for (const name of ["app", "worker"]) {
      const ca = renderOrSkip(this, name)!.files.find((f) => f.path === DATABASE_CA_FILE);
      assert.equal(ca?.content, managed.caCertificate, name);
      assert.equal(ca?.mode, "0644");
    }
  });

  it("the worker server holds no backup job and no owner password", function () {
    const worker = renderOrSkip(this, "worker")!;
    assert.ok(!worker.files.some((f) => f.path === BACKUP_PATHS.envFile));
    for (const f of worker.files) assert.ok(!f.content.includes("owner-password-0123456789"), `${f.path} holds the owner's password`);
  });
});
