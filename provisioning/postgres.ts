/**
 * PostgreSQL's settings, who may connect (pg_hba), and where its TLS certificate lives. The
 * tuning follows the server's memory and whether PostgreSQL has the server to itself; the numbers
 * follow the PostgreSQL docs' guidance (shared_buffers ≈ 25 % of RAM, effective_cache_size ≈ 50 %
 * when the app shares the box, ≈ 75 % on a box of its own):
 * https://www.postgresql.org/docs/current/runtime-config-resource.html
 */
import { POSTGRES_PORT } from "../plan/plan";
import { throwIfProblems } from "./errors";
import { CONFIG_DIR } from "./layout";
import type { RenderedFile } from "./files";

/**
 * The login read replicas stream WAL as (REPLICATION, no table rights); its password is generated
 * with the app's and travels like theirs (db.env on the primary, a passfile on each replica).
 */
export const REPLICATION_USER = "replicator";

export const POSTGRES_CONF_PATH = `${CONFIG_DIR}/postgresql.conf`;
/** Ours instead of the cluster's own pg_hba.conf on a db server: rendered from the plan. */
export const PG_HBA_PATH = `${CONFIG_DIR}/pg_hba.conf`;
/**
 * The server's own self-signed certificate, made by 20-postgresql on first boot (openssl); the
 * app encrypts without verifying it (docs/ARCHITECTURE.md, decision 11).
 */
export const PG_TLS_CERT_PATH = `${CONFIG_DIR}/postgresql-tls/server.crt`;
export const PG_TLS_KEY_PATH = `${CONFIG_DIR}/postgresql-tls/server.key`;
/**
 * listen_addresses on a db server, written by 17-postgresql-network and included by our settings:
 * the private address is known only on the server (DigitalOcean assigns it when the droplet is
 * created).
 */
export const PG_LISTEN_CONF_PATH = `${CONFIG_DIR}/postgresql-listen.conf`;

export interface PostgresTuning {
  sharedBuffersMiB: number;
  effectiveCacheSizeMiB: number;
  workMemMiB: number;
  maintenanceWorkMemMiB: number;
  maxConnections: number;
}

/** A server that reaches PostgreSQL over the private network, and the logins it may use. */
export interface PostgresClient {
  /** The client's plan name (a comment in pg_hba). */
  name: string;
  /** The client's address as <ip>/32, or the private network while the address is not known yet. */
  sources: string[];
  /** Role names it may log in as. */
  users: string[];
}

export interface PostgresOptions {
  memoryMiB: number;
  /** PostgreSQL has the server to itself (a db server of a split stage). */
  dedicated: boolean;
  /**
   * Clients over the private network (split stages): PostgreSQL then listens on the private
   * address too, with TLS, and only these clients' logins get in from the network. Without it:
   * localhost only and the cluster's own pg_hba.conf (the all-in-one server).
   */
  network?: { database: string; clients: PostgresClient[]; replicas?: ReplicaClient[] };
  /** A primary with read replicas: WAL their slots hold back is capped (provisioning/replication.ts). */
  primary?: { maxSlotWalKeepMiB: number };
  /** A hot standby of the primary (the replica role): where it streams from. */
  standby?: StandbySettings;
}

/** A read replica as its primary's pg_hba sees it: one address, the replication login only. */
export interface ReplicaClient {
  /** The replica's plan name (a comment in pg_hba). */
  name: string;
  /** The replica's address as <ip>/32. */
  source: string;
}

/** How a standby reaches its primary; the password is in a passfile, never in a setting. */
export interface StandbySettings {
  primaryAddress: string;
  slot: string;
  user: string;
  passfile: string;
}

/** Memory shares: the all-in-one box also runs nginx, several Node processes and the OS. */
export function planPostgresTuning(memoryMiB: number, dedicated = false): PostgresTuning {
  throwIfProblems(memoryMiB >= 1024 ? [] : [`postgres: server memory must be at least 1024 MiB; got ${memoryMiB}`]);
  const maxConnections = 100;
  return {
    sharedBuffersMiB: Math.floor(memoryMiB / 4),
    effectiveCacheSizeMiB: Math.floor((memoryMiB * (dedicated ? 3 : 2)) / 4),
    // work_mem is per sort/hash per query: keep a burst of connections from exhausting RAM.
    workMemMiB: Math.max(4, Math.floor(memoryMiB / 4 / maxConnections)),
    maintenanceWorkMemMiB: Math.min(1024, Math.max(64, Math.floor(memoryMiB / 16))),
    maxConnections,
  };
}

export function renderPostgresConf(options: PostgresOptions): string {
  const t = planPostgresTuning(options.memoryMiB, options.dedicated);
  const where = options.network
    ? [
        `# PostgreSQL's own server (${options.memoryMiB} MiB of memory); linked into the cluster's conf.d by bootstrap.`,
        "# listen_addresses (localhost and the private address) is written on the server by bootstrap;",
        "# changing shared_buffers or listen_addresses needs a restart (bootstrap restarts for the latter).",
        `include '${PG_LISTEN_CONF_PATH}'`,
      ]
    : [
        "# Rendered by saas-vps (provisioning/postgres.ts) for a server with " + options.memoryMiB + " MiB of memory.",
        "# Linked into the cluster's conf.d by bootstrap; changing shared_buffers needs a restart.",
        "# Local connections only: the app talks to 127.0.0.1; a private network comes with stage separated.",
        "listen_addresses = 'localhost'",
      ];
  const tls = options.network
    ? [
        "# Every connection from the network is TLS (pg_hba has hostssl lines only); the certificate is the",
        "# server's own, made on first boot.",
        "ssl = on",
        `ssl_cert_file = '${PG_TLS_CERT_PATH}'`,
        `ssl_key_file = '${PG_TLS_KEY_PATH}'`,
        `hba_file = '${PG_HBA_PATH}'`,
      ]
    : [];
  const primary = options.primary
    ? [
        "# Streaming replication to the read replicas, each through its own slot. A slot keeps the WAL its",
        "# replica has not received; past this much a replica that stopped loses its slot (it must be",
        "# cloned again) instead of filling the data volume.",
        "wal_level = replica",
        `max_slot_wal_keep_size = ${options.primary.maxSlotWalKeepMiB}MB`,
      ]
    : [];
  const standby = options.standby
    ? [
        "# A hot standby: read-only queries from the app's servers, WAL streamed from the primary's slot for",
        "# this replica (standby.signal in the data directory, written by the clone, makes it a standby).",
        "hot_standby = on",
        "# The primary keeps row versions the replica's queries still read: a read is not canceled by the",
        "# primary's vacuum; a long read holds back cleanup on the primary while it runs.",
        "hot_standby_feedback = on",
        `primary_conninfo = '${primaryConninfo(options.standby)}'`,
        `primary_slot_name = '${options.standby.slot}'`,
      ]
    : [];
  return [
    ...(options.network ? ["# Rendered by saas-vps (provisioning/postgres.ts)."] : []),
    ...where,
    `max_connections = ${t.maxConnections}`,
    `shared_buffers = ${t.sharedBuffersMiB}MB`,
    `effective_cache_size = ${t.effectiveCacheSizeMiB}MB`,
    `work_mem = ${t.workMemMiB}MB`,
    `maintenance_work_mem = ${t.maintenanceWorkMemMiB}MB`,
    "password_encryption = scram-sha-256",
    "wal_compression = on",
    "checkpoint_completion_target = 0.9",
    "random_page_cost = 1.1",
    "log_min_duration_statement = 1000",
    "log_line_prefix = '%m [%p] %q%u@%d '",
    "# A logged statement (slow, or failed) shows none of its bind parameters: they can be passwords or tokens.",
    "log_parameter_max_length = 0",
    "log_parameter_max_length_on_error = 0",
    ...tls,
    ...primary,
    ...standby,
    "",
  ].join("\n");
}

/** libpq's connection string for the standby: TLS, the password from the passfile. */
export function primaryConninfo(standby: StandbySettings): string {
  return `host=${standby.primaryAddress} port=${POSTGRES_PORT} user=${standby.user} passfile=${standby.passfile} sslmode=require application_name=${standby.slot}`;
}

/**
 * pg_hba.conf of a db server: local connections as Debian's default file has them (peer on the
 * socket, scram on loopback), then one hostssl line per client with exactly its logins. Nothing
 * else gets in from the network: no host or hostnossl line, so a connection without TLS, from
 * another address or as another login finds no line and is refused.
 */
export function renderPgHba(database: string, clients: PostgresClient[], replicas: ReplicaClient[] = []): string {
  throwIfProblems([...pgHbaProblems(database, clients), ...replicaProblems(replicas)]);
  // Columns aligned for reading, and always at least one space apart: a value as wide as its
  // column (the three logins of a server that still runs everything, while moving from mvp) would
  // otherwise run into the next field, and PostgreSQL would refuse the whole file at start.
  const row = (...cols: string[]) => cols.map((c, i) => (i < cols.length - 1 ? `${c} `.padEnd([8, 12, 16, 18][i] ?? 0) : c)).join("").trimEnd();
  return [
    "# Rendered by saas-vps (provisioning/postgres.ts) from the db server's PostgreSQL firewall rule.",
    "# Local connections as Debian's default; from the network only TLS, only the listed logins.",
    row("# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"),
    row("local", "all", "postgres", "", "peer"),
    row("local", "all", "all", "", "peer"),
    row("host", "all", "all", "127.0.0.1/32", "scram-sha-256"),
    row("host", "all", "all", "::1/128", "scram-sha-256"),
    row("local", "replication", "all", "", "peer"),
    row("host", "replication", "all", "127.0.0.1/32", "scram-sha-256"),
    row("host", "replication", "all", "::1/128", "scram-sha-256"),
    ...clients.flatMap((client) => [
      `# ${client.name} (private network)`,
      ...client.sources.map((source) => row("hostssl", database, client.users.join(","), source, "scram-sha-256")),
    ]),
    ...replicas.flatMap((replica) => [
      `# ${replica.name} (private network, streaming replication)`,
      row("hostssl", "replication", REPLICATION_USER, replica.source, "scram-sha-256"),
    ]),
    "",
  ].join("\n");
}

function replicaProblems(replicas: ReplicaClient[]): string[] {
  const problems: string[] = [];
  // A replica is one server: a wider source would let any host of the network stream every row.
  for (const r of replicas) {
    if (!/^\d{1,3}(?:\.\d{1,3}){3}\/32$/.test(r.source)) problems.push(`postgres: replica ${r.name}: source ${JSON.stringify(r.source)} must be one IPv4 address as <ip>/32`);
  }
  return problems;
}

function pgHbaProblems(database: string, clients: PostgresClient[]): string[] {
  const problems: string[] = [];
  const name = /^[a-z_][a-z0-9_]*$/;
  if (!name.test(database)) problems.push(`postgres: database name ${JSON.stringify(database)} must be lowercase letters, digits and _`);
  if (clients.length === 0) problems.push("postgres: a networked database needs at least one client");
  for (const client of clients) {
    if (client.users.length === 0 || client.users.some((u) => !name.test(u))) {
      problems.push(`postgres: client ${client.name}: logins ${JSON.stringify(client.users)} must be role names (lowercase letters, digits and _)`);
    }
    for (const source of client.sources) {
      // A client is one server or, while its address is unknown, the stack's private network: never the world.
      const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(source);
      if (!m || Number(m[2]) < 8 || Number(m[2]) > 32) problems.push(`postgres: client ${client.name}: source ${JSON.stringify(source)} must be an IPv4 network of /8 to /32`);
    }
  }
  return problems;
}

/**
 * Read by postgresql-common (its createcluster.conf has `include_dir` on this directory): the
 * package's install script then makes no "main" cluster on the root disk. bootstrap creates
 * the one cluster we use on the data volume; without this, first boot ran initdb for a cluster
 * only to drop it (about 80 s of a first boot under emulation, measured in the VM).
 */
export const CREATECLUSTER_DROP_IN_PATH = "/etc/postgresql-common/createcluster.d/50-saas-vps.conf";

/** reload applies all but shared_buffers, hba_file and listen_addresses, which need a restart (20-postgresql restarts for the last). */
const RELOAD = "systemctl reload postgresql";

export function renderPostgresFiles(options: PostgresOptions): RenderedFile[] {
  return [
    { path: POSTGRES_CONF_PATH, content: renderPostgresConf(options), mode: "0644", onChange: RELOAD },
    ...(options.network ? [{ path: PG_HBA_PATH, content: renderPgHba(options.network.database, options.network.clients, options.network.replicas), mode: "0644", onChange: RELOAD }] : []),
    {
      path: CREATECLUSTER_DROP_IN_PATH,
      // No comment in the file: it travels in clear in user-data, where every byte counts.
      content: "create_main_cluster = false\n",
      mode: "0644",
      beforePackages: true,
    },
  ];
}
