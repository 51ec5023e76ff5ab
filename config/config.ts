/**
 * The stack config contract (`saas-vps:<key>`), parsed and validated in one pure pass.
 *
 * `raw` maps short keys to the strings Pulumi stores (JSON text for lists, objects, numbers).
 * Every problem is collected and thrown once as a ConfigError, one line per problem, each
 * line starting with `saas-vps:<key>:` and saying what is allowed and what was given — so a
 * user fixes a stack file in one round instead of one key per `pulumi up`.
 */
import { checkOnCalendar } from "./onCalendar";
import { CATALOGS, MIN_MEMORY_MIB, PROVIDERS, type Provider } from "./providers";
import {
  BUCKET_NAME_RULE,
  cidrNetwork,
  closest,
  formatCidr,
  isEmail,
  isHostname,
  isBucketName,
  isIpAddress,
  isHttpUrl,
  parseIntegerText,
  parseCidr,
  parseJsonStringList,
  parseSshPublicKey,
  sshKeyIdentity,
  quote,
} from "./validators";

export const PROJECT = "saas-vps";

export const STAGES = ["mvp", "separated", "scaled"] as const;
export type Stage = (typeof STAGES)[number];
/** Stages the planner can build today; the others are designed but not yet built. */
export const BUILT_STAGES: readonly Stage[] = ["mvp"];

export const BUCKET_PROVIDERS = ["digitalocean", "hetzner", "s3"] as const;
export type BucketProvider = (typeof BUCKET_PROVIDERS)[number];

/** Hetzner Object Storage locations (S3 endpoint https://<location>.your-objectstorage.com). */
export const HETZNER_OBJECT_STORAGE_LOCATIONS = ["fsn1", "nbg1", "hel1"] as const;
/** DigitalOcean regions with Spaces. */
export const SPACES_REGIONS = ["nyc3", "sfo2", "sfo3", "ams3", "sgp1", "fra1", "syd1", "blr1", "lon1", "atl1", "tor1"] as const;

export interface BackupBucketConfig {
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

export interface StackConfig {
  provider: Provider;
  stage: Stage;
  region: string;
  serverType: string;
  /** Memory of `serverType`, for PostgreSQL tuning. */
  serverMemoryMiB: number;
  domain?: string;
  acmeEmail?: string;
  sshPublicKeys: string[];
  sshAllowedCidrs: string[];
  webInstances: number;
  workerInstances: number;
  backupSchedule: string;
  backupRetentionDays: number;
  restoreDrillSchedule: string;
  backupBucket: BackupBucketConfig;
  /** Secret: alert webhook for failed backups and drills. */
  alertWebhookUrl?: string;
  /** Optional dead-man's-switch URL pinged after each good backup. */
  backupHeartbeatUrl?: string;
  /** Secret: private key for day-2 pushes over SSH; without it the SSH agent is used. */
  sshPrivateKey?: string;
  /** Secret: the app's outgoing mail server (smtp:// or smtps:// with credentials). */
  smtpUrl?: string;
  /** Sender address of the app's mail. */
  mailFrom?: string;
  /** Secret: Sentry DSN for the app's error reports. */
  sentryDsn?: string;
  /** The app's source folder, relative to the project (default app/, the reference monolith). */
  appDir: string;
  /** Run in appDir; builds the release artifact and prints its path as the last stdout line. */
  appBuildCommand: string;
}

/** Keys whose values are credentials: they must be set with `pulumi config set --secret`. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(["backupSecretAccessKey", "alertWebhookUrl", "backupHeartbeatUrl", "sshPrivateKey", "smtpUrl", "sentryDsn"]);

export const KNOWN_KEYS = [
  "provider",
  "stage",
  "region",
  "serverType",
  "domain",
  "acmeEmail",
  "sshPublicKeys",
  "sshAllowedCidrs",
  "webInstances",
  "workerInstances",
  "backupSchedule",
  "backupRetentionDays",
  "restoreDrillSchedule",
  "backupBucketProvider",
  "backupBucketRegion",
  "backupBucketEndpoint",
  "backupBucketName",
  "backupAccessKeyId",
  "backupSecretAccessKey",
  "alertWebhookUrl",
  "backupHeartbeatUrl",
  "sshPrivateKey",
  "smtpUrl",
  "mailFrom",
  "sentryDsn",
  "appDir",
  "appBuildCommand",
] as const;
export type ConfigKey = (typeof KNOWN_KEYS)[number];

export const DEFAULTS = {
  stage: "mvp" as Stage,
  webInstances: 2,
  workerInstances: 1,
  backupSchedule: "*-*-* 03:00:00 UTC",
  backupRetentionDays: 14,
  restoreDrillSchedule: "Sun *-*-* 04:30:00 UTC",
  appDir: "app",
  appBuildCommand: "npm run --silent build",
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
}

/** Collects problems; each is prefixed with the full key as the user types it. */
class Problems {
  readonly lines: string[] = [];
  add(key: string, message: string): void {
    this.lines.push(`${PROJECT}:${key}: ${message}`);
  }
}

export function parseStackConfig(raw: Record<string, string>, options: ParseOptions = {}): StackConfig {
  const problems = new Problems();
  reportUnknownKeys(raw, problems);
  if (options.secretKeys) reportPlaintextSecrets(raw, options.secretKeys, problems);

  const provider = parseEnum(raw, "provider", PROVIDERS, undefined, problems);
  const stage = parseStage(raw, problems);
  const catalog = provider ? CATALOGS[provider] : undefined;
  const region = catalog ? parseRegion(raw, provider!, problems) : undefined;
  const serverType = catalog ? parseServerType(raw, provider!, problems) : undefined;

  const domain = parseOptional(raw, "domain", problems, (v) => {
    if (isIpAddress(v)) {
      return `${quote(v)} is an IP address: Let's Encrypt gives no certificate for it via HTTP-01; set a hostname whose DNS points at the server, or leave domain unset to serve plain HTTP on the IP`;
    }
    return isHostname(v) ? v : `must be a bare hostname such as app.example.com (no scheme, path, port or spaces); got ${quote(v)}`;
  });
  const acmeEmail = parseOptional(raw, "acmeEmail", problems, (v) =>
    isEmail(v) ? v : `must be an email address for Let's Encrypt notices; got ${quote(v)}`,
  );
  if (domain && !raw.acmeEmail) {
    problems.add("acmeEmail", `is required when saas-vps:domain is set (Let's Encrypt needs a contact); domain is ${quote(domain)}`);
  }

  const sshPublicKeys = parseSshKeys(raw, problems);
  const sshAllowedCidrs = parseCidrs(raw, problems);
  const webInstances = parseInteger(raw, "webInstances", 1, 16, DEFAULTS.webInstances, problems);
  const workerInstances = parseInteger(raw, "workerInstances", 0, 16, DEFAULTS.workerInstances, problems);
  const backupSchedule = parseSchedule(raw, "backupSchedule", DEFAULTS.backupSchedule, problems);
  const restoreDrillSchedule = parseSchedule(raw, "restoreDrillSchedule", DEFAULTS.restoreDrillSchedule, problems);
  const backupRetentionDays = parseInteger(raw, "backupRetentionDays", 1, 3650, DEFAULTS.backupRetentionDays, problems);
  const backupBucket = provider ? parseBackupBucket(raw, provider, problems) : undefined;
  const alertWebhookUrl = parseOptional(raw, "alertWebhookUrl", problems, (v) =>
    isHttpUrl(v) ? v : `must be an http(s) URL that accepts a JSON POST; got a value that is not one`,
  );
  const backupHeartbeatUrl = parseOptional(raw, "backupHeartbeatUrl", problems, (v) =>
    isHttpUrl(v) ? v : `must be an http(s) URL to ping after each good backup; got a value that is not one`,
  );

  const sshPrivateKey = parseOptional(raw, "sshPrivateKey", problems, (v) =>
    /^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v.trim()) ? v : "must be a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----); got something else",
  );

  const smtpUrl = parseOptional(raw, "smtpUrl", problems, (v) =>
    /^smtps?:\/\/[^\s]+$/.test(v) ? v : "must be an smtp:// or smtps:// URL such as smtps://user:pass@smtp.example.com:465; got a value that is not one",
  );
  const mailFrom = parseOptional(raw, "mailFrom", problems, (v) => (isEmail(v) ? v : `must be an email address; got ${quote(v)}`));
  const sentryDsn = parseOptional(raw, "sentryDsn", problems, (v) =>
    isHttpUrl(v) ? v : "must be a Sentry DSN URL such as https://key@o1.ingest.sentry.io/1; got a value that is not one",
  );

  const appDir = raw.appDir ?? DEFAULTS.appDir;
  if (appDir.trim() === "" || /[\0\n]/.test(appDir)) problems.add("appDir", `must be a folder path (relative to the project or absolute); got ${quote(appDir)}`);
  const appBuildCommand = raw.appBuildCommand ?? DEFAULTS.appBuildCommand;
  if (appBuildCommand.trim() === "") problems.add("appBuildCommand", "must be a command that builds the app and prints the artifact path last; got an empty value");

  if (problems.lines.length > 0) throw new ConfigError(problems.lines);
  return {
    provider: provider!,
    stage: stage!,
    region: region!,
    serverType: serverType!,
    serverMemoryMiB: CATALOGS[provider!].serverTypes[serverType!].memoryMiB,
    domain,
    acmeEmail,
    sshPublicKeys: sshPublicKeys!,
    sshAllowedCidrs: sshAllowedCidrs!,
    webInstances: webInstances!,
    workerInstances: workerInstances!,
    backupSchedule: backupSchedule!,
    backupRetentionDays: backupRetentionDays!,
    restoreDrillSchedule: restoreDrillSchedule!,
    backupBucket: backupBucket!,
    alertWebhookUrl,
    backupHeartbeatUrl,
    sshPrivateKey,
    smtpUrl,
    mailFrom,
    sentryDsn,
    appDir,
    appBuildCommand,
  };
}

function reportUnknownKeys(raw: Record<string, string>, problems: Problems): void {
  for (const key of Object.keys(raw)) {
    if ((KNOWN_KEYS as readonly string[]).includes(key)) continue;
    const suggestion = closest(key, KNOWN_KEYS);
    problems.add(key, `unknown key${suggestion ? `; did you mean saas-vps:${suggestion}?` : `; known keys: ${KNOWN_KEYS.join(", ")}`}`);
  }
}

function reportPlaintextSecrets(raw: Record<string, string>, secretKeys: ReadonlySet<string>, problems: Problems): void {
  for (const key of SECRET_KEYS) {
    if (raw[key] !== undefined && !secretKeys.has(key)) {
      problems.add(key, `is a credential and is stored in plain text; set it with: pulumi config set --secret saas-vps:${key} <value>`);
    }
  }
}

function parseEnum<T extends string>(
  raw: Record<string, string>,
  key: ConfigKey,
  allowed: readonly T[],
  fallback: T | undefined,
  problems: Problems,
): T | undefined {
  const value = raw[key];
  if (value === undefined) {
    if (fallback === undefined) problems.add(key, `is required; use one of ${allowed.join(", ")}`);
    return fallback;
  }
  if ((allowed as readonly string[]).includes(value)) return value as T;
  problems.add(key, `${quote(value)} is not allowed; use one of ${allowed.join(", ")}`);
  return undefined;
}

function parseStage(raw: Record<string, string>, problems: Problems): Stage | undefined {
  const stage = parseEnum(raw, "stage", STAGES, DEFAULTS.stage, problems);
  if (stage && !BUILT_STAGES.includes(stage)) {
    problems.add("stage", `${quote(stage)} is planned but not built yet; use ${BUILT_STAGES.join(", ")} for now`);
    return undefined;
  }
  return stage;
}

function parseRegion(raw: Record<string, string>, provider: Provider, problems: Problems): string | undefined {
  const catalog = CATALOGS[provider];
  const region = raw.region ?? catalog.defaultRegion;
  if (catalog.regions.includes(region)) return region;
  problems.add("region", `${quote(region)} is not a ${catalog.title} ${catalog.regionWord}; use one of ${catalog.regions.join(", ")}`);
  return undefined;
}

function parseServerType(raw: Record<string, string>, provider: Provider, problems: Problems): string | undefined {
  const catalog = CATALOGS[provider];
  const name = raw.serverType ?? catalog.defaultServerType;
  const type = catalog.serverTypes[name];
  if (!type) {
    const suggestion = closest(name, Object.keys(catalog.serverTypes));
    problems.add(
      "serverType",
      `${quote(name)} is not a ${catalog.title} server type${suggestion ? ` (did you mean ${suggestion}?)` : ""}; use one of ${Object.keys(catalog.serverTypes).join(", ")}`,
    );
    return undefined;
  }
  if (type.memoryMiB < MIN_MEMORY_MIB) {
    problems.add("serverType", `${quote(name)} has ${type.memoryMiB} MiB of memory; PostgreSQL, nginx and the app need at least ${MIN_MEMORY_MIB} MiB`);
    return undefined;
  }
  return name;
}

function parseOptional(
  raw: Record<string, string>,
  key: ConfigKey,
  problems: Problems,
  check: (value: string) => string,
): string | undefined {
  const value = raw[key];
  if (value === undefined || value === "") return undefined;
  const result = check(value);
  if (result === value) return value;
  problems.add(key, result);
  return undefined;
}

function parseInteger(
  raw: Record<string, string>,
  key: ConfigKey,
  min: number,
  max: number,
  fallback: number,
  problems: Problems,
): number | undefined {
  const text = raw[key];
  if (text === undefined) return fallback;
  const value = parseIntegerText(text);
  if (value === undefined || value < min || value > max) {
    problems.add(key, `must be a whole number from ${min} to ${max}; got ${quote(text)}`);
    return undefined;
  }
  return value;
}

function parseSchedule(raw: Record<string, string>, key: ConfigKey, fallback: string, problems: Problems): string | undefined {
  const value = raw[key] ?? fallback;
  const verdict = checkOnCalendar(value);
  if (verdict.ok) return value;
  problems.add(key, `must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got ${quote(value)}: ${verdict.reason}`);
  return undefined;
}

function parseSshKeys(raw: Record<string, string>, problems: Problems): string[] | undefined {
  const list = parseRequiredList(raw, "sshPublicKeys", `a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]`, problems);
  if (!list) return undefined;
  const bad = list.map((key, i) => [i, parseSshPublicKey(key)] as const).filter(([, problem]) => problem !== undefined);
  for (const [i, problem] of bad) problems.add("sshPublicKeys", `entry ${i}: ${problem}`);
  if (bad.length > 0) return undefined;
  // The providers refuse to register one key twice, and the stack would fail half-way.
  const firstIndex = new Map<string, number>();
  let duplicates = false;
  list.forEach((key, i) => {
    const identity = sshKeyIdentity(key);
    const first = firstIndex.get(identity);
    if (first === undefined) return void firstIndex.set(identity, i);
    duplicates = true;
    problems.add("sshPublicKeys", `entries ${first} and ${i} are the same ${identity.split(" ")[0]} key (only the comments may differ); list each key once`);
  });
  return duplicates ? undefined : list.map((k) => k.trim());
}

function parseCidrs(raw: Record<string, string>, problems: Problems): string[] | undefined {
  const list = parseRequiredList(raw, "sshAllowedCidrs", `a JSON list of IPv4/IPv6 CIDRs allowed to reach SSH, e.g. ["203.0.113.7/32"]`, problems);
  if (!list) return undefined;
  let good = true;
  for (const text of list) {
    const cidr = parseCidr(text);
    if (!cidr) problems.add("sshAllowedCidrs", `${quote(text)} is not an IPv4 or IPv6 CIDR such as 203.0.113.7/32 or 2001:db8::/48`);
    else if (cidrNetwork(cidr).address !== cidr.address) {
      // Firewalls take a network, not an address inside one; which of the two was meant is unclear.
      const network = formatCidr(cidrNetwork(cidr));
      const address = formatCidr({ ...cidr, bits: cidr.version === 4 ? 32 : 128 });
      problems.add("sshAllowedCidrs", `${quote(text)} has host bits set; write the network ${network}, or ${address} for that one address`);
    } else continue;
    good = false;
  }
  return good ? list : undefined;
}

function parseRequiredList(raw: Record<string, string>, key: ConfigKey, what: string, problems: Problems): string[] | undefined {
  const text = raw[key];
  if (text === undefined) {
    problems.add(key, `is required; set ${what}`);
    return undefined;
  }
  const list = parseJsonStringList(text);
  if (!list) {
    problems.add(key, `must be ${what}; got ${quote(text)}`);
    return undefined;
  }
  if (list.length === 0) {
    problems.add(key, `must list at least one entry; set ${what}`);
    return undefined;
  }
  return list;
}

function parseBackupBucket(raw: Record<string, string>, serverProvider: Provider, problems: Problems): BackupBucketConfig | undefined {
  const provider = parseEnum(raw, "backupBucketProvider", BUCKET_PROVIDERS, serverProvider, problems);
  if (!provider) return undefined;
  const name = parseOptional(raw, "backupBucketName", problems, (v) =>
    isBucketName(v) ? v : `must be ${BUCKET_NAME_RULE}; got ${quote(v)}`,
  );
  const accessKeyId = raw.backupAccessKeyId || undefined;
  const secretAccessKey = raw.backupSecretAccessKey || undefined;
  if (provider !== "digitalocean") {
    const why = provider === "hetzner" ? "Hetzner's API cannot create S3 keys; make them in the Hetzner console" : "an existing S3-compatible bucket needs its keys";
    if (!accessKeyId) problems.add("backupAccessKeyId", `is required when saas-vps:backupBucketProvider is ${provider} (${why})`);
    if (!secretAccessKey) problems.add("backupSecretAccessKey", `is required when saas-vps:backupBucketProvider is ${provider} (${why}); set it with --secret`);
  }
  const location = parseBucketLocation(raw, provider, serverProvider, problems);
  if (location === undefined) return undefined;
  return { provider, name, accessKeyId, secretAccessKey, ...location };
}

function parseBucketLocation(
  raw: Record<string, string>,
  provider: BucketProvider,
  serverProvider: Provider,
  problems: Problems,
): { region: string; endpoint: string } | undefined {
  const region = raw.backupBucketRegion;
  const endpoint = raw.backupBucketEndpoint;
  switch (provider) {
    case "digitalocean":
    case "hetzner": {
      const allowed: readonly string[] = provider === "digitalocean" ? SPACES_REGIONS : HETZNER_OBJECT_STORAGE_LOCATIONS;
      const serverRegion = serverProvider === provider ? raw.region ?? CATALOGS[provider].defaultRegion : undefined;
      const chosen = region ?? (serverRegion && allowed.includes(serverRegion) ? serverRegion : allowed.includes("fra1") ? "fra1" : "fsn1");
      if (!allowed.includes(chosen)) {
        problems.add("backupBucketRegion", `${quote(chosen)} has no ${provider === "digitalocean" ? "Spaces" : "Hetzner Object Storage"}; use one of ${allowed.join(", ")}`);
        return undefined;
      }
      if (endpoint !== undefined) {
        problems.add("backupBucketEndpoint", `is only for backupBucketProvider s3; ${provider} endpoints are derived from the region`);
        return undefined;
      }
      const derived = provider === "digitalocean" ? `https://${chosen}.digitaloceanspaces.com` : `https://${chosen}.your-objectstorage.com`;
      return { region: chosen, endpoint: derived };
    }
    case "s3": {
      if (!endpoint || !isHttpUrl(endpoint)) {
        problems.add("backupBucketEndpoint", `is required for backupBucketProvider s3 and must be an http(s) URL such as https://s3.eu-central-1.amazonaws.com; got ${quote(endpoint ?? "")}`);
        return undefined;
      }
      if (!raw.backupBucketName) {
        problems.add("backupBucketName", `is required for backupBucketProvider s3 (an existing bucket)`);
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
