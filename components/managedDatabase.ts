/**
 * DigitalOcean Managed PostgreSQL for a split stage with `databaseMode: managed`
 * (docs/ARCHITECTURE.md, "Managed PostgreSQL"): one PostgreSQL 17 node in the stack's VPC,
 * protected like the data volume it replaces; the app's database; the three logins of
 * plan/database.ts; a database firewall that admits the stack's droplets by id and nothing
 * else; and the one-time handover that makes the owner login own the app's database. In stage
 * scaled with readReplica, also a read-only node of the cluster (DatabaseReplica) in the same
 * region and VPC, protected too, with a database firewall of its own that admits the same droplets.
 *
 * No connection pool (DatabaseConnectionPool): PgBouncer's transaction mode breaks what the app
 * relies on — graphile-worker's LISTEN/NOTIFY and named prepared statements, node-pg-migrate's
 * session advisory lock — and session mode holds one server connection per client connection,
 * so it would add a hop and save no connection.
 */
import { createHash } from "node:crypto";
import * as command from "@pulumi/command";
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { DATABASE_LOGINS, DATABASE_ROLE_NAMES, type DatabaseCredentials, type DatabaseEndpoint } from "../plan/database";
import { DATABASE_NAME } from "../provisioning/layout";
import { DATABASE_CA_FILE, renderOwnerHandoverCommand, renderOwnerHandoverSql } from "../provisioning/managedDatabase";
import { sshConnection, type SshTarget } from "./sshConnection";

/** The PostgreSQL major of the cluster: Debian 13's client tools are 17, and pg_dump refuses a newer server. */
export const MANAGED_POSTGRES_VERSION = "17";

export interface ManagedDatabaseArgs {
  /** Node size slug (plan's database.size). */
  size: string;
  region: string;
  /** The stack's VPC: the cluster gets its private address there. */
  vpcId: pulumi.Input<string>;
  /** Tags, as the stack's droplets have them. */
  tags: string[];
  /** Node size of the read-only node (plan's database.replicaSize); none without one. */
  replicaSize?: string;
}

/** Where the handover runs: a server of the stack in the VPC that the database firewall admits. */
export interface HandoverArgs {
  /** The server: its public address, pinned host key and the SSH key. */
  server: SshTarget;
  /** The server's pushes (the CA file and the PostgreSQL client are in place after them) and the firewall. */
  dependsOn: pulumi.Resource[];
}

export class ManagedDatabase extends pulumi.ComponentResource {
  readonly clusterId: pulumi.Output<string>;
  /** The private host and port, the app's database, TLS required. */
  readonly endpoint: pulumi.Output<DatabaseEndpoint>;
  /** Secret: the three logins with the passwords DigitalOcean generated. */
  readonly credentials: pulumi.Output<DatabaseCredentials>;
  /** The cluster's CA certificate (PEM; public). */
  readonly caCertificate: pulumi.Output<string>;
  /** The read-only node's private host and port, with the cluster's database, TLS and CA; only with replicaSize. */
  readonly readEndpoint?: pulumi.Output<DatabaseEndpoint>;
  private readonly cluster: digitalocean.DatabaseCluster;
  private readonly replica?: digitalocean.DatabaseReplica;
  private readonly ready: pulumi.Resource[];
  private readonly baseName: string;

  constructor(name: string, args: ManagedDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("saas-vps:database:ManagedDatabase", name, {}, opts);
    const parent = { parent: this };
    this.baseName = name;
    this.cluster = new digitalocean.DatabaseCluster(
      `${name}-pg`,
      {
        engine: "pg",
        version: MANAGED_POSTGRES_VERSION,
        size: args.size,
        region: args.region,
        nodeCount: 1,
        privateNetworkUuid: args.vpcId,
        tags: args.tags,
      },
      // Protected (components/protection.ts): the cluster holds the data, as the data volume does.
      parent,
    );
    const clusterId = this.cluster.id;
    // Protected too: deleting this resource would drop the app's database with it.
    const database = new digitalocean.DatabaseDb(`${name}-db`, { clusterId, name: DATABASE_NAME }, parent);
    const users = DATABASE_LOGINS.map((login) => new digitalocean.DatabaseUser(`${name}-${login}`, { clusterId, name: DATABASE_ROLE_NAMES[login] }, parent));
    this.ready = [database, ...users];
    this.clusterId = clusterId;
    this.endpoint = pulumi
      .all([this.cluster.privateHost, this.cluster.port])
      .apply(([host, port]): DatabaseEndpoint => ({ host, port, database: DATABASE_NAME, tls: true, caFile: DATABASE_CA_FILE }));
    // The provider marks the passwords secret; explicit, so nothing downstream can unwrap them by accident.
    this.credentials = pulumi.secret(
      pulumi.all(users.map((u) => pulumi.all([u.name, u.password]))).apply(
        (pairs) => Object.fromEntries(DATABASE_LOGINS.map((login, i) => [login, { user: pairs[i][0], password: pairs[i][1] }])) as unknown as DatabaseCredentials,
      ),
    );
    this.caCertificate = digitalocean.getDatabaseCaOutput({ clusterId }, parent).certificate;
    if (args.replicaSize !== undefined) {
      // Protected (components/protection.ts) like the cluster: a replaced node is a new host, copied anew.
      // The app's logins and their rights replicate with the data, so the web login reads there as it
      // does on the cluster, verified with the cluster's CA (not proven against DigitalOcean: docs/ARCHITECTURE.md).
      this.replica = new digitalocean.DatabaseReplica(
        `${name}-replica`,
        { clusterId, size: args.replicaSize, region: args.region, privateNetworkUuid: args.vpcId, tags: args.tags },
        parent,
      );
      this.readEndpoint = pulumi
        .all([this.replica.privateHost, this.replica.port])
        .apply(([host, port]): DatabaseEndpoint => ({ host, port, database: DATABASE_NAME, tls: true, caFile: DATABASE_CA_FILE }));
    }
    this.registerOutputs({ clusterId, endpoint: this.endpoint, ...(this.readEndpoint ? { readEndpoint: this.readEndpoint } : {}) });
  }

  /**
   * The database firewall: only these droplets, by id (never an address range, never the world).
   * A read-only node has trusted sources of its own (DigitalOcean: "like primary nodes"; the
   * provider names it by its `uuid`, not its `id`): it gets a firewall admitting the same droplets,
   * so nothing reaches it that could not reach the cluster. Returns every firewall made.
   */
  admit(dropletIds: pulumi.Input<string>[]): digitalocean.DatabaseFirewall[] {
    if (dropletIds.length === 0) throw new Error("managed database: the firewall must admit at least one droplet");
    const rules = dropletIds.map((value) => ({ type: "droplet", value }));
    const firewall = (suffix: string, clusterId: pulumi.Input<string>) => new digitalocean.DatabaseFirewall(`${this.baseName}-${suffix}`, { clusterId, rules }, { parent: this });
    return [firewall("fw", this.clusterId), ...(this.replica ? [firewall("replica-fw", this.replica.uuid)] : [])];
  }

  /**
   * The one-time handover (provisioning/managedDatabase.ts), run over SSH on a server in the VPC
   * as the cluster's admin. The admin's password goes on stdin and nowhere else: no file on any
   * server ever holds it. Re-run only when the SQL or the command changes (its hash is the
   * trigger); a release must wait for it, since migrations run as the owner it makes.
   */
  handOver(args: HandoverArgs): command.remote.Command {
    const sql = renderOwnerHandoverSql();
    const create = pulumi.all([this.endpoint, this.cluster.user]).apply(([endpoint, admin]) => renderOwnerHandoverCommand(endpoint, admin));
    return new command.remote.Command(
      `${this.baseName}-handover`,
      {
        connection: sshConnection(args.server),
        create,
        stdin: pulumi.secret(pulumi.interpolate`${this.cluster.password}\n${sql}`),
        triggers: [create.apply((text) => createHash("sha256").update(`${text}\0${sql}`).digest("hex"))],
        logging: "stderr",
      },
      { parent: this, dependsOn: [...this.ready, ...args.dependsOn], deleteBeforeReplace: false },
    );
  }
}
