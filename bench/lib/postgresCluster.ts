/**
 * A PostgreSQL cluster set up the way the db server's is for the app: the rendered
 * postgresql.conf (provisioning/postgres.ts, tuned to a server's memory), the app's login with a
 * scram-sha-256 password owning the app's database (as provisioning/assets/server/20-postgresql
 * makes them), and pg_hba.conf letting that login in only the way the benchmark names: over TCP
 * from one address, with TLS required or not, or over the Unix socket. Optionally started inside
 * a network namespace (the db "server" of bench/lib/privateLink.ts).
 *
 * pg_stat_statements is loaded on every cluster alike: the count of statements the app runs per
 * request is what a network round trip multiplies.
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { renderPostgresConf } from "../../provisioning/postgres";
import { DATABASE_NAME } from "../../provisioning/layout";
import { DATABASE_ROLE_NAMES } from "../../plan/database";

/** The bench connects as the schema owner, as the all-in-one app did before it had a login per process. */
const DATABASE_USER = DATABASE_ROLE_NAMES.owner;

export type AppAccess =
  | { kind: "tcp"; from: string; tls: boolean }
  | { kind: "socket" };

export interface ClusterOptions {
  /** Memory of the server the rendered postgresql.conf is tuned for. */
  memoryMiB: number;
  listenAddress: string;
  port: number;
  access: AppAccess;
  /** argv prefix that puts the postmaster into a network namespace. */
  inNamespace?: (argv: string[]) => string[];
}

export interface PostgresCluster {
  dataDir: string;
  /** The unix socket's directory (admin access as postgres, peer-authenticated). */
  socketDir: string;
  port: number;
  /** The app's login's password (random per cluster). */
  password: string;
  /** The self-signed server certificate, when TLS is on. */
  certificate?: string;
  /** psql as the postgres superuser over the socket; returns stdout (tuples only, unaligned). */
  admin(sql: string, database?: string): string;
  stop(): void;
}

function newestBinDir(): string {
  const versions = fs.readdirSync("/usr/lib/postgresql").filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(a) - Number(b));
  const bin = `/usr/lib/postgresql/${versions.at(-1)}/bin`;
  if (!versions.length || !fs.existsSync(`${bin}/initdb`)) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql; run: npm run setup");
  return bin;
}

/** A self-signed certificate for `address` (as a db server's own would be), owned by postgres. */
function selfSignedCertificate(dir: string, address: string): { cert: string; key: string } {
  const cert = path.join(dir, "server.crt");
  const key = path.join(dir, "server.key");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${address}`,
    "-addext", `subjectAltName=IP:${address}`, "-keyout", key, "-out", cert,
  ], { stdio: "pipe" });
  // PostgreSQL refuses a key that others can read.
  fs.chmodSync(key, 0o600);
  execFileSync("chown", ["postgres:postgres", cert, key]);
  return { cert, key };
}

function hbaLines(access: AppAccess): string[] {
  const who = `${DATABASE_NAME} ${DATABASE_USER}`;
  const app = access.kind === "socket"
    ? `local ${who} scram-sha-256`
    : `${access.tls ? "hostssl" : "host"} ${who} ${access.from}/32 scram-sha-256`;
  return ["local all postgres peer", app];
}

export function startCluster(dir: string, opts: ClusterOptions): PostgresCluster {
  const bin = newestBinDir();
  const asPostgres = (argv: string[]) => ["runuser", "-u", "postgres", "--", ...argv];
  const exec = (argv: string[], input?: string, env?: NodeJS.ProcessEnv) =>
    execFileSync(argv[0], argv.slice(1), { encoding: "utf8", input, env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  execFileSync("chown", ["postgres:postgres", dir]);
  const dataDir = path.join(dir, "data");
  exec(asPostgres([`${bin}/initdb`, "-D", dataDir, "-U", "postgres", "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]));

  const tls = opts.access.kind === "tcp" && opts.access.tls ? selfSignedCertificate(dir, opts.listenAddress) : undefined;
  const conf = [
    renderPostgresConf({ memoryMiB: opts.memoryMiB, dedicated: false }),
    "# The benchmark's own: where this cluster listens, TLS, and the statement counter.",
    `listen_addresses = '${opts.listenAddress}'`,
    `port = ${opts.port}`,
    `unix_socket_directories = '${dir}'`,
    `ssl = ${tls ? "on" : "off"}`,
    ...(tls ? [`ssl_cert_file = '${tls.cert}'`, `ssl_key_file = '${tls.key}'`] : []),
    "shared_preload_libraries = 'pg_stat_statements'",
    "",
  ].join("\n");
  // Appended after initdb's defaults, so these win.
  fs.appendFileSync(path.join(dataDir, "postgresql.conf"), `\n${conf}`);
  fs.writeFileSync(path.join(dataDir, "pg_hba.conf"), hbaLines(opts.access).join("\n") + "\n");
  const start = asPostgres([`${bin}/pg_ctl`, "-D", dataDir, "-l", path.join(dir, "server.log"), "-w", "-t", "60", "start"]);
  try {
    exec(opts.inNamespace ? opts.inNamespace(start) : start);
  } catch (e) {
    throw new Error(`PostgreSQL did not start: ${(e as Error).message}\n${fs.existsSync(path.join(dir, "server.log")) ? fs.readFileSync(path.join(dir, "server.log"), "utf8") : ""}`);
  }

  const admin = (sql: string, database = "postgres", env?: NodeJS.ProcessEnv) =>
    exec(asPostgres(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(opts.port), "-d", database]), sql, env).trim();
  const password = crypto.randomBytes(18).toString("hex");
  // The password travels through the environment into psql's \getenv, never on a command line.
  admin(
    [
      "\\getenv password APP_DB_PASSWORD",
      `CREATE ROLE ${DATABASE_USER} LOGIN PASSWORD :'password';`,
      `CREATE DATABASE ${DATABASE_NAME} OWNER ${DATABASE_USER};`,
    ].join("\n"),
    "postgres",
    { ...process.env, APP_DB_PASSWORD: password },
  );
  admin("CREATE EXTENSION pg_stat_statements;", DATABASE_NAME);
  return {
    dataDir,
    socketDir: dir,
    port: opts.port,
    password,
    certificate: tls?.cert,
    admin: (sql, database) => admin(sql, database),
    stop() {
      try {
        exec(asPostgres([`${bin}/pg_ctl`, "-D", dataDir, "-m", "fast", "-w", "stop"]));
      } catch {
        /* not running */
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
