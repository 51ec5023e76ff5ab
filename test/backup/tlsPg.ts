/**
 * A scratch PostgreSQL shaped like a managed cluster: reachable only over TCP with TLS
 * (`hostssl` + scram-sha-256; no plain TCP line in pg_hba.conf), a server certificate signed
 * by a CA of its own, and an admin login that is not a superuser (CREATEDB CREATEROLE, as
 * DigitalOcean's `doadmin`). The superuser is reached over the Unix socket only, for setup and
 * for looking at the result.
 */
import { writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { run, runOk, tempDir, REPO_ROOT } from "./helpers";

export interface Ca {
  certFile: string;
  keyFile: string;
}

export interface TlsPg {
  host: string;
  port: number;
  /** The CA the server's certificate chains to. */
  ca: Ca;
  /** psql as the superuser over the socket. */
  superuser(db: string, sql: string): Promise<string>;
  /** psql as a login over TCP with TLS verified against `caFile` (default: the server's CA). */
  login(user: string, password: string, db: string, sql: string, caFile?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

export async function makeCa(dir: string, name: string): Promise<Ca> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await runOk("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", `/CN=${name}`]);
  return { certFile, keyFile };
}

export async function startTlsPg(): Promise<TlsPg> {
  const dir = tempDir("managed-pg-");
  const script = join(REPO_ROOT, "cli", "pg-scratch.sh");
  const url = new URL((await runOk("bash", [script, "start", dir])).trim());
  const port = Number(url.port);
  const data = join(dir, "data");
  const ca = await makeCa(dir, "test-ca");
  const csr = join(dir, "server.csr");
  const key = join(data, "server.key");
  const crt = join(data, "server.crt");
  await runOk("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=db.internal.test"]);
  const ext = join(dir, "san.ext");
  writeFileSync(ext, "subjectAltName=DNS:db.internal.test\n");
  await runOk("openssl", ["x509", "-req", "-in", csr, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext]);
  await runOk("chown", ["postgres:postgres", key, crt]);
  await runOk("chmod", ["0600", key]);
  // Socket for the superuser; TCP only with TLS and a password.
  writeFileSync(join(data, "pg_hba.conf"), "local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n");
  appendFileSync(join(data, "postgresql.conf"), "ssl = on\npassword_encryption = scram-sha-256\n");
  const bindir = (await runOk("bash", ["-c", "printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"])).trim();
  await runOk("runuser", ["-u", "postgres", "--", join(bindir, "pg_ctl"), "-D", data, "-w", "restart", "-l", join(dir, "server.log"), "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`]);
  const superuser = (db: string, sql: string) =>
    runOk("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", "postgres", "-d", db], { input: sql });
  const login = (user: string, password: string, db: string, sql: string, caFile = ca.certFile) =>
    run("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", `host=127.0.0.1 port=${port} dbname=${db} user=${user} sslmode=verify-ca sslrootcert=${caFile}`], {
      input: sql,
      env: { ...process.env, PGPASSWORD: password },
    });
  return { host: "127.0.0.1", port, ca, superuser, login, stop: async () => void (await run("bash", [script, "stop", dir])) };
}
