/**
 * Where things live on a server. One place, so units, nginx, scripts and the release tool
 * agree on paths without passing them around.
 */
export const APP_USER = "app";
export const ADMIN_USER = "admin";
export const APP_ROOT = "/srv/app";
export const APP_CURRENT = `${APP_ROOT}/current`;
/** The current release's programs; the app's units start (and the watchdog asks the site) only once it exists. */
export const APP_CURRENT_BIN = `${APP_CURRENT}/bin`;
export const APP_SHARED = `${APP_ROOT}/shared`;
/** The release tool's flock, held for a whole release (its own default: "$APP_ROOT/.release.lock"). */
export const APP_RELEASE_LOCK = `${APP_ROOT}/.release.lock`;
/** Uploads live on the data volume so they survive a server replacement. */
export const DATA_MOUNT = "/srv/data";
/** Filesystem label of the data volume: fstab mounts it by label, never by device name. */
export const DATA_LABEL = "saas-data";
export const UPLOAD_DIR = `${DATA_MOUNT}/uploads`;
export const CONFIG_DIR = "/etc/saas-vps";
/**
 * The providers' metadata service (Hetzner and DigitalOcean alike): it answers anyone on the
 * server, without authentication, with the server's user-data and so its first-boot secrets.
 * Only root may reach it (the host firewall's output chain), and no service we render
 * (IPAddressDeny=) (docs/ARCHITECTURE.md, decision 15).
 */
export const METADATA_ADDRESS = "169.254.169.254";
/**
 * The app's settings, root-only: systemd reads it for every app unit, the release for its
 * migrate step; on the server that runs migrations it holds the schema owner's DATABASE_URL,
 * which each unit's own file below replaces (systemd: a later EnvironmentFile= wins).
 */
export const APP_ENV_FILE = `${CONFIG_DIR}/app.env`;
/** DATABASE_URL of the web processes' login (web@.service), root-only. */
export const WEB_ENV_FILE = `${CONFIG_DIR}/web.env`;
/** DATABASE_URL of the worker's login (worker@.service), root-only. */
export const WORKER_ENV_FILE = `${CONFIG_DIR}/worker.env`;
export const DB_ENV_FILE = `${CONFIG_DIR}/db.env`;
export const LIB_DIR = "/usr/local/lib/saas-vps";
export const STATE_DIR = "/var/lib/saas-vps";
/** The server's address on the stack's private network, as 15-private-network found it (split stages). */
export const PRIVATE_IPV4_FILE = "/run/saas-vps/private-ipv4";
/**
 * While this exists, nginx answers the load balancer's health check with 503 (an app server of
 * stage scaled being drained for a release). Under /run: a reboot puts the server back in
 * rotation, where the health check still waits for the app.
 */
export const LB_DRAIN_FILE = "/run/saas-vps/lb-drain";
/**
 * The port the load balancer's health check uses (stage scaled): a listener of its own (with the
 * PROXY protocol, as the providers' checks send it), serving only /health. The drain above answers there alone, so a drained
 * server is out of the balancer's rotation while its public /health still tells the watchdog
 * whether the app works.
 */
export const LB_HEALTH_PORT = 8081;
/**
 * Stage scaled with a domain: the certificate's issuer serves ACME's HTTP-01 files on this port to
 * the other app servers, which pass on the challenges the balancer brings them (plain HTTP: nginx's
 * proxy_pass sends no PROXY header, which the public and health listeners want).
 */
export const ACME_RELAY_PORT = 8082;
/**
 * Behind the load balancer, fail2ban's nginx jail bans here instead of in the host firewall (whose
 * packets all come from the balancer): one `deny <address>;` file per banned client, included by
 * the public server blocks, so nginx refuses the client's requests by the address in the PROXY
 * header (provisioning/fail2ban.ts).
 */
export const NGINX_DENY_DIR = "/etc/nginx/saas-vps-denied";
/** sshd's port: the admin's, the day-2 pushes', and (stage scaled) the certificate's fetch. */
export const SSH_PORT = 22;
/**
 * Stage scaled with a domain: one app server (the plan's certificateIssuer) gets the site's
 * certificate and the others fetch it over SSH on the private network (roles/tlsShare.ts). This
 * system user on the issuer has no login but its keys' forced command, which prints the
 * certificate chain and key; its home holds their authorized_keys and the bundle it prints.
 */
export const TLS_SHARE_USER = "tls-share";
export const TLS_SHARE_HOME = `${STATE_DIR}/tls-share`;
/** The forced command of the followers' keys on the issuer. */
export const TLS_SHARE_EXPORT = `${LIB_DIR}/tls-share-export`;
/** Where a follower keeps its key for the issuer and the issuer's pinned host key (root-only). */
export const TLS_SHARE_CLIENT_DIR = `${CONFIG_DIR}/tls-share`;
export const ACME_WEBROOT = "/var/www/letsencrypt";
export const TLS_DIR = `${CONFIG_DIR}/tls`;
/** The certificate nginx serves: the Let's Encrypt one once issued, a self-signed stand-in before. */
export const TLS_CERTIFICATE = `${TLS_DIR}/fullchain.pem`;
/** Settings of bootstrap, its steps and tls-issue (no secrets). */
export const BOOTSTRAP_ENV_FILE = `${CONFIG_DIR}/bootstrap.env`;
/** First-boot step scripts; bootstrap runs the ones bootstrap.env lists, in that order. */
export const BOOTSTRAP_STEP_DIR = `${LIB_DIR}/bootstrap.d`;
export const DATABASE_NAME = "app";
/** First web instance port; instance i listens on FIRST_WEB_PORT + i. */
export const FIRST_WEB_PORT = 3001;
/**
 * With a single web instance, a release runs a temporary web@SURGE_PORT while the real one
 * restarts; nginx lists it as a `backup` server, used only when the instance is down.
 */
export const SURGE_PORT = 3100;
/** Ports a web instance (or an app metrics port) must never take: the system's, PostgreSQL's, Valkey's, the balancer's health listener and the ACME relay. */
export const RESERVED_PORTS = [SSH_PORT, 25, 53, 80, 443, 5432, 6379, LB_HEALTH_PORT, ACME_RELAY_PORT];

export function webPorts(count: number, first = FIRST_WEB_PORT): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

/** A single web instance gets a surge port so releases stay zero-downtime (see SURGE_PORT). */
export function surgePortFor(webPorts: number[]): number | undefined {
  return webPorts.length === 1 ? SURGE_PORT : undefined;
}

/**
 * The app's metrics listen on 127.0.0.1 at METRICS_PORT_OFFSET + the instance's number: a web
 * instance's port, a worker's WORKER_ID (app/src/metrics/port.ts).
 */
export const DEFAULT_METRICS_PORT_OFFSET = 10000;

/**
 * The number (WORKER_ID) of the first critical worker: worker-critical@101, @102, ... Apart from
 * the other workers' 1-16 whatever workerInstances is, so a change of workerInstances renames no
 * critical worker and no two processes of a server ever share a WORKER_ID or a metrics port.
 */
export const CRITICAL_WORKER_FIRST_ID = 101;

/** Every metrics port of a server's app processes with this offset: its web instances' (and surge instance's), then its workers', then its critical workers'. */
export function metricsPorts(offset: number, ports: number[], workerCount: number, criticalCount = 0): number[] {
  const surge = surgePortFor(ports);
  const workerIds = Array.from({ length: workerCount }, (_, i) => i + 1);
  const criticalIds = Array.from({ length: criticalCount }, (_, i) => CRITICAL_WORKER_FIRST_ID + i);
  return [...ports, ...(surge === undefined ? [] : [surge]), ...workerIds, ...criticalIds].map((n) => offset + n);
}

export function workerUnits(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `worker@${i + 1}.service`);
}

/** The critical workers' units (systemd.ts renders their template): worker-critical@101.service, ... */
export function criticalWorkerUnits(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `worker-critical@${CRITICAL_WORKER_FIRST_ID + i}.service`);
}
