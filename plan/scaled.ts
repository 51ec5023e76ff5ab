/**
 * Stage scaled: stage separated's servers with the app server multiplied behind the provider's
 * load balancer, a cache server (Valkey) for the app's shared rate limits and cache, and on request
 * a read replica: of the db server on a server of its own, or of a managed cluster as its
 * read-only node. Built on the separated plan, so every server a separated stack has keeps its
 * name (and with it its resources): the first app server stays `app`, the others are `app-2` …
 * `app-N` at the next private addresses, and growing from N to N+1 adds one server and one
 * target, replacing nothing.
 */
import type { StackConfig } from "../config/config";
import { hostAddress } from "../config/validators";
import { ACME_RELAY_PORT, LB_HEALTH_PORT, SSH_PORT } from "../provisioning/layout";
import { dataVolume, joinNames, planCacheRule, planDatabaseRule, planSshRule, PRIVATE_HOSTS, withDatabaseClients, type DatabasePlan, type FirewallRule, type ServerPlan, type StackPlan } from "./plan";

/**
 * The balancer's active check of each app server. Both providers count failed checks in a row
 * before taking a target out and passed checks before putting it back; DigitalOcean has a setting
 * for each, Hetzner one (`retries`) for both, hence the two are equal here.
 */
export interface LoadBalancerHealthCheck {
  /** The app servers' health listener: HTTP after the PROXY header the check sends (provisioning/nginx.ts). */
  port: number;
  path: string;
  intervalSeconds: number;
  timeoutSeconds: number;
  /** Failed checks in a row that take a server out of rotation. */
  unhealthyThreshold: number;
  /** Passed checks in a row that put it back. */
  healthyThreshold: number;
}

export interface LoadBalancerPlan {
  /** Resource name suffix, and the balancer's key among private addresses (plan/peers.ts). */
  name: string;
  region: string;
  /**
   * The app servers behind it, by plan name: all of them, but `app` while it still answers the
   * site on its own address (config siteAddress app, moving from separated).
   */
  targets: string[];
  /** Whether the site's address is the balancer's (else the first app server's fixed IP, siteAddress app). */
  servesSite: boolean;
  /**
   * Ports forwarded as TCP, with the PROXY protocol, to the same port on each target: TLS ends on
   * the app servers (docs/ARCHITECTURE.md, "TLS and client addresses behind the balancer").
   */
  ports: number[];
  healthCheck: LoadBalancerHealthCheck;
  /** Its address on the private network: Hetzner attaches it there; DigitalOcean picks its own. */
  privateIp: string;
}

export const LOAD_BALANCER_NAME = "lb";

/**
 * Within both providers' ranges (DigitalOcean: interval and timeout 3-300 s, thresholds 2-10). A
 * server being drained leaves rotation within drainSeconds of its health listener answering 503.
 */
export const LOAD_BALANCER_HEALTH_CHECK: LoadBalancerHealthCheck = {
  port: LB_HEALTH_PORT,
  path: "/health",
  intervalSeconds: 5,
  timeoutSeconds: 3,
  unhealthyThreshold: 2,
  healthyThreshold: 2,
};

/**
 * The longest the balancer may take to act on a changed answer of the health listener: a check
 * just missed, then `inARow` checks with the new answer, the last one taking its whole timeout.
 */
function secondsToAct(check: LoadBalancerHealthCheck, inARow: number): number {
  return check.intervalSeconds * (inARow + 1) + check.timeoutSeconds;
}

/** The longest the balancer may keep sending new requests to a server whose health listener answers 503. */
export function drainSeconds(check: LoadBalancerHealthCheck): number {
  return secondsToAct(check, check.unhealthyThreshold);
}

/** The longest it may take to send new requests again once the health listener answers 200 again. */
export function undrainSeconds(check: LoadBalancerHealthCheck): number {
  return secondsToAct(check, check.healthyThreshold);
}

/** The app servers' plan names: the separated stack's `app` first, then app-2 … app-N. */
export function appServerNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? "app" : `app-${i + 1}`));
}

/**
 * An app server behind the balancer: SSH from the allowed CIDRs, and the forwarded ports and the
 * health listener from the balancer only (a connection without the PROXY header would fail anyway).
 * The certificate's issuer also lets the other app servers (`certificateFollowers`) in over the
 * private network (issuerRules): to its ACME relay, which serves the challenges they pass on, and
 * to SSH, where their keys may only fetch the certificate.
 */
export function planBalancedFirewall(sshAllowedCidrs: string[], ports: number[], certificateFollowers: string[] = []): FirewallRule[] {
  const fromBalancer = (port: number, what: string): FirewallRule => ({ port, protocol: "tcp", sources: [], loadBalancer: true, description: `${what} from the load balancer (private network)` });
  return [planSshRule(sshAllowedCidrs), ...ports.map((port) => fromBalancer(port, portName(port))), fromBalancer(LB_HEALTH_PORT, "Health check"), ...issuerRules(certificateFollowers)];
}

/**
 * What the certificate's issuer opens to the other app servers, over the private network: its
 * ACME relay (they pass on the challenges the balancer brings them) and SSH (they fetch the
 * certificate, with their keys' forced command).
 */
export function issuerRules(certificateFollowers: string[]): FirewallRule[] {
  if (certificateFollowers.length === 0) return [];
  const names = joinNames(certificateFollowers);
  return [
    { port: ACME_RELAY_PORT, protocol: "tcp", sources: [], peers: [...certificateFollowers], description: `ACME challenges from ${names} (private network)` },
    { port: SSH_PORT, protocol: "tcp", sources: [], peers: [...certificateFollowers], description: `SSH from ${names} for the certificate (private network)` },
  ];
}

const portName = (port: number) => (port === 443 ? "HTTPS" : port === 80 ? "HTTP" : `port ${port}`);

export function planScaled(separated: StackPlan, config: StackConfig): StackPlan {
  const network = separated.network;
  if (!network) throw new Error("stage scaled without a private network (the config parser sets one)");
  const at = (host: number) => hostAddress(network.cidr, host);
  const first = separated.servers.find((s) => s.name === "app");
  if (!first) throw new Error("stage scaled: the separated plan has no app server");
  // Without a domain the site is plain HTTP (plainHttp: true): nothing listens on 443.
  const ports = config.domain ? [80, 443] : [80];
  const names = appServerNames(config.appServers);
  // With a domain, the first app server gets the certificate and the others fetch it from there
  // (one ACME account, one certificate, no race for the HTTP-01 challenge).
  const certificateIssuer = config.domain ? first.name : undefined;
  const followers = certificateIssuer ? names.filter((name) => name !== certificateIssuer) : [];
  // Each server its own rules: a plan shares no lists (a component editing one server's must not change another's).
  const firewall = (name: string) => planBalancedFirewall(config.sshAllowedCidrs, ports, name === certificateIssuer ? followers : []);
  // Moving from separated, the site's DNS record still names `app` until the user moves it: `app`
  // keeps separated's public firewall (and with it nginx without the PROXY protocol) and stays out
  // of the balancer, which serves through the others meanwhile.
  const servesSite = config.siteAddress !== "app";
  const appServers: ServerPlan[] = names.map((name, i) =>
    // Only the first migrates and (with a managed cluster) runs the backup; the others only serve.
    i === 0
      ? { ...first, firewall: servesSite ? firewall(name) : [...first.firewall, ...issuerRules(followers)] }
      : { ...first, name, roles: ["web"], privateIp: at(PRIVATE_HOSTS.app + i), firewall: firewall(name), migrates: false },
  );
  const others = separated.servers.filter((s) => s.name !== first.name);
  // A managed cluster's replica is a read-only node of the cluster, not a server of the stack.
  const database = managedReplicaOf(separated, config);
  const replicas: ServerPlan[] = config.readReplica && database.kind === "server" ? [replicaServer(config, at(PRIVATE_HOSTS.replica), appServers.map((s) => s.name))] : [];
  const workers = others.filter((s) => s.roles.includes("worker"));
  const clients = [...appServers, ...workers, ...replicas].map((s) => s.name);
  const cache = cacheServer(config, at(PRIVATE_HOSTS.cache), [...appServers, ...workers].map((s) => s.name));
  // The db server's PostgreSQL rule names every server that connects to it: app servers, worker, replica.
  const servers = [...appServers, ...others, ...replicas, cache].map((s) => (s.roles.includes("db") ? withDatabaseClients(s, clients) : s));
  return {
    ...separated,
    servers,
    database,
    loadBalancer: {
      name: LOAD_BALANCER_NAME,
      region: first.region,
      targets: appServers.filter((s) => servesSite || s !== appServers[0]).map((s) => s.name),
      servesSite,
      ports,
      healthCheck: LOAD_BALANCER_HEALTH_CHECK,
      privateIp: at(PRIVATE_HOSTS.loadBalancer),
    },
    ...(certificateIssuer ? { certificateIssuer } : {}),
  };
}

/** The separated plan's database, with the managed cluster's read-only node when the config asks for one. */
function managedReplicaOf(separated: StackPlan, config: StackConfig): DatabasePlan {
  const database = separated.database;
  if (database.kind !== "managed" || !config.readReplica) return database;
  if (config.database.mode !== "managed" || !config.database.replicaSize) throw new Error("stage scaled: readReplica with a managed database, but the config has no replica size (the parser sets one)");
  return { ...database, replicaSize: config.database.replicaSize };
}

/** The read replica's server name (readReplica with databaseMode server). */
export const REPLICA_SERVER = "replica";

/**
 * The read replica: a hot standby on a server and volume of its own, read by the app servers
 * (the worker writes, and reads what it writes, on the primary).
 */
function replicaServer(config: StackConfig, privateIp: string, readers: string[]): ServerPlan {
  return {
    name: REPLICA_SERVER,
    roles: ["replica"],
    serverType: config.servers.replica.serverType,
    memoryMiB: config.servers.replica.memoryMiB,
    region: config.region,
    firewall: [planSshRule(config.sshAllowedCidrs), planDatabaseRule(readers)],
    privateIp,
    volume: dataVolume(),
    webInstances: 0,
    workerInstances: 0,
  };
}

/**
 * The cache server: Valkey for the app's shared rate limits and cache, reached with TLS over the
 * private network by every server that runs the app (app servers and worker). No volume: it keeps
 * nothing on disk (provisioning/valkey.ts says why).
 */
function cacheServer(config: StackConfig, privateIp: string, clients: string[]): ServerPlan {
  return {
    name: "cache",
    roles: ["cache"],
    serverType: config.servers.cache.serverType,
    memoryMiB: config.servers.cache.memoryMiB,
    region: config.region,
    firewall: [planSshRule(config.sshAllowedCidrs), planCacheRule(clients)],
    privateIp,
    webInstances: 0,
    workerInstances: 0,
  };
}
