/**
 * The stack config contract (`saas-vps:<key>`), parsed and validated in one pure pass.
 *
 * `raw` maps short keys to the strings Pulumi stores (JSON text for lists, objects, numbers).
 * Every problem is collected and thrown once as a ConfigError, one line per problem, each
 * line starting with `saas-vps:<key>:` and saying what is allowed and what was given — so a
 * user fixes a stack file in one round instead of one key per `pulumi up`. Each key's own
 * parser is in the table of config/keys.ts; the rules here are the ones that join keys.
 */
import { DEFAULTS, KEYS, KNOWN_KEYS, SECRET_KEYS, keysOutsideStage, type ConfigKey, type KeySpec, type KeyValues } from "./keys";
import {
  CATALOGS,
  DEFAULT_MANAGED_DATABASE_SIZE,
  MANAGED_DATABASE_SIZES,
  HETZNER_NETWORK_ZONES,
  HETZNER_OBJECT_STORAGE_LOCATIONS,
  hetznerZoneOf,
  MIN_APP_MEMORY_MIB,
  MIN_CACHE_MEMORY_MIB,
  MIN_MEMORY_MIB,
  SPACES_REGIONS,
  type BucketProvider,
  type Provider,
} from "./providers";
import { bucketKeyNames, type BucketField, type BucketKeyNames, type BucketPrefix } from "./buckets";
import { SPLIT_STAGES, type Stage } from "./stages";
import { closest, isHttpUrl, quote } from "./validators";
import { CRITICAL_WORKER_FIRST_ID, DEFAULT_METRICS_PORT_OFFSET, metricsPorts, RESERVED_PORTS, surgePortFor, webPorts } from "../provisioning/layout";
import { NODE_EXPORTER_PORT } from "../plan/plan";
import type { MonitoringService } from "./monitoring";
import { DEFAULT_CRITICAL_TASKS, DEFAULT_CRITICAL_WORKER_INSTANCES } from "./workers";

export { DEFAULTS, KNOWN_KEYS, SECRET_KEYS, type ConfigKey };
export { STAGES, type Stage } from "./stages";
export { BUCKET_PROVIDERS, HETZNER_OBJECT_STORAGE_LOCATIONS, SPACES_REGIONS, type BucketProvider } from "./providers";

export const PROJECT = "saas-vps";

/** One S3 bucket from its six keys (config/buckets.ts): the backup bucket, the uploads bucket. */
export interface BucketConfig {
  /** Where the bucket lives; may differ from the server's provider (off-provider backups). */
  provider: BucketProvider;
  region: string;
  /** S3 endpoint URL; derived for digitalocean and hetzner. */
  endpoint: string;
  /** Bucket name; undefined means "derive from project and stack". */
  name?: string;
  /** Given for hetzner and s3 (Hetzner's API cannot mint S3 keys); created for digitalocean. */
  accessKeyId?: string;
  /** Secret: the component wraps it with pulumi.secret. */
  secretAccessKey?: string;
}

/** Where uploaded files live: the data volume of the one server (mvp), or the uploads bucket. */
export type UploadsConfig = { storage: "volume" } | { storage: "bucket"; bucket: BucketConfig };

/** Where alerts go: both routes DigitalOcean's alerts support, either or both set. */
export interface AlertRoute {
  /** Addresses verified on the DigitalOcean account; empty when unset. */
  emails: string[];
  /** alertWebhookUrl as a Slack incoming webhook (secret: the component wraps it). */
  slack?: { url: string; channel: string };
}

/** Thresholds of the alerts (config/monitoring.ts has their ranges). */
export interface AlertThresholds {
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  certificateDays: number;
}

/** Who watches the stack from outside, and where its alerts go. */
export type MonitoringConfig = { service: "none" } | { service: Exclude<MonitoringService, "none">; route: AlertRoute; thresholds: AlertThresholds };

/** Keys the parser folds into `backupBucket`, `uploads` and `monitoring`, and the ones it resolves per provider or stage. */
type BucketKeys = BucketKeyNames[BucketField] | "uploadsStorage";
type MonitoringKeys = "monitoring" | "alertEmails" | "alertSlackChannel" | "alertCpuPercent" | "alertMemoryPercent" | "alertDiskPercent" | "alertCertificateDays";
type ResolvedKeys =
  | "region"
  | "serverType"
  | "webServerType"
  | "workerServerType"
  | "dbServerType"
  | "replicaServerType"
  | "cacheServerType"
  | "privateNetworkCidr"
  | "privateNetworkZone"
  | "databaseMode"
  | "managedDatabaseSize"
  | "managedReplicaSize"
  | "criticalWorkerInstances"
  | "criticalTasks";

/** A server type and its memory (PostgreSQL's tuning and the VM's size follow it). */
export interface ServerChoice {
  serverType: string;
  memoryMiB: number;
}

/** The servers a stage may have, each with its type; in `mvp` all three name the one server's type. */
export interface ServerChoices {
  web: ServerChoice;
  worker: ServerChoice;
  db: ServerChoice;
  /** The read replica's server (replicaServerType, default the db server's type); unused with a managed database. */
  replica: ServerChoice;
  /** The cache server of stage scaled (cacheServerType, default the provider's defaultCacheServerType). */
  cache: ServerChoice;
}

export interface PrivateNetworkConfig {
  /** RFC 1918 IPv4 network, /16 to /24. */
  cidr: string;
  /** Hetzner's network zone (holds the location); undefined on DigitalOcean. */
  zone?: string;
}

/** Worker processes of their own for the critical tasks (config/workers.ts); none when instances is 0. */
export interface CriticalWorkersConfig {
  /** worker-critical@ processes on the server that runs the workers; 0: every worker runs every task. */
  instances: number;
  /** The app's task names they run, and the other workers do not. */
  tasks: string[];
}

/**
 * Where PostgreSQL runs. A managed cluster with readReplica has `replicaSize`: the node size of its
 * read-only node (DigitalOcean's DatabaseReplica); a replica on a server has its server type in `servers.replica`.
 */
export type DatabaseConfig = { mode: "server" } | { mode: "managed"; size: string; replicaSize?: string };

/** Keys whose value may be undefined become optional properties. */
type OptionalWhenUndefined<T> = { [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined> } & {
  [K in keyof T as undefined extends T[K] ? never : K]: T[K];
};

/** The parsed stack config: each key's value as its parser in config/keys.ts returns it, plus what joins keys. */
export type StackConfig = OptionalWhenUndefined<Omit<KeyValues, BucketKeys | ResolvedKeys | MonitoringKeys>> & {
  /** The provider's location; its default when unset. */
  region: string;
  /** The provider's server type; its default when unset. */
  serverType: string;
  /** Memory of `serverType`, for PostgreSQL tuning. */
  serverMemoryMiB: number;
  /** Each server's type from stage separated on (web/worker/dbServerType, default serverType). */
  servers: ServerChoices;
  /** The private network; only in stages that split servers. */
  privateNetwork?: PrivateNetworkConfig;
  /** Where PostgreSQL runs; always `server` in mvp. */
  database: DatabaseConfig;
  backupBucket: BucketConfig;
  uploads: UploadsConfig;
  monitoring: MonitoringConfig;
  criticalWorkers: CriticalWorkersConfig;
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

export interface ParseOptions {
  /**
   * Keys Pulumi holds as secrets. When given, a credential key (SECRET_KEYS) set in plain
   * text is an error, so credentials never sit readable in a stack file or in state.
   */
  secretKeys?: ReadonlySet<string>;
  /** Provider credentials (PROVIDER_TOKEN_KEYS, full keys) the stack sets in plain text: each is an error too. */
  plaintextProviderTokens?: readonly string[];
}

/**
 * The cloud providers' API tokens, which live in the providers' own config namespaces: with
 * either, anyone who reads the stack file controls the account.
 */
export const PROVIDER_TOKEN_KEYS = ["hcloud:token", "digitalocean:token"] as const;

/**
 * The app's metrics ports (provisioning/layout.ts, metricsPorts) must each be free: not a web
 * instance's port, not one of the ports reserved on every server, and inside the port range.
 */
function reportMetricsPorts(v: Partial<KeyValues>, critical: number | undefined, problems: Problems): void {
  if (v.metricsPortOffset === undefined || v.webInstances === undefined || v.workerInstances === undefined || critical === undefined) return;
  const web = webPorts(v.webInstances);
  const taken = new Set([...web, ...(surgePortFor(web) === undefined ? [] : [surgePortFor(web)!]), ...RESERVED_PORTS, NODE_EXPORTER_PORT]);
  const ports = metricsPorts(v.metricsPortOffset, web, v.workerInstances, critical);
  const clash = ports.filter((p) => taken.has(p));
  const over = ports.filter((p) => p > 65535);
  if (clash.length === 0 && over.length === 0) return;
  const why = [...(clash.length ? [`${clash.join(", ")} already taken (web ports, ${[...RESERVED_PORTS, NODE_EXPORTER_PORT].join(", ")})`] : []), ...(over.length ? [`${over.join(", ")} past 65535`] : [])];
  problems.add("metricsPortOffset", `gives metrics ports ${Math.min(...ports)}-${Math.max(...ports)} (offset + web ports ${web[0]}-${web[web.length - 1]}, offset + worker numbers 1-${v.workerInstances}${critical > 0 ? ` and critical worker numbers ${CRITICAL_WORKER_FIRST_ID}-${CRITICAL_WORKER_FIRST_ID + critical - 1}` : ""}), of which ${why.join("; ")}; pick an offset that keeps them clear, e.g. ${DEFAULT_METRICS_PORT_OFFSET}; got ${v.metricsPortOffset}`);
}

/** Collects problems; each is prefixed with the full key as the user types it. */
class Problems {
  readonly lines: string[] = [];
  add(key: string, message: string): void {
    this.lines.push(`${PROJECT}:${key}: ${message}`);
  }
  /** A key of another namespace (`hcloud:token`), named as it is. */
  addForeign(fullKey: string, message: string): void {
    this.lines.push(`${fullKey}: ${message}`);
  }
}

export function parseStackConfig(raw: Record<string, string>, options: ParseOptions = {}): StackConfig {
  const problems = new Problems();
  reportUnknownKeys(raw, problems);
  if (options.secretKeys) reportPlaintextSecrets(raw, options.secretKeys, problems);
  for (const key of options.plaintextProviderTokens ?? []) {
    problems.addForeign(key, `is the provider's API token and is stored in plain text; set it with: pulumi config set --secret ${key} <token>`);
  }
  const v = parseEachKey(raw, problems);
  if (v.stage) for (const [key, line] of keysOutsideStage(raw, v.stage)) problems.add(key, line);

  const region = v.provider ? parseRegion(v.region, v.provider, problems) : undefined;
  const serverType = v.provider ? parseServerType("serverType", v.serverType, v.provider, MIN_MEMORY_MIB, problems) : undefined;
  const servers = v.provider && serverType ? parseServerChoices(v, v.provider, serverType, problems) : undefined;
  const privateNetwork = v.provider && v.stage && SPLIT_STAGES.includes(v.stage) && region ? parsePrivateNetwork(v, v.provider, region, problems) : undefined;
  const database = v.provider ? parseDatabase(v, v.provider, problems) : undefined;
  reportMoveConflicts(v, problems);
  reportReplicaConflicts(raw, v, problems);
  reportPlainHttp(raw, v, problems);
  if (v.domain && !raw.acmeEmail) {
    problems.add("acmeEmail", `is required when saas-vps:domain is set (Let's Encrypt needs a contact); domain is ${quote(v.domain)}`);
  }
  if (v.stripeWebhookSecret && !raw.stripeSecretKey) {
    problems.add("stripeSecretKey", "is required when saas-vps:stripeWebhookSecret is set (the app verifies webhooks with the Stripe library, which needs the key)");
  }
  // The backup's ping after every good backup would keep a dead-man's check green while a server is red.
  if (v.watchdogHeartbeatUrl !== undefined && v.watchdogHeartbeatUrl === v.backupHeartbeatUrl) {
    problems.add("watchdogHeartbeatUrl", "is the same URL as saas-vps:backupHeartbeatUrl; each nightly backup would then report the watchdog's checks green: give each its own dead-man's check");
  }
  const criticalWorkers = parseCriticalWorkers(raw, v, problems);
  reportMetricsPorts(v, criticalWorkers?.instances, problems);
  if (v.stage && SPLIT_STAGES.includes(v.stage) && v.workerInstances === 0) {
    problems.add("workerInstances", `must be 1-16 at stage ${v.stage}: the worker has a server of its own there, which would run nothing; got 0`);
  }
  const backupBucket = v.provider ? parseBucket("backup", raw, v, v.provider, problems) : undefined;
  const uploads = v.provider && v.stage ? parseUploads(raw, v, v.provider, v.stage, problems) : undefined;
  const monitoring = parseMonitoring(raw, v, problems);

  if (problems.lines.length > 0) throw new ConfigError(problems.lines);
  return {
    provider: v.provider!,
    stage: v.stage!,
    region: region!,
    serverType: serverType!,
    serverMemoryMiB: CATALOGS[v.provider!].serverTypes[serverType!].memoryMiB,
    servers: servers!,
    ...(privateNetwork ? { privateNetwork } : {}),
    database: database!,
    mvpDatabase: v.mvpDatabase,
    domain: v.domain,
    plainHttp: v.plainHttp!,
    acmeEmail: v.acmeEmail,
    sshPublicKeys: v.sshPublicKeys!,
    sshAllowedCidrs: v.sshAllowedCidrs!,
    appServers: v.appServers!,
    siteAddress: v.siteAddress,
    readReplica: v.readReplica!,
    webInstances: v.webInstances!,
    workerInstances: v.workerInstances!,
    backupSchedule: v.backupSchedule!,
    backupRetentionDays: v.backupRetentionDays!,
    restoreDrillSchedule: v.restoreDrillSchedule!,
    backupBucket: backupBucket!,
    uploads: uploads!,
    monitoring: monitoring!,
    criticalWorkers: criticalWorkers!,
    alertWebhookUrl: v.alertWebhookUrl,
    backupHeartbeatUrl: v.backupHeartbeatUrl,
    watchdogHeartbeatUrl: v.watchdogHeartbeatUrl,
    watchdogDiskPercent: v.watchdogDiskPercent!,
    watchdogMemoryPercent: v.watchdogMemoryPercent!,
    watchdogLoadPercent: v.watchdogLoadPercent!,
    watchdogCertificateDays: v.watchdogCertificateDays!,
    watchdogBackupMaxAgeHours: v.watchdogBackupMaxAgeHours!,
    watchdogDrillMaxAgeDays: v.watchdogDrillMaxAgeDays!,
    sshPrivateKey: v.sshPrivateKey,
    smtpUrl: v.smtpUrl,
    mailFrom: v.mailFrom,
    sentryDsn: v.sentryDsn,
    metricsPortOffset: v.metricsPortOffset!,
    stripeSecretKey: v.stripeSecretKey,
    stripeWebhookSecret: v.stripeWebhookSecret,
    appDir: v.appDir!,
    appBuildCommand: v.appBuildCommand!,
  };
}

/** Every key through its own parser; a key with problems is left undefined. */
function parseEachKey(raw: Record<string, string>, problems: Problems): Partial<KeyValues> {
  const values: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of KNOWN_KEYS) {
    const parsed = (KEYS[key] as KeySpec<unknown>).parse(raw[key]);
    if (parsed.ok) values[key] = parsed.value;
    else for (const line of parsed.problems) problems.add(key, line);
  }
  return values as Partial<KeyValues>;
}

function reportUnknownKeys(raw: Record<string, string>, problems: Problems): void {
  for (const key of Object.keys(raw)) {
    if ((KNOWN_KEYS as readonly string[]).includes(key)) continue;
    const suggestion = closest(key, KNOWN_KEYS);
    problems.add(key, `unknown key${suggestion ? `; did you mean saas-vps:${suggestion}?` : `; known keys: ${KNOWN_KEYS.join(", ")}`}`);
  }
}

/**
 * Without a domain there is no certificate, and the site is plain HTTP: logins send passwords and
 * every request a session token in clear. That is allowed only when the stack says so.
 */
function reportPlainHttp(raw: Record<string, string>, v: Partial<KeyValues>, problems: Problems): void {
  if (v.plainHttp === undefined) return; // refused by its own parser
  // A domain set but refused has its own line already.
  if (!raw.domain && !v.plainHttp) {
    problems.add(
      "domain",
      "is unset, so the site would be plain HTTP on the server's IP and send passwords and session tokens unencrypted; set domain (and acmeEmail) for HTTPS, or accept an unencrypted site with saas-vps:plainHttp: true",
    );
  }
  if (v.domain !== undefined && v.plainHttp) {
    problems.add("plainHttp", `is only for a stack without saas-vps:domain; with domain ${quote(v.domain)} the site is HTTPS (plain HTTP only redirects): remove the key`);
  }
}

/** What `pulumi preview` and `npm run render` print about a valid config that is nonetheless unsafe. */
export function configWarnings(config: Pick<StackConfig, "plainHttp" | "monitoring">): string[] {
  const warnings: string[] = [];
  if (config.plainHttp) {
    warnings.push(`${PROJECT}:plainHttp is true: the site is UNENCRYPTED HTTP on the server's IP; passwords and session tokens cross the network in clear. Set ${PROJECT}:domain and ${PROJECT}:acmeEmail for HTTPS.`);
  }
  if (config.monitoring.service === "none") {
    warnings.push(
      `${PROJECT}:monitoring is none: NOTHING watches this stack from outside. A site that is down, a server that is gone or a certificate about to expire alerts nobody. ` +
        `Set ${PROJECT}:monitoring to digitalocean with ${PROJECT}:alertEmails and/or ${PROJECT}:alertWebhookUrl.`,
    );
  }
  return warnings;
}

/**
 * The critical workers: their count (default per stage) and tasks (default the reference app's).
 * A task list with no process to run it would change nothing, so it is refused (as other keys
 * that would change nothing are), rather than warned about: a stack that meant to isolate its
 * mail and left the count at 0 hears it at once. Critical workers with no other worker would
 * leave every other task to no one.
 */
function parseCriticalWorkers(raw: Record<string, string>, v: Partial<KeyValues>, problems: Problems): CriticalWorkersConfig | undefined {
  if (!v.stage || (raw.criticalWorkerInstances !== undefined && v.criticalWorkerInstances === undefined)) return undefined; // refused by its own parser
  const instances = v.criticalWorkerInstances ?? DEFAULT_CRITICAL_WORKER_INSTANCES[v.stage];
  if (instances === 0 && raw.criticalTasks !== undefined) {
    problems.add(
      "criticalTasks",
      `is only for saas-vps:criticalWorkerInstances 1 or more; criticalWorkerInstances is 0${raw.criticalWorkerInstances === undefined ? ` (the default in stage ${v.stage})` : ""}, so every worker runs every task and nothing would use the list: set criticalWorkerInstances or remove the key`,
    );
  }
  if (instances > 0 && v.workerInstances === 0) {
    problems.add(
      "criticalWorkerInstances",
      `is ${instances}${raw.criticalWorkerInstances === undefined ? ` (the default in stage ${v.stage})` : ""} but saas-vps:workerInstances is 0: the critical workers run only criticalTasks, so every other task would run nowhere; set workerInstances to 1 or more, or criticalWorkerInstances to 0`,
    );
  }
  if (raw.criticalTasks !== undefined && v.criticalTasks === undefined) return undefined;
  return { instances, tasks: [...(v.criticalTasks ?? DEFAULT_CRITICAL_TASKS)] };
}

/** The keys that tune DigitalOcean's resource alerts, which exist for droplets only. */
const RESOURCE_ALERT_KEYS = ["alertCpuPercent", "alertMemoryPercent", "alertDiskPercent"] as const;

/**
 * Who watches the stack and where alerts go. Watching is the default, so a stack must name a
 * route for it or turn it off in so many words; a key that would change nothing is refused.
 */
function parseMonitoring(raw: Record<string, string>, v: Partial<KeyValues>, problems: Problems): MonitoringConfig | undefined {
  if (v.monitoring === undefined) return undefined; // refused by its own parser
  const routeKeys = ["alertEmails", "alertSlackChannel", ...RESOURCE_ALERT_KEYS, "alertCertificateDays"] as const;
  if (v.monitoring === "none") {
    for (const key of routeKeys) {
      if (raw[key] !== undefined) problems.add(key, `is only for saas-vps:monitoring digitalocean; monitoring is none, so nothing would use it: remove the key or set monitoring to digitalocean`);
    }
    return { service: "none" };
  }
  const webhook = v.alertWebhookUrl;
  // A key set but refused has its own line already.
  if (!v.alertEmails && !raw.alertEmails && !raw.alertWebhookUrl) {
    problems.add(
      "monitoring",
      `is ${v.monitoring} (the default), which checks the site and alerts, but no alert route is set: set saas-vps:alertEmails (addresses verified on the DigitalOcean account) and/or saas-vps:alertWebhookUrl (a Slack incoming webhook), or turn watching off with saas-vps:monitoring: none`,
    );
  }
  if (raw.alertSlackChannel !== undefined && !raw.alertWebhookUrl) {
    problems.add("alertSlackChannel", "is the channel of DigitalOcean's alerts to saas-vps:alertWebhookUrl, which is unset: set alertWebhookUrl or remove the key");
  }
  if (v.provider === "hetzner") {
    for (const key of RESOURCE_ALERT_KEYS) {
      if (raw[key] !== undefined) {
        problems.add(key, `is for provider digitalocean only: DigitalOcean's resource alerts watch droplets, and Hetzner Cloud has no alerting API; remove the key`);
      }
    }
  }
  if (raw.alertCertificateDays !== undefined && !raw.domain) {
    problems.add("alertCertificateDays", "is only for a stack with saas-vps:domain: without one the site has no certificate to expire; remove the key");
  }
  if (!v.alertEmails && !webhook) return undefined;
  if (v.alertSlackChannel === undefined || v.alertCpuPercent === undefined || v.alertMemoryPercent === undefined || v.alertDiskPercent === undefined || v.alertCertificateDays === undefined) return undefined;
  return {
    service: v.monitoring,
    route: { emails: v.alertEmails ?? [], ...(webhook ? { slack: { url: webhook, channel: v.alertSlackChannel } } : {}) },
    thresholds: { cpuPercent: v.alertCpuPercent, memoryPercent: v.alertMemoryPercent, diskPercent: v.alertDiskPercent, certificateDays: v.alertCertificateDays },
  };
}

function reportPlaintextSecrets(raw: Record<string, string>, secretKeys: ReadonlySet<string>, problems: Problems): void {
  for (const key of SECRET_KEYS) {
    if (raw[key] !== undefined && !secretKeys.has(key)) {
      problems.add(key, `is a credential and is stored in plain text; set it with: pulumi config set --secret saas-vps:${key} <value>`);
    }
  }
}

function parseRegion(given: string | undefined, provider: Provider, problems: Problems): string | undefined {
  const catalog = CATALOGS[provider];
  const region = given ?? catalog.defaultRegion;
  if (catalog.regions.includes(region)) return region;
  problems.add("region", `${quote(region)} is not a ${catalog.title} ${catalog.regionWord}; use one of ${catalog.regions.join(", ")}`);
  return undefined;
}

function parseServerType(key: ConfigKey, given: string | undefined, provider: Provider, minMemoryMiB: number, problems: Problems): string | undefined {
  const catalog = CATALOGS[provider];
  const name = given ?? catalog.defaultServerType;
  const type = catalog.serverTypes[name];
  if (!type) {
    const suggestion = closest(name, Object.keys(catalog.serverTypes));
    problems.add(
      key,
      `${quote(name)} is not a ${catalog.title} server type${suggestion ? ` (did you mean ${suggestion}?)` : ""}; use one of ${Object.keys(catalog.serverTypes).join(", ")}`,
    );
    return undefined;
  }
  if (type.memoryMiB < minMemoryMiB) {
    const needs =
      key === "cacheServerType" ? "the cache server (Valkey gets half of it) needs" : minMemoryMiB >= MIN_MEMORY_MIB ? "PostgreSQL" + (key === "serverType" ? ", nginx and the app need" : " needs") : "the app's processes need";
    problems.add(key, `${quote(name)} has ${type.memoryMiB} MiB of memory; ${needs} at least ${minMemoryMiB} MiB`);
    return undefined;
  }
  return name;
}

/** Each server's type: the per-role key when set (split stages only), else serverType. */
function parseServerChoices(v: Partial<KeyValues>, provider: Provider, serverType: string, problems: Problems): ServerChoices | undefined {
  const choose = (key: "webServerType" | "workerServerType" | "dbServerType" | "replicaServerType" | "cacheServerType", minMemoryMiB: number, fallback = serverType): ServerChoice | undefined => {
    const name = v[key] === undefined ? fallback : parseServerType(key, v[key], provider, minMemoryMiB, problems);
    return name === undefined ? undefined : { serverType: name, memoryMiB: CATALOGS[provider].serverTypes[name].memoryMiB };
  };
  const web = choose("webServerType", MIN_APP_MEMORY_MIB);
  const worker = choose("workerServerType", MIN_APP_MEMORY_MIB);
  const db = choose("dbServerType", MIN_MEMORY_MIB);
  // A standby replays everything its primary writes: it gets the primary's type unless told otherwise.
  const replica = v.replicaServerType === undefined ? db : choose("replicaServerType", MIN_MEMORY_MIB);
  // The cache holds nothing that cannot be rebuilt: the provider's cheapest fitting type, not serverType.
  const cache = choose("cacheServerType", MIN_CACHE_MEMORY_MIB, CATALOGS[provider].defaultCacheServerType);
  return web && worker && db && replica && cache ? { web, worker, db, replica, cache } : undefined;
}

function parsePrivateNetwork(v: Partial<KeyValues>, provider: Provider, region: string, problems: Problems): PrivateNetworkConfig | undefined {
  if (v.privateNetworkCidr === undefined) return undefined;
  if (provider !== "hetzner") {
    if (v.privateNetworkZone !== undefined) problems.add("privateNetworkZone", `is for provider hetzner only (a DigitalOcean VPC lives in the droplets' region); remove it`);
    return { cidr: v.privateNetworkCidr };
  }
  const zone = hetznerZoneOf(region)!;
  const given = v.privateNetworkZone;
  if (given !== undefined && given !== zone) {
    const known = Object.keys(HETZNER_NETWORK_ZONES);
    problems.add(
      "privateNetworkZone",
      known.includes(given)
        ? `${quote(given)} does not contain location ${region} (its zone is ${zone}); servers join a subnet only in their zone's locations (${given}: ${HETZNER_NETWORK_ZONES[given].join(", ")})`
        : `${quote(given)} is not a Hetzner network zone; use one of ${known.join(", ")} (location ${region} is in ${zone})`,
    );
    return undefined;
  }
  return { cidr: v.privateNetworkCidr, zone };
}

function parseDatabase(v: Partial<KeyValues>, provider: Provider, problems: Problems): DatabaseConfig | undefined {
  const mode = v.databaseMode ?? "server";
  if (mode === "server") {
    if (v.managedDatabaseSize !== undefined) problems.add("managedDatabaseSize", `is only for saas-vps:databaseMode managed; databaseMode is server`);
    return { mode };
  }
  if (provider !== "digitalocean") {
    problems.add("databaseMode", `"managed" is DigitalOcean Managed PostgreSQL; Hetzner has no managed PostgreSQL, so use databaseMode server (its own server) there`);
    return undefined;
  }
  const size = v.managedDatabaseSize ?? DEFAULT_MANAGED_DATABASE_SIZE;
  if (!v.readReplica) return { mode, size };
  const replicaSize = v.managedReplicaSize ?? size;
  // DigitalOcean refuses a read-only node smaller than its cluster (and grows one only upwards).
  if (MANAGED_DATABASE_SIZES.indexOf(replicaSize as never) < MANAGED_DATABASE_SIZES.indexOf(size as never)) {
    const allowed = MANAGED_DATABASE_SIZES.slice(MANAGED_DATABASE_SIZES.indexOf(size as never));
    problems.add("managedReplicaSize", `must be at least the cluster's size (saas-vps:managedDatabaseSize ${size}): DigitalOcean makes no read-only node smaller than its cluster; use one of ${allowed.join(", ")}; got ${quote(replicaSize)}`);
    return undefined;
  }
  return { mode, size, replicaSize };
}

/**
 * While a stack moves from mvp (mvpDatabase set), the app server is the old mvp server with its
 * PostgreSQL: it keeps its type (resizing it would stop it in the middle of the move), and the
 * data moves onto a db server of this stack (restore-app), not a managed cluster.
 */
function reportMoveConflicts(v: Partial<KeyValues>, problems: Problems): void {
  if (v.mvpDatabase === undefined) return;
  if (v.databaseMode === "managed") {
    problems.add("mvpDatabase", `moving an mvp stack is built for saas-vps:databaseMode server (the backup is restored onto the db server); databaseMode is managed`);
  }
  if (v.webServerType !== undefined && v.webServerType !== v.serverType) {
    problems.add(
      "webServerType",
      `must stay unset (or equal serverType) while saas-vps:mvpDatabase is set: the app server is the old mvp server, which keeps serverType and its PostgreSQL until the move is retired; got ${quote(v.webServerType)}`,
    );
  }
}

/**
 * A read replica is a server streaming from the stack's db server (databaseMode server, sized by
 * replicaServerType), or a read-only node of the managed cluster (databaseMode managed, sized by
 * managedReplicaSize: DigitalOcean runs it, there is no server to choose). A key that would
 * change nothing is refused.
 */
function reportReplicaConflicts(raw: Record<string, string>, v: Partial<KeyValues>, problems: Problems): void {
  const managed = v.databaseMode === "managed";
  if (raw.replicaServerType !== undefined && v.readReplica === false) {
    problems.add("replicaServerType", `is only for saas-vps:readReplica true; this stack has no replica, so nothing would use it: remove the key or set readReplica to true; got ${quote(raw.replicaServerType)}`);
  } else if (raw.replicaServerType !== undefined && managed) {
    problems.add(
      "replicaServerType",
      `is only for saas-vps:databaseMode server (a replica on a server of its own); with databaseMode managed the replica is a read-only node of the cluster, which has a node size: remove the key and set saas-vps:managedReplicaSize (one of ${MANAGED_DATABASE_SIZES.join(", ")}) if the cluster's size is not right; got ${quote(raw.replicaServerType)}`,
    );
  }
  if (raw.managedReplicaSize === undefined) return;
  // A databaseMode set but refused has its own line already.
  const modeRefused = raw.databaseMode !== undefined && v.databaseMode === undefined;
  if (v.readReplica === false) {
    problems.add("managedReplicaSize", `is only for saas-vps:readReplica true; this stack has no replica, so nothing would use it: remove the key or set readReplica to true; got ${quote(raw.managedReplicaSize)}`);
  } else if (!managed && !modeRefused) {
    problems.add("managedReplicaSize", `is only for saas-vps:databaseMode managed (a read-only node of the cluster); databaseMode is ${v.databaseMode ?? "server"}, where saas-vps:replicaServerType sizes the replica's server: remove the key; got ${quote(raw.managedReplicaSize)}`);
  }
}

/**
 * Where uploads live. A stage with several app servers has no disk they share, so there the
 * bucket is the only choice; the bucket's keys are refused while uploads stay on the volume.
 */
function parseUploads(raw: Record<string, string>, v: Partial<KeyValues>, serverProvider: Provider, stage: Stage, problems: Problems): UploadsConfig | undefined {
  // Set but refused: its parser has said why.
  if (raw.uploadsStorage !== undefined && v.uploadsStorage === undefined) return undefined;
  const split = SPLIT_STAGES.includes(stage);
  const storage = v.uploadsStorage ?? (split ? "bucket" : "volume");
  if (storage === "volume") {
    if (split) {
      problems.add(
        "uploadsStorage",
        `"volume" keeps uploads on one server's disk, but in stage ${stage} the web and worker processes run on different servers that share no disk; use bucket (the default from separated on)`,
      );
    }
    for (const key of Object.values(bucketKeyNames("uploads"))) {
      if (raw[key] !== undefined) problems.add(key, `is only for saas-vps:uploadsStorage bucket; uploads are kept on the data volume here (uploadsStorage is volume): remove the key or set uploadsStorage to bucket`);
    }
    return split ? undefined : { storage };
  }
  // The app holds this key on every app server: with the backup bucket's, it could delete the backups.
  if (v.uploadsAccessKeyId !== undefined && v.uploadsAccessKeyId === v.backupAccessKeyId) {
    problems.add("uploadsAccessKeyId", `is the backup bucket's key (saas-vps:backupAccessKeyId); the app holds this key, and with it could read and delete the backups: give the uploads bucket a key of its own`);
  }
  const bucket = parseBucket("uploads", raw, v, serverProvider, problems);
  return bucket === undefined ? undefined : { storage, bucket };
}

/** One bucket from its six keys, named by `prefix` (config/buckets.ts); problems name the key. */
function parseBucket(prefix: BucketPrefix, raw: Record<string, string>, v: Partial<KeyValues>, serverProvider: Provider, problems: Problems): BucketConfig | undefined {
  const keys = bucketKeyNames(prefix);
  // Set but refused: its parser has said why.
  if (raw[keys.provider] !== undefined && v[keys.provider] === undefined) return undefined;
  const provider = v[keys.provider] ?? serverProvider;
  const name = v[keys.name];
  const accessKeyId = v[keys.accessKeyId];
  const secretAccessKey = v[keys.secretAccessKey];
  if (provider !== "digitalocean") {
    const why = provider === "hetzner" ? "Hetzner's API cannot create S3 keys; make them in the Hetzner console" : "an existing S3-compatible bucket needs its keys";
    // A key set but refused has its own line already.
    if (!accessKeyId && !raw[keys.accessKeyId]) problems.add(keys.accessKeyId, `is required when saas-vps:${keys.provider} is ${provider} (${why})`);
    if (!secretAccessKey && !raw[keys.secretAccessKey]) problems.add(keys.secretAccessKey, `is required when saas-vps:${keys.provider} is ${provider} (${why}); set it with --secret`);
  }
  const location = parseBucketLocation(keys, raw, provider, serverProvider, problems);
  if (location === undefined) return undefined;
  return { provider, name, accessKeyId, secretAccessKey, ...location };
}

function parseBucketLocation(
  keys: BucketKeyNames,
  raw: Record<string, string>,
  provider: BucketProvider,
  serverProvider: Provider,
  problems: Problems,
): { region: string; endpoint: string } | undefined {
  const region = raw[keys.region];
  const endpoint = raw[keys.endpoint];
  switch (provider) {
    case "digitalocean":
    case "hetzner": {
      const allowed: readonly string[] = provider === "digitalocean" ? SPACES_REGIONS : HETZNER_OBJECT_STORAGE_LOCATIONS;
      const serverRegion = serverProvider === provider ? raw.region ?? CATALOGS[provider].defaultRegion : undefined;
      const chosen = region ?? (serverRegion && allowed.includes(serverRegion) ? serverRegion : allowed.includes("fra1") ? "fra1" : "fsn1");
      if (!allowed.includes(chosen)) {
        problems.add(keys.region, `${quote(chosen)} has no ${provider === "digitalocean" ? "Spaces" : "Hetzner Object Storage"}; use one of ${allowed.join(", ")}`);
        return undefined;
      }
      if (endpoint !== undefined) {
        problems.add(keys.endpoint, `is only for ${keys.provider} s3; ${provider} endpoints are derived from the region`);
        return undefined;
      }
      const derived = provider === "digitalocean" ? `https://${chosen}.digitaloceanspaces.com` : `https://${chosen}.your-objectstorage.com`;
      return { region: chosen, endpoint: derived };
    }
    case "s3": {
      if (!endpoint || !isHttpUrl(endpoint)) {
        problems.add(keys.endpoint, `is required for ${keys.provider} s3 and must be an http(s) URL such as https://s3.eu-central-1.amazonaws.com; got ${quote(endpoint ?? "")}`);
        return undefined;
      }
      if (!raw[keys.name]) {
        problems.add(keys.name, `is required for ${keys.provider} s3 (an existing bucket)`);
        return undefined;
      }
      return { region: region ?? "us-east-1", endpoint };
    }
    default: {
      const unreachable: never = provider;
      throw new Error(`unhandled bucket provider ${unreachable}`);
    }
  }
}
