/**
 * The watchdog every server gets (docs/ARCHITECTURE.md, decision 16): `watchdog.timer` runs
 * `watchdog check` every two minutes (disk, memory, load, failed units, and where they apply the
 * site's /health through nginx, the certificate and the backups' age), and `alert@.service` is the OnFailure= notifier of every unit
 * that must not stay failed (the app's processes). Alerts go to the stack's one route,
 * `alertWebhookUrl`; a daily all-green ping goes to `watchdogHeartbeatUrl`.
 *
 * Pure: the script is the static file provisioning/assets/watchdog/watchdog; what varies per
 * server (and the two secret URLs) goes into the root-only watchdog.env.
 *
 * Every file is pushOnly: nothing on first boot needs it (the app's processes, whose failure it
 * reports, start only with the first release, after the pushes), and the app server's user-data
 * has no room for it. The push that brings the files enables and starts the timer.
 */
import { thresholdProblem, WATCHDOG_THRESHOLDS, type WatchdogThreshold, type WatchdogThresholds } from "../config/watchdog";
import { BACKUP_PATHS } from "./backup";
import { throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { APP_CURRENT_BIN, APP_RELEASE_LOCK, CONFIG_DIR, DATA_MOUNT, STATE_DIR, TLS_CERTIFICATE } from "./layout";
import { shellQuote } from "./push";
import type { RoleInputs } from "./roles/index";
import { loadScript } from "./scripts";
import { ALERT_ON_FAILURE, ALERT_UNIT, BASE_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export const WATCHDOG_PATHS = {
  command: "/usr/local/sbin/watchdog",
  envFile: `${CONFIG_DIR}/watchdog.env`,
  /** The conditions alerted and not yet resolved; root-only (StateDirectoryMode=). */
  stateDir: `${STATE_DIR}/watchdog`,
} as const;

export const WATCHDOG_TIMER = "watchdog.timer";

/** How often the checks run; an alert reaches the webhook at most this much after its cause. */
export const WATCHDOG_INTERVAL = "2min";

/** What the stack says about the watchdog, the same for each of its servers. */
export interface WatchdogInput {
  /** The stack's name: alerts say which stack and server they come from. */
  stack: string;
  thresholds: WatchdogThresholds;
  /** Secret: receives each alert and each resolved condition as a JSON POST. */
  alertWebhookUrl?: string;
  /** Secret: pinged once a day while every check is green. */
  heartbeatUrl?: string;
}

/** What the watchdog checks on one server, from its roles. */
export interface WatchdogChecks {
  /** The data volume's mount point, where the server has one. */
  dataMount?: string;
  /** The certificate nginx serves, where the server has a domain. */
  certificate?: string;
  /** The backup jobs' state directory, where this server's backups are live (not standby). */
  backupStateDir?: string;
  /** The site's /health as its users ask for it (scheme and Host), where the server runs nginx; the script connects to 127.0.0.1. */
  healthUrl?: string;
  /** Health is checked only once this exists: the web units' start condition, a release in place. */
  healthReleasePath?: string;
  /** The release tool's lock: while a release holds it, health is the release's to watch. */
  healthReleaseLock?: string;
}

export interface WatchdogRenderOptions extends WatchdogInput, WatchdogChecks {
  /** The server's name, as alerts name it. */
  server: string;
}

/** The checks a server's roles call for. */
export function watchdogChecksOf(roles: Partial<RoleInputs>): WatchdogChecks {
  const backsUp = (roles.db !== undefined && !roles.db.backup.standby) || roles.backup !== undefined;
  return {
    ...(roles.db || roles.replica ? { dataMount: DATA_MOUNT } : {}),
    ...(roles.web?.domain ? { certificate: TLS_CERTIFICATE } : {}),
    ...(backsUp ? { backupStateDir: BACKUP_PATHS.stateDir } : {}),
    // With a domain, plain HTTP only redirects: the site is the TLS one.
    ...(roles.web ? { healthUrl: roles.web.domain ? `https://${roles.web.domain}/health` : "http://127.0.0.1/health", healthReleasePath: APP_CURRENT_BIN, healthReleaseLock: APP_RELEASE_LOCK } : {}),
  };
}

/**
 * Every problem with the options, one line each, naming the key (stack keys as the user types
 * them), the allowed range and the value given (never a secret's value); empty when valid.
 */
export function validateWatchdogOptions(opts: WatchdogRenderOptions): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(WATCHDOG_THRESHOLDS) as WatchdogThreshold[]) {
    const problem = thresholdProblem(name, opts.thresholds?.[name]);
    if (problem) problems.push(problem);
  }
  // Values are single-quoted in a sourced env file, one per line.
  for (const [field, value] of [["stack", opts.stack], ["server", opts.server]] as const) {
    if (typeof value !== "string" || !/^[A-Za-z0-9._-]{1,63}$/.test(value)) problems.push(`watchdog: ${field} must be 1-63 letters, digits, dots, dashes or underscores; got ${JSON.stringify(value)}`);
  }
  for (const [key, value] of [["alertWebhookUrl", opts.alertWebhookUrl], ["watchdogHeartbeatUrl", opts.heartbeatUrl]] as const) {
    if (value !== undefined && !isHttpUrlLine(value)) problems.push(`saas-vps:${key}: must be one http(s) URL without line breaks; got a value that is not one`);
  }
  if (opts.healthUrl !== undefined && !isHttpUrlLine(opts.healthUrl)) problems.push(`watchdog: healthUrl must be one http(s) URL without line breaks; got ${JSON.stringify(opts.healthUrl)}`);
  return problems;
}

function isHttpUrlLine(value: string): boolean {
  if (/[\u0000-\u001f\u007f]/.test(value)) return false;
  try {
    return ["http:", "https:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

export function renderWatchdogFiles(opts: WatchdogRenderOptions): RenderedFile[] {
  throwIfProblems(validateWatchdogOptions(opts));
  // One group: the units land, systemd reloads once, and the timer starts only with its service there.
  const start = `systemctl daemon-reload && systemctl enable --now ${WATCHDOG_TIMER}`;
  const unit = (name: string, content: string): RenderedFile => ({ path: `${UNIT_DIR}/${name}`, content, mode: "0644", onChange: start, pushOnly: true });
  return [
    { path: WATCHDOG_PATHS.command, content: loadScript("watchdog/watchdog"), mode: "0755", pushOnly: true },
    { path: WATCHDOG_PATHS.envFile, content: renderWatchdogEnv(opts), mode: "0600", owner: "root:root", secret: true, pushOnly: true },
    unit("watchdog.service", renderCheckService()),
    unit(WATCHDOG_TIMER, renderTimer()),
    unit(ALERT_UNIT, renderAlertService()),
  ];
}

/** `/etc/saas-vps/watchdog.env`: sourced by bash, so every value is single-quoted. */
function renderWatchdogEnv(opts: WatchdogRenderOptions): string {
  const t = opts.thresholds;
  const vars: Array<[string, string | number | undefined]> = [
    ["STACK", opts.stack],
    ["SERVER", opts.server],
    ["ROOT_MOUNT", "/"],
    ["DATA_MOUNT", opts.dataMount],
    ["CERTIFICATE", opts.certificate],
    ["BACKUP_STATE_DIR", opts.backupStateDir],
    ["HEALTH_URL", opts.healthUrl],
    ["HEALTH_RELEASE_PATH", opts.healthReleasePath],
    ["HEALTH_RELEASE_LOCK", opts.healthReleaseLock],
    ["DISK_PERCENT", t.diskPercent],
    ["MEMORY_AVAILABLE_PERCENT", t.memoryAvailablePercent],
    ["LOAD_PERCENT", t.loadPercent],
    ["CERTIFICATE_DAYS", t.certificateDays],
    ["BACKUP_MAX_AGE_HOURS", t.backupMaxAgeHours],
    ["DRILL_MAX_AGE_DAYS", t.drillMaxAgeDays],
    ["ALERT_WEBHOOK_URL", opts.alertWebhookUrl ?? ""],
    ["HEARTBEAT_URL", opts.heartbeatUrl ?? ""],
  ];
  return [
    "# saas-vps watchdog: rendered by provisioning/watchdog.ts. Secrets (the URLs): root-only, 0600.",
    ...vars.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${shellQuote(String(v))}`),
    "",
  ].join("\n");
}

/**
 * Sandbox of the watchdog's root services: the backup jobs' (read-only system, no kernel, device,
 * clock or namespace access) and tighter, since nothing here changes user: no capability at all
 * (root still reads its own 0600 and 0700 files: the env file, the certificate, the journal) and
 * no privileged or resource-changing syscalls.
 */
const WATCHDOG_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["PrivateMounts", "yes"],
  ["DevicePolicy", "closed"],
  ["ProtectSystem", "strict"],
  ["CapabilityBoundingSet", ""],
  ["AmbientCapabilities", ""],
  ["SystemCallFilter", "~@privileged @resources"],
  ["SystemCallErrorNumber", "EPERM"],
  ["MemoryDenyWriteExecute", "yes"],
  ["UMask", "0077"],
  // As the backup jobs' curl: glibc's getaddrinfo may ask the kernel over netlink which address families exist.
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
  ["StateDirectory", "saas-vps/watchdog"],
  ["StateDirectoryMode", "0700"],
];

/** Nothing runs until the push has brought the command (a timer or a failure before it is skipped). */
const NEEDS_COMMAND: [string, string] = ["ConditionFileIsExecutable", WATCHDOG_PATHS.command];

function renderCheckService(): string {
  const description = "saas-vps watchdog: disk, memory, load, failed units, the site's health, certificate and backup age";
  return renderUnit(
    {
      Unit: [["Description", description], NEEDS_COMMAND, ["OnFailure", ALERT_ON_FAILURE]],
      Service: [
        ["Type", "oneshot"],
        ["ExecStart", `${WATCHDOG_PATHS.command} check`],
        // Bounds a run whose webhook hangs: each POST gives up after 10 s.
        ["TimeoutStartSec", "90"],
        ["Nice", "10"],
        ...WATCHDOG_SANDBOX,
      ],
    },
    description,
  );
}

function renderTimer(): string {
  return renderUnit(
    {
      Unit: [["Description", "Schedule of watchdog.service"]],
      Timer: [["OnBootSec", WATCHDOG_INTERVAL], ["OnUnitActiveSec", WATCHDOG_INTERVAL]],
      Install: [["WantedBy", "timers.target"]],
    },
    "schedule of watchdog.service",
  );
}

function renderAlertService(): string {
  return renderUnit(
    {
      Unit: [["Description", "Alert: %i failed"], NEEDS_COMMAND],
      Service: [["Type", "oneshot"], ["ExecStart", `${WATCHDOG_PATHS.command} alert %i`], ["TimeoutStartSec", "60"], ...WATCHDOG_SANDBOX],
    },
    "OnFailure= notifier: a unit systemd gave up on",
  );
}
