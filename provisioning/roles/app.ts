/**
 * What every server that runs the app gets, once however many of its roles run it (web,
 * worker): the process units and their target, the app's environment, the release command
 * and its config, Node, and the directories releases go to.
 */
import type { RenderedFile } from "../files";
import { APP_ENV_FILE, APP_ROOT, APP_USER, DATABASE_NAME, DATABASE_USER, UPLOAD_DIR } from "../layout";
import { RELEASE_PACKAGES, RELEASE_PATHS, renderReleaseFiles, runsMigrations } from "../release";
import { APP_TARGET, renderAppUnitFiles, ROLLING_RESTART } from "../systemd";
import type { RoleContribution } from "./contribution";

export interface AppInput {
  /** Public base URL of the app (https://domain, or http://<fixed IP>). */
  url: string;
  /** Extra app environment (SMTP_URL, MAIL_FROM, SENTRY_DSN, ...); may hold secrets: app.env is 0600. */
  environment: Record<string, string>;
  /** Generated secrets; they only ever land in the 0600 app.env. */
  databasePassword: string;
  secretKey: string;
}

/** The app's processes on this server, from its roles: web instance ports and worker units. */
export interface AppProcesses {
  webPorts: number[];
  /** A temporary web port for releases of a single instance (see layout.surgePortFor). */
  surgePort?: number;
  workerUnits: string[];
}

export function renderApp(app: AppInput, processes: AppProcesses): RoleContribution {
  return {
    files: [
      ...renderAppUnitFiles(processes.webPorts, processes.workerUnits),
      appEnvFile(app),
      // The release command runs only once the first `pulumi up` ships a release, after the pushes.
      ...renderReleaseFiles({ ...processes, migrate: runsMigrations(processes.webPorts.length) }).map((f) =>
        f.path === RELEASE_PATHS.command ? { ...f, pushOnly: true } : f,
      ),
    ],
    packages: ["nodejs", ...RELEASE_PACKAGES],
    steps: ["30-app-dirs"],
    units: [APP_TARGET],
    settings: { APP_USER, APP_ROOT, UPLOAD_DIR },
  };
}

function appEnvFile(app: AppInput): RenderedFile {
  const content = [
    "# Rendered by saas-vps: the app's environment (secrets). Read by systemd for web@ and worker@.",
    `DATABASE_URL=postgres://${DATABASE_USER}:${app.databasePassword}@127.0.0.1:5432/${DATABASE_NAME}`,
    `SECRET_KEY=${app.secretKey}`,
    `APP_URL=${app.url}`,
    `UPLOAD_DIR=${UPLOAD_DIR}`,
    "LOG_LEVEL=info",
    ...Object.entries(app.environment).map(([key, value]) => `${key}=${value}`),
    "",
  ].join("\n");
  return { path: APP_ENV_FILE, content, mode: "0600", owner: `${APP_USER}:${APP_USER}`, secret: true, onChange: ROLLING_RESTART };
}
