/**
 * Which repository secrets a deploy or a rollback of one stack needs, from its stack file: the
 * check the deploy workflows run before any pulumi step, so a run without them stops naming each
 * missing secret instead of failing half way through `pulumi up`.
 *
 * A provider credential may live in the stack (`pulumi config set --secret hcloud:token ...`, as
 * the example stacks do) or come from the repository secret of the same purpose, which the
 * workflows hand to the provider as its documented environment variable.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { parseStackConfig } from "../../config/config";
import { projectKeyOf } from "../../config/keysFromPulumi";
import { readStackFile } from "./renderStack";

export type Purpose = "deploy" | "rollback";

export interface NeededSecret {
  /** The repository secret (and the environment variable the workflow sets from it). */
  secret: string;
  /** Why this stack needs it, for the error line. */
  why: string;
  /** A stack config key that, when set, makes the repository secret unnecessary. */
  orStackKey?: string;
}

/** The secrets one stack needs for `purpose`, in the order they are checked. */
export function neededSecrets(stackFile: string, purpose: Purpose): NeededSecret[] {
  const doc = parse(readFileSync(stackFile, "utf8")) ?? {};
  const { config, secretKeys } = readStackFile(stackFile);
  const raw = Object.fromEntries(Object.entries(config).flatMap(([k, v]) => (projectKeyOf(k) ? [[projectKeyOf(k)!, v]] : [])));
  const parsed = parseStackConfig(raw, { secretKeys: new Set(secretKeys.map((k) => projectKeyOf(k) ?? k)) });

  const needed: NeededSecret[] = [{ secret: "PULUMI_ACCESS_TOKEN", why: "logs in to Pulumi Cloud, where the stack's state is" }];
  // `pulumi stack init --secrets-provider passphrase` writes encryptionsalt into the stack file.
  if (doc.encryptionsalt || String(doc.secretsprovider ?? "").startsWith("passphrase")) {
    needed.push({ secret: "PULUMI_CONFIG_PASSPHRASE", why: "decrypts this stack's secrets (passphrase secrets provider)" });
  }
  if (purpose === "rollback") {
    needed.push({ secret: "SSH_PRIVATE_KEY", why: "logs in to the servers as the admin user to run release rollback" });
    return needed;
  }
  const buckets = [parsed.backupBucket, ...(parsed.uploads.storage === "bucket" ? [parsed.uploads.bucket] : [])];
  if (parsed.provider === "hetzner") needed.push({ secret: "HCLOUD_TOKEN", why: "Hetzner Cloud API token (servers)", orStackKey: "hcloud:token" });
  const spaces = buckets.some((b) => b.provider === "digitalocean");
  // DigitalOcean Uptime checks a stack of either provider (README "Watching from outside").
  const uses = [
    ...(parsed.provider === "digitalocean" ? ["servers"] : []),
    ...(spaces ? ["Spaces bucket"] : []),
    ...(parsed.monitoring.service === "digitalocean" ? ["uptime checks and alerts"] : []),
  ];
  if (uses.length > 0) needed.push({ secret: "DIGITALOCEAN_TOKEN", why: `DigitalOcean API token (${uses.join(", ")})`, orStackKey: "digitalocean:token" });
  if (spaces) {
    needed.push({ secret: "SPACES_ACCESS_KEY_ID", why: "Spaces key id (the bucket's S3 API)", orStackKey: "digitalocean:spacesAccessId" });
    needed.push({ secret: "SPACES_SECRET_ACCESS_KEY", why: "Spaces secret key (the bucket's S3 API)", orStackKey: "digitalocean:spacesSecretKey" });
  }
  needed.push({ secret: "SSH_PRIVATE_KEY", why: "pulumi up pushes files and runs the release over SSH", orStackKey: "saas-vps:sshPrivateKey" });
  return needed;
}

/** The needed secrets neither set in `env` (non-empty) nor held by the stack file. */
export function missingSecrets(stackFile: string, purpose: Purpose, env: NodeJS.ProcessEnv): NeededSecret[] {
  const { config } = readStackFile(stackFile);
  return neededSecrets(stackFile, purpose).filter((n) => !env[n.secret]?.trim() && !(n.orStackKey && n.orStackKey in config));
}
