/**
 * Server side of releases (docs/ARCHITECTURE.md, decision 7): the `release` command and
 * its configuration file.
 *
 * Pure: plain values in, files out. The script is the static file
 * `provisioning/assets/release/release` (its header explains the order of a release and why);
 * everything that varies per stack goes into `/etc/saas-vps/release.conf`, so the script the
 * tests run is byte for byte the one the server gets.
 *
 * A server lists web instances, workers or both (never neither); what a release does there follows
 * from that: web instances roll one at a time behind /health, workers restart after them, and only
 * the server with web instances migrates (plan/database.ts runsMigrations). A worker-only server has no web step and
 * no health gate.
 *
 * release.conf is KEY="value" lines, read by the script without evaluating them. Keys:
 *   WEB_PORTS            web instance ports, rolled in this order (web@<port>.service); may be empty
 *                        on a server with workers
 *   WORKER_UNITS         worker units restarted after web (worker@<n>.service, then the critical
 *                        workers' worker-critical@<n>.service); may be empty on a server with web instances
 *   MIGRATE              yes: this server runs bin/migrate before it switches; no: it never does
 *   MIGRATE_ENV_FILE     optional env file bin/migrate reads after the app's env file (its variables
 *                        win): the schema owner's credential, root-only; only with MIGRATE=yes
 *   KEEP_RELEASES        releases kept on disk, the current one included (>= 2)
 *   HEALTH_TIMEOUT       seconds a new instance has at least to answer /health 200 as the new
 *                        release; the script raises the deadline to 3x the slowest start measured
 *                        on the machine (5x HEALTH_TIMEOUT before anything was measured there)
 *   SETTLE_SECONDS       pause after an instance is healthy, before the next one stops; must
 *                        exceed nginx's fail_timeout (2 s) so nginx has taken it back
 *   MIGRATE_TIMEOUT      seconds bin/migrate may run
 *   WORKER_CHECK_SECONDS seconds after start a worker must still be running
 *   APP_USER             user migrations run as (the units' User=)
 *   SHARED_DIRS          directories of shared/ linked into every release (uploads ...)
 *   SURGE_PORT           optional: a temporary extra web instance started while the only web
 *                        port restarts; nginx must list it as a `backup` server
 *   LB_DRAIN_FILE        optional, behind the provider's load balancer (stage scaled): release and
 *                        rollback create it before the roll (the health listener then answers
 *                        503) and remove it after; written only for such a server
 *   LB_OUT_SECONDS       seconds the balancer needs to take a drained server out of rotation
 *   LB_IN_SECONDS        seconds it needs to take it back once the file is gone
 */
import { CRITICAL_WORKER_INSTANCES_RANGE } from "../config/workers";
import { throwIfProblems } from "./errors";
import { NGINX_FAIL_TIMEOUT_SECONDS } from "./nginx";
import { loadScript } from "./scripts";
import type { RenderedFile } from "./files";
import { APP_ENV_FILE, APP_ROOT, APP_USER, CONFIG_DIR, RESERVED_PORTS } from "./layout";
import { APP_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export interface ReleaseOptions {
  /** Web instance ports on 127.0.0.1, rolled one at a time in this order; 0–16 of them. */
  webPorts: number[];
  /** Worker units (`worker@1.service` or `worker@1`, then `worker-critical@101.service` ...), restarted after web, in this order; 0–MAX_WORKER_UNITS of them, and at least one process in all. */
  workerUnits: string[];
  /** Whether this server runs a release's migrations: plan/database.ts runsMigrations. */
  migrate: boolean;
  /** Absolute path of an env file bin/migrate reads after the app's (only with migrate). Default none. */
  migrateEnvFile?: string;
  /** Releases kept on the server, the current one included. Default 5; 2–100. */
  keepReleases?: number;
  /**
   * Seconds a new instance has at least to become healthy before the release is rolled back; the
   * script raises it to what the machine measured (provisioning/assets/release/release,
   * health_timeout). Default 60; 1–3600.
   */
  healthTimeoutSeconds?: number;
  /** Pause between instances so nginx re-admits the new one; default 3, must exceed nginx fail_timeout (2 s). */
  settleSeconds?: number;
  /** Seconds migrations may take. Default 600; 1–86400. */
  migrateTimeoutSeconds?: number;
  /** Shared directories linked into each release. Default ["uploads"]. */
  sharedDirs?: string[];
  /** Temporary extra port for single-instance zero downtime (needs an nginx `backup` server). Default none. */
  surgePort?: number;
  /** Behind the provider's load balancer: how a release drains this server there. Default none. */
  balancer?: ReleaseBalancer;
}

/** A release's drain at the load balancer (stage scaled), from the balancer's health check. */
export interface ReleaseBalancer {
  /** The file the health listener answers 503 for (LB_DRAIN_FILE). */
  drainFile: string;
  /** Seconds the balancer needs to take a drained server out (plan/scaled.ts drainSeconds). */
  outSeconds: number;
  /** Seconds it needs to take the server back (plan/scaled.ts undrainSeconds). */
  inSeconds: number;
}

/** A server's workers: up to 16 worker@ (workerInstances) and 8 worker-critical@ (criticalWorkerInstances). */
export const MAX_WORKER_UNITS = 16 + CRITICAL_WORKER_INSTANCES_RANGE.max;

export const RELEASE_PATHS = {
  command: "/usr/local/sbin/release",
  config: `${CONFIG_DIR}/release.conf`,
  /** A release's migrations: `migrate@<release id>.service`, started by the release and waited for. */
  migrateUnit: `${UNIT_DIR}/migrate@.service`,
} as const;

export const RELEASE_DEFAULTS = {
  keepReleases: 5,
  healthTimeoutSeconds: 60,
  settleSeconds: 3,
  migrateTimeoutSeconds: 600,
  workerCheckSeconds: 2,
  sharedDirs: ["uploads"],
} as const;


/** Debian packages the script needs besides coreutils/util-linux (flock, setpriv): curl for /health, jq for manifest.json. */
export const RELEASE_PACKAGES = ["curl", "jq"] as const;


export function renderReleaseFiles(opts: ReleaseOptions): RenderedFile[] {
  throwIfProblems(validateReleaseOptions(opts));
  return [
    { path: RELEASE_PATHS.command, content: loadScript("release/release"), mode: "0755", owner: "root:root" },
    // Read on every run: no onChange needed.
    { path: RELEASE_PATHS.config, content: renderReleaseConf(opts), mode: "0644", owner: "root:root" },
    ...(opts.migrate ? [{ path: RELEASE_PATHS.migrateUnit, content: renderMigrateUnit(opts), mode: "0644", onChange: "systemctl daemon-reload" }] : []),
  ];
}

/**
 * bin/migrate of release %i, as the app user in the app processes' sandbox (APP_SANDBOX), with
 * the app's env file (and MIGRATE_ENV_FILE after it: its variables win) read by systemd. The
 * release (root) never exports those variables itself: a PATH or LD_PRELOAD line there would
 * otherwise steer the programs it runs as root. A oneshot: `systemctl start` returns when
 * migrations have finished, and fails when they fail or take longer than MIGRATE_TIMEOUT.
 * No Condition: a release without bin/migrate must fail here, not skip its migrations.
 */
export function renderMigrateUnit(opts: ReleaseOptions): string {
  const release = `${APP_ROOT}/releases/%i`;
  return renderUnit(
    {
      Unit: [
        ["Description", "saas-vps migrations of release %i"],
        ["After", "network-online.target postgresql.service"],
        ["Wants", "network-online.target"],
      ],
      Service: [
        ["Type", "oneshot"],
        ["User", APP_USER],
        ["Group", APP_USER],
        ["WorkingDirectory", release],
        ["EnvironmentFile", APP_ENV_FILE],
        ...(opts.migrateEnvFile ? ([["EnvironmentFile", opts.migrateEnvFile]] as Array<[string, string]>) : []),
        ["Environment", "NODE_ENV=production"],
        ["ExecStart", `${release}/bin/migrate`],
        ["TimeoutStartSec", String(opts.migrateTimeoutSeconds ?? RELEASE_DEFAULTS.migrateTimeoutSeconds)],
        ["SyslogIdentifier", "migrate"],
        ["StandardOutput", "journal"],
        ["StandardError", "journal"],
        ["MemoryMax", "768M"],
        ...APP_SANDBOX,
      ],
    },
    "saas-vps migrations of one release (started by release, never enabled)",
  );
}

export function renderReleaseConf(opts: ReleaseOptions): string {
  const keep = opts.keepReleases ?? RELEASE_DEFAULTS.keepReleases;
  const lines: Array<[string, string | number]> = [
    ["WEB_PORTS", opts.webPorts.join(" ")],
    ["WORKER_UNITS", opts.workerUnits.join(" ")],
    ["MIGRATE", opts.migrate ? "yes" : "no"],
    ["MIGRATE_ENV_FILE", opts.migrateEnvFile ?? ""],
    ["KEEP_RELEASES", keep],
    ["HEALTH_TIMEOUT", opts.healthTimeoutSeconds ?? RELEASE_DEFAULTS.healthTimeoutSeconds],
    ["SETTLE_SECONDS", opts.settleSeconds ?? RELEASE_DEFAULTS.settleSeconds],
    ["MIGRATE_TIMEOUT", opts.migrateTimeoutSeconds ?? RELEASE_DEFAULTS.migrateTimeoutSeconds],
    ["WORKER_CHECK_SECONDS", RELEASE_DEFAULTS.workerCheckSeconds],
    ["APP_USER", APP_USER],
    ["SHARED_DIRS", (opts.sharedDirs ?? RELEASE_DEFAULTS.sharedDirs).join(" ")],
    ["SURGE_PORT", opts.surgePort ?? ""],
    // Only behind a balancer: every other server's file (and user-data) stays as it was.
    ...(opts.balancer
      ? ([
          ["LB_DRAIN_FILE", opts.balancer.drainFile],
          ["LB_OUT_SECONDS", opts.balancer.outSeconds],
          ["LB_IN_SECONDS", opts.balancer.inSeconds],
        ] as Array<[string, string | number]>)
      : []),
  ];
  return [
    "# Rendered by saas-vps (provisioning/release.ts); read by /usr/local/sbin/release on every run.",
    "# KEY=\"value\" lines; the keys are documented at the top of provisioning/release.ts.",
    ...lines.map(([k, v]) => `${k}="${v}"`),
    "",
  ].join("\n");
}

/** Every problem, one line each, naming the field, what is allowed and what was given. */
export function validateReleaseOptions(opts: ReleaseOptions): string[] {
  const problems: string[] = [];
  const add = (line: string) => void problems.push(`release: ${line}`);
  const isPort = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 1024 && (p as number) <= 65535;
  const intIn = (field: string, value: number | undefined, min: number, max: number) => {
    if (value === undefined) return;
    if (!Number.isInteger(value) || value < min || value > max) {
      add(`${field} must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}`);
    }
  };

  if (!Array.isArray(opts.webPorts)) {
    add("webPorts must be a list of ports (may be empty on a server with workers)");
  } else {
    if (opts.webPorts.length > 16) add(`webPorts may list at most 16 ports; got ${opts.webPorts.length}`);
    const seen = new Set<number>();
    for (const p of opts.webPorts) {
      if (!isPort(p)) add(`webPorts: ${JSON.stringify(p)} must be an integer port from 1024 to 65535`);
      else if (RESERVED_PORTS.includes(p)) add(`webPorts: ${p} is reserved (${RESERVED_PORTS.join(", ")})`);
      if (seen.has(p)) add(`webPorts: ${p} is listed twice; each instance needs its own port`);
      seen.add(p);
    }
  }
  if (!Array.isArray(opts.workerUnits)) {
    add("workerUnits must be a list of unit names (may be empty on a server with web instances)");
  } else {
    if (opts.workerUnits.length > MAX_WORKER_UNITS) add(`workerUnits may list at most ${MAX_WORKER_UNITS} units; got ${opts.workerUnits.length}`);
    const seen = new Set<string>();
    for (const u of opts.workerUnits) {
      if (typeof u !== "string" || !/^[A-Za-z0-9_.:-]+@[A-Za-z0-9_.:-]+$/.test(u)) {
        add(`workerUnits: ${JSON.stringify(u)} must be a template instance name like "worker@1.service"`);
      }
      if (seen.has(u)) add(`workerUnits: ${JSON.stringify(u)} is listed twice`);
      seen.add(u);
    }
  }
  if (Array.isArray(opts.webPorts) && Array.isArray(opts.workerUnits) && opts.webPorts.length + opts.workerUnits.length === 0) {
    add("webPorts and workerUnits are both empty; a server that runs the app needs a web instance or a worker");
  }
  if (typeof opts.migrate !== "boolean") add(`migrate must be true or false; got ${JSON.stringify(opts.migrate)}`);
  if (opts.migrateEnvFile !== undefined) {
    if (typeof opts.migrateEnvFile !== "string" || !/^\/[A-Za-z0-9_./-]+$/.test(opts.migrateEnvFile) || opts.migrateEnvFile.split("/").includes("..")) {
      add(`migrateEnvFile must be an absolute path (letters, digits, "_", ".", "-", "/"); got ${JSON.stringify(opts.migrateEnvFile)}`);
    } else if (opts.migrate !== true) {
      add(`migrateEnvFile is set (${opts.migrateEnvFile}) on a server that does not migrate; only the server that runs migrations reads it`);
    }
  }
  intIn("keepReleases", opts.keepReleases, 2, 100);
  intIn("healthTimeoutSeconds", opts.healthTimeoutSeconds, 1, 3600);
  intIn("migrateTimeoutSeconds", opts.migrateTimeoutSeconds, 1, 86400);
  if (opts.settleSeconds !== undefined) {
    if (!Number.isInteger(opts.settleSeconds) || opts.settleSeconds <= NGINX_FAIL_TIMEOUT_SECONDS || opts.settleSeconds > 60) {
      add(
        `settleSeconds must be an integer from ${NGINX_FAIL_TIMEOUT_SECONDS + 1} to 60 (longer than nginx's fail_timeout of ` +
          `${NGINX_FAIL_TIMEOUT_SECONDS}s, or nginx may see every instance failed); got ${JSON.stringify(opts.settleSeconds)}`,
      );
    }
  }
  for (const d of opts.sharedDirs ?? []) {
    if (typeof d !== "string" || !/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(d)) {
      add(`sharedDirs: ${JSON.stringify(d)} must be a plain directory name (letters, digits, ".", "_", "-")`);
    }
  }
  if (opts.balancer !== undefined) {
    const { drainFile, outSeconds, inSeconds } = opts.balancer;
    if (Array.isArray(opts.webPorts) && opts.webPorts.length === 0) add("balancer is set on a server without web instances; only web instances sit behind the load balancer");
    if (typeof drainFile !== "string" || !/^\/[A-Za-z0-9_./-]+$/.test(drainFile) || drainFile.split("/").includes("..")) {
      add(`balancer.drainFile must be an absolute path (letters, digits, "_", ".", "-", "/"); got ${JSON.stringify(drainFile)}`);
    }
    intIn("balancer.outSeconds", outSeconds, 1, 600);
    intIn("balancer.inSeconds", inSeconds, 1, 600);
  }
  if (opts.surgePort !== undefined) {
    if (Array.isArray(opts.webPorts) && opts.webPorts.length === 0) add(`surgePort ${JSON.stringify(opts.surgePort)} is set on a server without web instances; it stands in for a web instance`);
    else if (!isPort(opts.surgePort)) add(`surgePort must be an integer port from 1024 to 65535; got ${JSON.stringify(opts.surgePort)}`);
    else if (opts.webPorts?.includes(opts.surgePort)) add(`surgePort ${opts.surgePort} is also one of webPorts; pick a port no instance uses`);
  }
  return problems;
}
