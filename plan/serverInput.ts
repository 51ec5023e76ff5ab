/**
 * Maps the stack config and one planned server to the renderer's input. Pure: the component
 * calls it inside its single Output boundary, the render command and tests call it directly.
 */
import { BACKUP_PACKAGES, BACKUP_TIMERS, renderBackupFiles, type BackupBucket } from "../provisioning/backup";
import { DATABASE_NAME, webPorts, workerUnits } from "../provisioning/layout";
import { RELEASE_PACKAGES, renderReleaseFiles } from "../provisioning/release";
import { surgePortFor, type MachineKind, type ServerRenderInput } from "../provisioning/server";
import type { StackConfig } from "../config/config";
import type { ServerPlan } from "./plan";

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
}

export function appUrlFor(config: Pick<StackConfig, "domain">, ipv4: string): string {
  return config.domain ? `https://${config.domain}` : `http://${ipv4}`;
}

export function buildServerInput(config: StackConfig, server: ServerPlan, context: ServerInputContext): ServerRenderInput {
  const hasDb = server.roles.includes("db");
  const runsApp = server.roles.includes("web") || server.roles.includes("worker");
  const ports = server.roles.includes("web") ? webPorts(server.webInstances) : [];
  const releaseFiles = runsApp
    ? renderReleaseFiles({
        webPorts: ports,
        workerUnits: server.roles.includes("worker") ? workerUnits(server.workerInstances) : [],
        surgePort: surgePortFor(ports),
      })
    : [];
  return {
    hostname: server.name,
    machine: context.machine,
    roles: server.roles,
    memoryMiB: config.serverMemoryMiB,
    webInstances: server.webInstances,
    workerInstances: server.workerInstances,
    sshPublicKeys: config.sshPublicKeys,
    appUrl: appUrlFor(config, context.ipv4),
    domain: config.domain,
    acmeEmail: config.acmeEmail,
    secrets: { databasePassword: context.secrets.databasePassword, appSecretKey: context.secrets.appSecretKey },
    appEnvironment: appEnvironmentFor(config),
    // The release tool goes where the app runs; backups run where the database is.
    extraFiles: [...releaseFiles, ...(hasDb ? backupFiles(config, context) : [])],
    extraPackages: [...(hasDb ? BACKUP_PACKAGES : []), ...(runsApp ? RELEASE_PACKAGES : [])],
    enableUnits: hasDb ? [...BACKUP_TIMERS] : [],
  };
}

function backupFiles(config: StackConfig, context: ServerInputContext) {
  return renderBackupFiles({
    schedule: config.backupSchedule,
    retentionDays: config.backupRetentionDays,
    drillSchedule: config.restoreDrillSchedule,
    databaseName: DATABASE_NAME,
    bucket: context.backupBucket,
    encryptionPassword: context.secrets.backupPassword,
    alertWebhookUrl: config.alertWebhookUrl,
    heartbeatUrl: config.backupHeartbeatUrl,
  });
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
