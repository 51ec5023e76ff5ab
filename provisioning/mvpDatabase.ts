/**
 * The app server of a stack moving from mvp (plan/move.ts): the state of its own, old PostgreSQL
 * as a file, and the command that applies it (provisioning/assets/server/mvp-database). Pushes
 * only write files, so the switch is a file whose content changes (live -> kept, and back) and
 * whose push runs the command; each file's push runs it, so the order they land in does not matter.
 * Both files are pushOnly: the server exists long before either (it was the mvp server).
 */
import type { MvpDatabaseState } from "../config/stages";
import { DATABASE_ROLE_NAMES } from "../plan/database";
import { BACKUP_TIMERS } from "./backup";
import type { RenderedFile } from "./files";
import { CONFIG_DIR, LIB_DIR } from "./layout";
import { loadScript } from "./scripts";
import { APP_TARGET } from "./systemd";
import type { RoleContribution } from "./roles/contribution";

export const MVP_DATABASE_PATHS = {
  command: `${LIB_DIR}/mvp-database`,
  envFile: `${CONFIG_DIR}/mvp-database.env`,
} as const;

/** The old worker processes: every instance of both worker templates (systemd.ts), however many ran in mvp; patterns for systemctl, space-separated. */
const OLD_WORKER_UNITS = "worker@*.service worker-critical@*.service";

export function renderMvpDatabase(state: MvpDatabaseState): RoleContribution {
  const command = MVP_DATABASE_PATHS.command;
  const env = [
    "# Rendered by saas-vps: the state of this server's own (old mvp) PostgreSQL while the stack moves to separated.",
    `MVP_DATABASE="${state}"`,
    `DB_ROLES="${Object.values(DATABASE_ROLE_NAMES).join(" ")}"`,
    `BACKUP_TIMERS="${BACKUP_TIMERS.join(" ")}"`,
    `WORKER_UNITS="${OLD_WORKER_UNITS}"`,
    `APP_TARGET="${APP_TARGET}"`,
    "",
  ].join("\n");
  const files: RenderedFile[] = [
    { path: command, content: loadScript("server/mvp-database"), mode: "0755", pushOnly: true, onChange: command },
    { path: MVP_DATABASE_PATHS.envFile, content: env, mode: "0644", pushOnly: true, onChange: `[ ! -x ${command} ] || ${command}` },
  ];
  return { files, packages: [], steps: [], units: [], settings: {} };
}
