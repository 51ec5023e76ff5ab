/**
 * The replica role (stage scaled): a hot standby of the db server's PostgreSQL on a data volume
 * of its own, cloned from the primary on first boot and streaming from its own slot there
 * (provisioning/replication.ts). It serves the app's read-only queries over the private network
 * with TLS, to the same logins as the primary (they replicate with everything else). No backups:
 * the primary's are the stack's.
 */
import { BOOTSTRAP_PATH } from "../cloudInit";
import type { RenderedFile } from "../files";
import { DATA_LABEL, DATA_MOUNT, DATABASE_NAME } from "../layout";
import { PG_LISTEN_CONF_PATH, PG_TLS_CERT_PATH, PG_TLS_KEY_PATH, POSTGRES_CONF_PATH, REPLICATION_USER, renderPostgresFiles, type PostgresClient } from "../postgres";
import { REPLICA_CLONE_PATH, REPLICA_CLONE_WAIT_SECONDS, REPLICATION_PASSFILE, replicaSlotName, replicationPassfile } from "../replication";
import { loadScript } from "../scripts";
import type { RoleContribution } from "./contribution";
import { DATA_DEVICE_GLOBS, nonlocalBindFile, postgresAdoptFile, postgresMountDropIn, POSTGRES_ADOPT_PATH, type MachineKind } from "./db";

export interface ReplicaInput {
  machine: MachineKind;
  memoryMiB: number;
  /** This server's plan name: its slot on the primary is named after it. */
  server: string;
  /** The primary's private address. */
  primaryAddress: string;
  /** The replication login's password (the primary's db.env has the same). */
  replicationPassword: string;
  /** The app's servers that send read-only queries here, with the logins they use. */
  networkClients: PostgresClient[];
}

export function renderReplica(input: ReplicaInput): RoleContribution[] {
  const slot = replicaSlotName(input.server);
  const standby = { primaryAddress: input.primaryAddress, slot, user: REPLICATION_USER, passfile: REPLICATION_PASSFILE };
  const files: RenderedFile[] = [
    // dedicated: the replica has the server to itself; its max_connections equals the primary's, as a standby requires.
    ...renderPostgresFiles({ memoryMiB: input.memoryMiB, dedicated: true, network: { database: DATABASE_NAME, clients: input.networkClients }, standby }),
    postgresMountDropIn(),
    replicationPassfile(input.primaryAddress, input.replicationPassword),
    { path: REPLICA_CLONE_PATH, content: loadScript("server/postgresql-replica-clone"), mode: "0755", onChange: BOOTSTRAP_PATH },
    postgresAdoptFile(),
    nonlocalBindFile(),
  ];
  return [
    {
      files,
      packages: ["e2fsprogs", "postgresql", "openssl"],
      steps: ["10-data-volume", "17-postgresql-network", "20-postgresql-replica"],
      units: [],
      settings: {
        DATA_DEVICE_GLOB: DATA_DEVICE_GLOBS[input.machine],
        DATA_LABEL,
        DATA_MOUNT,
        POSTGRES_ADOPT: POSTGRES_ADOPT_PATH,
        POSTGRES_CONF: POSTGRES_CONF_PATH,
        PG_LISTEN_CONF: PG_LISTEN_CONF_PATH,
        PG_TLS_CERT: PG_TLS_CERT_PATH,
        PG_TLS_KEY: PG_TLS_KEY_PATH,
        REPLICA_CLONE: REPLICA_CLONE_PATH,
        REPLICA_CLONE_WAIT: String(REPLICA_CLONE_WAIT_SECONDS),
        REPLICA_PRIMARY: input.primaryAddress,
        REPLICA_SLOT: slot,
        REPLICATION_USER,
        REPLICATION_PASSFILE,
      },
    },
  ];
}
