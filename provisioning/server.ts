/**
 * Everything one server gets, from resolved values: the files (shared by first-boot user-data
 * and the day-2 push), the Debian packages, and the user-data that carries them.
 */
import { BOOTSTRAP_PATH, renderCloudConfig, USER_DATA_LIMIT_BYTES, userDataSize } from "./cloudInit";
import { RenderError, throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { isWorldReadable } from "./files";
import {
  ACME_WEBROOT,
  APP_ENV_FILE,
  APP_ROOT,
  APP_USER,
  CONFIG_DIR,
  DATA_LABEL,
  DATA_MOUNT,
  DATABASE_NAME,
  DATABASE_USER,
  DB_ENV_FILE,
  LIB_DIR,
  STATE_DIR,
  SURGE_PORT,
  TLS_DIR,
  UPLOAD_DIR,
  webPorts as planWebPorts,
  workerUnits as planWorkerUnits,
} from "./layout";
import { renderNginxFiles } from "./nginx";
import { renderPostgresFiles, POSTGRES_CONF_PATH } from "./postgres";
import { loadScript } from "./scripts";
import { renderSystemFiles } from "./system";
import { BASE_SANDBOX, renderAppUnitFiles, renderUnit, ROLLING_RESTART, UNIT_DIR } from "./systemd";

/** Where the data volume shows up, per kind of machine (never mounted by this name: by label). */
export const DATA_DEVICE_GLOBS = {
  hetzner: "/dev/disk/by-id/scsi-0HC_Volume_*",
  digitalocean: "/dev/disk/by-id/scsi-0DO_Volume_*",
  qemu: "/dev/disk/by-id/virtio-saas-data",
} as const;
export type MachineKind = keyof typeof DATA_DEVICE_GLOBS;

export type ServerRole = "web" | "worker" | "db";

export interface ServerRenderInput {
  hostname: string;
  machine: MachineKind;
  roles: ServerRole[];
  memoryMiB: number;
  webInstances: number;
  workerInstances: number;
  sshPublicKeys: string[];
  /** Public base URL of the app (https://domain, or http://<fixed IP>). */
  appUrl: string;
  domain?: string;
  acmeEmail?: string;
  /** Extra app environment (SMTP_URL, MAIL_FROM, SENTRY_DSN, ...); may hold secrets: app.env is 0600. */
  appEnvironment?: Record<string, string>;
  /** Generated secrets (from @pulumi/random); they only ever land in 0600 files. */
  secrets: { databasePassword: string; appSecretKey: string };
  /** Files other renderers add (backups, releases), already validated by them. */
  extraFiles?: RenderedFile[];
  /** Extra Debian packages those renderers need. */
  extraPackages?: string[];
  /** Units bootstrap enables and starts (e.g. timers). */
  enableUnits?: string[];
}

export interface RenderedServer {
  userData: string;
  userDataBytes: number;
  files: RenderedFile[];
  packages: string[];
}

const asset = (name: string) => loadScript(`server/${name}`);

export function renderServer(input: ServerRenderInput): RenderedServer {
  validateServerInput(input);
  const has = (role: ServerRole) => input.roles.includes(role);
  const ports = has("web") ? planWebPorts(input.webInstances) : [];
  const workers = has("worker") ? planWorkerUnits(input.workerInstances) : [];
  const enableUnits = [...(input.enableUnits ?? []), ...(input.domain ? ["tls-issue.timer"] : [])];

  const files: RenderedFile[] = [
    ...renderSystemFiles(),
    ...(has("db") ? [...renderPostgresFiles(input.memoryMiB), postgresMountDropIn()] : []),
    ...(has("web") || has("worker") ? [...renderAppUnitFiles(ports, workers), appEnvFile(input)] : []),
    ...(has("web") ? renderNginxFiles({ webPorts: ports, domain: input.domain, surgePort: surgePortFor(ports) }) : []),
    ...(input.domain ? tlsFiles() : []),
    dbEnvFile(input),
    bootstrapEnvFile(input, enableUnits),
    { path: BOOTSTRAP_PATH, content: asset("bootstrap"), mode: "0755", onChange: BOOTSTRAP_PATH },
    ...(input.extraFiles ?? []),
  ];
  validateFiles(files);

  const packages = planPackages(input);
  const userData = renderCloudConfig({
    hostname: input.hostname,
    sshPublicKeys: input.sshPublicKeys,
    packages,
    files,
  });
  const userDataBytes = userDataSize(userData);
  if (userDataBytes > USER_DATA_LIMIT_BYTES) {
    throw new RenderError([`user-data for ${input.hostname} is ${userDataBytes} bytes; Hetzner accepts at most ${USER_DATA_LIMIT_BYTES}`]);
  }
  return { userData, userDataBytes, files, packages };
}

/** A single web instance gets a surge port so releases stay zero-downtime (see layout.ts). */
export function surgePortFor(webPorts: number[]): number | undefined {
  return webPorts.length === 1 ? SURGE_PORT : undefined;
}

export function planPackages(input: ServerRenderInput): string[] {
  const has = (role: ServerRole) => input.roles.includes(role);
  return [
    "ca-certificates",
    "curl",
    "e2fsprogs",
    "fail2ban",
    "python3-systemd",
    "unattended-upgrades",
    ...(has("db") ? ["postgresql"] : ["postgresql-client"]),
    ...(has("web") || has("worker") ? ["nodejs"] : []),
    ...(has("web") ? ["nginx"] : []),
    ...(input.domain ? ["certbot", "ssl-cert"] : []),
    ...(input.extraPackages ?? []),
  ].filter((p, i, all) => all.indexOf(p) === i);
}

function validateServerInput(input: ServerRenderInput): void {
  const problems: string[] = [];
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(input.hostname)) {
    problems.push(`server: hostname ${JSON.stringify(input.hostname)} must be 1-63 lowercase letters, digits or hyphens`);
  }
  if (input.sshPublicKeys.length === 0) problems.push("server: sshPublicKeys must list at least one key; got none");
  if (input.sshPublicKeys.some((k) => /[\r\n]/.test(k))) problems.push("server: an SSH public key contains a line break");
  if (!/^https?:\/\/[^\s/]+$/.test(input.appUrl)) problems.push(`server: appUrl ${JSON.stringify(input.appUrl)} must be http(s)://host with no path or spaces`);
  if (input.domain !== undefined && !input.acmeEmail) problems.push("server: acmeEmail is required with a domain");
  for (const [key, value] of Object.entries(input.appEnvironment ?? {})) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(key)) problems.push(`server: app environment name ${JSON.stringify(key)} must be UPPER_SNAKE_CASE`);
    // One EnvironmentFile line per variable: a line break or quote would corrupt or reshape it.
    if (/[\r\n"'\\]/.test(value)) problems.push(`server: app environment ${key} must not contain line breaks, quotes or backslashes`);
  }
  for (const [name, value] of Object.entries(input.secrets)) {
    // Values land in systemd EnvironmentFile lines: no quoting games, so no spaces or quotes.
    if (!/^[A-Za-z0-9_\-.~]{16,}$/.test(value)) problems.push(`server: secret ${name} must be 16+ URL-safe characters without spaces or quotes`);
  }
  throwIfProblems(problems);
}

function validateFiles(files: RenderedFile[]): void {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const file of files) {
    if (seen.has(file.path)) problems.push(`server: two renderers write ${file.path}`);
    seen.add(file.path);
    if (!file.path.startsWith("/")) problems.push(`server: file path ${file.path} must be absolute`);
    if (file.secret && isWorldReadable(file.mode)) problems.push(`server: ${file.path} holds secrets but mode ${file.mode} lets anyone read it`);
  }
  throwIfProblems(problems);
}

function appEnvFile(input: ServerRenderInput): RenderedFile {
  const content = [
    "# Rendered by saas-vps: the app's environment (secrets). Read by systemd for web@ and worker@.",
    `DATABASE_URL=postgres://${DATABASE_USER}:${input.secrets.databasePassword}@127.0.0.1:5432/${DATABASE_NAME}`,
    `SECRET_KEY=${input.secrets.appSecretKey}`,
    `APP_URL=${input.appUrl}`,
    `UPLOAD_DIR=${UPLOAD_DIR}`,
    "LOG_LEVEL=info",
    ...Object.entries(input.appEnvironment ?? {}).map(([key, value]) => `${key}=${value}`),
    "",
  ].join("\n");
  return { path: APP_ENV_FILE, content, mode: "0600", owner: `${APP_USER}:${APP_USER}`, secret: true, onChange: ROLLING_RESTART };
}

function dbEnvFile(input: ServerRenderInput): RenderedFile {
  const content = `# Rendered by saas-vps: password of the app's database role.\nDB_PASSWORD=${input.secrets.databasePassword}\n`;
  return { path: DB_ENV_FILE, content, mode: "0600", secret: true, onChange: BOOTSTRAP_PATH };
}

function bootstrapEnvFile(input: ServerRenderInput, enableUnits: string[]): RenderedFile {
  const settings: Record<string, string> = {
    DATA_DEVICE_GLOB: DATA_DEVICE_GLOBS[input.machine],
    DATA_LABEL,
    DATA_MOUNT,
    APP_USER,
    APP_ROOT,
    DB_NAME: DATABASE_NAME,
    DB_USER: DATABASE_USER,
    DB_ENV_FILE,
    POSTGRES_CONF: POSTGRES_CONF_PATH,
    STATE_DIR,
    ACME_WEBROOT,
    TLS_DIR,
    DOMAIN: input.domain ?? "",
    ACME_EMAIL: input.acmeEmail ?? "",
    ENABLE_UNITS: enableUnits.join(" "),
  };
  const content = [
    "# Rendered by saas-vps: settings for bootstrap and tls-issue (no secrets here).",
    ...Object.entries(settings).map(([k, v]) => `${k}="${v}"`),
    "",
  ].join("\n");
  return { path: `${CONFIG_DIR}/bootstrap.env`, content, mode: "0644", onChange: BOOTSTRAP_PATH };
}

/** PostgreSQL's data lives on the volume: never start the cluster without it mounted. */
function postgresMountDropIn(): RenderedFile {
  const content = renderUnit({ Unit: [["RequiresMountsFor", DATA_MOUNT]] }, "PostgreSQL waits for the data volume");
  return { path: `${UNIT_DIR}/postgresql@.service.d/50-saas-vps.conf`, content, mode: "0644", onChange: "systemctl daemon-reload" };
}

/**
 * Sandbox of tls-issue.service (certbot, `nginx -t`, `systemctl reload nginx`, as root): no
 * kernel, device, clock or namespace access, a syscall filter, few capabilities. The file system
 * view is left whole (certbot writes /etc/letsencrypt, /var/lib and /var/log/letsencrypt, nginx -t
 * opens its logs) and so is W^X memory (Python's cffi callbacks need it): those are what a run
 * against a real ACME server would have to prove, which we cannot do here. Exposure 3.0 (9.6 bare).
 */
const TLS_ISSUE_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["CapabilityBoundingSet", "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID"],
  ["UMask", "0022"],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
];

function tlsFiles(): RenderedFile[] {
  const issue = `${LIB_DIR}/tls-issue`;
  return [
    { path: issue, content: asset("tls-issue"), mode: "0755" },
    {
      path: `${UNIT_DIR}/tls-issue.service`,
      content: renderUnit(
        {
          Unit: [["Description", "Get the Let's Encrypt certificate for the site"], ["After", "network-online.target nginx.service"], ["Wants", "network-online.target"]],
          Service: [["Type", "oneshot"], ["ExecStart", issue], ...TLS_ISSUE_SANDBOX],
        },
        "Issues the TLS certificate (renewal is certbot.timer's job)",
      ),
      mode: "0644",
      onChange: "systemctl daemon-reload",
    },
    {
      path: `${UNIT_DIR}/tls-issue.timer`,
      content: renderUnit(
        {
          Unit: [["Description", "Retry getting the TLS certificate until DNS points here"]],
          Timer: [["OnActiveSec", "30s"], ["OnUnitActiveSec", "1h"]],
          Install: [["WantedBy", "timers.target"]],
        },
        "Retries tls-issue hourly; a no-op once the certificate exists",
      ),
      mode: "0644",
      onChange: "systemctl daemon-reload",
    },
    {
      path: "/etc/letsencrypt/renewal-hooks/deploy/50-saas-vps-reload-nginx",
      content: "#!/bin/sh\n# Rendered by saas-vps: serve a renewed certificate without a restart.\nnginx -t -q && systemctl reload nginx\n",
      mode: "0755",
    },
  ];
}
