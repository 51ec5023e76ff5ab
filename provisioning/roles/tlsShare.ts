/**
 * One Let's Encrypt certificate for the app servers behind the balancer (stage scaled with a
 * domain). The issuer (the plan's certificateIssuer) runs tls-issue as any server with a domain
 * does, and keeps the certificate and key for the tls-share user, whose only command prints them.
 * Every other app server (a follower) fetches them over SSH on the private network with a key of
 * its own from Pulumi, pinning the issuer's host key, and serves them; ACME's HTTP-01 requests
 * that reach a follower go to the issuer's health listener (nginx.ts). docs/ARCHITECTURE.md,
 * "TLS and client addresses behind the balancer".
 */
import type { RenderedFile } from "../files";
import { ACME_WEBROOT, LIB_DIR, SSH_PORT, TLS_DIR, TLS_SHARE_CLIENT_DIR, TLS_SHARE_EXPORT, TLS_SHARE_HOME, TLS_SHARE_USER } from "../layout";
import { loadScript } from "../scripts";
import { BASE_SANDBOX, renderUnit, UNIT_DIR } from "../unit";
import type { RoleContribution } from "./contribution";

/** A follower's key as the issuer admits it. */
export interface TlsShareFollower {
  /** The follower's plan name (the key's comment). */
  name: string;
  /** Its public key, "ssh-ed25519 <base64>". */
  publicKey: string;
  /**
   * Where it connects from: its private address as /32, or the private network's range while its
   * address is not known yet (DigitalOcean, first boot; the day-2 push narrows it).
   */
  source: string;
}

/** The issuer's part: who may fetch. */
export interface TlsShareIssuerInput {
  role: "issuer";
  followers: TlsShareFollower[];
}

/** A follower's part: where the certificate comes from, and the key it fetches it with. */
export interface TlsShareFollowerInput {
  role: "follower";
  /** The issuer's plan name: its pinned host key is filed under it. */
  issuer: string;
  /** The issuer's private address. */
  issuerAddress: string;
  /** The issuer's SSH host public key ("ssh-ed25519 <base64>"), pinned. */
  issuerHostKey: string;
  /** This server's private key for the issuer (OpenSSH format; a secret). */
  privateKey: string;
}

export type TlsShareInput = TlsShareIssuerInput | TlsShareFollowerInput;

export const TLS_SHARE_PUBLISH = `${LIB_DIR}/tls-share-publish`;
export const TLS_SHARE_FETCH = `${LIB_DIR}/tls-share-fetch`;
export const TLS_SHARE_AUTHORIZED_KEYS = `${TLS_SHARE_HOME}/.ssh/authorized_keys`;
export const TLS_SHARE_KEY = `${TLS_SHARE_CLIENT_DIR}/id_ed25519`;
export const TLS_SHARE_KNOWN_HOSTS = `${TLS_SHARE_CLIENT_DIR}/known_hosts`;
export const TLS_SHARE_FETCH_TIMER = "tls-share-fetch.timer";
/** certbot runs it after every renewal, after the nginx reload hook (50-). */
export const TLS_SHARE_DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/60-saas-vps-tls-share";

const SSH_PUBLIC_KEY = /^ssh-ed25519 [A-Za-z0-9+/]+=*$/;
const OPENSSH_PRIVATE_KEY = /^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?$/;
/** An address or range sshd's from= takes, and nothing that could end the quotes. */
const FROM_SOURCE = /^[0-9a-f.:]+(\/\d{1,3})?$/i;
const SERVER_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The issuer: who may fetch, the forced command, and the publishing of each new certificate. */
export function renderTlsShareIssuer(input: TlsShareIssuerInput): RoleContribution {
  const problems = input.followers.flatMap((f) => [
    ...(SERVER_NAME.test(f.name) ? [] : [`tls share: follower name ${JSON.stringify(f.name)} is not a server name`]),
    ...(SSH_PUBLIC_KEY.test(f.publicKey.trim()) ? [] : [`tls share: ${f.name}'s key must be one "ssh-ed25519 <base64>" key`]),
    ...(FROM_SOURCE.test(f.source) ? [] : [`tls share: ${f.name}'s source must be an address or range; got ${JSON.stringify(f.source)}`]),
  ]);
  if (input.followers.length === 0) problems.push("tls share: an issuer without followers (only stage scaled plans one, with 2+ app servers)");
  if (problems.length > 0) throw new Error(problems.join("\n"));
  return {
    files: [
      { path: TLS_SHARE_EXPORT, content: loadScript("server/tls-share-export"), mode: "0755" },
      { path: TLS_SHARE_PUBLISH, content: loadScript("server/tls-share-publish"), mode: "0755" },
      { path: TLS_SHARE_AUTHORIZED_KEYS, content: renderTlsShareAuthorizedKeys(input.followers), mode: "0644" },
      {
        path: TLS_SHARE_DEPLOY_HOOK,
        content: `#!/bin/sh\n# Rendered by saas-vps: hand each renewed certificate to the other app servers.\nexec ${TLS_SHARE_PUBLISH}\n`,
        mode: "0755",
      },
    ],
    packages: [],
    steps: ["45-tls-share"],
    units: [],
    settings: { TLS_SHARE_USER, TLS_SHARE_HOME, TLS_SHARE_PUBLISH },
  };
}

/**
 * One line per follower: its key may only run the export (restrict: no forwarding, no pty, no
 * agent, no rc), and only from its own private address.
 */
export function renderTlsShareAuthorizedKeys(followers: TlsShareFollower[]): string {
  return [
    "# Rendered by saas-vps: the other app servers' keys; each may only fetch the certificate.",
    ...followers.map((f) => `restrict,command="${TLS_SHARE_EXPORT}",from="${f.source}" ${f.publicKey.trim()} ${f.name}`),
    "",
  ].join("\n");
}

/**
 * Sandbox of tls-share-fetch.service (ssh, openssl, the TLS files, a reload of nginx through
 * systemd, as root): the file system read-only but the TLS directory, no capabilities at all (it
 * writes only root's own files), and the base sandbox's kernel, device and namespace walls.
 */
const TLS_SHARE_FETCH_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["ProtectSystem", "strict"],
  ["ReadWritePaths", TLS_DIR],
  ["ProcSubset", "pid"],
  ["CapabilityBoundingSet", ""],
  ["AmbientCapabilities", ""],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
  ["MemoryDenyWriteExecute", "yes"],
  ["RemoveIPC", "yes"],
  ["DevicePolicy", "closed"],
  ["UMask", "0077"],
];

/** Fetch runs after boot and every few hours; a failed run retries until the issuer has a certificate. */
export const TLS_SHARE_FETCH_EVERY = "3h";
export const TLS_SHARE_RETRY_AFTER = "5min";

/** A follower: the fetch, its timer, its key and the issuer's pinned host key. */
export function renderTlsShareFollower(input: TlsShareFollowerInput, domain: string): RoleContribution {
  const problems: string[] = [];
  if (!SERVER_NAME.test(input.issuer)) problems.push(`tls share: issuer ${JSON.stringify(input.issuer)} is not a server name`);
  if (!FROM_SOURCE.test(input.issuerAddress) || input.issuerAddress.includes("/")) problems.push(`tls share: issuerAddress must be one address; got ${JSON.stringify(input.issuerAddress)}`);
  if (!SSH_PUBLIC_KEY.test(input.issuerHostKey.trim())) problems.push('tls share: issuerHostKey must be one "ssh-ed25519 <base64>" key');
  if (!OPENSSH_PRIVATE_KEY.test(input.privateKey)) problems.push("tls share: privateKey must be an unencrypted OpenSSH private key (tls.PrivateKey privateKeyOpenssh)");
  if (problems.length > 0) throw new Error(problems.join("\n"));
  const service = "tls-share-fetch.service";
  return {
    files: [
      { path: TLS_SHARE_FETCH, content: loadScript("server/tls-share-fetch"), mode: "0755" },
      { path: TLS_SHARE_KEY, content: input.privateKey.endsWith("\n") ? input.privateKey : `${input.privateKey}\n`, mode: "0600", secret: true },
      // Filed under the issuer's name (HostKeyAlias), so it holds whatever address it is reached at.
      { path: TLS_SHARE_KNOWN_HOSTS, content: `${input.issuer} ${input.issuerHostKey.trim()}\n`, mode: "0644" },
      {
        path: `${UNIT_DIR}/${service}`,
        content: renderUnit(
          {
            Unit: [
              ["Description", `Fetch the site's certificate from ${input.issuer}, which issues it`],
              ["After", "network-online.target nginx.service"],
              ["Wants", "network-online.target"],
              // Retries never give up: the issuer may take hours to get the certificate (DNS).
              ["StartLimitIntervalSec", "0"],
            ],
            Service: [["Type", "oneshot"], ["ExecStart", TLS_SHARE_FETCH], ["Restart", "on-failure"], ["RestartSec", TLS_SHARE_RETRY_AFTER], ...TLS_SHARE_FETCH_SANDBOX],
          },
          "Fetches the site's certificate from the app server that issues it; retried until it has one",
        ),
        mode: "0644",
        onChange: "systemctl daemon-reload",
      },
      {
        path: `${UNIT_DIR}/${TLS_SHARE_FETCH_TIMER}`,
        content: renderUnit(
          {
            Unit: [["Description", "Fetch the site's certificate after boot and every few hours"]],
            Timer: [["OnActiveSec", "30s"], ["OnUnitActiveSec", TLS_SHARE_FETCH_EVERY]],
            Install: [["WantedBy", "timers.target"]],
          },
          `Fetches the certificate after boot and every ${TLS_SHARE_FETCH_EVERY} (renewals reach this server within that)`,
        ),
        mode: "0644",
        onChange: "systemctl daemon-reload",
      },
    ],
    // ssl-cert: the snake-oil pair nginx serves until the first fetch (40-tls).
    packages: ["openssh-client", "ssl-cert"],
    steps: ["40-tls"],
    units: [TLS_SHARE_FETCH_TIMER],
    settings: {
      ACME_WEBROOT,
      TLS_DIR,
      DOMAIN: domain,
      TLS_SHARE_ISSUER: input.issuerAddress,
      TLS_SHARE_HOST_ALIAS: input.issuer,
      TLS_SHARE_USER,
      TLS_SHARE_PORT: String(SSH_PORT),
      TLS_SHARE_KEY,
      TLS_SHARE_KNOWN_HOSTS,
    },
  };
}

/** Where the follower's nginx sends ACME's HTTP-01 requests: the issuer's ACME relay listener. */
export function acmeChallengeUpstream(issuerAddress: string, relayPort: number): string {
  return `http://${issuerAddress.includes(":") ? `[${issuerAddress}]` : issuerAddress}:${relayPort}`;
}
