/**
 * systemd units for the app: `web@<port>.service` (one instance per web port),
 * `worker@<n>.service` and, when the stack isolates its critical tasks, `worker-critical@<n>.service`
 * (the same unit, running only those tasks while worker@ runs all the others), plus
 * `saas-app.target` that wants exactly the configured instances.
 * Unit syntax: https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html
 * Hardening: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html —
 * measured with `systemd-analyze security --offline=true` in the tests (goal ≤ 3.0).
 */
import { APP_CURRENT, APP_CURRENT_BIN, APP_ENV_FILE, APP_SHARED, APP_USER, WEB_ENV_FILE, WORKER_ENV_FILE } from "./layout";
import type { RenderedFile } from "./files";
import type { CriticalWorkers } from "./roles/worker";
import { TASK_NAME_RULE } from "../config/workers";
import { RELEASE_PATHS } from "./release";
import { ALERT_ON_FAILURE, APP_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export const APP_TARGET = "saas-app.target";

interface ProcessUnit {
  description: string;
  command: string;
  identifier: string;
  environment: string[];
  /** The process kind's own env file (its database login); read after app.env, so its DATABASE_URL wins. */
  loginEnvFile: string;
  stopTimeoutSec: number;
  /** The uploads directory when uploads stay on this server (a path systemd cannot find fails the unit). */
  uploadDir?: string;
}

function renderAppProcessUnit(unit: ProcessUnit): string {
  return renderUnit(
    {
      Unit: [
        ["Description", unit.description],
        ["After", "network-online.target postgresql.service"],
        ["Wants", "network-online.target"],
        ["PartOf", APP_TARGET],
        // No release yet on a fresh box: skip quietly; the release tool starts instances.
        ["ConditionPathExists", APP_CURRENT_BIN],
        ["StartLimitIntervalSec", "60"],
        ["StartLimitBurst", "10"],
        // Alerts once systemd gives up restarting the process (RestartMode=direct, below).
        ["OnFailure", ALERT_ON_FAILURE],
      ],
      Service: [
        ["Type", "exec"],
        ["User", APP_USER],
        ["Group", APP_USER],
        ["WorkingDirectory", APP_CURRENT],
        // EnvironmentFile is read by systemd as root, then the process runs as the app user; a
        // variable set in both files takes the later file's value.
        ["EnvironmentFile", APP_ENV_FILE],
        ["EnvironmentFile", unit.loginEnvFile],
        ["Environment", unit.environment.join(" ")],
        ["ExecStart", unit.command],
        ["Restart", "always"],
        ["RestartSec", "1"],
        // Since systemd 254 a restarting service passes through "failed" before each restart, which
        // fires OnFailure= on every crash; "direct" skips that state, so the unit fails (and alerts)
        // only once the start limit is hit. Debian 13 has systemd 257.
        ["RestartMode", "direct"],
        // SIGTERM lets the app drain in-flight work; SIGKILL only after the timeout.
        ["KillSignal", "SIGTERM"],
        ["KillMode", "mixed"],
        ["TimeoutStopSec", String(unit.stopTimeoutSec)],
        ["SyslogIdentifier", unit.identifier],
        ["StandardOutput", "journal"],
        ["StandardError", "journal"],
        ["ReadWritePaths", [APP_SHARED, ...(unit.uploadDir ? [unit.uploadDir] : [])].join(" ")],
        ["MemoryMax", "768M"],
        ...APP_SANDBOX,
      ],
      Install: [["WantedBy", APP_TARGET]],
    },
    unit.description,
  );
}

export function renderWebUnit(uploadDir?: string): string {
  return renderAppProcessUnit({
    uploadDir,
    description: "saas-vps web instance on port %i",
    command: `${APP_CURRENT}/bin/web`,
    identifier: "web-%i",
    environment: ["NODE_ENV=production", "HOST=127.0.0.1", "PORT=%i"],
    loginEnvFile: WEB_ENV_FILE,
    stopTimeoutSec: 20,
  });
}

/**
 * The app's WORKER_TASKS_EXCEPT / WORKER_TASKS_ONLY (app/src/jobs/selection.ts): the task names,
 * comma-separated. config/workers.ts TASK_NAME_RULE keeps them free of spaces, quotes, "%" and "$",
 * so the list goes into Environment= as it is.
 */
function taskList(tasks: string[]): string {
  const bad = tasks.filter((t) => !TASK_NAME_RULE.test(t));
  if (tasks.length === 0 || bad.length > 0) throw new Error(`systemd: critical tasks must be one or more task names; got ${JSON.stringify(tasks)}`);
  return tasks.join(",");
}

/** worker@: every task, or (with critical workers) every task but the critical ones. */
export function renderWorkerUnit(uploadDir?: string, critical?: CriticalWorkers): string {
  return renderAppProcessUnit({
    uploadDir,
    description: "saas-vps worker %i",
    command: `${APP_CURRENT}/bin/worker`,
    identifier: "worker-%i",
    environment: ["NODE_ENV=production", "WORKER_ID=%i", ...(critical ? [`WORKER_TASKS_EXCEPT=${taskList(critical.tasks)}`] : [])],
    loginEnvFile: WORKER_ENV_FILE,
    stopTimeoutSec: 60,
  });
}

/**
 * worker-critical@: the critical tasks only, so a flood of other jobs cannot hold them up. Its own
 * template (not a drop-in per worker@ instance): a pushed file is never removed, and a drop-in left
 * behind when the count changes would keep a worker@ on the wrong tasks; a template nobody wants is
 * inert. Instance numbers start at CRITICAL_WORKER_FIRST_ID (layout.ts): WORKER_ID names the metrics port.
 */
export function renderCriticalWorkerUnit(critical: CriticalWorkers, uploadDir?: string): string {
  return renderAppProcessUnit({
    uploadDir,
    description: "saas-vps critical worker %i (only the stack's critical tasks)",
    command: `${APP_CURRENT}/bin/worker`,
    identifier: "worker-critical-%i",
    environment: ["NODE_ENV=production", "WORKER_ID=%i", `WORKER_TASKS_ONLY=${taskList(critical.tasks)}`],
    loginEnvFile: WORKER_ENV_FILE,
    stopTimeoutSec: 60,
  });
}

/** The target names exactly the configured instances, so `systemctl start saas-app.target` brings up what config says. */
export function renderAppTarget(webPorts: number[], workerUnits: string[]): string {
  const wants = [...webPorts.map((p) => `web@${p}.service`), ...workerUnits];
  return renderUnit(
    {
      Unit: [
        ["Description", "saas-vps app: web instances and workers"],
        ...(wants.length ? ([["Wants", wants.join(" ")]] as Array<[string, string]>) : []),
        ["After", "postgresql.service"],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    "saas-vps app target",
  );
}

/**
 * After a change of app.env or an app unit: the release tool restarts the instances on the current
 * release one at a time, each gated on /health like a release, and stops at the first one that does
 * not come back (the others keep serving on the old configuration); no release yet: nothing to do.
 */
export const ROLLING_RESTART = `systemctl daemon-reload && ${RELEASE_PATHS.command} restart`;

/**
 * `uploadDir`: where the app writes uploads on this server; undefined when they go to a bucket.
 * `critical`: the critical workers, when the stack has them; without, every file is as before.
 */
export function renderAppUnitFiles(webPorts: number[], workerUnits: string[], uploadDir: string | undefined, critical?: CriticalWorkers): RenderedFile[] {
  return [
    { path: `${UNIT_DIR}/web@.service`, content: renderWebUnit(uploadDir), mode: "0644", onChange: ROLLING_RESTART },
    { path: `${UNIT_DIR}/worker@.service`, content: renderWorkerUnit(uploadDir, critical), mode: "0644", onChange: ROLLING_RESTART },
    ...(critical ? [{ path: `${UNIT_DIR}/worker-critical@.service`, content: renderCriticalWorkerUnit(critical, uploadDir), mode: "0644", onChange: ROLLING_RESTART }] : []),
    {
      path: `${UNIT_DIR}/${APP_TARGET}`,
      content: renderAppTarget(webPorts, [...workerUnits, ...(critical?.units ?? [])]),
      mode: "0644",
      onChange: "systemctl daemon-reload && systemctl start saas-app.target",
    },
  ];
}
