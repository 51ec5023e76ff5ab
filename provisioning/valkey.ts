/**
 * Valkey on the cache server (stage scaled): the app's shared rate limits and cache, reached by
 * the app servers and the worker over the private network. Debian's valkey-server package runs
 * it; what this file renders replaces the package's settings, not its files:
 *
 * - Our own settings file, which the unit's drop-in starts Valkey with. The package's
 *   /etc/valkey/valkey.conf includes nothing, and replacing that conffile would make every later
 *   upgrade of the package ask about it, which unattended-upgrades answers by not upgrading:
 *   security fixes would stop. So it stays as shipped, unused.
 * - TLS only, as PostgreSQL on the private network (provisioning/postgres.ts): the server's own
 *   self-signed certificate, made on first boot; clients encrypt without verifying it
 *   (docs/ARCHITECTURE.md, decision 11). No plain port at all, not even on 127.0.0.1: local
 *   checks use `valkey-cli --tls --insecure` like any client.
 * - Bound to 127.0.0.1 and the private address, which only the server knows (DigitalOcean assigns
 *   it when it creates the droplet): 20-valkey writes it into VALKEY_BIND_CONF_PATH at boot.
 * - One login, `default`, with the generated password, kept as its SHA-256 in an ACL file only
 *   root and the valkey group read; the app holds the password (VALKEY_URL in web.env and
 *   worker.env, root-only).
 * - No persistence, and a memory cap with an eviction policy (valkeyMemory says which and why).
 * Settings: https://valkey.io/topics/valkey.conf/, ACL rules: https://valkey.io/topics/acl/
 */
import { createHash } from "node:crypto";
import { VALKEY_PORT } from "../plan/plan";
import { throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { CONFIG_DIR } from "./layout";
import { ALERT_ON_FAILURE, BASE_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export const VALKEY_UNIT = "valkey-server.service";
/** The package's binary and user (Debian's valkey-server). */
export const VALKEY_SERVER_BIN = "/usr/bin/valkey-server";
export const VALKEY_GROUP = "valkey";
/** Our settings; the drop-in starts Valkey with this file instead of the package's. */
export const VALKEY_CONF_PATH = `${CONFIG_DIR}/valkey.conf`;
/** The login's password hash, read by Valkey (group valkey), not by anyone else. */
export const VALKEY_ACL_PATH = `${CONFIG_DIR}/valkey-users.acl`;
/** `bind 127.0.0.1 <private address>`, written on the server by 20-valkey and included by our settings. */
export const VALKEY_BIND_CONF_PATH = `${CONFIG_DIR}/valkey-bind.conf`;
/** The server's own self-signed certificate, made by 20-valkey on first boot. */
export const VALKEY_TLS_CERT_PATH = `${CONFIG_DIR}/valkey-tls/server.crt`;
export const VALKEY_TLS_KEY_PATH = `${CONFIG_DIR}/valkey-tls/server.key`;
/** Valkey's working directory, as the package makes it; nothing is written there (no persistence). */
export const VALKEY_DIR = "/var/lib/valkey";
/** The package unit's PIDFile=, which Valkey writes under its RuntimeDirectory. */
export const VALKEY_PIDFILE = "/run/valkey/valkey-server.pid";
export const VALKEY_DROP_IN_PATH = `${UNIT_DIR}/${VALKEY_UNIT}.d/50-saas-vps.conf`;
/** The app's login: Valkey's own default user, so VALKEY_URL needs no ACL-aware client setup. */
export const VALKEY_USER = "default";

/**
 * What the app's login may not run: Valkey's @dangerous category (FLUSHALL, FLUSHDB, CONFIG, DEBUG,
 * SHUTDOWN, SAVE/BGSAVE, ACL, KEYS, MONITOR, REPLICAOF, MODULE, CLIENT KILL/LIST, ...), which can
 * empty every app server's rate limits at once, stall the single-threaded server (KEYS, DEBUG),
 * show other clients' traffic (MONITOR, CLIENT LIST), turn persistence back on, or make the server
 * a replica of a host elsewhere. INFO is let back in: it is read-only, shows no secret, and the
 * client's ready check (ioredis/iovalkey) asks for it on every connect.
 */
export const VALKEY_APP_RULES = "~* &* +@all -@dangerous +info";

/** Valkey's memory cap and what it evicts when the cap is reached. */
export interface ValkeyMemory {
  maxmemoryMiB: number;
  policy: "allkeys-lru";
}

/**
 * Half the server's memory. Without persistence Valkey never forks (no BGSAVE, no AOF rewrite), so
 * no copy-on-write doubling needs room; what sits above maxmemory is the allocator's fragmentation
 * (jemalloc, commonly 10-50 % of the data), client and TLS buffers, and the system with its agents
 * (a few hundred MiB). Half leaves that on the smallest type (1 GiB) and grows with larger ones.
 *
 * allkeys-lru: every key may be evicted, least recently used first. Rate-limit windows of active
 * clients are touched on every request, so they stay; cold cache entries go first. The volatile-*
 * policies evict only keys with a TTL: one key written without a TTL by mistake could then fill the
 * cap, and every write after it would fail with OOM instead of evicting.
 */
export function planValkeyMemory(memoryMiB: number): ValkeyMemory {
  throwIfProblems(Number.isInteger(memoryMiB) && memoryMiB >= 1024 ? [] : [`valkey: server memory must be a whole number of at least 1024 MiB; got ${memoryMiB}`]);
  return { maxmemoryMiB: Math.floor(memoryMiB / 2), policy: "allkeys-lru" };
}

export interface ValkeyInput {
  memoryMiB: number;
  /** The app's login's password (generated); only its hash is rendered here. */
  password: string;
}

export function renderValkeyConf(memoryMiB: number): string {
  const memory = planValkeyMemory(memoryMiB);
  return [
    `# Rendered by saas-vps (provisioning/valkey.ts) for a cache server with ${memoryMiB} MiB of memory.`,
    `# valkey-server starts with this file (its unit's drop-in); the package's /etc/valkey/valkey.conf is unused.`,
    "# Where it listens: 127.0.0.1 and the private address, written on the server at boot.",
    `include ${VALKEY_BIND_CONF_PATH}`,
    "protected-mode yes",
    "# TLS only: no plain port anywhere (local checks: valkey-cli --tls --insecure -h 127.0.0.1).",
    "port 0",
    `tls-port ${VALKEY_PORT}`,
    "# The server's own certificate, made on first boot; clients encrypt without verifying it, and",
    "# present none: they log in with the password.",
    `tls-cert-file ${VALKEY_TLS_CERT_PATH}`,
    `tls-key-file ${VALKEY_TLS_KEY_PATH}`,
    "tls-auth-clients no",
    'tls-protocols "TLSv1.2 TLSv1.3"',
    "# The app's login and what it may run (nobody logs in without the password).",
    `aclfile ${VALKEY_ACL_PATH}`,
    "# No persistence: rate-limit windows and cache entries all expire within minutes to hours and are",
    "# rebuilt by the app; a restart starts empty. Nothing is written to disk, and no fork for a save.",
    'save ""',
    "appendonly no",
    `dir ${VALKEY_DIR}`,
    "# Half the memory; when full, the least recently used key goes, whatever its TTL (provisioning/valkey.ts).",
    `maxmemory ${memory.maxmemoryMiB}mb`,
    `maxmemory-policy ${memory.policy}`,
    "# Dead clients (an app server that vanished) are found by TCP keepalive, idle ones are kept.",
    "timeout 0",
    "tcp-keepalive 300",
    "# To the journal (stdout under systemd), without keys or values in error messages.",
    'logfile ""',
    "loglevel notice",
    "hide-user-data-from-log yes",
    `pidfile ${VALKEY_PIDFILE}`,
    "",
  ].join("\n");
}

/**
 * The ACL file: the default user, on, with the password's SHA-256 (Valkey compares hashes; the
 * file never holds the password) and the app's rules. Valkey takes no comments in this file.
 */
export function renderValkeyAcl(password: string): string {
  throwIfProblems(/^\S{16,}$/.test(password) ? [] : ["valkey: the password must be 16+ characters without whitespace"]);
  const hash = createHash("sha256").update(password, "utf8").digest("hex");
  return `user ${VALKEY_USER} on #${hash} ${VALKEY_APP_RULES}\n`;
}

/** The app's VALKEY_URL: TLS (rediss), the default user, the cache server's private address. */
export function valkeyUrl(host: string, password: string): string {
  return `rediss://${VALKEY_USER}:${encodeURIComponent(password)}@${host}:${VALKEY_PORT}`;
}

/**
 * A changed setting, ACL or drop-in takes a restart: the cache starts empty again, which the app
 * takes as a miss (a rate-limit window restarts; short, and rare: changes follow cacheServerType).
 */
export const VALKEY_RESTART = `systemctl daemon-reload && systemctl restart ${VALKEY_UNIT}`;

/**
 * On top of the package's unit (already sandboxed: strict file system, no capabilities, a syscall
 * filter): our settings file, no writes to /etc/valkey (the package lets Valkey rewrite its config
 * for cluster mode; we run none) or /var/log/valkey (it logs to the journal), no way to the
 * metadata service, and an alert when it fails for good.
 */
export function renderValkeyDropIn(): string {
  const metadata = BASE_SANDBOX.find(([key]) => key === "IPAddressDeny")!;
  return renderUnit(
    {
      Unit: [["OnFailure", ALERT_ON_FAILURE]],
      Service: [
        ["ExecStart", ""],
        ["ExecStart", `${VALKEY_SERVER_BIN} ${VALKEY_CONF_PATH} --supervised systemd --daemonize no`],
        ["ReadWritePaths", ""],
        ["ReadWritePaths", `-${VALKEY_DIR} -/run/valkey`],
        metadata,
        ["UMask", "0077"],
      ],
    },
    "Valkey runs with saas-vps's settings, in a tighter sandbox",
  );
}

export function renderValkeyFiles(input: ValkeyInput): RenderedFile[] {
  return [
    { path: VALKEY_CONF_PATH, content: renderValkeyConf(input.memoryMiB), mode: "0644", onChange: VALKEY_RESTART },
    { path: VALKEY_ACL_PATH, content: renderValkeyAcl(input.password), mode: "0640", owner: `root:${VALKEY_GROUP}`, secret: true, onChange: VALKEY_RESTART },
    { path: VALKEY_DROP_IN_PATH, content: renderValkeyDropIn(), mode: "0644", onChange: VALKEY_RESTART },
  ];
}
