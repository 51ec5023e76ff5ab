/**
 * The db role: PostgreSQL on the protected data volume, tuned to the server's memory, the app's
 * three logins and database, and the encrypted off-server backups with their weekly restore
 * drill. On a db server of its own it also listens on the private network, with TLS, for
 * exactly the app's servers (pg_hba from the plan's firewall rule).
 */
import { BACKUP_PACKAGES, BACKUP_TIMERS, type BackupRenderOptions } from "../backup";
import { backupFiles } from "./backup";
import { BOOTSTRAP_PATH } from "../cloudInit";
import type { RenderedFile } from "../files";
import { DATA_LABEL, DATA_MOUNT, DATABASE_NAME, DB_ENV_FILE, LIB_DIR } from "../layout";
import { loadScript } from "../scripts";
import { PG_LISTEN_CONF_PATH, PG_TLS_CERT_PATH, PG_TLS_KEY_PATH, POSTGRES_CONF_PATH, renderPostgresFiles, type PostgresClient } from "../postgres";
import { primaryReplicationFiles, primaryReplicationSettings, type PrimaryReplicationInput } from "../replication";
import type { DatabaseCredentials } from "../../plan/database";
import { renderUnit, UNIT_DIR } from "../unit";
import type { RoleContribution } from "./contribution";

/** Where the data volume shows up, per kind of machine (never mounted by this name: by label). */
export const DATA_DEVICE_GLOBS = {
  hetzner: "/dev/disk/by-id/scsi-0HC_Volume_*",
  digitalocean: "/dev/disk/by-id/scsi-0DO_Volume_*",
  qemu: "/dev/disk/by-id/virtio-saas-data",
} as const;
export type MachineKind = keyof typeof DATA_DEVICE_GLOBS;

export interface DbInput {
  machine: MachineKind;
  /** The server's memory: PostgreSQL's tuning follows it. */
  memoryMiB: number;
  /** PostgreSQL has the server to itself (no app on it): it gets more of the memory. */
  dedicated: boolean;
  /** The app's three logins (role names and generated passwords); bootstrap creates them. */
  credentials: DatabaseCredentials;
  /** The app's servers that reach PostgreSQL over the private network (split stages); none: localhost only. */
  networkClients?: PostgresClient[];
  /** The nightly backup and weekly drill, already resolved to this server's bucket. */
  backup: BackupRenderOptions;
  /** Read replicas that stream from this primary (stage scaled); needs networkClients. */
  replication?: PrimaryReplicationInput;
}

/** The logins' grants, run by 20-postgresql with psql (a file of its own so tests run the same SQL). */
export const DB_LOGINS_SQL_PATH = `${LIB_DIR}/postgresql-logins.sql`;
/** Registers a data directory made on another server as this server's cluster (the db and replica roles' steps). */
export const POSTGRES_ADOPT_PATH = `${LIB_DIR}/postgresql-adopt`;

/** The adopting script, for a role that may find a cluster on its volume (or clones one). */
export function postgresAdoptFile(): RenderedFile {
  return { path: POSTGRES_ADOPT_PATH, content: loadScript("server/postgresql-adopt"), mode: "0755", onChange: BOOTSTRAP_PATH };
}

export function renderDb(input: DbInput): RoleContribution[] {
  const replication = input.replication;
  if (replication && !input.networkClients) throw new Error("db: read replicas need the private network (networkClients)");
  const network = input.networkClients ? { database: DATABASE_NAME, clients: input.networkClients, replicas: replication?.replicas } : undefined;
  const { owner, web, worker } = input.credentials;
  return [
    {
      files: [
        ...renderPostgresFiles({ memoryMiB: input.memoryMiB, dedicated: input.dedicated, network, primary: replication }),
        postgresMountDropIn(),
        dbEnvFile(input.credentials, replication?.password),
        { path: DB_LOGINS_SQL_PATH, content: loadScript("server/postgresql-logins.sql"), mode: "0644", onChange: BOOTSTRAP_PATH },
        postgresAdoptFile(),
        ...(network ? [nonlocalBindFile()] : []),
        ...(replication ? primaryReplicationFiles() : []),
        ...backupFiles(input.backup),
      ],
      // e2fsprogs formats and labels the data volume; openssl makes the server's TLS certificate.
      packages: ["e2fsprogs", "postgresql", ...(network ? ["openssl"] : []), ...BACKUP_PACKAGES],
      steps: ["10-data-volume", ...(network ? ["17-postgresql-network"] : []), "20-postgresql", ...(replication ? ["21-postgresql-replication"] : [])],
      // The cluster's unit carries the installed version: 20-postgresql names it on the server.
      units: [],
      unitsStartedByPush: [...BACKUP_TIMERS],
      settings: {
        DATA_DEVICE_GLOB: DATA_DEVICE_GLOBS[input.machine],
        DATA_LABEL,
        DATA_MOUNT,
        DB_NAME: DATABASE_NAME,
        DB_USER: owner.user,
        DB_WEB_USER: web.user,
        DB_WORKER_USER: worker.user,
        DB_ENV_FILE,
        DB_LOGINS_SQL: DB_LOGINS_SQL_PATH,
        POSTGRES_ADOPT: POSTGRES_ADOPT_PATH,
        POSTGRES_CONF: POSTGRES_CONF_PATH,
        ...(network ? { PG_LISTEN_CONF: PG_LISTEN_CONF_PATH, PG_TLS_CERT: PG_TLS_CERT_PATH, PG_TLS_KEY: PG_TLS_KEY_PATH } : {}),
        ...(replication ? primaryReplicationSettings(replication) : {}),
      },
    },
  ];
}

/** The logins' passwords for 20-postgresql (root-only; the owner's keeps the name it always had). */
function dbEnvFile(credentials: DatabaseCredentials, replicationPassword?: string): RenderedFile {
  const content = [
    `# Rendered by saas-vps: passwords of the app's database logins (owner, web, worker${replicationPassword ? "; and the replicas' login" : ""}).`,
    `DB_PASSWORD=${credentials.owner.password}`,
    `DB_WEB_PASSWORD=${credentials.web.password}`,
    `DB_WORKER_PASSWORD=${credentials.worker.password}`,
    ...(replicationPassword ? [`DB_REPLICATION_PASSWORD=${replicationPassword}`] : []),
    "",
  ].join("\n");
  return { path: DB_ENV_FILE, content, mode: "0600", secret: true, onChange: BOOTSTRAP_PATH };
}

/**
 * After a reboot PostgreSQL may start before the private interface has its address (how soon it
 * comes depends on the provider's tooling); PostgreSQL then skips that address with a warning
 * and serves localhost only until restarted (Valkey would not start at all). Binding an address
 * the host does not have yet makes the order not matter: connections arrive once the address is up.
 */
export function nonlocalBindFile(service: { name: string; title: string } = { name: "postgresql", title: "PostgreSQL" }): RenderedFile {
  const path = `/etc/sysctl.d/60-saas-vps-${service.name}.conf`;
  const content = `# Rendered by saas-vps: ${service.title} listens on the private address even before it is up (after a reboot).\nnet.ipv4.ip_nonlocal_bind = 1\n`;
  return { path, content, mode: "0644", onChange: `sysctl -q -p ${path}` };
}

/** PostgreSQL's data lives on the volume: never start the cluster without it mounted. */
export function postgresMountDropIn(): RenderedFile {
  const content = renderUnit({ Unit: [["RequiresMountsFor", DATA_MOUNT]] }, "PostgreSQL waits for the data volume");
  return { path: `${UNIT_DIR}/postgresql@.service.d/50-saas-vps.conf`, content, mode: "0644", onChange: "systemctl daemon-reload" };
}
