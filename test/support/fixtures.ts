import { qualifyKey } from "../../config/keysFromPulumi";
/** Minimal valid raw configs (short keys, Pulumi's string values) that tests merge bad fragments into. */
export const ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVXFYK2vjsGfH6+8RIcqpGq71+8HcRDZONLfjwL/4GU you@laptop";

/** Where a minimal stack's alerts go: the stack watches itself by default and needs a route. */
export const ALERT_EMAIL = "ops@example.org";

/**
 * Hetzner cannot mint S3 keys, so a Hetzner stack (backups on Hetzner by default) carries them.
 * No domain, so the stack says it accepts plain HTTP (withDomain gives the HTTPS variant).
 */
export function minimalRaw(provider: "hetzner" | "digitalocean" = "hetzner"): Record<string, string> {
  return {
    provider,
    plainHttp: "true",
    sshPublicKeys: JSON.stringify([ED25519_KEY]),
    sshAllowedCidrs: JSON.stringify(["203.0.113.7/32"]),
    alertEmails: JSON.stringify([ALERT_EMAIL]),
    ...(provider === "hetzner" ? { backupAccessKeyId: "HETZNERKEYID", backupSecretAccessKey: "hetzner-secret-key" } : {}),
  };
}

/** The same raw config as a full Pulumi config map (saas-vps:<key>). */
export function qualified(raw: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [qualifyKey(k), v]));
}

/**
 * What a stack adds at stage separated: uploads go to a bucket there, and on Hetzner its keys
 * are given (Hetzner's API cannot mint them), as for the backup bucket.
 */
export function separatedRaw(provider: "hetzner" | "digitalocean" = "hetzner"): Record<string, string> {
  return { stage: "separated", ...uploadsBucketKeys(provider) };
}

/** Uploads in a bucket (the default from separated on; a choice in mvp), with Hetzner's given keys. */
export function uploadsBucketKeys(provider: "hetzner" | "digitalocean" = "hetzner"): Record<string, string> {
  return provider === "hetzner" ? { uploadsAccessKeyId: "HETZNERUPLOADSKEY", uploadsSecretAccessKey: "hetzner-uploads-secret" } : {};
}

/** A raw config with a domain (HTTPS): plainHttp is refused there, so it is dropped. */
export function withDomain(raw: Record<string, string>, domain = "shop.example.org", acmeEmail = "ops@example.org"): Record<string, string> {
  const { plainHttp: _plainHttp, ...rest } = raw;
  return { ...rest, domain, acmeEmail };
}

/** What a stack adds at stage scaled: its app servers behind the balancer, and a read replica when asked. */
export function scaledRaw(provider: "hetzner" | "digitalocean" = "hetzner", appServers = 2, readReplica = true): Record<string, string> {
  return { ...separatedRaw(provider), stage: "scaled", appServers: String(appServers), ...(readReplica ? { readReplica: "true" } : {}) };
}
