/**
 * The backup role: the nightly encrypted backup and the weekly restore drill of a database this
 * server does not host (a managed cluster), run from a server of the stack that the database's
 * firewall lets in. The pg tools connect over verified TLS as the owner login (it owns, and so
 * can read, everything, and it may create the drill's scratch database). A server that hosts
 * the database gets the same jobs with its db role (roles/db.ts), reaching it locally.
 */
import { BACKUP_PACKAGES, BACKUP_PATHS, BACKUP_TIMERS, renderBackupFiles, type BackupRenderOptions, type RemoteDatabase } from "../backup";
import type { RenderedFile } from "../files";
import type { RoleContribution } from "./contribution";

export interface BackupInput {
  /** The jobs' options; `remote` names the database and the login. */
  backup: BackupRenderOptions & { remote: RemoteDatabase };
}

export function renderBackup(input: BackupInput): RoleContribution[] {
  return [
    {
      files: backupFiles(input.backup),
      // The client tools only (pg_dump, pg_restore, psql, createdb, dropdb): the database is elsewhere.
      packages: ["postgresql-client", ...BACKUP_PACKAGES],
      steps: [],
      units: [],
      unitsStartedByPush: [...BACKUP_TIMERS],
      settings: {},
    },
  ];
}

/**
 * The backup command is the largest file after the release command and runs only from the
 * timers, so it travels in the day-2 push. Its timers are enabled on first boot but started by
 * that push (onChange), never before the command exists: a timer started on first boot could
 * fire (03:00 plus its random delay) in the minutes between bootstrap and the push. A job that
 * fails alerts through the watchdog's alert@ notifier, which travels in the same push; should a
 * reboot start the timers before that push ever came, the job fails unreported until the push,
 * after which the watchdog's check reports the failed unit.
 */
export function backupFiles(options: BackupRenderOptions): RenderedFile[] {
  const startTimers = `systemctl start ${BACKUP_TIMERS.join(" ")}`;
  return renderBackupFiles(options).map((f) =>
    f.path === BACKUP_PATHS.command ? { ...f, pushOnly: true, onChange: f.onChange ? `${f.onChange} && ${startTimers}` : startTimers }
      // Its settings: read by the command alone, so they travel with it.
      : f.path === BACKUP_PATHS.envFile ? { ...f, pushOnly: true }
      : f,
  );
}
