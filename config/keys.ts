/**
 * Every stack config key (`saas-vps:<key>`), once: its type, default, whether it is a
 * credential, the stages it applies to, its description and its value parser.
 *
 * KNOWN_KEYS, DEFAULTS, SECRET_KEYS and the per-key part of parseStackConfig (config.ts) are
 * derived from this table; so are Pulumi.yaml's `config:` block and the README's "Stack
 * config" table (config/keyDocs.ts writes both; a test fails when either drifts). Rules that
 * involve two keys (a region of the chosen provider, acmeEmail with domain, the bucket's
 * keys) live in config.ts.
 */
import { BUCKET_PURPOSES, bucketKeyNames, defaultBucketName, UPLOADS_STORAGES, type BucketField, type BucketKeyNames, type BucketPrefix, type UploadsStorage } from "./buckets";
import { CERTBOT_RENEWAL_DAYS, CERTIFICATE_DAYS_RANGE, DEFAULT_MONITORING, DEFAULT_SLACK_CHANNEL, MONITORING_SERVICES, PERCENT_RANGE, RESOURCE_ALERT_WINDOWS, windowWords, type MonitoringService } from "./monitoring";
import { checkOnCalendar } from "./onCalendar";
import { WATCHDOG_THRESHOLDS, type WatchdogThreshold } from "./watchdog";
import { CRITICAL_WORKER_INSTANCES_RANGE, DEFAULT_CRITICAL_TASKS, DEFAULT_CRITICAL_WORKER_INSTANCES, TASK_NAME_RULE } from "./workers";
import { DEFAULT_METRICS_PORT_OFFSET } from "../provisioning/layout";
import { BUCKET_PROVIDERS, CATALOGS, DATABASE_MODES, MANAGED_DATABASE_SIZES, PROVIDERS, type BucketProvider, type DatabaseMode, type Provider } from "./providers";
import { MVP_DATABASE_STATES, SPLIT_STAGES, STAGES, type MvpDatabaseState, type Stage } from "./stages";
import {
  BUCKET_NAME_RULE,
  cidrNetwork,
  formatCidr,
  isBucketName,
  isEmail,
  isHostname,
  isHttpUrl,
  isIpAddress,
  isPrivateIpv4Cidr,
  parseCidr,
  parseIntegerText,
  parseJsonStringList,
  parseSshPublicKey,
  quote,
  sshKeyIdentity,
} from "./validators";

export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: string[] };

export interface KeySpec<T> {
  /** The type Pulumi.yaml declares. */
  type: "string" | "integer" | "boolean" | "array";
  /** The value when the key is unset; stated in Pulumi.yaml and the README. */
  default?: T;
  /** The README's default column when there is no single default value. */
  defaultText?: string;
  /** A credential: must be set with `pulumi config set --secret`. */
  secret?: true;
  /** Stages whose stacks may set the key; set in another stage, it is refused. */
  stages: readonly Stage[];
  /** Pulumi.yaml's description (what `pulumi config` shows). */
  description: string;
  /** The README's rule column (Markdown). */
  rule: string;
  /** Text as Pulumi stores it (undefined when unset) to value, or the problems, one line each. */
  parse: (text: string | undefined) => Parsed<T>;
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(...problems: string[]): Parsed<T> => ({ ok: false, problems });
const ALL = { stages: STAGES };
/** Keys of the stages whose servers are split over a private network. */
const SPLIT = { stages: SPLIT_STAGES };
/** Keys of the stage with several app servers behind a load balancer. */
const SCALED = { stages: ["scaled"] as const };
/** How many app servers stage scaled may have behind its load balancer. */
export const APP_SERVERS_RANGE = { min: 2, max: 10 } as const;
/**
 * Where the site's DNS record points in stage scaled: the balancer, or (while moving from
 * separated, until the record has moved) the first app server's fixed IP, as before.
 */
export const SITE_ADDRESSES = ["balancer", "app"] as const;
export type SiteAddress = (typeof SITE_ADDRESSES)[number];
const DEFAULT_STAGE: Stage = "mvp";

/** One of `allowed`; required when there is no default. */
function oneOf<T extends string>(allowed: readonly T[]) {
  return {
    type: "string" as const,
    parse: (text: string | undefined): Parsed<T> => {
      if (text === undefined) return fail(`is required; use one of ${allowed.join(", ")}`);
      return (allowed as readonly string[]).includes(text) ? ok(text as T) : fail(`${quote(text)} is not allowed; use one of ${allowed.join(", ")}`);
    },
  };
}

/** One of `allowed`, or undefined when unset: the default is derived from other keys. */
function oneOfOr<T extends string>(allowed: readonly T[]) {
  return {
    type: "string" as const,
    parse: (text: string | undefined): Parsed<T | undefined> => (text === undefined ? ok(undefined) : oneOf(allowed).parse(text)),
  };
}

function integer(min: number, max: number, fallback: number) {
  return {
    type: "integer" as const,
    default: fallback,
    parse: (text: string | undefined): Parsed<number> => {
      if (text === undefined) return ok(fallback);
      const value = parseIntegerText(text);
      return value !== undefined && value >= min && value <= max ? ok(value) : fail(`must be a whole number from ${min} to ${max}; got ${quote(text)}`);
    },
  };
}

/** A whole number from min to max, or undefined when unset: the default is derived from other keys. */
function integerOr(min: number, max: number) {
  return {
    type: "integer" as const,
    parse: (text: string | undefined): Parsed<number | undefined> => (text === undefined ? ok(undefined) : integer(min, max, min).parse(text)),
  };
}

/** `true` or `false` (Pulumi stores a YAML boolean as that text); unset is false. */
function flag() {
  return {
    type: "boolean" as const,
    default: false,
    parse: (text: string | undefined): Parsed<boolean> => {
      if (text === undefined || text === "false") return ok(false);
      return text === "true" ? ok(true) : fail(`must be true or false; got ${quote(text)}`);
    },
  };
}

/** An optional string: unset or empty is undefined; `check` returns the problem, if any. */
function optional(check: (value: string) => string | undefined = () => undefined) {
  return {
    type: "string" as const,
    parse: (text: string | undefined): Parsed<string | undefined> => {
      if (text === undefined || text === "") return ok(undefined);
      const problem = check(text);
      return problem === undefined ? ok(text) : fail(problem);
    },
  };
}

/** A string with a default; `check` returns the problem, if any (the default is checked too). */
function withDefault(fallback: string, check: (value: string) => string | undefined) {
  return {
    type: "string" as const,
    default: fallback,
    parse: (text: string | undefined): Parsed<string> => {
      const value = text ?? fallback;
      const problem = check(value);
      return problem === undefined ? ok(value) : fail(problem);
    },
  };
}

/** A watchdog threshold: its range and default are config/watchdog.ts's, which the renderer checks too. */
function threshold(name: WatchdogThreshold) {
  const spec = WATCHDOG_THRESHOLDS[name];
  return { ...integer(spec.min, spec.max, spec.default), rule: `${spec.min}–${spec.max} (${spec.unit})` };
}

function schedule(fallback: string) {
  return withDefault(fallback, (value) => {
    const verdict = checkOnCalendar(value);
    return verdict.ok ? undefined : `must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got ${quote(value)}: ${verdict.reason}`;
  });
}

/** A required, non-empty JSON list of strings; `checkList` adds the problems of its entries. */
function requiredList(what: string, checkList: (list: string[]) => Parsed<string[]>) {
  return {
    type: "array" as const,
    parse: (text: string | undefined): Parsed<string[]> => {
      if (text === undefined) return fail(`is required; set ${what}`);
      const list = parseJsonStringList(text);
      if (!list) return fail(`must be ${what}; got ${quote(text)}`);
      if (list.length === 0) return fail(`must list at least one entry; set ${what}`);
      return checkList(list);
    },
  };
}

/** An optional JSON list of strings: unset is undefined; an empty list is refused (leave the key unset instead). */
function optionalList(what: string, checkList: (list: string[]) => Parsed<string[]>) {
  return {
    type: "array" as const,
    parse: (text: string | undefined): Parsed<string[] | undefined> => {
      if (text === undefined) return ok(undefined);
      const list = parseJsonStringList(text);
      if (!list) return fail(`must be ${what}; got ${quote(text)}`);
      if (list.length === 0) return fail(`must list at least one entry, or be left unset; set ${what}`);
      return checkList(list);
    },
  };
}

function checkTaskNames(list: string[]): Parsed<string[]> {
  const problems = list.flatMap((name, i) =>
    TASK_NAME_RULE.test(name) ? [] : [`entry ${i}: ${quote(name)} is not a task name (a letter or "_", then letters, digits, "_", ".", ":" or "-"; at most 100 characters, e.g. send_welcome_email)`],
  );
  list.forEach((name, i) => {
    if (list.indexOf(name) !== i) problems.push(`entry ${i}: ${quote(name)} is listed twice; list each task once`);
  });
  return problems.length > 0 ? fail(...problems) : ok(list);
}

function checkEmails(list: string[]): Parsed<string[]> {
  const problems = list.flatMap((address, i) => (isEmail(address) ? [] : [`entry ${i}: ${quote(address)} is not an email address`]));
  return problems.length > 0 ? fail(...problems) : ok(list);
}

function checkSshKeys(list: string[]): Parsed<string[]> {
  const problems = list.flatMap((key, i) => {
    const problem = parseSshPublicKey(key);
    return problem === undefined ? [] : [`entry ${i}: ${problem}`];
  });
  if (problems.length > 0) return fail(...problems);
  // The providers refuse to register one key twice, and the stack would fail half-way.
  const firstIndex = new Map<string, number>();
  list.forEach((key, i) => {
    const identity = sshKeyIdentity(key);
    const first = firstIndex.get(identity);
    if (first === undefined) firstIndex.set(identity, i);
    else problems.push(`entries ${first} and ${i} are the same ${identity.split(" ")[0]} key (only the comments may differ); list each key once`);
  });
  return problems.length > 0 ? fail(...problems) : ok(list.map((k) => k.trim()));
}

function checkCidrs(list: string[]): Parsed<string[]> {
  const problems = list.flatMap((text) => {
    const cidr = parseCidr(text);
    if (!cidr) return [`${quote(text)} is not an IPv4 or IPv6 CIDR such as 203.0.113.7/32 or 2001:db8::/48`];
    if (cidrNetwork(cidr).address === cidr.address) return [];
    // Firewalls take a network, not an address inside one; which of the two was meant is unclear.
    const network = formatCidr(cidrNetwork(cidr));
    const address = formatCidr({ ...cidr, bits: cidr.version === 4 ? 32 : 128 });
    return [`${quote(text)} has host bits set; write the network ${network}, or ${address} for that one address`];
  });
  return problems.length > 0 ? fail(...problems) : ok(list);
}

/** The private network's range: the providers take RFC 1918 IPv4 only; /24 leaves room for every planned host. */
function checkPrivateNetworkCidr(value: string): string | undefined {
  const cidr = parseCidr(value);
  if (!cidr || cidr.version !== 4) return `must be an IPv4 network such as 10.20.0.0/16; got ${quote(value)}`;
  if (cidrNetwork(cidr).address !== cidr.address) return `${quote(value)} has host bits set; write the network ${formatCidr(cidrNetwork(cidr))}`;
  if (cidr.bits < 16 || cidr.bits > 24) return `must be from /16 to /24 (what both providers' networks take and the plan's addresses fit in); got /${cidr.bits}`;
  if (!isPrivateIpv4Cidr(cidr)) return `${quote(value)} is not inside an RFC 1918 private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)`;
  return undefined;
}

function checkManagedDatabaseSize(value: string): string | undefined {
  return (MANAGED_DATABASE_SIZES as readonly string[]).includes(value) ? undefined : `${quote(value)} is not a DigitalOcean Managed PostgreSQL size; use one of ${MANAGED_DATABASE_SIZES.join(", ")}`;
}

function checkDomain(value: string): string | undefined {
  if (isIpAddress(value)) {
    return `${quote(value)} is an IP address: Let's Encrypt gives no certificate for it via HTTP-01; set a hostname whose DNS points at the server, or leave domain unset to serve plain HTTP on the IP`;
  }
  return isHostname(value) ? undefined : `must be a bare hostname such as app.example.com (no scheme, path, port or spaces); got ${quote(value)}`;
}

/**
 * S3 keys are letters, digits and a few symbols; they land in env files (the app's is read by
 * systemd, unquoted), where whitespace, quotes or a backslash would change the value.
 */
function checkS3Key(value: string): string | undefined {
  return /^[A-Za-z0-9+/=._~-]+$/.test(value) ? undefined : "must be an S3 key: letters, digits and + / = . _ ~ - only (no spaces, quotes or backslashes); got a value that is not one";
}

/**
 * The six keys of one bucket (names from config/buckets.ts), worded for what it holds. `extra.rule`
 * is added to every key's rule, `extra.keyRule` to the access key's.
 */
function bucketKeys<P extends BucketPrefix>(prefix: P, extra: { rule?: string; keyRule?: string } = {}) {
  const names = bucketKeyNames(prefix);
  const noun = BUCKET_PURPOSES[prefix].noun;
  const rule = (text: string) => (extra.rule ? `${text}; ${extra.rule}` : text);
  const specs = {
    provider: {
      ...oneOfOr<BucketProvider>(BUCKET_PROVIDERS),
      ...ALL,
      defaultText: "the server's provider",
      description: `Where the ${noun} bucket lives: digitalocean (Spaces, created here), hetzner (Object Storage, keys from the console) or s3 (any existing S3-compatible bucket). Default: the server provider.`,
      rule: rule("`digitalocean` (Spaces, created), `hetzner` (Object Storage), `s3` (existing bucket)"),
    },
    region: {
      ...optional((v) => (/^[a-z0-9][a-z0-9-]*$/.test(v) ? undefined : `must be a region name such as fsn1, fra1 or eu-central-1; got ${quote(v)}`)),
      ...ALL,
      defaultText: "server region or fra1/fsn1",
      description: `Region of the ${noun} bucket: a Spaces region or a Hetzner Object Storage location (fsn1, nbg1, hel1); for s3, the signing region (default us-east-1).`,
      rule: rule("Spaces region or Hetzner location; signing region for `s3`"),
    },
    endpoint: {
      ...optional(),
      ...ALL,
      defaultText: "derived",
      description: `S3 endpoint URL; only for ${names.provider} s3 (derived for the others).`,
      rule: rule("only for `s3`"),
    },
    name: {
      ...optional((v) => (isBucketName(v) ? undefined : `must be ${BUCKET_NAME_RULE}; got ${quote(v)}`)),
      ...ALL,
      defaultText: `\`${defaultBucketName("<stack>", prefix)}\``,
      description: `Name of the ${noun} bucket. Default: ${defaultBucketName("<stack>", prefix)} (plus a random suffix on Spaces). Required for s3.`,
      rule: rule("required for `s3`; lowercase letters, digits and hyphens (no dots)"),
    },
    accessKeyId: {
      ...optional(checkS3Key),
      ...ALL,
      defaultText: "—",
      description: `S3 access key id of the ${noun} bucket; required for hetzner and s3 buckets.`,
      rule: rule(`required for \`hetzner\` and \`s3\` (Hetzner's API cannot mint S3 keys)${extra.keyRule ? `; ${extra.keyRule}` : ""}`),
    },
    secretAccessKey: {
      ...optional(checkS3Key),
      ...ALL,
      secret: true as const,
      defaultText: "—",
      description: `S3 secret key of the ${noun} bucket; required for hetzner and s3 buckets. Set with --secret.`,
      rule: rule("required for `hetzner` and `s3`"),
    },
  };
  return Object.fromEntries((Object.keys(specs) as BucketField[]).map((field) => [names[field], specs[field]])) as {
    [F in BucketField as BucketKeyNames<P>[F]]: (typeof specs)[F];
  };
}

const perProvider = (pick: (p: Provider) => string) => PROVIDERS.map((p) => `\`${pick(p)}\``).join(" / ");

export const KEYS = {
  provider: {
    ...oneOf<Provider>(PROVIDERS),
    ...ALL,
    defaultText: "required",
    description: "Hosting provider for the servers: hetzner or digitalocean. Required.",
    rule: PROVIDERS.map((p) => `\`${p}\``).join(" or "),
  },
  stage: {
    ...oneOf<Stage>(STAGES),
    parse: (text: string | undefined): Parsed<Stage> => oneOf<Stage>(STAGES).parse(text ?? DEFAULT_STAGE),
    default: DEFAULT_STAGE,
    ...ALL,
    description:
      "Growth stage: mvp (one server), separated (web, worker and PostgreSQL on their own servers over a private network), scaled (2-10 app servers behind the provider's load balancer, a Valkey cache server, optionally a read replica).",
    rule: "`mvp`, `separated` or `scaled`",
  },
  region: {
    ...optional(),
    ...ALL,
    defaultText: perProvider((p) => CATALOGS[p].defaultRegion),
    description: "Provider location. Hetzner: fsn1, nbg1, hel1, ash, hil, sin (default fsn1). DigitalOcean: fra1, ams3, nyc3, ... (default fra1).",
    rule: "a location of that provider",
  },
  serverType: {
    ...optional(),
    ...ALL,
    defaultText: perProvider((p) => CATALOGS[p].defaultServerType),
    description: "Provider server type with at least 2 GiB of memory. Default: Hetzner cx23, DigitalOcean s-2vcpu-4gb.",
    rule: "a type of that provider with ≥ 2 GiB memory",
  },
  webServerType: {
    ...optional(),
    ...SPLIT,
    defaultText: "serverType",
    description: "Server type of the web server (nginx and the web processes). Default: serverType.",
    rule: "a type of that provider with ≥ 1 GiB memory",
  },
  workerServerType: {
    ...optional(),
    ...SPLIT,
    defaultText: "serverType",
    description: "Server type of the worker server. Default: serverType.",
    rule: "a type of that provider with ≥ 1 GiB memory",
  },
  dbServerType: {
    ...optional(),
    ...SPLIT,
    defaultText: "serverType",
    description: "Server type of the PostgreSQL server (databaseMode server); PostgreSQL's tuning follows its memory. Default: serverType.",
    rule: "a type of that provider with ≥ 2 GiB memory",
  },
  appServers: {
    ...integer(APP_SERVERS_RANGE.min, APP_SERVERS_RANGE.max, APP_SERVERS_RANGE.min),
    ...SCALED,
    description: `App servers (nginx and the web processes) behind the provider's load balancer, ${APP_SERVERS_RANGE.min}-${APP_SERVERS_RANGE.max}. Growing adds servers and replaces none.`,
    rule: `${APP_SERVERS_RANGE.min}–${APP_SERVERS_RANGE.max} servers behind the load balancer`,
  },
  siteAddress: {
    ...oneOfOr<SiteAddress>(SITE_ADDRESSES),
    ...SCALED,
    defaultText: "`balancer`",
    description: "Where the site's DNS record points: balancer (the load balancer's address; output loadBalancerIpv4), or app while a stack moves from separated: the first app server keeps answering on its fixed IP as in separated, and the balancer serves through the other app servers. Move the record to the balancer, wait its TTL, then set balancer (README, Moving from separated to scaled).",
    rule: "`balancer` or `app`",
  },
  readReplica: {
    ...flag(),
    ...SCALED,
    description:
      "true adds a read replica of PostgreSQL: a streaming standby on a server of its own (databaseMode server) or a read-only node of the managed cluster (databaseMode managed); the app sends chosen reads to it.",
    rule: "`true` or `false`; a replica server (`databaseMode: server`) or a read-only node of the cluster (`managed`)",
  },
  replicaServerType: {
    ...optional(),
    ...SCALED,
    defaultText: "dbServerType",
    description: "Server type of the read replica's server (readReplica true, databaseMode server). Default: dbServerType.",
    rule: "a type of that provider with ≥ 2 GiB memory; only with `readReplica: true` and `databaseMode: server`",
  },
  managedReplicaSize: {
    ...optional(checkManagedDatabaseSize),
    ...SCALED,
    defaultText: "managedDatabaseSize",
    description:
      "DigitalOcean Managed PostgreSQL node size of the read-only node (readReplica true, databaseMode managed); at least managedDatabaseSize. Default: managedDatabaseSize.",
    rule: "only with `readReplica: true` and `databaseMode: managed`; not smaller than `managedDatabaseSize`",
  },
  cacheServerType: {
    ...optional(),
    ...SCALED,
    defaultText: perProvider((p) => CATALOGS[p].defaultCacheServerType),
    description: "Server type of the cache server (Valkey, for the app's shared rate limits and cache); Valkey's maxmemory is half its memory. Default: Hetzner cx23, DigitalOcean s-1vcpu-1gb.",
    rule: "a type of that provider with ≥ 1 GiB memory",
  },
  privateNetworkCidr: {
    ...withDefault("10.20.0.0/16", checkPrivateNetworkCidr),
    ...SPLIT,
    description: "IPv4 range of the stack's private network (Hetzner Network, DigitalOcean VPC): an RFC 1918 network from /16 to /24.",
    rule: "RFC 1918 IPv4 network, /16–/24, no host bits",
  },
  privateNetworkZone: {
    ...optional(),
    ...SPLIT,
    defaultText: "the location's zone",
    description: "Hetzner only: network zone of the private network (eu-central, us-east, us-west, ap-southeast); it must contain the location. Default: the location's zone.",
    rule: "Hetzner only; the zone of `region`",
  },
  databaseMode: {
    ...oneOfOr<DatabaseMode>(DATABASE_MODES),
    ...SPLIT,
    defaultText: "`server`",
    description: "Where PostgreSQL runs: server (its own server with a protected volume) or managed (DigitalOcean Managed PostgreSQL; not on Hetzner).",
    rule: "`server` or `managed` (DigitalOcean only)",
  },
  managedDatabaseSize: {
    ...optional(checkManagedDatabaseSize),
    ...SPLIT,
    defaultText: "`db-s-1vcpu-2gb`",
    description: "DigitalOcean Managed PostgreSQL node size (databaseMode managed only). Default: db-s-1vcpu-2gb.",
    rule: "only with `databaseMode: managed`",
  },
  mvpDatabase: {
    ...oneOfOr<MvpDatabaseState>(MVP_DATABASE_STATES),
    stages: ["separated"] as const,
    defaultText: "none",
    description:
      "Only while moving a running mvp stack to separated: live = the app still uses the app server's own PostgreSQL (the db server is built and waits), kept = the app uses the db server and the old cluster is kept, unused, until you remove this key.",
    rule: "`live` or `kept`, only while moving from mvp (README: Moving from mvp to separated)",
  },
  domain: {
    ...optional(checkDomain),
    ...ALL,
    defaultText: "none",
    description: "Public hostname (no scheme or path). Without it the site is served over HTTP on the fixed IP.",
    rule: "bare hostname, not an IP address; without it `plainHttp: true` is required",
  },
  plainHttp: {
    ...flag(),
    ...ALL,
    description:
      "true serves the site over plain HTTP on the fixed IP, without a domain: passwords and session tokens cross the network unencrypted (a test stack only). Required when domain is unset; refused with a domain.",
    rule: "`true` only without `domain`: the site is unencrypted HTTP on the fixed IP (testing only)",
  },
  acmeEmail: {
    ...optional((v) => (isEmail(v) ? undefined : `must be an email address for Let's Encrypt notices; got ${quote(v)}`)),
    ...ALL,
    defaultText: "—",
    description: "Contact email for Let's Encrypt; required when domain is set.",
    rule: "required with `domain` (Let's Encrypt)",
  },
  sshPublicKeys: {
    ...requiredList(`a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]`, checkSshKeys),
    ...ALL,
    defaultText: "required",
    description: "OpenSSH public keys for the admin user (ssh-ed25519, ecdsa-sha2-*, ssh-rsa). Required, at least one.",
    rule: "JSON list of OpenSSH public keys, each once",
  },
  sshAllowedCidrs: {
    ...requiredList(`a JSON list of IPv4/IPv6 CIDRs allowed to reach SSH, e.g. ["203.0.113.7/32"]`, checkCidrs),
    ...ALL,
    defaultText: "required",
    description: "IPv4/IPv6 CIDRs allowed to reach SSH (port 22). Required. HTTP and HTTPS are open to all.",
    rule: "JSON list of IPv4/IPv6 networks (no host bits set) that may reach port 22",
  },
  webInstances: {
    ...integer(1, 16, 2),
    ...ALL,
    description: "Web processes per app server, 1-16 (ports 3001...). Two or more give zero-downtime releases.",
    rule: "1–16 web processes (ports 3001…)",
  },
  workerInstances: {
    ...integer(0, 16, 1),
    ...ALL,
    description: "Worker processes, 0-16.",
    rule: "0–16",
  },
  criticalWorkerInstances: {
    ...integerOr(CRITICAL_WORKER_INSTANCES_RANGE.min, CRITICAL_WORKER_INSTANCES_RANGE.max),
    ...ALL,
    defaultText: `${DEFAULT_CRITICAL_WORKER_INSTANCES.mvp} in mvp and separated, ${DEFAULT_CRITICAL_WORKER_INSTANCES.scaled} in scaled`,
    description: `Worker processes of their own for criticalTasks (worker-critical@N), ${CRITICAL_WORKER_INSTANCES_RANGE.min}-${CRITICAL_WORKER_INSTANCES_RANGE.max}, on the server that runs the workers; the workerInstances then run every other task. 0: no isolation, every worker runs every task. Default ${DEFAULT_CRITICAL_WORKER_INSTANCES.mvp} in mvp and separated, ${DEFAULT_CRITICAL_WORKER_INSTANCES.scaled} in scaled.`,
    rule: `${CRITICAL_WORKER_INSTANCES_RANGE.min}–${CRITICAL_WORKER_INSTANCES_RANGE.max}; 1 or more needs \`workerInstances\` ≥ 1 (the other tasks run there)`,
  },
  criticalTasks: {
    ...optionalList(`a JSON list of the app's task names, e.g. ["send_password_reset_email","process_stripe_event"]`, checkTaskNames),
    ...ALL,
    defaultText: "the reference app's mails and Stripe events",
    description: `The app's tasks that run on the critical workers only (criticalWorkerInstances). Default: ${DEFAULT_CRITICAL_TASKS.join(", ")}. A name the app does not have stops its workers at start.`,
    rule: "JSON list of the app's task names, each once; only with `criticalWorkerInstances` ≥ 1",
  },
  backupSchedule: {
    ...schedule("*-*-* 03:00:00 UTC"),
    ...ALL,
    description: "systemd OnCalendar expression for the nightly pg_dump backup.",
    rule: "systemd OnCalendar that systemd accepts and that recurs (no year; a tz database zone)",
  },
  backupRetentionDays: {
    ...integer(1, 3650, 14),
    ...ALL,
    description: "Days of backups kept in the bucket, at least 1.",
    rule: "1–3650",
  },
  restoreDrillSchedule: {
    ...schedule("Sun *-*-* 04:30:00 UTC"),
    ...ALL,
    description: "systemd OnCalendar expression for the restore drill (restores the latest backup into a scratch database).",
    rule: "systemd OnCalendar, as `backupSchedule`",
  },
  ...bucketKeys("backup"),
  uploadsStorage: {
    ...oneOfOr<UploadsStorage>(UPLOADS_STORAGES),
    ...ALL,
    defaultText: "`volume` in mvp, `bucket` from separated on",
    description:
      "Where the app keeps uploaded files: volume (the data volume of its one server; stage mvp only) or bucket (an S3 bucket, the uploadsBucket* keys). Default: volume in mvp, bucket from separated on.",
    rule: "`volume` (stage mvp only: one server holds the files) or `bucket`",
  },
  ...bucketKeys("uploads", { rule: "only with `uploadsStorage: bucket`", keyRule: "never the backup bucket's key (the app holds it)" }),
  alertWebhookUrl: {
    ...optional((v) => (isHttpUrl(v) ? undefined : "must be an http(s) URL that accepts a JSON POST; got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description:
      "Webhook that receives a JSON POST for every alert: a watchdog check that starts or stops firing, a unit that failed for good (the app's processes, backups, restore drills); with monitoring digitalocean also DigitalOcean's uptime and resource alerts (Slack's incoming-webhook format). Set with --secret.",
    rule: "receives a JSON POST for each alert and each resolved one (README: Watchdog and alerts); with `monitoring: digitalocean` also DigitalOcean's alerts (Slack's webhook format)",
  },
  backupHeartbeatUrl: {
    ...optional((v) => (isHttpUrl(v) ? undefined : "must be an http(s) URL to ping after each good backup; got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "URL pinged after every good backup (a dead-man's switch such as healthchecks.io notices missed ones). Set with --secret.",
    rule: "pinged after every good backup (dead-man's switch)",
  },
  watchdogHeartbeatUrl: {
    ...optional((v) => (isHttpUrl(v) ? undefined : "must be an http(s) URL to ping once a day while every watchdog check is green; got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "URL pinged once a day by every server while all its watchdog checks are green (a dead-man's switch: set its period to 1 day). Never the backup heartbeat's URL. Set with --secret.",
    rule: "pinged daily by each server while all its checks are green (dead-man's switch); not `backupHeartbeatUrl`",
  },
  watchdogDiskPercent: {
    ...threshold("diskPercent"),
    ...ALL,
    description: "Watchdog: alert when the root or the data filesystem is fuller than this percentage.",
  },
  watchdogMemoryPercent: {
    ...threshold("memoryAvailablePercent"),
    ...ALL,
    description: "Watchdog: alert when less than this percentage of memory is available.",
  },
  watchdogLoadPercent: {
    ...threshold("loadPercent"),
    ...ALL,
    description: "Watchdog: alert when the 5-minute load average exceeds this percentage of the CPU count (200 = twice the CPUs).",
  },
  watchdogCertificateDays: {
    ...threshold("certificateDays"),
    ...ALL,
    description: "Watchdog (with domain): alert when the TLS certificate has fewer days left (certbot renews at 30).",
  },
  watchdogBackupMaxAgeHours: {
    ...threshold("backupMaxAgeHours"),
    ...ALL,
    description: "Watchdog (the server that backs up): alert when no good backup is younger than this many hours; more than backupSchedule's interval.",
  },
  watchdogDrillMaxAgeDays: {
    ...threshold("drillMaxAgeDays"),
    ...ALL,
    description: "Watchdog (the server that backs up): alert when no good restore drill is younger than this many days; more than restoreDrillSchedule's interval.",
  },
  metricsPortOffset: {
    ...integer(1, 64535, DEFAULT_METRICS_PORT_OFFSET),
    ...ALL,
    description:
      "The app's Prometheus metrics listen on 127.0.0.1 at this offset plus each web instance's port (13001...) or worker's number (10001...) (METRICS_PORT_OFFSET). No metrics port may meet a web port, PostgreSQL, the node exporter (9100) or pass 65535.",
    rule: "1–64535; every metrics port (offset + 3001…, offset + 1…) clear of the web ports, reserved ports and 9100, at most 65535",
  },
  monitoring: {
    type: "string" as const,
    default: DEFAULT_MONITORING,
    parse: (text: string | undefined): Parsed<MonitoringService> => oneOf<MonitoringService>(MONITORING_SERVICES).parse(text ?? DEFAULT_MONITORING),
    ...ALL,
    description:
      "Who watches the stack from outside: digitalocean = DigitalOcean Uptime checks the site's /health (and its certificate) from DigitalOcean's regions, for a Hetzner stack too (needs digitalocean:token), and DigitalOcean droplets get CPU, memory and disk alerts; none = nothing does (warned at every preview). Alerts go to alertEmails and/or alertWebhookUrl.",
    rule: "`digitalocean` (uptime checks, and resource alerts on droplets) or `none` (warned); `digitalocean` needs `alertEmails` or `alertWebhookUrl`",
  },
  alertEmails: {
    ...optionalList(`a JSON list of email addresses, e.g. ["ops@example.com"]`, checkEmails),
    ...ALL,
    defaultText: "none",
    description: "Email addresses DigitalOcean sends uptime and resource alerts to; DigitalOcean accepts only addresses verified on its account (team members).",
    rule: "JSON list of addresses verified on the DigitalOcean account; with `monitoring: digitalocean`",
  },
  alertSlackChannel: {
    ...withDefault(DEFAULT_SLACK_CHANNEL, (v) =>
      /^[^\x00-\x1f\x7f]{1,80}$/.test(v) ? undefined : `must be a Slack channel name of 1 to 80 characters without control characters, such as #ops; got ${quote(v)}`,
    ),
    ...ALL,
    description:
      "The Slack channel DigitalOcean's alerts name when they post to alertWebhookUrl (DigitalOcean requires one; a Slack app's incoming webhook posts to its own channel whatever this says).",
    rule: "channel named in DigitalOcean's alerts to `alertWebhookUrl`; only with it",
  },
  alertCpuPercent: {
    ...integer(PERCENT_RANGE.min, PERCENT_RANGE.max, 90),
    ...ALL,
    description: `DigitalOcean droplets: alert when CPU use stays above this percentage for ${windowWords(RESOURCE_ALERT_WINDOWS.cpu)}.`,
    rule: `${PERCENT_RANGE.min}–${PERCENT_RANGE.max}; DigitalOcean droplets only`,
  },
  alertMemoryPercent: {
    ...integer(PERCENT_RANGE.min, PERCENT_RANGE.max, 90),
    ...ALL,
    description: `DigitalOcean droplets: alert when memory use stays above this percentage for ${windowWords(RESOURCE_ALERT_WINDOWS.memory)}.`,
    rule: `${PERCENT_RANGE.min}–${PERCENT_RANGE.max}; DigitalOcean droplets only`,
  },
  alertDiskPercent: {
    ...integer(PERCENT_RANGE.min, PERCENT_RANGE.max, 85),
    ...ALL,
    description: `DigitalOcean droplets: alert when the root disk is fuller than this percentage for ${windowWords(RESOURCE_ALERT_WINDOWS.disk)} (DigitalOcean measures the root disk, not the data volume).`,
    rule: `${PERCENT_RANGE.min}–${PERCENT_RANGE.max}; DigitalOcean droplets only (root disk)`,
  },
  alertCertificateDays: {
    ...integer(CERTIFICATE_DAYS_RANGE.min, CERTIFICATE_DAYS_RANGE.max, 14),
    ...ALL,
    description: `With a domain: alert when the site's certificate expires within this many days (certbot renews ${CERTBOT_RENEWAL_DAYS} days before expiry, so an alert means renewal failed).`,
    rule: `${CERTIFICATE_DAYS_RANGE.min}–${CERTIFICATE_DAYS_RANGE.max} (below certbot's ${CERTBOT_RENEWAL_DAYS}-day renewal); only with \`domain\``,
  },
  sshPrivateKey: {
    ...optional((v) => (/^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v.trim()) ? undefined : "must be a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----); got something else")),
    ...ALL,
    secret: true as const,
    defaultText: "SSH agent",
    description: "Private key matching one of sshPublicKeys, for day-2 pushes over SSH. Without it the SSH agent is used. Set with --secret.",
    rule: "key for day-2 pushes over SSH",
  },
  smtpUrl: {
    ...optional((v) => (/^smtps?:\/\/[^\s]+$/.test(v) ? undefined : "must be an smtp:// or smtps:// URL such as smtps://user:pass@smtp.example.com:465; got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "The app's outgoing mail server, smtp:// or smtps:// with credentials (SMTP_URL). Without it mail is logged, not sent. Set with --secret.",
    rule: "the app's mail server (`SMTP_URL`); without it mail is only logged",
  },
  mailFrom: {
    ...optional((v) => (isEmail(v) ? undefined : `must be an email address; got ${quote(v)}`)),
    ...ALL,
    defaultText: "from the URL",
    description: "Sender address of the app's mail (MAIL_FROM). Default: derived from the app's URL.",
    rule: "sender address (`MAIL_FROM`)",
  },
  sentryDsn: {
    ...optional((v) => (isHttpUrl(v) ? undefined : "must be a Sentry DSN URL such as https://key@o1.ingest.sentry.io/1; got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "Sentry DSN for the app's error reports (SENTRY_DSN). Set with --secret.",
    rule: "the app's error reports (`SENTRY_DSN`)",
  },
  stripeSecretKey: {
    ...optional((v) => (/^(sk|rk)_(test|live)_[A-Za-z0-9]+$/.test(v) ? undefined : "must be a Stripe secret or restricted key (sk_live_..., sk_test_..., rk_live_...); got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "Stripe API key for the app's billing (STRIPE_SECRET_KEY; web and worker processes only). Without it billing is off. Set with --secret.",
    rule: "the app's billing (`STRIPE_SECRET_KEY`, web and worker only); without it billing is off",
  },
  stripeWebhookSecret: {
    ...optional((v) => (/^whsec_[A-Za-z0-9+/=]+$/.test(v) ? undefined : "must be a Stripe webhook signing secret (whsec_...); got a value that is not one")),
    ...ALL,
    secret: true as const,
    defaultText: "none",
    description: "Signing secret of the Stripe webhook endpoint <app URL>/billing/webhook (STRIPE_WEBHOOK_SECRET; web processes only). Needs stripeSecretKey. Set with --secret.",
    rule: "signing secret of `<app URL>/billing/webhook` (`STRIPE_WEBHOOK_SECRET`, web only); needs `stripeSecretKey`",
  },
  appDir: {
    ...withDefault("app", (v) => (v.trim() === "" || /[\0\n]/.test(v) ? `must be a folder path (relative to the project or absolute); got ${quote(v)}` : undefined)),
    ...ALL,
    description: "The app's source folder, relative to this project or absolute. Default: app (the reference modular monolith).",
    rule: "the app's source folder (relative to the project, or absolute)",
  },
  appBuildCommand: {
    ...withDefault("npm run --silent build", (v) => (v.trim() === "" ? "must be a command that builds the app and prints the artifact path last; got an empty value" : undefined)),
    ...ALL,
    description: "Run in appDir by `pulumi up`; builds the release artifact and prints its .tar.gz path as the last line (contract in README).",
    rule: "run in `appDir`; prints the artifact path last",
  },
} satisfies Record<string, KeySpec<unknown>>;

export type ConfigKey = keyof typeof KEYS;
/** The parsed value of each key, as its parser returns it. */
export type KeyValues = { [K in ConfigKey]: (typeof KEYS)[K] extends KeySpec<infer T> ? T : never };

/** Every key, in the table's order (the order of Pulumi.yaml and the README). */
export const KNOWN_KEYS = Object.keys(KEYS) as ConfigKey[];

/** Keys whose values are credentials: they must be set with `pulumi config set --secret`. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(KNOWN_KEYS.filter((k) => (KEYS[k] as KeySpec<unknown>).secret));

type KeysWithDefault = { [K in ConfigKey]: (typeof KEYS)[K] extends { default: unknown } ? K : never }[ConfigKey];
/** The value of every key that has a single default. */
export const DEFAULTS = Object.fromEntries(
  KNOWN_KEYS.filter((k) => (KEYS[k] as KeySpec<unknown>).default !== undefined).map((k) => [k, (KEYS[k] as KeySpec<unknown>).default]),
) as { [K in KeysWithDefault]: (typeof KEYS)[K]["default"] };

/**
 * A key set in a stage it does not apply to, one line each, naming the stages that take it.
 * `table` is a parameter so the rule can be tested before any key is stage-specific.
 */
export function keysOutsideStage(raw: Record<string, string>, stage: Stage, table: Readonly<Record<string, Pick<KeySpec<unknown>, "stages">>> = KEYS): Array<[string, string]> {
  return Object.keys(raw)
    .filter((key) => table[key] !== undefined && !table[key].stages.includes(stage))
    .map((key) => {
      const stages = table[key].stages;
      return [key, `is for stage${stages.length > 1 ? "s" : ""} ${stages.join(", ")} only; this stack's stage is ${stage} (remove the key or change saas-vps:stage)`];
    });
}
