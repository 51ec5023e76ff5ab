/**
 * The db role: PostgreSQL on the protected data volume, tuned to the server's memory, the app's
 * role and database, and the encrypted off-server backups with their weekly restore drill.
 */
import { BACKUP_PACKAGES, BACKUP_TIMERS, type BackupRenderOptions } from "../backup";
import { backupFiles } from "./backup";
import { BOOTSTRAP_PATH } from "../cloudInit";
import type { RenderedFile } from "../files";
import { DATA_LABEL, DATA_MOUNT, DATABASE_NAME, DATABASE_USER, DB_ENV_FILE } from "../layout";
import { POSTGRES_CONF_PATH, renderPostgresFiles } from "../postgres";
import { renderUnit, UNIT_DIR } from "../systemd";
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
  /** Generated password of the app's database role. */
  databasePassword: string;
  /** The nightly backup and weekly drill, already resolved to this server's bucket. */
  backup: BackupRenderOptions;
}

export function renderDb(input: DbInput): RoleContribution[] {
  return [
    {
      files: [...renderPostgresFiles(input.memoryMiB), postgresMountDropIn(), dbEnvFile(input.databasePassword), ...backupFiles(input.backup)],
      // e2fsprogs formats and labels the data volume.
      packages: ["e2fsprogs", "postgresql", ...BACKUP_PACKAGES],
      steps: ["10-data-volume", "20-postgresql"],
      // The cluster's unit carries the installed version: 20-postgresql names it on the server.
      units: [],
      unitsStartedByPush: [...BACKUP_TIMERS],
      settings: {
        DATA_DEVICE_GLOB: DATA_DEVICE_GLOBS[input.machine],
        DATA_LABEL,
        DATA_MOUNT,
        DB_NAME: DATABASE_NAME,
        DB_USER: DATABASE_USER,
        DB_ENV_FILE,
        POSTGRES_CONF: POSTGRES_CONF_PATH,
      },
    },
  ];
}

function dbEnvFile(databasePassword: string): RenderedFile {
  const content = `# Rendered by saas-vps: password of the app's database role.\nDB_PASSWORD=${databasePassword}\n`;
  return { path: DB_ENV_FILE, content, mode: "0600", secret: true, onChange: BOOTSTRAP_PATH };
}

/** PostgreSQL's data lives on the volume: never start the cluster without it mounted. */
function postgresMountDropIn(): RenderedFile {
  const content = renderUnit({ Unit: [["RequiresMountsFor", DATA_MOUNT]] }, "PostgreSQL waits for the data volume");
  return { path: `${UNIT_DIR}/postgresql@.service.d/50-saas-vps.conf`, content, mode: "0644", onChange: "systemctl daemon-reload" };
}
