/**
 * Everything one server gets: the sum of what every server gets (roles/base.ts), the shared
 * app part when a role runs the app (roles/app.ts), and each of its roles (roles/index.ts) —
 * the files (shared by first-boot user-data and the day-2 push), the Debian packages, the
 * first-boot steps and units, and the user-data that carries them.
 */
import { renderCloudConfig, type HostKeyPair, USER_DATA_BUDGET_BYTES, USER_DATA_LIMIT_BYTES, userDataSize } from "./cloudInit";
import { RenderError, throwIfProblems } from "./errors";
import type { RenderedFile } from "./files";
import { isWorldReadable } from "./files";
import type { Role } from "../plan/plan";
import { renderApp, type AppInput, type AppProcesses } from "./roles/app";
import { renderBase, renderFirstBootFiles } from "./roles/base";
import { renderDatabaseCaFile } from "./managedDatabase";
import type { HostFirewallRule } from "./hostFirewall";
import { sumContributions, type RoleContribution } from "./roles/contribution";
import { renderPrivateNetwork, type PrivateNetworkInput } from "./roles/privateNetwork";
import { ROLE_MODULES, type RoleInputs, type RoleModule } from "./roles/index";
import { renderMvpDatabase } from "./mvpDatabase";
import type { MvpDatabaseState } from "../config/stages";
import { renderWatchdogFiles, watchdogChecksOf, type WatchdogInput } from "./watchdog";
import { NODE_EXPORTER_PACKAGE, renderNodeExporterFiles } from "./nodeExporter";

export type { MachineKind } from "./roles/db";

export interface ServerRenderInput {
  hostname: string;
  sshPublicKeys: string[];
  /** The server's planned inbound rules: the host firewall (nftables) enforces them. */
  firewall: HostFirewallRule[];
  /** The stack's private network, in split stages: the server waits for its address on first boot. */
  privateNetwork?: PrivateNetworkInput;
  /** The server's roles, each with its input: the server is exactly these roles. */
  roles: Partial<RoleInputs>;
  /** What the app needs wherever it runs; required when a role runs the app. */
  app?: AppInput;
  /** The app server of a stack moving from mvp: the state of its own, old PostgreSQL (plan/move.ts). */
  mvpDatabase?: MvpDatabaseState;
  /** A managed database's CA certificate (PEM), for a server whose processes connect to it. */
  databaseCaCertificate?: string;
  /** The server's SSH host key (first boot only: it is in the user-data, never a pushed file). */
  hostKey?: HostKeyPair;
  /** The stack's watchdog settings; what it checks here follows from the roles. */
  watchdog: WatchdogInput;
}

export interface RenderedServer {
  userData: string;
  userDataBytes: number;
  /** Every file the server gets; the day-2 pushes carry them all, the user-data all but pushOnly ones. */
  files: RenderedFile[];
  packages: string[];
}

export function renderServer(input: ServerRenderInput): RenderedServer {
  validateServerInput(input);
  const sum = sumContributions([
    renderBase({ sshPublicKeys: input.sshPublicKeys, firewall: input.firewall }),
    ...(input.privateNetwork ? [renderPrivateNetwork(input.privateNetwork)] : []),
    ...renderDatabaseClient(input),
    ...renderAppPart(input),
    ...renderRoles(input),
    ...(input.mvpDatabase ? [renderMvpDatabase(input.mvpDatabase)] : []),
    renderWatchdogPart(input),
    renderNodeExporterPart(),
  ]);
  const files = [...sum.files, ...renderFirstBootFiles(sum)];
  validateFiles(files);

  const packages = [...sum.packages];
  const userData = renderCloudConfig({ hostname: input.hostname, sshPublicKeys: input.sshPublicKeys, hostKey: input.hostKey, packages, files });
  const userDataBytes = userDataSize(userData);
  if (userDataBytes > USER_DATA_BUDGET_BYTES) {
    throw new RenderError([
      `server ${input.hostname}: user-data is ${userDataBytes} bytes; the limit is ${USER_DATA_BUDGET_BYTES} (half of Hetzner's ${USER_DATA_LIMIT_BYTES}-byte cap, ` +
        "leaving room for more roles): mark large files that nothing on first boot runs as pushOnly",
    ]);
  }
  return { userData, userDataBytes, files, packages };
}

/** Every server's watchdog, checking what its roles call for; jq writes its alerts (curl is the base's). */
function renderWatchdogPart(input: ServerRenderInput): RoleContribution {
  const files = renderWatchdogFiles({ ...input.watchdog, server: input.hostname, ...watchdogChecksOf(input.roles) });
  return { files, packages: ["jq"], steps: [], units: [], settings: {} };
}

/** Every server's machine metrics, on loopback (provisioning/nodeExporter.ts). */
function renderNodeExporterPart(): RoleContribution {
  return { files: renderNodeExporterFiles(), packages: [NODE_EXPORTER_PACKAGE], steps: [], units: [], settings: {} };
}

/** The managed database's CA, once per server, whichever of its roles connect. */
function renderDatabaseClient(input: ServerRenderInput): RoleContribution[] {
  if (input.databaseCaCertificate === undefined) return [];
  return [{ files: [renderDatabaseCaFile(input.databaseCaCertificate)], packages: [], steps: [], units: [], settings: {} }];
}

/** The server's roles in registry order, each with its input. */
function rolesOf(input: ServerRenderInput): Array<{ module: RoleModule<unknown>; input: unknown }> {
  return (Object.keys(ROLE_MODULES) as Role[])
    .filter((role) => input.roles[role] !== undefined)
    .map((role) => ({ module: ROLE_MODULES[role] as RoleModule<unknown>, input: input.roles[role] }));
}

function renderRoles(input: ServerRenderInput): RoleContribution[] {
  return rolesOf(input).flatMap(({ module, input: roleInput }) => module.render(roleInput));
}

/** The app part once, with the processes of every role that runs the app; none without such a role. */
function renderAppPart(input: ServerRenderInput): RoleContribution[] {
  const processes = rolesOf(input)
    .filter(({ module }) => module.appProcesses !== undefined)
    .map(({ module, input: roleInput }) => module.appProcesses!(roleInput));
  if (processes.length === 0) return [];
  if (!input.app) throw new Error(`server ${input.hostname}: a role runs the app but no app input was given`);
  const merged: AppProcesses = {
    webPorts: processes.flatMap((p) => p.webPorts ?? []),
    workerUnits: processes.flatMap((p) => p.workerUnits ?? []),
    surgePort: processes.find((p) => p.surgePort !== undefined)?.surgePort,
    criticalWorkers: processes.find((p) => p.criticalWorkers !== undefined)?.criticalWorkers,
  };
  return [renderApp(input.app, merged)];
}

function validateServerInput(input: ServerRenderInput): void {
  const problems: string[] = [];
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(input.hostname)) {
    problems.push(`server: hostname ${JSON.stringify(input.hostname)} must be 1-63 lowercase letters, digits or hyphens`);
  }
  if (input.sshPublicKeys.length === 0) problems.push("server: sshPublicKeys must list at least one key; got none");
  if (input.sshPublicKeys.some((k) => /[\r\n]/.test(k))) problems.push("server: an SSH public key contains a line break");
  if (input.app) problems.push(...appProblems(input.app));
  if (input.hostKey && !/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?$/.test(input.hostKey.privateKey)) {
    problems.push("server: hostKey.privateKey must be an unencrypted OpenSSH private key (tls.PrivateKey privateKeyOpenssh)");
  }
  if (input.hostKey && !/^ssh-ed25519 [A-Za-z0-9+/=]+\s*$/.test(input.hostKey.publicKey)) {
    problems.push(`server: hostKey.publicKey must be one "ssh-ed25519 <base64>" key; got ${JSON.stringify(input.hostKey.publicKey.slice(0, 40))}`);
  }
  const logins = { ...input.roles.db?.credentials, ...input.app?.database.credentials };
  const secrets: Record<string, string> = {
    ...Object.fromEntries(Object.entries(logins).map(([login, credential]) => [`database password (${login})`, credential.password])),
    ...(input.app ? { appSecretKey: input.app.secretKey } : {}),
    ...(input.roles.db?.replication ? { "replication password": input.roles.db.replication.password } : {}),
    ...(input.roles.replica ? { "replication password": input.roles.replica.replicationPassword } : {}),
    ...(input.roles.cache ? { "Valkey password": input.roles.cache.password } : {}),
  };
  if (input.roles.db && input.roles.replica) problems.push("server: a server is the primary (db) or a replica, not both");
  for (const [name, value] of Object.entries(secrets)) {
    // Values land in systemd EnvironmentFile lines: no quoting games, so no spaces or quotes.
    if (!/^[A-Za-z0-9_\-.~]{16,}$/.test(value)) problems.push(`server: secret ${name} must be 16+ URL-safe characters without spaces or quotes`);
  }
  throwIfProblems(problems);
}

function appProblems(app: AppInput): string[] {
  const problems: string[] = [];
  if (!/^https?:\/\/[^\s/]+$/.test(app.url)) problems.push(`server: appUrl ${JSON.stringify(app.url)} must be http(s)://host with no path or spaces`);
  for (const [key, value] of Object.entries(app.environment)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(key)) problems.push(`server: app environment name ${JSON.stringify(key)} must be UPPER_SNAKE_CASE`);
    // One EnvironmentFile line per variable: a line break or quote would corrupt or reshape it.
    if (/[\r\n"'\\]/.test(value)) problems.push(`server: app environment ${key} must not contain line breaks, quotes or backslashes`);
  }
  return problems;
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
