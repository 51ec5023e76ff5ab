/**
 * Maps the stack config and one planned server to the renderer's input: one input per role of
 * the server (roles/index.ts names them) and the app's, when a role runs it. Nothing is rendered
 * or decided here; ports are computed here once and handed to every role that needs them. Pure:
 * the component calls it inside its single Output boundary, the render command and tests call it
 * directly.
 */
import type { BackupBucket, BackupRenderOptions, RemoteDatabase } from "../provisioning/backup";
import { DATABASE_NAME, surgePortFor, webPorts, workerUnits } from "../provisioning/layout";
import type { RoleInputs } from "../provisioning/roles/index";
import { runsApp } from "../provisioning/roles/index";
import type { MachineKind, ServerRenderInput } from "../provisioning/server";
import type { StackConfig } from "../config/config";
import { MANAGED_SSLMODE, DATABASE_CA_FILE } from "../provisioning/managedDatabase";
import type { DatabaseCredentials, DatabaseEndpoint } from "./database";
import type { Role, ServerPlan, StackPlan } from "./plan";
import { plannedAddresses, resolveFirewall, type PrivateAddresses } from "./peers";

export interface ServerSecrets {
  databasePassword: string;
  appSecretKey: string;
  /** restic repository password: backups are encrypted on the server with it. */
  backupPassword: string;
}

export interface ServerInputContext {
  machine: MachineKind;
  /** The server's fixed public IPv4; the app's URL when no domain is set. */
  ipv4: string;
  secrets: ServerSecrets;
  /** The resolved backup bucket (created or given), keys included. */
  backupBucket: BackupBucket;
  /**
   * Private addresses of the stack's servers as known now (split stages); default: the plan's.
   * An address not known yet (DigitalOcean, before the droplet exists) is left out, and rules
   * naming that server fall back to the whole private network (plan/peers.ts).
   */
  privateAddresses?: PrivateAddresses;
  /** The managed cluster, when the plan's database is managed (its outputs, resolved). */
  managedDatabase?: ManagedDatabaseContext;
}

/** A managed cluster as the servers reach it: over the private network, TLS verified with its CA. */
export interface ManagedDatabaseContext {
  endpoint: DatabaseEndpoint;
  credentials: DatabaseCredentials;
  /** The cluster's CA certificate (PEM). */
  caCertificate: string;
}

export function appUrlFor(config: Pick<StackConfig, "domain">, ipv4: string): string {
  return config.domain ? `https://${config.domain}` : `http://${ipv4}`;
}

export function buildServerInput(config: StackConfig, server: ServerPlan, context: ServerInputContext, plan: Pick<StackPlan, "servers" | "network"> = { servers: [server] }): ServerRenderInput {
  const roles: Partial<RoleInputs> = {};
  for (const role of server.roles) setRoleInput(roles, role, config, server, context);
  const addresses = context.privateAddresses ?? plannedAddresses(plan);
  return {
    hostname: server.name,
    sshPublicKeys: config.sshPublicKeys,
    firewall: resolveFirewall(server, addresses, plan.network?.cidr),
    roles,
    databaseCaCertificate: context.managedDatabase && connectsToManagedDatabase(server.roles) ? context.managedDatabase.caCertificate : undefined,
    app: runsApp(server.roles)
      ? {
          url: appUrlFor(config, context.ipv4),
          environment: appEnvironmentFor(config),
          databasePassword: context.secrets.databasePassword,
          secretKey: context.secrets.appSecretKey,
        }
      : undefined,
  };
}

/** One role's input; a switch over every role, so a new role fails to compile until it is mapped here. */
function setRoleInput(roles: Partial<RoleInputs>, role: Role, config: StackConfig, server: ServerPlan, context: ServerInputContext): void {
  switch (role) {
    case "web": {
      const ports = webPorts(server.webInstances);
      roles.web = { ports, surgePort: surgePortFor(ports), domain: config.domain, acmeEmail: config.acmeEmail };
      return;
    }
    case "worker":
      roles.worker = { units: workerUnits(server.workerInstances) };
      return;
    case "db":
      roles.db = {
        machine: context.machine,
        memoryMiB: server.memoryMiB,
        databasePassword: context.secrets.databasePassword,
        backup: backupOptions(config, context),
      };
      return;
    case "backup":
      roles.backup = { backup: { ...backupOptions(config, context), remote: managedBackupLogin(server, context) } };
      return;
    default: {
      const unmapped: never = role;
      throw new Error(`role ${unmapped} has no input mapping`);
    }
  }
}

/** Servers whose processes connect to the managed cluster: the app's and the one that backs it up. */
function connectsToManagedDatabase(roles: readonly Role[]): boolean {
  return runsApp(roles) || roles.includes("backup");
}

/** The backup of a managed cluster dumps as the owner login: it owns, so it reads, everything. */
function managedBackupLogin(server: ServerPlan, context: ServerInputContext): RemoteDatabase {
  const managed = context.managedDatabase;
  if (!managed) throw new Error(`server ${server.name} backs up a managed database, but no managed database was given`);
  const { endpoint, credentials } = managed;
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
    alertWebhookUrl: config.alertWebhookUrl,
    heartbeatUrl: config.backupHeartbeatUrl,
  };
}

/** Optional app settings from stack config, as the app's environment variables. */
export function appEnvironmentFor(config: Pick<StackConfig, "smtpUrl" | "mailFrom" | "sentryDsn">): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.smtpUrl) env.SMTP_URL = config.smtpUrl;
  if (config.mailFrom) env.MAIL_FROM = config.mailFrom;
  if (config.sentryDsn) env.SENTRY_DSN = config.sentryDsn;
  return env;
}

/** Stand-in values with the shapes of the real ones, for listing which files a server gets. */
export const PLACEHOLDER_CONTEXT: Omit<ServerInputContext, "machine"> = {
  ipv4: "192.0.2.10",
  secrets: {
    databasePassword: "placeholder-database-password",
    appSecretKey: "placeholder-app-secret-key-0000000000000000",
    backupPassword: "placeholder-backup-password-000000000000000",
  },
  backupBucket: {
    endpoint: "https://fsn1.your-objectstorage.com",
    name: "placeholder-backups",
    region: "fsn1",
    accessKeyId: "PLACEHOLDERKEYID",
    secretAccessKey: "placeholder-secret-access-key",
  },
};
