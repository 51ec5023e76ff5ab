/**
 * Read replicas (stage scaled): what the primary gives them (a replication login, one slot per
 * replica, pg_hba lines for exactly their addresses) and what a replica needs to clone and follow
 * the primary. The bound on the WAL a slot may hold is the one setting that protects the primary
 * from a dead replica: docs/ARCHITECTURE.md, "Read replicas".
 */
import { POSTGRES_PORT } from "../plan/plan";
import { throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { CONFIG_DIR, LIB_DIR } from "./layout";
import { REPLICATION_USER, type ReplicaClient } from "./postgres";
import { loadScript } from "./scripts";
import { BOOTSTRAP_PATH } from "./cloudInit";

/** Run by 21-postgresql-replication on the primary: the replication login and the slots (a file of its own so tests run the same SQL). */
export const REPLICATION_SQL_PATH = `${LIB_DIR}/postgresql-replication.sql`;
/** Clones the primary into an empty data directory (run by 20-postgresql-replica, or by hand to re-clone). */
export const REPLICA_CLONE_PATH = `${LIB_DIR}/postgresql-replica-clone`;
/**
 * How long a new replica's first boot waits for its primary to allow the clone: the db server's
 * own first boot (a few minutes on a real server, about 10 under emulation with four VMs on two
 * cores) or the day-2 push that adds the replica's login, slot and pg_hba line comes first.
 */
export const REPLICA_CLONE_WAIT_SECONDS = 1800;
/** The replica's libpq password file for the replication login: PostgreSQL's own (postgres, 0600). */
export const REPLICATION_PASSFILE = `${CONFIG_DIR}/replication.pgpass`;
/** Our slots' names start with this; a slot of ours that no replica uses any more is dropped. */
export const REPLICA_SLOT_PREFIX = "replica_";

/** A replica's slot: its server name as PostgreSQL allows slot names (lowercase, digits, _). */
export function replicaSlotName(server: string): string {
  return `${REPLICA_SLOT_PREFIX}${server.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

/**
 * How much WAL the replicas' slots may hold back on the primary: a quarter of the data volume.
 * The rest is the database itself and the WAL its own checkpoints need; a replica further behind
 * than this loses its slot and is cloned again, which costs a copy, not the primary's disk.
 */
export function planMaxSlotWalKeepMiB(dataVolumeGb: number): number {
  throwIfProblems(dataVolumeGb >= 10 ? [] : [`replication: the primary's data volume must be at least 10 GB; got ${dataVolumeGb}`]);
  return Math.floor((dataVolumeGb * 1024) / 4);
}

/** The primary's side of replication: the replicas it serves and the login's password. */
export interface PrimaryReplicationInput {
  replicas: ReplicaClient[];
  password: string;
  maxSlotWalKeepMiB: number;
}

/** What 21-postgresql-replication reads to make the login and the slots. */
export function primaryReplicationSettings(input: PrimaryReplicationInput): Record<string, string> {
  return {
    REPLICATION_SQL: REPLICATION_SQL_PATH,
    REPLICATION_USER,
    REPLICATION_SLOTS: input.replicas.map((r) => replicaSlotName(r.name)).join(" "),
    REPLICA_SLOT_PREFIX,
  };
}

export function primaryReplicationFiles(): RenderedFile[] {
  return [{ path: REPLICATION_SQL_PATH, content: loadScript("server/postgresql-replication.sql"), mode: "0644", onChange: BOOTSTRAP_PATH }];
}

/**
 * The replica's password file: host, port, database ("replication" for a physical replication
 * connection), login and password. libpq ignores a password file others may read.
 */
export function replicationPassfile(primaryAddress: string, password: string): RenderedFile {
  throwIfProblems(/[:\\\n]/.test(password) ? ["replication: the password must not hold ':', '\\' or a line break (a .pgpass field)"] : []);
  return {
    path: REPLICATION_PASSFILE,
    content: `${primaryAddress}:${POSTGRES_PORT}:replication:${REPLICATION_USER}:${password}\n`,
    mode: "0600",
    owner: "postgres:postgres",
    secret: true,
  };
}
