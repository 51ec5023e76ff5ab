/**
 * HAProxy from Debian as the stand-in for the provider's load balancer (stage scaled): TCP mode,
 * the PROXY protocol to each app server's public ports, and an active HTTP check of each server's
 * health listener with the interval, timeout and thresholds of a plan's LoadBalancerHealthCheck
 * (plan/scaled.ts), so the stand-in takes a drained server out and puts it back on the same count
 * of checks the provider's balancer does. Its runtime API (a stats socket) tells which servers it
 * has in rotation.
 */
import { connect } from "node:net";
import type { LoadBalancerHealthCheck } from "../../plan/scaled";

export interface BalancerStandIn {
  /** The address clients connect to (the balancer's public side). */
  publicAddress: string;
  /** Ports forwarded, each to the same port on every server (as the plan's LoadBalancerPlan.ports). */
  ports: number[];
  /** The app servers, in the order of the plan's targets: HAProxy's server names and private addresses. */
  servers: Array<{ name: string; address: string }>;
  check: LoadBalancerHealthCheck;
  /** The runtime API's Unix socket (admin level: tests read server states there). */
  statsSocket: string;
}

/** The backend's name in the config and on the runtime API. */
export const HAPROXY_BACKEND = "app";

/** haproxy.cfg for the stand-in: one TCP frontend, one backend with every server and the plan's check. */
export function renderHaproxyConfig(lb: BalancerStandIn): string {
  const { check } = lb;
  return [
    "global",
    `  stats socket ${lb.statsSocket} mode 600 level admin`,
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 30s",
    "  timeout server 30s",
    // A provider's balancer does not resend a connection a target failed: neither does the stand-in.
    "  retries 0",
    "frontend public",
    ...lb.ports.map((port) => `  bind ${lb.publicAddress}:${port}`),
    `  default_backend ${HAPROXY_BACKEND}`,
    `backend ${HAPROXY_BACKEND}`,
    // An HTTP check on the health listener, with the PROXY header both providers' checks send when
    // the balancer forwards with the protocol (check-send-proxy: HAProxy sends none to a check port
    // other than the server's without it).
    `  option httpchk GET ${check.path}`,
    "  http-check expect status 200",
    `  timeout check ${check.timeoutSeconds * 1000}ms`,
    `  default-server inter ${check.intervalSeconds * 1000}ms fall ${check.unhealthyThreshold} rise ${check.healthyThreshold} check port ${check.port} check-send-proxy send-proxy`,
    // No port: a connection goes to the port the client asked the balancer for.
    ...lb.servers.map((s) => `  server ${s.name} ${s.address}`),
    "",
  ].join("\n");
}

/** The balancer's view of each server ("up" = in rotation), from its runtime API; {} while it does not answer. */
export function haproxyServerStates(statsSocket: string): Promise<Record<string, "up" | "down">> {
  return new Promise((resolve) => {
    let out = "";
    const socket = connect(statsSocket, () => socket.end(`show servers state ${HAPROXY_BACKEND}\n`));
    socket.on("data", (d) => (out += d));
    socket.on("error", () => resolve({}));
    socket.on("close", () =>
      // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state ... (2 = running, 0 = stopped).
      resolve(Object.fromEntries(out.split("\n").filter((l) => new RegExp(`^\\d+ ${HAPROXY_BACKEND} `).test(l)).map((l) => {
        const f = l.split(" ");
        return [f[3]!, f[5] === "2" ? "up" : "down"] as const;
      }))),
    );
  });
}

/** Waits until the balancer has `name` in the state `want`; the milliseconds that took. */
export async function waitHaproxyState(statsSocket: string, name: string, want: "up" | "down", timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while ((await haproxyServerStates(statsSocket))[name] !== want) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${name} never became ${want} in the balancer within ${timeoutMs} ms: ${JSON.stringify(await haproxyServerStates(statsSocket))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}
