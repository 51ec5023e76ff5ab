/**
 * Maps the stack config and one planned server to the renderer's input: one input per role of
 * the server (roles/index.ts names them) and the app's, when a role runs it. Nothing is rendered
 * or decided here; ports are computed here once and handed to every role that needs them. Pure:
 * the component calls it inside its single Output boundary, the render command and tests call it
 * directly.
 */
import type { BackupBucket, BackupRenderOptions, RemoteDatabase } from "../provisioning/backup";
import type { S3Bucket } from "../provisioning/bucket";
import type { UploadsInput } from "../provisioning/uploads";
import type { ProcessEnvironment } from "../provisioning/roles/app";
import type { WatchdogInput } from "../provisioning/watchdog";
import { criticalWorkerUnits, DATABASE_NAME, LB_DRAIN_FILE, SSH_PORT, surgePortFor, webPorts, workerUnits } from "../provisioning/layout";
import type { ReleaseBalancer } from "../provisioning/release";
import { drainSeconds, undrainSeconds } from "./scaled";
import type { RoleInputs } from "../provisioning/roles/index";
import { runsApp } from "../provisioning/roles/index";
import type { MachineKind, ServerRenderInput } from "../provisioning/server";
import type { StackConfig } from "../config/config";
import type { PostgresClient, ReplicaClient } from "../provisioning/postgres";
import type { AppDatabaseInput } from "../provisioning/roles/app";
import type { WebInput } from "../provisioning/roles/web";
import { planMaxSlotWalKeepMiB, type PrimaryReplicationInput } from "../provisioning/replication";
import { MANAGED_SSLMODE, DATABASE_CA_FILE } from "../provisioning/managedDatabase";
import { valkeyUrl } from "../provisioning/valkey";
import type { AppInput } from "../provisioning/roles/app";
import { POSTGRES_PORT, type Role, type ServerPlan, type StackPlan } from "./plan";
import { plannedAddresses, resolveFirewall, resolveSources, type PrivateAddresses } from "./peers";
import { DATABASE_LOGINS, DATABASE_ROLE_NAMES, loginsFor, type DatabaseCredentials, type DatabaseEndpoint, type DatabaseLogin } from "./database";

export interface ServerSecrets {
  /** The schema owner's password (the stack's first database password; migrations only). */
  databasePassword: string;
  /** The web processes' login. */
  databaseWebPassword: string;
  /** The worker's login. */
  databaseWorkerPassword: string;
  appSecretKey: string;
  /** restic repository password: backups are encrypted on the server with it. */
  backupPassword: string;
  /** The replication login's (stage scaled with a read replica): the primary sets it, the replica's passfile holds it. */
  replicationPassword?: string;
  /** The app's Valkey login (stage scaled's cache server): its ACL file holds the hash, VALKEY_URL the password. */
  valkeyPassword?: string;
}

export interface ServerInputContext {
  machine: MachineKind;
  /** The stack's name (alerts name it). */
  stack: string;
  /** The server's fixed public IPv4; the app's URL when no domain is set. */
  ipv4: string;
  secrets: ServerSecrets;
  /** The resolved backup bucket (created or given), keys included. */
  backupBucket: BackupBucket;
  /** The resolved uploads bucket (created or given), the app's keys included; only when uploads go to a bucket. */
  uploadsBucket?: S3Bucket;
  /**
   * Private addresses of the stack's servers as known now (split stages); default: the plan's.
   * An address not known yet (DigitalOcean, before the droplet exists) is left out, and rules
   * naming that server fall back to the whole private network (plan/peers.ts).
   */
  privateAddresses?: PrivateAddresses;
  /** The managed cluster, required when the plan's database is managed (its outputs, resolved). */
  managedDatabase?: ManagedDatabaseContext;
  /** The keys that share the certificate, required when the plan has a certificateIssuer. */
  tlsShare?: TlsShareContext;
}

/**
 * What sharing the certificate between the app servers needs from Pulumi (stage scaled with a
 * domain): on the issuer, each other app server's public key; on each of those, its own private
 * key and the issuer's host key, which it pins.
 */
export interface TlsShareContext {
  /** A follower's public key ("ssh-ed25519 <base64>") by plan name; undefined for a server that has none. */
  publicKeyOf: (server: string) => string | undefined;
  /** The issuer's SSH host public key (a follower's render only). */
  issuerHostKey?: string;
  /** This server's own OpenSSH private key (a follower's render only; a secret). */
  privateKey?: string;
}

/** A managed cluster as the servers reach it: over the private network, TLS verified with its CA. */
export interface ManagedDatabaseContext {
  endpoint: DatabaseEndpoint;
  /**
   * The cluster's read-only node (the plan's replicaSize): its private host and port, the same
   * database, logins and CA as the cluster's (roles replicate with the data).
   */
  readEndpoint?: DatabaseEndpoint;
  /** The logins as DigitalOcean made them (it generates their passwords). */
  credentials: DatabaseCredentials;
  /** The cluster's CA certificate (PEM). */
  caCertificate: string;
}

/** The parts of the plan a server's input depends on besides the server itself. */
export type StackContext = Pick<StackPlan, "servers" | "network" | "database" | "loadBalancer" | "certificateIssuer">;

export function appUrlFor(config: Pick<StackConfig, "domain">, ipv4: string): string {
  return config.domain ? `https://${config.domain}` : `http://${ipv4}`;
}

/** Default stack context: the server alone, PostgreSQL on it (what the all-in-one stage is). */
function aloneContext(server: ServerPlan): StackContext {
  return { servers: [server], database: { kind: "server", server: server.name } };
}

export function buildServerInput(config: StackConfig, server: ServerPlan, context: ServerInputContext, plan: StackContext = aloneContext(server)): ServerRenderInput {
  const addresses = context.privateAddresses ?? plannedAddresses(plan);
  const managed = plan.database.kind === "managed" ? managedDatabaseOf(server, context) : undefined;
  const roles: Partial<RoleInputs> = {};
  for (const role of server.roles) setRoleInput(roles, role, config, server, context, { plan, addresses });
  if (roles.db && isStandbyDatabase(server, plan)) roles.db = { ...roles.db, backup: { ...roles.db.backup, standby: true } };
  return {
    hostname: server.name,
    sshPublicKeys: config.sshPublicKeys,
    firewall: resolveFirewall(server, addresses, plan.network?.cidr),
    privateNetwork: plan.network ? { cidr: plan.network.cidr } : undefined,
    roles,
    databaseCaCertificate: managed && connectsToManagedDatabase(server.roles) ? managed.caCertificate : undefined,
    app: runsApp(server.roles)
      ? {
          url: appUrlFor(config, context.ipv4),
          environment: appEnvironmentFor(config, context.stack),
          processEnvironment: processEnvironmentFor(config),
          secretKey: context.secrets.appSecretKey,
          database: {
            endpoint: databaseEndpointFor(server, plan, addresses, managed?.endpoint),
            // A managed cluster's logins are DigitalOcean's (it generates their passwords).
            credentials: credentialsOf(loginsFor(server), managed?.credentials ?? databaseCredentials(context.secrets)),
            ...readEndpointFor(server, plan, addresses, managed),
          },
          uploads: uploadsFor(config, context),
          ...releaseBalancerFor(server, plan),
          ...valkeyFor(server, plan, addresses, context),
        }
      : undefined,
    ...(server.mvpDatabase ? { mvpDatabase: server.mvpDatabase } : {}),
    watchdog: watchdogFor(config, context.stack),
  };
}

/** The stack's watchdog settings, the same on every server. */
export function watchdogFor(config: StackConfig, stack: string): WatchdogInput {
  return {
    stack,
    thresholds: {
      diskPercent: config.watchdogDiskPercent,
      memoryAvailablePercent: config.watchdogMemoryPercent,
      loadPercent: config.watchdogLoadPercent,
      certificateDays: config.watchdogCertificateDays,
      backupMaxAgeHours: config.watchdogBackupMaxAgeHours,
      drillMaxAgeDays: config.watchdogDrillMaxAgeDays,
    },
    alertWebhookUrl: config.alertWebhookUrl,
    heartbeatUrl: config.watchdogHeartbeatUrl,
  };
}

/** Every login with its role name and generated password. */
export function databaseCredentials(secrets: ServerSecrets): DatabaseCredentials {
  const passwords: Record<DatabaseLogin, string> = { owner: secrets.databasePassword, web: secrets.databaseWebPassword, worker: secrets.databaseWorkerPassword };
  return Object.fromEntries(DATABASE_LOGINS.map((login) => [login, { user: DATABASE_ROLE_NAMES[login], password: passwords[login] }])) as unknown as DatabaseCredentials;
}

function credentialsOf(logins: DatabaseLogin[], all: DatabaseCredentials): Partial<DatabaseCredentials> {
  return Object.fromEntries(logins.map((login) => [login, all[login]]));
}

/**
 * Where the app on this server reaches PostgreSQL: on the same server over loopback (no TLS), the
 * db server at its private address with TLS, or the managed cluster's endpoint.
 */
export function databaseEndpointFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses, managed: DatabaseEndpoint | undefined): DatabaseEndpoint {
  const database = plan.database;
  if (database.kind === "managed") {
    if (!managed) throw new Error(`server ${server.name}: the plan's database is managed, but no managed cluster endpoint was given`);
    return managed;
  }
  if (database.server === server.name) return { host: "127.0.0.1", port: POSTGRES_PORT, database: DATABASE_NAME, tls: false };
  const host = addresses[database.server];
  if (!host) throw new Error(`server ${server.name}: the private address of db server ${database.server} is not known yet; the app's servers are rendered once it is`);
  return { host, port: POSTGRES_PORT, database: DATABASE_NAME, tls: true };
}

/**
 * The db server's network clients, from its PostgreSQL firewall rule (one source: the rule's
 * peers, resolved as the host firewall resolves them) with the logins each peer's roles use.
 */
export function postgresClientsFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses): PostgresClient[] | undefined {
  const rule = server.firewall.find((r) => r.port === POSTGRES_PORT && r.peers?.length);
  if (!rule || !plan.network) return undefined;
  return (rule.peers ?? []).flatMap((peer) => {
    const peerServer = plan.servers.find((s) => s.name === peer);
    if (!peerServer) throw new Error(`server ${server.name}: its PostgreSQL rule names ${peer}, which the plan does not have`);
    const users = loginsFor(peerServer).map((login) => DATABASE_ROLE_NAMES[login]);
    // A replica logs in for replication only: the primary's replication lines (replicasOf) admit it.
    if (users.length === 0) return [];
    return [{ name: peer, sources: resolveSources({ ...rule, sources: [], peers: [peer] }, addresses, plan.network?.cidr), users }];
  });
}

/**
 * The replicas that stream from this db server, each at its exact address. One whose address is
 * not known yet (DigitalOcean, before its droplet exists) is left out: the day-2 push, rendered
 * once every address is known, adds its replication line and slot.
 */
export function replicasOf(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses): ReplicaClient[] {
  return plan.servers
    .filter((s) => s.roles.includes("replica") && addresses[s.name] !== undefined)
    .map((s) => ({ name: s.name, source: `${addresses[s.name]}/32` }));
}

/** The db server a replica streams from: the plan's database server. */
function primaryOf(server: ServerPlan, plan: StackContext): string {
  if (plan.database.kind !== "server") throw new Error(`server ${server.name}: a replica needs the stack's db server (with a managed database, the replica is the cluster's read-only node and no server has this role)`);
  return plan.database.server;
}

/**
 * The read replica's endpoint for a server whose web processes read from it (stage scaled with
 * readReplica): the managed cluster's read-only node, or the replica server at its private address.
 */
function readEndpointFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses, managed: ManagedDatabaseContext | undefined): Pick<AppDatabaseInput, "readEndpoint"> {
  if (plan.database.kind === "managed") {
    if (!plan.database.replicaSize || !server.roles.includes("web")) return {};
    if (!managed?.readEndpoint) throw new Error(`server ${server.name}: the plan has a read-only node of the managed cluster, but no endpoint of it was given`);
    return { readEndpoint: managed.readEndpoint };
  }
  const replica = plan.servers.find((s) => s.roles.includes("replica"));
  if (!replica || !server.roles.includes("web")) return {};
  const host = addresses[replica.name];
  // DigitalOcean, first boot of an app server declared before the replica: reads stay on the primary until the day-2 push names it.
  if (!host) return {};
  return { readEndpoint: { host, port: POSTGRES_PORT, database: DATABASE_NAME, tls: true } };
}

/**
 * Where the app on this server reaches Valkey (the plan's cache server, at its private address),
 * as VALKEY_URL; nothing without a cache server. Like the db server's, the address must be known:
 * the cache server is created before the app's servers (components/saasStack.ts, creationOrder).
 */
function valkeyFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses, context: ServerInputContext): Pick<AppInput, "valkeyUrl"> {
  const cache = plan.servers.find((s) => s.roles.includes("cache"));
  if (!cache) return {};
  const host = addresses[cache.name];
  if (!host) throw new Error(`server ${server.name}: the private address of cache server ${cache.name} is not known yet; the app's servers are rendered once it is`);
  return { valkeyUrl: valkeyUrl(host, valkeyPasswordOf(server, context)) };
}

/** The app's Valkey login's generated password, on both ends (the cache server and the app's servers). */
function valkeyPasswordOf(server: ServerPlan, context: ServerInputContext): string {
  const password = context.secrets.valkeyPassword;
  if (!password) throw new Error(`server ${server.name}: the plan has a cache server, but no Valkey password was given`);
  return password;
}

/** What replication needs on both ends: the generated password of the replication login. */
function replicationPasswordOf(server: ServerPlan, context: ServerInputContext): string {
  const password = context.secrets.replicationPassword;
  if (!password) throw new Error(`server ${server.name}: the plan has a read replica, but no replication password was given`);
  return password;
}

/**
 * A server with PostgreSQL that is not where the plan puts the app's database: the db server of a
 * stack moving from mvp, before the switch (plan/move.ts). Its backups must wait.
 */
function isStandbyDatabase(server: ServerPlan, plan: Partial<Pick<StackPlan, "database">>): boolean {
  return plan.database?.kind === "server" && plan.database.server !== server.name;
}

/** One role's input; a switch over every role, so a new role fails to compile until it is mapped here. */
function setRoleInput(roles: Partial<RoleInputs>, role: Role, config: StackConfig, server: ServerPlan, context: ServerInputContext, stack: { plan: StackContext; addresses: PrivateAddresses }): void {
  switch (role) {
    case "web": {
      const ports = webPorts(server.webInstances);
      roles.web = {
        ports,
        surgePort: surgePortFor(ports),
        domain: config.domain,
        acmeEmail: config.acmeEmail,
        ...balancerFor(server, stack.plan, stack.addresses),
        ...tlsShareFor(server, stack.plan, stack.addresses, context),
      };
      return;
    }
    case "worker":
      roles.worker = {
        units: workerUnits(server.workerInstances),
        ...(server.criticalWorkers ? { critical: { units: criticalWorkerUnits(server.criticalWorkers.instances), tasks: server.criticalWorkers.tasks } } : {}),
      };
      return;
    case "db":
      roles.db = {
        machine: context.machine,
        memoryMiB: server.memoryMiB,
        dedicated: server.roles.every((r) => r === "db"),
        credentials: databaseCredentials(context.secrets),
        networkClients: postgresClientsFor(server, stack.plan, stack.addresses),
        backup: backupOptions(config, context),
        ...primaryReplicationFor(server, context, stack.plan, stack.addresses),
      };
      return;
    case "replica": {
      const primary = primaryOf(server, stack.plan);
      const primaryAddress = stack.addresses[primary];
      if (!primaryAddress) throw new Error(`server ${server.name}: the private address of its primary ${primary} is not known yet; the replica is rendered once it is`);
      roles.replica = {
        machine: context.machine,
        memoryMiB: server.memoryMiB,
        server: server.name,
        primaryAddress,
        replicationPassword: replicationPasswordOf(server, context),
        networkClients: postgresClientsFor(server, stack.plan, stack.addresses) ?? [],
      };
      return;
    }
    case "backup":
      roles.backup = { backup: { ...backupOptions(config, context), remote: managedBackupLogin(server, context) } };
      return;
    case "cache":
      roles.cache = { memoryMiB: server.memoryMiB, password: valkeyPasswordOf(server, context) };
      return;
    default: {
      const unmapped: never = role;
      throw new Error(`role ${unmapped} has no input mapping`);
    }
  }
}

/** The db server's side of replication, when the plan has a replica. */
function primaryReplicationFor(server: ServerPlan, context: ServerInputContext, plan: StackContext, addresses: PrivateAddresses): { replication?: PrimaryReplicationInput } {
  if (!plan.servers.some((s) => s.roles.includes("replica"))) return {};
  if (!server.volume) throw new Error(`server ${server.name}: a primary with replicas needs its data volume (the slots' bound is a share of it)`);
  return { replication: { replicas: replicasOf(server, plan, addresses), password: replicationPasswordOf(server, context), maxSlotWalKeepMiB: planMaxSlotWalKeepMiB(server.volume.sizeGb) } };
}

/**
 * An app server behind the stack's load balancer: nginx trusts the PROXY header only from where
 * its firewall admits the balancer (one source, resolved as the host firewall resolves it).
 */
function balancerFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses): Pick<WebInput, "balancer"> {
  if (!plan.loadBalancer?.targets.includes(server.name)) return {};
  const rule = server.firewall.find((r) => r.loadBalancer);
  if (!rule) throw new Error(`server ${server.name}: behind the load balancer, but no firewall rule admits it`);
  // The balancer alone: the issuer's health rule also names the other app servers.
  const [trustedCidr] = resolveSources({ ...rule, sources: [], peers: [] }, addresses, plan.network?.cidr);
  return { balancer: { trustedCidr } };
}

/**
 * The app servers' parts in sharing one certificate (stage scaled with a domain): the issuer
 * admits each other app server's key from where its firewall admits that server (its address,
 * or the private network while the address is not known yet); each other app server fetches
 * from the issuer's private address, pinning its host key.
 */
function tlsShareFor(server: ServerPlan, plan: StackContext, addresses: PrivateAddresses, context: ServerInputContext): Pick<WebInput, "tlsShare"> {
  const issuer = plan.certificateIssuer;
  const targets = plan.loadBalancer?.targets ?? [];
  // The issuer, behind the balancer or (siteAddress app) still answering the site itself, and the app servers behind the balancer.
  if (!issuer || (server.name !== issuer && !targets.includes(server.name))) return {};
  const share = context.tlsShare;
  if (!share) throw new Error(`server ${server.name}: the plan shares ${issuer}'s certificate, but no keys for it were given`);
  if (server.name === issuer) {
    const rule = server.firewall.find((r) => r.port === SSH_PORT && r.peers?.length);
    if (!rule) throw new Error(`server ${server.name}: it issues the certificate, but no firewall rule admits the other app servers' SSH`);
    const followers = (rule.peers ?? []).map((name) => {
      const [source] = resolveSources({ ...rule, sources: [], peers: [name] }, addresses, plan.network?.cidr);
      const publicKey = share.publicKeyOf(name);
      if (!publicKey) throw new Error(`server ${server.name}: no public key of ${name}, which fetches the certificate`);
      return { name, publicKey, source };
    });
    return { tlsShare: { role: "issuer", followers } };
  }
  const issuerAddress = addresses[issuer];
  if (!issuerAddress) throw new Error(`server ${server.name}: the private address of ${issuer}, which issues the certificate, is not known yet; the other app servers are rendered once it is`);
  if (!share.issuerHostKey || !share.privateKey) throw new Error(`server ${server.name}: fetching ${issuer}'s certificate needs its host key and this server's private key`);
  return { tlsShare: { role: "follower", issuer, issuerAddress, issuerHostKey: share.issuerHostKey, privateKey: share.privateKey } };
}

/** How a release on an app server behind the balancer drains it there: the balancer's check timings. */
function releaseBalancerFor(server: ServerPlan, plan: StackContext): { balancer?: ReleaseBalancer } {
  const balancer = plan.loadBalancer;
  if (!balancer?.targets.includes(server.name)) return {};
  return { balancer: { drainFile: LB_DRAIN_FILE, outSeconds: drainSeconds(balancer.healthCheck), inSeconds: undrainSeconds(balancer.healthCheck) } };
}

/** Servers whose processes connect to the managed cluster: the app's and the one that backs it up. */
function connectsToManagedDatabase(roles: readonly Role[]): boolean {
  return runsApp(roles) || roles.includes("backup");
}

function managedDatabaseOf(server: ServerPlan, context: ServerInputContext): ManagedDatabaseContext {
  if (!context.managedDatabase) throw new Error(`server ${server.name}: the plan's database is managed, but no managed cluster was given`);
  return context.managedDatabase;
}

/** The backup of a managed cluster dumps as the owner login: it owns, so it reads, everything. */
function managedBackupLogin(server: ServerPlan, context: ServerInputContext): RemoteDatabase {
  const { endpoint, credentials } = managedDatabaseOf(server, context);
  return { host: endpoint.host, port: endpoint.port, user: credentials.owner.user, password: credentials.owner.password, sslMode: MANAGED_SSLMODE, sslRootCert: DATABASE_CA_FILE };
}

function backupOptions(config: StackConfig, context: ServerInputContext): BackupRenderOptions {
  return {
    schedule: config.backupSchedule,
    retentionDays: config.backupRetentionDays,
    drillSchedule: config.restoreDrillSchedule,
    databaseName: DATABASE_NAME,
    bucket: context.backupBucket,
    encryptionPassword: context.secrets.backupPassword,
    heartbeatUrl: config.backupHeartbeatUrl,
  };
}

/** Where the app on this server keeps uploads: the config's choice, with the bucket as resolved. */
export function uploadsFor(config: Pick<StackConfig, "uploads">, context: Pick<ServerInputContext, "uploadsBucket">): UploadsInput {
  if (config.uploads.storage === "volume") return { storage: "volume" };
  if (!context.uploadsBucket) throw new Error("uploads go to a bucket, but no resolved uploads bucket was given");
  return { storage: "bucket", bucket: context.uploadsBucket };
}

/**
 * App settings from stack config, as the app's environment variables: the metrics port offset
 * always, the optional ones when set. Sentry's environment is the stack, next to its DSN.
 */
export function appEnvironmentFor(config: Pick<StackConfig, "smtpUrl" | "mailFrom" | "sentryDsn" | "metricsPortOffset">, stack: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.smtpUrl) env.SMTP_URL = config.smtpUrl;
  if (config.mailFrom) env.MAIL_FROM = config.mailFrom;
  if (config.sentryDsn) {
    // Sentry's rule for an environment, which the app enforces at start.
    if (!/^[^\s/]{1,64}$/.test(stack) || stack === "None") throw new Error(`saas-vps:sentryDsn: Sentry takes the stack name as the environment, which must be at most 64 characters without whitespace or "/", and not "None"; the stack is ${JSON.stringify(stack)}`);
    env.SENTRY_DSN = config.sentryDsn;
    env.SENTRY_ENVIRONMENT = stack;
  }
  env.METRICS_PORT_OFFSET = String(config.metricsPortOffset);
  return env;
}

/**
 * App settings only some processes may see, by process kind: they go into web.env or worker.env,
 * never app.env (which the release's migrate step and every process read). Web checks webhook
 * signatures and creates Checkout sessions; the worker may fetch a subscription from Stripe.
 */
export function processEnvironmentFor(config: Pick<StackConfig, "stripeSecretKey" | "stripeWebhookSecret">): ProcessEnvironment {
  const web: Record<string, string> = {};
  const worker: Record<string, string> = {};
  if (config.stripeSecretKey) web.STRIPE_SECRET_KEY = worker.STRIPE_SECRET_KEY = config.stripeSecretKey;
  if (config.stripeWebhookSecret) web.STRIPE_WEBHOOK_SECRET = config.stripeWebhookSecret;
  return { web, worker };
}

/** A stand-in SSH key pair with the shapes of tls.PrivateKey's (not a key). */
const PLACEHOLDER_PUBLIC_KEY = "ssh-ed25519 UExBQ0VIT0xERVI=";
const PLACEHOLDER_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nUExBQ0VIT0xERVI=\n-----END OPENSSH PRIVATE KEY-----\n";

/** Stand-in values with the shapes of the real ones, for listing which files a server gets. */
export const PLACEHOLDER_CONTEXT: Omit<ServerInputContext, "machine"> = {
  stack: "placeholder-stack",
  ipv4: "192.0.2.10",
  secrets: {
    databasePassword: "placeholder-database-password",
    databaseWebPassword: "placeholder-database-web-password",
    databaseWorkerPassword: "placeholder-database-worker-password",
    appSecretKey: "placeholder-app-secret-key-0000000000000000",
    backupPassword: "placeholder-backup-password-000000000000000",
    replicationPassword: "placeholder-replication-password-00000000",
    valkeyPassword: "placeholder-valkey-password-0000000000000",
  },
  backupBucket: {
    endpoint: "https://fsn1.your-objectstorage.com",
    name: "placeholder-backups",
    region: "fsn1",
    accessKeyId: "PLACEHOLDERKEYID",
    secretAccessKey: "placeholder-secret-access-key",
  },
  managedDatabase: {
    endpoint: { host: "private-db.placeholder.invalid", port: 25060, database: DATABASE_NAME, tls: true, caFile: DATABASE_CA_FILE },
    credentials: {
      owner: { user: DATABASE_ROLE_NAMES.owner, password: "placeholder-managed-owner-password" },
      web: { user: DATABASE_ROLE_NAMES.web, password: "placeholder-managed-web-password" },
      worker: { user: DATABASE_ROLE_NAMES.worker, password: "placeholder-managed-worker-password" },
    },
    readEndpoint: { host: "private-db-replica.placeholder.invalid", port: 25060, database: DATABASE_NAME, tls: true, caFile: DATABASE_CA_FILE },
    caCertificate: "-----BEGIN CERTIFICATE-----\nUExBQ0VIT0xERVI=\n-----END CERTIFICATE-----\n",
  },
  tlsShare: { publicKeyOf: () => PLACEHOLDER_PUBLIC_KEY, issuerHostKey: PLACEHOLDER_PUBLIC_KEY, privateKey: PLACEHOLDER_PRIVATE_KEY },
  uploadsBucket: {
    endpoint: "https://fsn1.your-objectstorage.com",
    name: "placeholder-uploads",
    region: "fsn1",
    accessKeyId: "PLACEHOLDERUPLOADSKEYID",
    secretAccessKey: "placeholder-uploads-secret-access-key",
  },
};
