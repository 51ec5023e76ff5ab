// Thin entry: read config → build the stack → export outputs. See program/program.ts.
import { createProgram } from "./program/program";

const outputs = createProgram();

export const provider = outputs.provider;
export const stage = outputs.stage;
export const ipv4 = outputs.ipv4;
export const ipv6 = outputs.ipv6;
export const url = outputs.url;
/** What DigitalOcean Uptime requests from outside (README "Watching from outside"); unset with monitoring none. */
export const healthCheckUrl = outputs.healthCheckUrl;
export const sshCommand = outputs.sshCommand;
export const userDataBytes = outputs.userDataBytes;
/** Source hash of the app release shipped by the last `pulumi up`. */
export const releaseId = outputs.releaseId;
/** Server name → `admin@<fixed IPv4>` of every server that runs the app (where `release rollback` runs). */
export const releaseSshTargets = outputs.releaseSshTargets;
/** Server name → `admin@<fixed IPv4>` of every server (`npm run ops`). */
export const sshTargets = outputs.sshTargets;
/** Server name → the SSH host key (public) the server presents; `npm run ops` pins it. */
export const sshHostKeys = outputs.sshHostKeys;
export const backupBucket = outputs.backupBucket;
export const backupEndpoint = outputs.backupEndpoint;
/** restic repository (s3:<endpoint>/<bucket>/restic); see README "Backups and restore". */
export const backupRepository = outputs.backupRepository;
/** Secret: with the bucket keys, restores the backups on any machine (`pulumi stack output --show-secrets`). */
export const backupEncryptionPassword = outputs.backupEncryptionPassword;
export const backupAccessKeyId = outputs.backupAccessKeyId;
export const backupSecretAccessKey = outputs.backupSecretAccessKey;
