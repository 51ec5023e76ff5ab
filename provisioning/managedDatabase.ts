/**
 * Server side of a managed PostgreSQL (DigitalOcean; docs/ARCHITECTURE.md, "Managed PostgreSQL"):
 * the cluster's CA certificate as a file every client verifies the server with, the connection
 * parameters libpq and node-postgres read, and the one-time handover the cluster's admin runs so
 * that the app's owner login owns the app's database.
 *
 * Pure: plain values in, text out. components/managedDatabase.ts runs the handover over SSH.
 */
import type { RenderedFile } from "./files";
import { CONFIG_DIR } from "./layout";
import { shellQuote, WAIT_FOR_FIRST_BOOT } from "./push";
import { DATABASE_ROLE_NAMES, type DatabaseEndpoint } from "../plan/database";

/** The cluster's CA certificate on every server that connects to it (public: a CA proves, it grants nothing). */
export const DATABASE_CA_FILE = `${CONFIG_DIR}/db-ca.crt`;

/**
 * `verify-ca`: the server must present a certificate of the cluster's own CA. Not `verify-full`:
 * DigitalOcean documents the CA but not that its certificates name the private host the servers
 * connect to, and a name mismatch would stop every connection. Inside the stack's VPC, a
 * certificate of this CA is what an impostor cannot have.
 */
export const MANAGED_SSLMODE = "verify-ca";

export function renderDatabaseCaFile(certificate: string): RenderedFile {
  if (!/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n?$/.test(certificate.trim() + "\n")) {
    throw new Error("managed database: the CA certificate is not a PEM certificate");
  }
  return { path: DATABASE_CA_FILE, content: certificate.trim() + "\n", mode: "0644" };
}

/** libpq's connection parameters for an endpoint (no password: that travels apart). */
export function libpqParams(endpoint: DatabaseEndpoint, user: string, caFile = endpoint.caFile ?? DATABASE_CA_FILE): Record<string, string> {
  return {
    host: endpoint.host,
    port: String(endpoint.port),
    dbname: endpoint.database,
    user,
    ...(endpoint.tls ? { sslmode: MANAGED_SSLMODE, sslrootcert: caFile } : {}),
  };
}

/** A libpq conninfo string ("key=value ..."); a value with anything but plain characters is quoted as libpq reads it. */
export function conninfo(params: Record<string, string>): string {
  const quoted = (value: string) => (/^[A-Za-z0-9._\/-]+$/.test(value) ? value : `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`);
  return Object.entries(params)
    .map(([key, value]) => `${key}=${quoted(value)}`)
    .join(" ");
}

/**
 * The handover, run as the cluster's admin (`doadmin`) connected to the app's database.
 * DigitalOcean's API creates the database owned by its admin and the logins with no rights
 * (`DatabaseDb` has no owner field, and `DatabaseUser` cannot grant), so the admin:
 *  - borrows the owner role (PostgreSQL 16+: changing an owner needs SET ROLE to the new one;
 *    before 16, membership), only when it does not already have it, and gives it back at the end;
 *  - makes the owner login own the database and its public schema, and lets it create databases
 *    (the restore drill and `backup restore` restore into a new one);
 *  - gives the web and worker logins BYPASSRLS: graphile-worker's tables have row-level security
 *    on and no policy, so only their owner would see rows (PostgreSQL 16+ lets an admin with
 *    BYPASSRLS and the ADMIN option give it; before 16 only a superuser can, and it says so);
 *  - as the owner, grants the web and worker logins their data rights, on what exists and,
 *    through default privileges, on all the owner creates later (migrations run as the owner,
 *    so it owns every table). Neither may change the schema.
 * Idempotent: every statement may run again.
 */
export function renderOwnerHandoverSql(): string {
  return `\\set ON_ERROR_STOP on
SELECT current_setting('server_version_num')::int >= 160000 AS set_privilege \\gset
\\if :set_privilege
SELECT NOT pg_has_role(current_user, :'owner', 'SET') AS borrow \\gset
\\else
SELECT NOT pg_has_role(current_user, :'owner', 'MEMBER') AS borrow \\gset
\\endif
\\if :borrow
GRANT :"owner" TO CURRENT_USER;
\\endif
ALTER DATABASE :"db" OWNER TO :"owner";
ALTER ROLE :"owner" CREATEDB;
\\if :set_privilege
ALTER ROLE :"web" BYPASSRLS;
ALTER ROLE :"worker" BYPASSRLS;
\\else
\\warn 'PostgreSQL before 16: only a superuser can give the web and worker logins BYPASSRLS, which the tables of the job queue need'
\\endif
SET ROLE :"owner";
ALTER SCHEMA public OWNER TO :"owner";
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"web", :"worker";
SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I', nspname, :'web', :'worker'),
       format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I, %I', nspname, :'web', :'worker'),
       format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I, %I', nspname, :'web', :'worker')
  FROM pg_namespace WHERE nspowner = :'owner'::regrole \\gexec
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"web", :"worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"web", :"worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE, SELECT ON SEQUENCES TO :"web", :"worker";
RESET ROLE;
\\if :borrow
REVOKE :"owner" FROM CURRENT_USER;
\\endif
`;
}

/**
 * The shell command that runs the handover on a server in the VPC, as the SSH user: the admin's
 * password is the first line of stdin and the SQL the rest, so the password is never in a file,
 * an argument or an exported environment anyone else can read; only this one psql has it.
 */
export function renderOwnerHandoverCommand(endpoint: DatabaseEndpoint, adminUser: string, caFile = DATABASE_CA_FILE): string {
  const vars = { db: endpoint.database, owner: DATABASE_ROLE_NAMES.owner, web: DATABASE_ROLE_NAMES.web, worker: DATABASE_ROLE_NAMES.worker };
  const psql = [
    "psql -X -q -v ON_ERROR_STOP=1",
    ...Object.entries(vars).map(([k, v]) => `-v ${k}=${shellQuote(v)}`),
    shellQuote(conninfo(libpqParams(endpoint, adminUser, caFile))),
  ].join(" ");
  return [WAIT_FOR_FIRST_BOOT, "set -eu", "IFS= read -r PGPASSWORD", "export PGPASSWORD", `exec ${psql}`].join("\n");
}
