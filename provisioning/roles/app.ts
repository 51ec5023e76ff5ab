/**
 * What every server that runs the app gets, once however many of its roles run it (web,
 * worker): the process units and their target, the app's environment, the release command
 * and its config, Node, and the directories releases go to.
 *
 * Database credentials, one file per login, each root-only (systemd reads EnvironmentFile= as
 * root before it drops to the app user, for the app's processes and for the release's
 * migrate@ unit alike): app.env holds the app's settings and, on the server that runs
 * migrations, the schema owner's DATABASE_URL for the release's migrate step; web.env and
 * worker.env hold the web and worker logins' DATABASE_URL, which replace it in their units.
 */
import type { RenderedFile } from "../files";
import { databaseUrl, type DatabaseCredentials, type DatabaseEndpoint } from "../../plan/database";
import { APP_ENV_FILE, APP_ROOT, APP_USER, WEB_ENV_FILE, WORKER_ENV_FILE } from "../layout";
import { RELEASE_PACKAGES, RELEASE_PATHS, renderReleaseFiles, type ReleaseBalancer } from "../release";
import { APP_TARGET, renderAppUnitFiles, ROLLING_RESTART } from "../systemd";
import { uploadDirOf, uploadsEnvironment, type UploadsInput } from "../uploads";
import type { RoleContribution } from "./contribution";
import type { CriticalWorkers } from "./worker";

export interface AppInput {
  /** Public base URL of the app (https://domain, or http://<fixed IP>). */
  url: string;
  /** Extra app environment (SMTP_URL, MAIL_FROM, SENTRY_DSN, ...); may hold secrets: app.env is 0600. */
  environment: Record<string, string>;
  /** Settings for one process kind only (Stripe's keys): they land in web.env or worker.env, not app.env. */
  processEnvironment?: ProcessEnvironment;
  /** Generated secret; it only ever lands in the root-only app.env. */
  secretKey: string;
  database: AppDatabaseInput;
  /** Where uploaded files live: the data volume, or a bucket (its keys land in app.env). */
  uploads: UploadsInput;
  /** Behind the provider's load balancer (stage scaled): a release drains the server there first. */
  balancer?: ReleaseBalancer;
  /**
   * The stack's Valkey (stage scaled's cache server), with its password: VALKEY_URL in web.env and
   * worker.env (root-only), never app.env, which the release's migrate step reads too.
   */
  valkeyUrl?: string;
}

/** Where PostgreSQL answers the app, and the logins of this server (plan/database.ts). */
export interface ProcessEnvironment {
  web: Record<string, string>;
  worker: Record<string, string>;
}

export interface AppDatabaseInput {
  endpoint: DatabaseEndpoint;
  /** owner only where the release runs migrations; web and worker for the processes this server runs. */
  credentials: Partial<DatabaseCredentials>;
  /**
   * The read replica (stage scaled), for the web processes' chosen read-only queries
   * (DATABASE_READ_URL, with the web login: its rights replicate with everything else).
   */
  readEndpoint?: DatabaseEndpoint;
}

/** The app's processes on this server, from its roles: web instance ports and worker units. */
export interface AppProcesses {
  webPorts: number[];
  /** A temporary web port for releases of a single instance (see layout.surgePortFor). */
  surgePort?: number;
  workerUnits: string[];
  /** Workers of their own for the critical tasks (worker role, roles/worker.ts); the workerUnits then run every other task. */
  criticalWorkers?: CriticalWorkers;
}

export function renderApp(app: AppInput, processes: AppProcesses): RoleContribution {
  const uploadDir = uploadDirOf(app.uploads);
  // A release restarts both kinds of worker; the critical ones last.
  const workerUnits = [...processes.workerUnits, ...(processes.criticalWorkers?.units ?? [])];
  return {
    files: [
      ...renderAppUnitFiles(processes.webPorts, processes.workerUnits, uploadDir, processes.criticalWorkers),
      appEnvFile(app),
      ...processEnvFiles(app.database, processes, app.processEnvironment, app.valkeyUrl),
      // The release command runs only once the first `pulumi up` ships a release, after the pushes.
      // The server that holds the schema owner's login is the one that migrates (plan/database.ts, runsMigrations).
      ...renderReleaseFiles({ webPorts: processes.webPorts, workerUnits, surgePort: processes.surgePort, migrate: app.database.credentials.owner !== undefined, ...(app.balancer ? { balancer: app.balancer } : {}) }).map((f) =>
        f.path === RELEASE_PATHS.command || f.path === RELEASE_PATHS.migrateUnit ? { ...f, pushOnly: true } : f,
      ),
    ],
    // postgresql-client: `npm run ops -- status` connects with psql as the app's processes do.
    packages: ["nodejs", "postgresql-client", ...RELEASE_PACKAGES],
    steps: ["30-app-dirs"],
    units: [APP_TARGET],
    // 30-app-dirs makes UPLOAD_DIR only when uploads stay on this server's volume.
    settings: { APP_USER, APP_ROOT, ...(uploadDir ? { UPLOAD_DIR: uploadDir } : {}) },
  };
}

function appEnvFile(app: AppInput): RenderedFile {
  const owner = app.database.credentials.owner;
  const content = [
    "# Rendered by saas-vps: the app's environment (secrets). Read by systemd for web@ and worker@, by release for migrations.",
    ...(owner ? [`# The schema owner's login, for migrations only: web.env and worker.env replace it in the units.`, `DATABASE_URL=${databaseUrl(app.database.endpoint, owner)}`] : []),
    `SECRET_KEY=${app.secretKey}`,
    `APP_URL=${app.url}`,
    ...uploadsEnvironment(app.uploads).map(([key, value]) => `${key}=${value}`),
    "LOG_LEVEL=info",
    ...Object.entries(app.environment).map(([key, value]) => `${key}=${value}`),
    "",
  ].join("\n");
  return { path: APP_ENV_FILE, content, mode: "0600", owner: "root:root", secret: true, onChange: ROLLING_RESTART };
}

/** web.env and worker.env: each process kind's own login, for the processes this server runs. */
function processEnvFiles(database: AppDatabaseInput, processes: AppProcesses, only: ProcessEnvironment = { web: {}, worker: {} }, valkeyUrl?: string): RenderedFile[] {
  const kinds = [
    { login: "web", path: WEB_ENV_FILE, runs: processes.webPorts.length > 0 },
    { login: "worker", path: WORKER_ENV_FILE, runs: processes.workerUnits.length + (processes.criticalWorkers?.units.length ?? 0) > 0 },
  ] as const;
  return kinds.flatMap(({ login, path, runs }) => {
    const credential = database.credentials[login];
    if (runs && !credential) throw new Error(`app: this server runs ${login} processes but has no ${login} database login`);
    if (!credential) return [];
    const read = login === "web" && database.readEndpoint ? [["DATABASE_READ_URL", databaseUrl(database.readEndpoint, credential)]] : [];
    const valkey = valkeyUrl ? [["VALKEY_URL", valkeyUrl]] : [];
    const extra = [...read, ...valkey, ...Object.entries(only[login])].map(([key, value]) => `${key}=${value}\n`).join("");
    const content = `# Rendered by saas-vps: the ${login} processes' database login${valkeyUrl ? " and Valkey" : ""}. Read by systemd for ${login}@.\nDATABASE_URL=${databaseUrl(database.endpoint, credential)}\n${extra}`;
    return [{ path, content, mode: "0600", owner: "root:root", secret: true, onChange: ROLLING_RESTART }];
  });
}
