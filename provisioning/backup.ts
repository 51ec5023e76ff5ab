/**
 * Server side of the backups (docs/ARCHITECTURE.md, decision 6): the `backup` command, the root-only env file with
 * the bucket keys and the encryption password, and the systemd units that run a nightly backup and a weekly restore
 * drill. A job that fails alerts through the watchdog's notifier, alert@.service (provisioning/watchdog.ts).
 *
 * Pure: plain values in, files out. The script is the static file
 * `provisioning/assets/backup/backup.sh`; everything that varies per stack (and every secret)
 * goes into `/etc/saas-vps/backup.env`, so the script the tests run is byte for byte the one
 * the server gets. Why restic (not age + aws-cli) is explained at the top of `backup.sh`.
 *
 * systemd formats: systemd.service(5), systemd.timer(5), systemd.time(7) for OnCalendar.
 */
import { DEFAULTS } from "../config/config";
import { BUCKET_NAME_RULE, isBucketName } from "../config/validators";
import type { S3Bucket } from "./bucket";
import { throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { CONFIG_DIR, STATE_DIR } from "./layout";
import { shellQuote } from "./push";
import { loadScript } from "./scripts";
import { ALERT_ON_FAILURE, BASE_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

/** The bucket the backups go to. */
export type BackupBucket = S3Bucket;

export interface BackupRenderOptions {
  /** systemd OnCalendar expression for `backup.timer` (the config validates it and owns the default). */
  schedule: string;
  /** Keep backups newer than this many days (counted back from the newest backup); >= 1. */
  retentionDays: number;
  /** OnCalendar for `restore-drill.timer`; default the config's restoreDrillSchedule default. */
  drillSchedule?: string;
  /** The PostgreSQL database to back up (on this server: dumped as the `postgres` OS user, peer auth). */
  databaseName: string;
  /**
   * The database lives elsewhere (a managed cluster): the pg tools connect over TCP with TLS
   * as this login instead. Absent: the cluster on this server.
   */
  remote?: RemoteDatabase;
  bucket: BackupBucket;
  /** restic repository password: encrypts every backup; generated secret, >= 16 characters. */
  encryptionPassword: string;
  /** Dead-man's-switch URL (secret): a GET after every successful backup. */
  heartbeatUrl?: string;
  /** Table the drill requires in a restore (node-pg-migrate's); default `pgmigrations`. */
  migrationsTable?: string;
  /**
   * The server's database is not the app's yet (a db server built while a stack moving from mvp
   * still runs on its old server): the timers' backup and drill do nothing, so no snapshot of it
   * lands in the repository the live server backs up to. `backup restore-app` still works.
   */
  standby?: boolean;
}

/**
 * A database on another host, reached over TLS. The login must read everything (the drill also
 * creates and drops its scratch database): the database's owner.
 */
export interface RemoteDatabase {
  host: string;
  port: number;
  user: string;
  /** Secret: lands only in the root-only backup.env. */
  password: string;
  /** libpq sslmode: verify-ca or verify-full (TLS is never optional off the server). */
  sslMode: "verify-ca" | "verify-full";
  /** The CA certificate file the server's certificate must chain to. */
  sslRootCert: string;
}

export const DEFAULT_MIGRATIONS_TABLE = "pgmigrations";
/** Objects live under this prefix of the bucket: no lifecycle expiry rule may touch it. */
export const REPOSITORY_PREFIX = "restic";

/** Where the files land on the server. */
export const BACKUP_PATHS = {
  command: "/usr/local/sbin/backup",
  envFile: `${CONFIG_DIR}/backup.env`,
  /** last-success, last-drill, drill-history.log; created by the units' StateDirectory=. */
  stateDir: `${STATE_DIR}/backup`,
  /** restic's metadata cache; created by CacheDirectory=. */
  cacheDir: "/var/cache/saas-vps/restic",
} as const;

/** Timers to enable (`systemctl enable --now`); the services are started by them. */
export const BACKUP_TIMERS = ["backup.timer", "restore-drill.timer"] as const;

/**
 * Debian packages the script needs on the server besides PostgreSQL itself: restic, curl for the
 * heartbeat, jq to read restic's JSON.
 */
export const BACKUP_PACKAGES = ["restic", "curl", "jq"] as const;


export function renderBackupFiles(opts: BackupRenderOptions): RenderedFile[] {
  throwIfProblems(validateBackupOptions(opts));
  const unit = (name: string, content: string, onChange = "systemctl daemon-reload"): RenderedFile => ({
    path: `${UNIT_DIR}/${name}`,
    content,
    mode: "0644",
    onChange,
  });
  const timer = (name: string, content: string) =>
    unit(name, content, `systemctl daemon-reload && systemctl restart ${name}`);
  return [
    { path: BACKUP_PATHS.command, content: loadScript("backup/backup.sh"), mode: "0755" },
    {
      path: BACKUP_PATHS.envFile,
      content: renderBackupEnv(opts),
      mode: "0600",
      owner: "root:root",
      secret: true,
    },
    unit("backup.service", renderJobService("backup", "now", opts)),
    timer("backup.timer", renderTimer("backup", opts.schedule, "15min")),
    unit("restore-drill.service", renderJobService("restore-drill", "drill", opts)),
    timer("restore-drill.timer", renderTimer("restore-drill", opts.drillSchedule ?? DEFAULTS.restoreDrillSchedule, "30min")),
  ];
}

/**
 * Every problem with the options, one line each, naming the field, what is allowed and what
 * was given (never the value of a secret); empty when valid.
 */
export function validateBackupOptions(opts: BackupRenderOptions): string[] {
  const problems: string[] = [];
  const add = (line: string) => void problems.push(`backup: ${line}`);
  const text = (field: string, value: unknown, secret = false): value is string => {
    if (typeof value !== "string" || value.trim() === "") {
      add(`${field} is required and must be a non-empty string`);
      return false;
    }
    // Values go into a shell-quoted env file and unit files, one per line.
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      const shown = secret ? "" : `; got ${JSON.stringify(value)}`;
      add(`${field} must not contain newlines or control characters${shown}`);
      return false;
    }
    return true;
  };
  const url = (field: string, value: unknown, shown: boolean, origin = false) => {
    if (!text(field, value, !shown)) return;
    const got = shown ? `; got ${JSON.stringify(value)}` : "";
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      add(`${field} must be an http(s) URL${got}`);
      return;
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") {
      add(`${field} must be an http(s) URL${got}`);
    } else if (origin && (u.pathname !== "/" || u.search !== "" || u.hash !== "" || u.username !== "")) {
      add(`${field} must be scheme://host[:port] only, without path, query or credentials${got}`);
    }
  };

  for (const field of ["schedule", "drillSchedule"] as const) {
    if (field === "drillSchedule" && opts.drillSchedule === undefined) continue;
    text(field, opts[field]);
  }
  if (!Number.isInteger(opts.retentionDays) || opts.retentionDays < 1) {
    add(`retentionDays must be an integer >= 1; got ${JSON.stringify(opts.retentionDays)}`);
  }
  if (text("databaseName", opts.databaseName) && !/^[A-Za-z_][A-Za-z0-9_-]{0,62}$/.test(opts.databaseName)) {
    add(
      `databaseName must be a plain PostgreSQL name (letter or _, then letters, digits, _ or -; ` +
        `at most 63); got ${JSON.stringify(opts.databaseName)}`,
    );
  }
  if (opts.remote !== undefined) checkRemoteDatabase(opts.remote, text, add);
  const bucket: Partial<BackupBucket> = opts.bucket ?? {};
  if (opts.bucket === undefined) add(`bucket is required`);
  else {
    url("bucket.endpoint", bucket.endpoint, true, true);
    if (text("bucket.name", bucket.name) && !isBucketName(bucket.name)) {
      add(`bucket.name must be ${BUCKET_NAME_RULE}; got ${JSON.stringify(bucket.name)}`);
    }
    if (text("bucket.region", bucket.region) && !/^[A-Za-z0-9-]+$/.test(bucket.region)) {
      add(`bucket.region must be a region name like fsn1 or eu-central-1; got ${JSON.stringify(bucket.region)}`);
    }
    text("bucket.accessKeyId", bucket.accessKeyId, true);
    text("bucket.secretAccessKey", bucket.secretAccessKey, true);
  }
  if (text("encryptionPassword", opts.encryptionPassword, true) && opts.encryptionPassword.length < 16) {
    add(`encryptionPassword must be at least 16 characters (use a generated secret)`);
  }
  if (opts.heartbeatUrl !== undefined) url("heartbeatUrl", opts.heartbeatUrl, false);
  if (
    opts.migrationsTable !== undefined &&
    text("migrationsTable", opts.migrationsTable) &&
    !/^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$/.test(opts.migrationsTable)
  ) {
    add(`migrationsTable must be a table name, optionally schema.table; got ${JSON.stringify(opts.migrationsTable)}`);
  }
  return problems;
}

/** The remote database's fields, each problem added in the form validateBackupOptions uses. */
function checkRemoteDatabase(remote: RemoteDatabase, text: (field: string, value: unknown, secret?: boolean) => boolean, add: (line: string) => void): void {
  if (text("remote.host", remote.host) && !/^[A-Za-z0-9.-]+$/.test(remote.host)) add(`remote.host must be a host name or IPv4 address; got ${JSON.stringify(remote.host)}`);
  if (!Number.isInteger(remote.port) || remote.port < 1 || remote.port > 65535) add(`remote.port must be a port number from 1 to 65535; got ${JSON.stringify(remote.port)}`);
  if (text("remote.user", remote.user) && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(remote.user)) add(`remote.user must be a plain PostgreSQL role name; got ${JSON.stringify(remote.user)}`);
  text("remote.password", remote.password, true);
  if (!["verify-ca", "verify-full"].includes(remote.sslMode)) add(`remote.sslMode must be verify-ca or verify-full (a remote database is never reached without a verified TLS connection); got ${JSON.stringify(remote.sslMode)}`);
  if (text("remote.sslRootCert", remote.sslRootCert) && !remote.sslRootCert.startsWith("/")) add(`remote.sslRootCert must be an absolute path; got ${JSON.stringify(remote.sslRootCert)}`);
}

/** The restic repository URL: `s3:<endpoint>/<bucket>/<prefix>`. */
export function backupRepositoryUrl(bucket: Pick<BackupBucket, "endpoint" | "name">): string {
  return `s3:${bucket.endpoint.replace(/\/+$/, "")}/${bucket.name}/${REPOSITORY_PREFIX}`;
}

/** `/etc/saas-vps/backup.env`: sourced by bash, so every value is single-quoted. */
function renderBackupEnv(opts: BackupRenderOptions): string {
  const vars: [string, string][] = [
    ["RESTIC_REPOSITORY", backupRepositoryUrl(opts.bucket)],
    ["RESTIC_PASSWORD", opts.encryptionPassword],
    ["AWS_ACCESS_KEY_ID", opts.bucket.accessKeyId],
    ["AWS_SECRET_ACCESS_KEY", opts.bucket.secretAccessKey],
    ["AWS_DEFAULT_REGION", opts.bucket.region],
    ["BACKUP_DB_NAME", opts.databaseName],
    ["BACKUP_RETENTION_DAYS", String(opts.retentionDays)],
    ["BACKUP_MIGRATIONS_TABLE", opts.migrationsTable ?? DEFAULT_MIGRATIONS_TABLE],
    ["BACKUP_HEARTBEAT_URL", opts.heartbeatUrl ?? ""],
    ...(opts.standby ? [["BACKUP_STANDBY", "yes"] as [string, string]] : []),
    ...remoteDatabaseEnv(opts.remote),
  ];
  return [
    "# saas-vps backups: rendered by provisioning/backup.ts. Secrets: root-only, 0600.",
    "# Read by /usr/local/sbin/backup. To use restic by hand (e.g. on a new machine):",
    "#   set -a; . /etc/saas-vps/backup.env; set +a; restic snapshots",
    ...vars.map(([k, v]) => `${k}=${shellQuote(v)}`),
    "",
  ].join("\n");
}

/** backup.env lines of a remote database; none for the cluster on this server. */
function remoteDatabaseEnv(remote: RemoteDatabase | undefined): [string, string][] {
  if (!remote) return [];
  return [
    ["BACKUP_DB_HOST", remote.host],
    ["BACKUP_DB_PORT", String(remote.port)],
    ["BACKUP_DB_USER", remote.user],
    ["BACKUP_DB_PASSWORD", remote.password],
    ["BACKUP_DB_SSLMODE", remote.sslMode],
    ["BACKUP_DB_SSLROOTCERT", remote.sslRootCert],
  ];
}

/**
 * Sandbox of the root jobs: no kernel, device, clock or namespace access; the whole file system
 * read-only but their StateDirectory/CacheDirectory; no capability but the ones runuser needs to
 * run the pg tools as postgres (so no @privileged syscall filter: setuid/setgroups live there).
 * `systemd-analyze security` rates it 2.2 (was 5.5 with ProtectSystem=full and every capability).
 */
const JOB_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["PrivateMounts", "yes"],
  ["DevicePolicy", "closed"],
  ["ProtectSystem", "strict"],
  ["CapabilityBoundingSet", "CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE"],
  ["MemoryDenyWriteExecute", "yes"],
  ["UMask", "0077"],
  ["SystemCallErrorNumber", "EPERM"],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
];

/** backup.service / restore-drill.service: a oneshot job that alerts when it fails. */
function renderJobService(name: "backup" | "restore-drill", subcommand: string, opts: BackupRenderOptions): string {
  const description =
    name === "backup"
      ? `Encrypted backup of PostgreSQL database ${opts.databaseName} to the off-server bucket`
      : `Restore drill: restore the latest backup of ${opts.databaseName} into a scratch database`;
  return renderUnit(
    {
      Unit: [
        ["Description", description],
        ["Wants", "network-online.target"],
        ["After", "network-online.target postgresql.service"],
        // %n is this unit's name: the notifier instance says which job failed.
        ["OnFailure", ALERT_ON_FAILURE],
      ],
      Service: [
        ["Type", "oneshot"],
        ["ExecStart", `${BACKUP_PATHS.command} ${subcommand}`],
        ["StateDirectory", "saas-vps/backup"],
        ["CacheDirectory", "saas-vps/restic"],
        // A stuck upload or restore must still end, and so alert, eventually.
        ["TimeoutStartSec", "6h"],
        ["Nice", "10"],
        ["IOSchedulingClass", "best-effort"],
        ["IOSchedulingPriority", "7"],
        // Root (the env file is root-only; pg tools run as postgres via runuser), sandboxed.
        ...JOB_SANDBOX,
      ],
    },
    description,
  );
}

function renderTimer(name: string, onCalendar: string, randomizedDelay: string): string {
  return renderUnit(
    {
      Unit: [["Description", `Schedule of ${name}.service`]],
      Timer: [
        ["OnCalendar", onCalendar],
        // Run at boot when the server was off at the scheduled time.
        ["Persistent", "true"],
        ["RandomizedDelaySec", randomizedDelay],
      ],
      Install: [["WantedBy", "timers.target"]],
    },
    `schedule of ${name}.service`,
  );
}
