/**
 * HAProxy from Debian as the stand-in for the provider's load balancer (stage scaled) in the
 * release and drain tests' network namespaces: the local VMs' config (cli/vm/balancer.ts
 * renderHaproxyConfig, one source), here at the tests' own check pace, and each server's place in
 * rotation read from its runtime API (a stats socket).
 */
import { type BalancerTarget, balancerServerStates, renderHaproxyConfig } from "../../cli/vm/balancer";
import type { LoadBalancerHealthCheck } from "../../plan/scaled";

export interface BalancerStandIn {
  /** The address clients connect to (the balancer's public side). */
  publicAddress: string;
  /** Ports forwarded, each to the same port on every server (as the plan's LoadBalancerPlan.ports). */
  ports: number[];
  /** The app servers, in the order of the plan's targets: HAProxy's server names and private addresses. */
  servers: BalancerTarget[];
  check: LoadBalancerHealthCheck;
  /** The runtime API's Unix socket (admin level: tests read server states there). */
  statsSocket: string;
}

/** haproxy.cfg for the stand-in: the plan's balancer config, with these servers, ports and check. */
export function standInHaproxyConfig(lb: BalancerStandIn): string {
  return renderHaproxyConfig({
    balancer: { name: "lb", targets: lb.servers.map((s) => s.name), ports: lb.ports, healthCheck: lb.check },
    targets: lb.servers, bindAddress: lb.publicAddress, statsSocket: lb.statsSocket,
  });
}

/**
 * The balancer's view of each server: "up" in rotation on every port, "down" on none, "partial"
 * in between (each port's backend checks on its own); {} while HAProxy does not answer.
 */
export async function haproxyServerStates(statsSocket: string): Promise<Record<string, "up" | "down" | "partial">> {
  const byBackend = await balancerServerStates(statsSocket).catch(() => ({} as Awaited<ReturnType<typeof balancerServerStates>>));
  const perServer: Record<string, string[]> = {};
  for (const servers of Object.values(byBackend)) for (const [name, state] of Object.entries(servers)) (perServer[name] ??= []).push(state);
  return Object.fromEntries(Object.entries(perServer).map(([name, states]) =>
    [name, states.every((s) => s === "UP") ? "up" : states.every((s) => s !== "UP") ? "down" : "partial"] as const));
}

/** Waits until the balancer has `name` in the state `want` on every port, asking every `pollMs`; the milliseconds that took. */
export async function waitHaproxyState(statsSocket: string, name: string, want: "up" | "down", timeoutMs: number, pollMs = 20): Promise<number> {
  const t0 = Date.now();
  while ((await haproxyServerStates(statsSocket))[name] !== want) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${name} never became ${want} in the balancer within ${timeoutMs} ms: ${JSON.stringify(await haproxyServerStates(statsSocket))}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return Date.now() - t0;
}

/** A change of the balancer's view of a server: when (ms since the epoch), which, and its new state. */
export interface StateChange { t: number; name: string; state: "up" | "down" }

/**
 * Every change of the balancer's view of each server from now until stop(), the first view of
 * each included, polled every `pollMs`. A change counts once every port's backend agrees: in
 * rotation, or out of it.
 */
export function watchHaproxyStates(statsSocket: string, pollMs: number): { stop(): Promise<StateChange[]> } {
  const changes: StateChange[] = [];
  const last: Record<string, string> = {};
  let running = true;
  const polling = (async () => {
    while (running) {
      for (const [name, state] of Object.entries(await haproxyServerStates(statsSocket))) {
        if (state === "partial") continue;
        if (last[name] !== state) changes.push({ t: Date.now(), name, state });
        last[name] = state;
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await polling;
      return changes;
    },
  };
}
