/**
 * The stage planner: a parsed StackConfig in, a plain description of what to build out.
 * components/ only loops over this plan creating resources, so growing from `mvp` to
 * `separated` or `scaled` is a change here, not a rewrite of the components.
 */
import type { BucketConfig, CriticalWorkersConfig, DatabaseConfig, PrivateNetworkConfig, Stage, StackConfig } from "../config/config";
import type { MvpDatabaseState } from "../config/stages";
import { hostAddress } from "../config/validators";
import type { Provider } from "../config/providers";
import { DATA_LABEL, DATA_MOUNT, SSH_PORT } from "../provisioning/layout";
import { planMoveFromMvp } from "./move";
import { planScaled, type LoadBalancerPlan } from "./scaled";

/**
 * What a server does. Declared only here; provisioning/roles/index.ts maps each role to the
 * module that renders it, and plan/serverInput.ts maps config to each role's input.
 */
/**
 * `backup` backs up a database no server of the stack hosts (a managed cluster); the db role
 * brings its own backups. `cache` is Valkey for the app's shared rate limits and cache (stage
 * scaled), on a server of its own.
 */
export type Role = "web" | "worker" | "db" | "replica" | "backup" | "cache";

export interface FirewallRule {
  port: number;
  protocol: "tcp";
  /** CIDRs allowed in; "0.0.0.0/0" and "::/0" mean anyone. */
  sources: string[];
  /**
   * Servers of the stack (plan names) allowed in over the private network, by their private
   * address. Resolved where the addresses are known (plan/peers.ts); a rule with peers and
   * no sources is private-only.
   */
  peers?: string[];
  /**
   * The stack's load balancer may come in, over the private network (stage scaled). Resolved like
   * a peer (plan/peers.ts): its address where it is planned, else the private network; a cloud
   * firewall that filters private traffic names the balancer itself (DigitalOcean).
   */
  loadBalancer?: true;
  description: string;
}

export interface VolumePlan {
  /** Resource name suffix, e.g. "app-data". */
  name: string;
  sizeGb: number;
  /** Filesystem label the server mounts it by (never by device name). */
  label: string;
  mountPoint: string;
}

export interface ServerPlan {
  /** Logical name, unique in the stack: used for resource names and render output folders. */
  name: string;
  roles: Role[];
  serverType: string;
  region: string;
  /** Inbound rules; everything else inbound is dropped. */
  firewall: FirewallRule[];
  /** Memory of serverType: PostgreSQL's tuning (and the local VM's size) follow it. */
  memoryMiB: number;
  /**
   * The server's address on the stack's private network (split stages only). Hetzner and the
   * local VM attach it as planned; DigitalOcean assigns VPC addresses itself, so there the
   * droplet's real address replaces it once the droplet exists (components/).
   */
  privateIp?: string;
  /** Persistent data (PostgreSQL) lives here when the server has the db role. */
  volume?: VolumePlan;
  webInstances: number;
  workerInstances: number;
  /** Worker processes of its own for the critical tasks, beside the workerInstances; only on a server with workers, only when the stack has them. */
  criticalWorkers?: CriticalWorkersConfig;
  /**
   * The app server of a stack moving from mvp (config mvpDatabase): the state of its own
   * PostgreSQL, which the server applies (its backup timers, workers and logins; plan/move.ts).
   */
  mvpDatabase?: MvpDatabaseState;
  /**
   * Whether this server's releases run the migrations; unset: it does when it has the web role
   * (plan/database.ts, runsMigrations). Stage scaled sets false on every app server but the first.
   */
  migrates?: boolean;
}

export interface StackPlan {
  provider: Provider;
  stage: Stage;
  servers: ServerPlan[];
  /** The stack's private network (split stages only); every server is attached to it. */
  network?: PrivateNetworkConfig;
  /**
   * Where PostgreSQL runs: on the server with the db role (named here), or a managed cluster
   * (split stages on DigitalOcean only), reached over the private network.
   */
  database: DatabasePlan;
  backupBucket: BucketConfig;
  /** The app's uploads bucket; absent when uploads stay on the data volume (mvp's default). */
  uploadsBucket?: BucketConfig;
  /** The provider's load balancer in front of the app servers (stage scaled). */
  loadBalancer?: LoadBalancerPlan;
  /**
   * The app server that gets the site's certificate from Let's Encrypt, when several serve it
   * behind the balancer with a domain (stage scaled): the other app servers fetch it from this one
   * (provisioning/roles/tlsShare.ts). Only it runs tls-issue and certbot's renewals.
   */
  certificateIssuer?: string;
}

/**
 * A managed cluster's read replica is a read-only node of the cluster (`replicaSize`, stage scaled
 * with readReplica): DigitalOcean runs it, so the plan has no server for it.
 */
export type DatabasePlan = { kind: "server"; server: string } | { kind: "managed"; size: string; replicaSize?: string };

/**
 * Host numbers of the servers in the private network: fixed per server so an address never
 * moves when servers are added (scaled adds app servers at 11.., replicas at 31.., the cache
 * server at 40).
 */
export const PRIVATE_HOSTS = { loadBalancer: 5, app: 10, worker: 20, db: 30, replica: 31, cache: 40 } as const;
/** PostgreSQL's port; the db server's private firewall rule opens it to the app's servers. */
export const POSTGRES_PORT = 5432;
/** Valkey's port (the cache and queue of stage scaled). */
export const VALKEY_PORT = 6379;
/** The Prometheus node exporter's port (host metrics). */
export const NODE_EXPORTER_PORT = 9100;
/**
 * Ports no cloud firewall may open to the world (policy/policies.ts): the database, the cache and
 * the metrics exporters are reached over the private network only. The app has no metrics port.
 */
export const NEVER_PUBLIC_PORTS: readonly number[] = [POSTGRES_PORT, VALKEY_PORT, NODE_EXPORTER_PORT];

export const ANYWHERE = ["0.0.0.0/0", "::/0"];
export const DEFAULT_DATA_VOLUME_GB = 20;

/** Every server's SSH rule: only from the allowed CIDRs. */
export function planSshRule(sshAllowedCidrs: string[]): FirewallRule {
  return { port: SSH_PORT, protocol: "tcp", sources: [...sshAllowedCidrs], description: "SSH from sshAllowedCidrs" };
}

/** Public ingress of any server that runs web: SSH from the allowed CIDRs, HTTP(S) from anyone. */
export function planPublicFirewall(sshAllowedCidrs: string[]): FirewallRule[] {
  return [
    planSshRule(sshAllowedCidrs),
    { port: 80, protocol: "tcp", sources: [...ANYWHERE], description: "HTTP (ACME challenge, redirect)" },
    { port: 443, protocol: "tcp", sources: [...ANYWHERE], description: "HTTPS" },
  ];
}

/** PostgreSQL on the db server: only the app's servers, only over the private network. */
export function planDatabaseRule(clients: string[]): FirewallRule {
  return { port: POSTGRES_PORT, protocol: "tcp", sources: [], peers: [...clients], description: `PostgreSQL from ${joinNames(clients)} (private network)` };
}

/** Valkey on the cache server: only the app's servers, only over the private network (and TLS). */
export function planCacheRule(clients: string[]): FirewallRule {
  return { port: VALKEY_PORT, protocol: "tcp", sources: [], peers: [...clients], description: `Valkey from ${joinNames(clients)} (private network)` };
}

/** Server names as a rule's description lists them: "app, app-2 and worker". */
export function joinNames(names: string[]): string {
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}` : names.join("");
}

/** The db server with its PostgreSQL rule naming exactly these clients (a stage adds or holds some back). */
export function withDatabaseClients(db: ServerPlan, clients: string[]): ServerPlan {
  return { ...db, firewall: db.firewall.map((rule) => (rule.port === POSTGRES_PORT && rule.peers ? planDatabaseRule(clients) : rule)) };
}

export function planStack(config: StackConfig): StackPlan {
  switch (config.stage) {
    case "mvp":
      return {
        provider: config.provider,
        stage: config.stage,
        servers: [mvpServer(config)],
        database: { kind: "server", server: "app" },
        backupBucket: config.backupBucket,
        ...uploadsBucketOf(config),
      };
    case "separated":
      return planSeparated(config);
    case "scaled":
      return planScaled(planSeparated(config), config);
    default: {
      const unreachable: never = config.stage;
      throw new Error(`unhandled stage ${unreachable}`);
    }
  }
}

/** Stage mvp's one server: web, worker and PostgreSQL on its data volume. */
export function mvpServer(config: StackConfig): ServerPlan {
  return {
    name: "app",
    roles: ["web", "worker", "db"],
    serverType: config.serverType,
    memoryMiB: config.serverMemoryMiB,
    region: config.region,
    firewall: planPublicFirewall(config.sshAllowedCidrs),
    volume: dataVolume(),
    webInstances: config.webInstances,
    workerInstances: config.workerInstances,
    ...criticalWorkersOf(config),
  };
}

/** The stack's critical workers, on the server that runs its workers; nothing (every file as before) when it has none. */
function criticalWorkersOf(config: StackConfig): Pick<ServerPlan, "criticalWorkers"> {
  return config.criticalWorkers.instances > 0 ? { criticalWorkers: config.criticalWorkers } : {};
}

/** The one data volume a stack's PostgreSQL lives on; the same resource name in every stage. */
export function dataVolume(): VolumePlan {
  return { name: "app-data", sizeGb: DEFAULT_DATA_VOLUME_GB, label: DATA_LABEL, mountPoint: DATA_MOUNT };
}

/**
 * Stage separated: the web server keeps the name `app` (so a stack moved from `mvp` keeps its
 * server, fixed IP and DNS), the worker and PostgreSQL get servers of their own, all on one
 * private network. With a managed database there is no db server.
 */
function planSeparated(config: StackConfig): StackPlan {
  const network = config.privateNetwork;
  if (!network) throw new Error("stage separated without a private network (the config parser sets one)");
  const at = (host: number) => hostAddress(network.cidr, host);
  const app: ServerPlan = {
    name: "app",
    roles: ["web"],
    serverType: config.servers.web.serverType,
    memoryMiB: config.servers.web.memoryMiB,
    region: config.region,
    firewall: planPublicFirewall(config.sshAllowedCidrs),
    privateIp: at(PRIVATE_HOSTS.app),
    webInstances: config.webInstances,
    workerInstances: 0,
  };
  const worker: ServerPlan = {
    name: "worker",
    roles: ["worker"],
    serverType: config.servers.worker.serverType,
    memoryMiB: config.servers.worker.memoryMiB,
    region: config.region,
    firewall: [planSshRule(config.sshAllowedCidrs)],
    privateIp: at(PRIVATE_HOSTS.worker),
    webInstances: 0,
    workerInstances: config.workerInstances,
    ...criticalWorkersOf(config),
  };
  const servers = [app, worker];
  let database: DatabasePlan;
  if (config.database.mode === "managed") {
    // The app server backs the cluster up: it is in the VPC, the database firewall lets it in,
    // and it already holds the owner login (migrations run there), which the dump needs; the
    // worker server never gets a login that can change the schema.
    app.roles.push("backup");
    database = { kind: "managed", size: config.database.size };
  } else {
    servers.push({
      name: "db",
      roles: ["db"],
      serverType: config.servers.db.serverType,
      memoryMiB: config.servers.db.memoryMiB,
      region: config.region,
      firewall: [planSshRule(config.sshAllowedCidrs), planDatabaseRule([app.name, worker.name])],
      privateIp: at(PRIVATE_HOSTS.db),
      volume: dataVolume(),
      webInstances: 0,
      workerInstances: 0,
    });
    database = { kind: "server", server: "db" };
  }
  const plan: StackPlan = { provider: config.provider, stage: config.stage, servers, network, database, backupBucket: config.backupBucket, ...uploadsBucketOf(config) };
  return config.mvpDatabase ? planMoveFromMvp(plan, config, config.mvpDatabase) : plan;
}

function uploadsBucketOf(config: StackConfig): Pick<StackPlan, "uploadsBucket"> {
  return config.uploads.storage === "bucket" ? { uploadsBucket: config.uploads.bucket } : {};
}
