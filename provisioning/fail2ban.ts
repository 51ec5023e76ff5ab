/**
 * fail2ban's jail for the web role: an address nginx keeps refusing on the auth routes is banned
 * from HTTP and HTTPS for a while. It uses Debian's own filter `nginx-limit-req` (the lines nginx's
 * limit_req writes to its error log), narrowed to our zone, and bans through nftables, like the
 * sshd jail (provisioning/system.ts).
 */
import type { RenderedFile } from "./files";
import { LIB_DIR } from "./layout";
import { AUTH_LIMIT_ZONE } from "./nginx";
import { loadScript } from "./scripts";

export const NGINX_JAIL_PATH = "/etc/fail2ban/jail.d/60-saas-vps-nginx.conf";
/** Debian's nginx.conf logs every server's errors here; limit_req writes one "limiting requests" line per refusal. */
export const NGINX_ERROR_LOG = "/var/log/nginx/error.log";
/** The filter with its zone option, as the jail names it (and fail2ban-regex takes it in the tests). */
export const NGINX_LIMIT_FILTER = `nginx-limit-req[ngx_limit_req_zones="${AUTH_LIMIT_ZONE}"]`;
/**
 * Refusals before a ban. nginx refuses only beyond the rate and its burst (provisioning/nginx.ts),
 * so a person who mistypes a password a few times is never refused at all; 20 refusals in 10
 * minutes is a script.
 */
export const NGINX_JAIL_MAX_REFUSALS = 20;

/** The ban action of an app server behind the load balancer: bans in nginx, by the client's address. */
export const NGINX_DENY_ACTION = "saas-vps-nginx-deny";
export const NGINX_DENY_ACTION_PATH = `/etc/fail2ban/action.d/${NGINX_DENY_ACTION}.conf`;
export const NGINX_DENY_SCRIPT = `${LIB_DIR}/nginx-deny`;

/**
 * `balanced`: the server is behind the provider's load balancer, where every packet comes from
 * the balancer and a ban in the host firewall would never match a client; the jail then bans in
 * nginx (renderNginxDenyAction), which reads the client's address from the PROXY header.
 */
export function renderNginxJail(balanced = false): string {
  return [
    "# Rendered by saas-vps (provisioning/fail2ban.ts); pushed again on change.",
    "# Addresses that nginx's rate limit on the auth routes keeps refusing (429) are banned from",
    balanced
      ? "# the site: nginx answers them 403 (behind the load balancer, the host firewall never sees them)."
      : "# HTTP and HTTPS: after the ban nginx does not even see their requests.",
    "[nginx-limit-req]",
    "enabled = true",
    `filter = ${NGINX_LIMIT_FILTER}`,
    // A log file, not the journal: nginx writes its error log itself.
    "backend = auto",
    `logpath = ${NGINX_ERROR_LOG}`,
    "port = http,https",
    // nftables as the rest of the host firewall (Debian 13's fail2ban default too); said here so
    // the jail does not depend on the package's default.
    `banaction = ${balanced ? NGINX_DENY_ACTION : "nftables[type=multiport]"}`,
    `maxretry = ${NGINX_JAIL_MAX_REFUSALS}`,
    "findtime = 10m",
    "bantime = 1h",
    "",
  ].join("\n");
}

/**
 * The action behind the balancer: the script writes or removes one `deny` file per address in
 * NGINX_DENY_DIR and reloads nginx. fail2ban stops (and restarts) with a flush and bans again
 * from its database when it starts.
 */
export function renderNginxDenyAction(): string {
  return [
    "# Rendered by saas-vps (provisioning/fail2ban.ts); pushed again on change.",
    "[Definition]",
    "actionstart =",
    `actionstop = ${NGINX_DENY_SCRIPT} flush`,
    `actionflush = ${NGINX_DENY_SCRIPT} flush`,
    "actioncheck =",
    `actionban = ${NGINX_DENY_SCRIPT} ban <ip>`,
    `actionunban = ${NGINX_DENY_SCRIPT} unban <ip>`,
    "",
  ].join("\n");
}

export function renderNginxJailFiles(balanced = false): RenderedFile[] {
  // Reload, not restart: the bans of the other jails stay in place.
  const jail: RenderedFile = { path: NGINX_JAIL_PATH, content: renderNginxJail(balanced), mode: "0644", onChange: "systemctl reload fail2ban" };
  if (!balanced) return [jail];
  return [
    { path: NGINX_DENY_SCRIPT, content: loadScript("server/nginx-deny"), mode: "0755" },
    { path: NGINX_DENY_ACTION_PATH, content: renderNginxDenyAction(), mode: "0644", onChange: "systemctl reload fail2ban" },
    jail,
  ];
}
