/**
 * The web role: nginx in front of the app's web instances (the app itself is the shared app
 * part), and with a domain, HTTPS with a Let's Encrypt certificate (tls.ts).
 */
import { renderNginxJailFiles } from "../fail2ban";
import { LB_DRAIN_FILE, LB_HEALTH_PORT, NGINX_DENY_DIR } from "../layout";
import { renderNginxFiles } from "../nginx";
import type { RoleContribution } from "./contribution";
import { renderTls } from "./tls";

export interface WebInput {
  /** Ports of the web instances on 127.0.0.1, computed once by the planner's mapping. */
  ports: number[];
  /** A temporary release instance's port, listed by nginx as `backup` (single instance only). */
  surgePort?: number;
  /** Public hostname; without it the site is plain HTTP on the fixed IP. */
  domain?: string;
  /** Required with a domain (the config layer says so to the user). */
  acmeEmail?: string;
  /**
   * Behind the provider's load balancer (stage scaled), which forwards TCP with the PROXY
   * protocol: nginx takes the client's address from the header, and the balancer's health check
   * has a listener of its own (LB_HEALTH_PORT), which LB_DRAIN_FILE turns to 503.
   */
  balancer?: BalancedWeb;
}

export interface BalancedWeb {
  /** Where the balancer connects from (its address, or the private network's range): the only source whose PROXY header is trusted. */
  trustedCidr: string;
}

export function renderWeb(input: WebInput): RoleContribution[] {
  const web: RoleContribution = {
    files: [
      ...renderNginxFiles({
        webPorts: input.ports,
        domain: input.domain,
        surgePort: input.surgePort,
        balancer: input.balancer && { trustedCidr: input.balancer.trustedCidr, drainFile: LB_DRAIN_FILE, healthPort: LB_HEALTH_PORT },
      }),
      ...renderNginxJailFiles(input.balancer !== undefined),
    ],
    packages: ["nginx"],
    steps: ["50-nginx"],
    units: ["nginx"],
    settings: input.balancer ? { NGINX_DENY_DIR } : {},
  };
  if (input.domain === undefined) return [web];
  if (!input.acmeEmail) throw new Error("web role: a domain without acmeEmail reached the renderer (the config layer requires it)");
  return [web, renderTls({ domain: input.domain, acmeEmail: input.acmeEmail })];
}
