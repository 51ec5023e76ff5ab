/**
 * The web role: nginx in front of the app's web instances (the app itself is the shared app
 * part), and with a domain, HTTPS with a Let's Encrypt certificate (tls.ts).
 */
import { renderNginxJailFiles } from "../fail2ban";
import { ACME_RELAY_PORT, LB_DRAIN_FILE, LB_HEALTH_PORT, NGINX_DENY_DIR } from "../layout";
import { renderNginxFiles } from "../nginx";
import type { RoleContribution } from "./contribution";
import { renderTls } from "./tls";
import { acmeChallengeUpstream, renderTlsShareFollower, renderTlsShareIssuer, type TlsShareInput } from "./tlsShare";

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
  /**
   * Stage scaled with a domain: one app server issues the certificate (and serves ACME's HTTP-01
   * requests on its health listener), the others fetch it from there (roles/tlsShare.ts).
   */
  tlsShare?: TlsShareInput;
}

export interface BalancedWeb {
  /** Where the balancer connects from (its address, or the private network's range): the only source whose PROXY header is trusted. */
  trustedCidr: string;
}

export function renderWeb(input: WebInput): RoleContribution[] {
  const share = input.tlsShare;
  // The issuer may still answer the site itself (siteAddress app, moving from separated); the servers that fetch from it are behind the balancer.
  if (share && (input.domain === undefined || (share.role === "follower" && !input.balancer))) throw new Error("web role: a shared certificate needs a domain, and the servers that fetch it the load balancer (stage scaled)");
  const follower = share?.role === "follower" ? share : undefined;
  const web: RoleContribution = {
    files: [
      ...renderNginxFiles({
        webPorts: input.ports,
        domain: input.domain,
        surgePort: input.surgePort,
        balancer: input.balancer && { trustedCidr: input.balancer.trustedCidr, drainFile: LB_DRAIN_FILE, healthPort: LB_HEALTH_PORT },
        ...(share?.role === "issuer" ? { acmeRelayPort: ACME_RELAY_PORT } : {}),
        ...(follower ? { acmeChallengeUpstream: acmeChallengeUpstream(follower.issuerAddress, ACME_RELAY_PORT) } : {}),
      }),
      ...renderNginxJailFiles(input.balancer !== undefined),
    ],
    packages: ["nginx"],
    steps: ["50-nginx"],
    units: ["nginx"],
    settings: input.balancer ? { NGINX_DENY_DIR } : {},
  };
  if (input.domain === undefined) return [web];
  // A follower never asks Let's Encrypt: it serves the issuer's certificate.
  if (follower) return [web, renderTlsShareFollower(follower, input.domain)];
  if (!input.acmeEmail) throw new Error("web role: a domain without acmeEmail reached the renderer (the config layer requires it)");
  const tls = renderTls({ domain: input.domain, acmeEmail: input.acmeEmail });
  return share?.role === "issuer" ? [web, tls, renderTlsShareIssuer(share)] : [web, tls];
}
