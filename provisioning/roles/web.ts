/**
 * The web role: nginx in front of the app's web instances (the app itself is the shared app
 * part), and with a domain, HTTPS with a Let's Encrypt certificate (tls.ts).
 */
import { renderNginxJailFile } from "../fail2ban";
import { LB_DRAIN_FILE } from "../layout";
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
  /** Behind the provider's load balancer (stage scaled): its health check can drain the server. */
  loadBalanced?: boolean;
}

export function renderWeb(input: WebInput): RoleContribution[] {
  const web: RoleContribution = {
    files: [...renderNginxFiles({ webPorts: input.ports, domain: input.domain, surgePort: input.surgePort, drainFile: input.loadBalanced ? LB_DRAIN_FILE : undefined }), renderNginxJailFile()],
    packages: ["nginx"],
    steps: ["50-nginx"],
    units: ["nginx"],
    settings: {},
  };
  if (input.domain === undefined) return [web];
  if (!input.acmeEmail) throw new Error("web role: a domain without acmeEmail reached the renderer (the config layer requires it)");
  return [web, renderTls({ domain: input.domain, acmeEmail: input.acmeEmail })];
}
