/**
 * The program: read every `saas-vps:` config key (known or not), validate it all before any
 * resource is declared, build the stack, and return the stack outputs. index.ts exports them;
 * tests call it under Pulumi mocks with several configs.
 */
import * as pulumi from "@pulumi/pulumi";
import { bucketNameProblems } from "../plan/bucketName";
import { ConfigError, configWarnings, parseStackConfig, PROVIDER_TOKEN_KEYS } from "../config/config";
import { projectKeyOf } from "../config/keysFromPulumi";
import { ADMIN_USER } from "../provisioning/layout";
import { appUrlFor } from "../plan/serverInput";
import type { MachineKind } from "../provisioning/server";
import { SaasStack } from "../components/saasStack";

/**
 * All of this project's config, short keys, plus which of them Pulumi holds as secrets, and the
 * providers' tokens (their own namespaces) that the stack sets in plain text.
 */
export function readRawConfig(): { raw: Record<string, string>; secretKeys: Set<string>; plaintextProviderTokens: string[] } {
  const all = pulumi.runtime.allConfig();
  // isConfigSecret is exported by the runtime but missing from its typings.
  const isSecret = (pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean }).isConfigSecret ?? (() => false);
  const raw: Record<string, string> = {};
  const secretKeys = new Set<string>();
  for (const [fullKey, value] of Object.entries(all)) {
    const key = projectKeyOf(fullKey);
    if (key === undefined) continue;
    raw[key] = value;
    if (isSecret(fullKey)) secretKeys.add(key);
  }
  const plaintextProviderTokens = PROVIDER_TOKEN_KEYS.filter((key) => all[key] !== undefined && !isSecret(key));
  return { raw, secretKeys, plaintextProviderTokens };
}

/** `opts` go to the root component (tests hook transformations there to see resource options). */
export function createProgram(stackName: string = pulumi.getStack(), opts?: pulumi.ComponentResourceOptions, machineKind?: MachineKind) {
  const { raw, secretKeys, plaintextProviderTokens } = readRawConfig();
  const config = parseStackConfig(raw, { secretKeys, plaintextProviderTokens });
  // The stack name is not config, so the parser cannot see what it makes of the bucket's name.
  const bucketProblems = bucketNameProblems(stackName, config);
  if (bucketProblems.length) throw new ConfigError(bucketProblems);
  for (const warning of configWarnings(config)) void pulumi.log.warn(warning);
  const stack = new SaasStack(`saas-${stackName}`, { config, stackName, machineKind }, opts);
  const webServer = stack.webServer;
  const app = stack.servers[webServer];
  return {
    provider: config.provider,
    stage: config.stage,
    // The site's address (the load balancer's in stage scaled): what the domain's A record names.
    ipv4: stack.siteIpv4,
    // Stage scaled: the balancer's address, where the record goes when a stack moves from separated.
    loadBalancerIpv4: stack.loadBalancer?.ipv4,
    ipv6: app.ipv6,
    url: stack.siteIpv4.apply((ip) => appUrlFor(config, ip)),
    // What the outside check requests; absent when nothing watches (monitoring: none).
    healthCheckUrl: stack.monitoring?.check.target,
    sshCommand: pulumi.interpolate`ssh ${ADMIN_USER}@${app.ipv4}`,
    userDataBytes: app.userDataBytes,
    releaseId: stack.releases[webServer].releaseId,
    // Where `release rollback` runs: every server that runs the app, by server name, as the SSH
    // destination the rollback workflow logs in to.
    releaseSshTargets: pulumi.all(Object.fromEntries(Object.keys(stack.releases).map((name) => [name, pulumi.interpolate`${ADMIN_USER}@${stack.servers[name].ipv4}`]))),
    // Every server, for `npm run ops`: where to log in, and the host key to pin (public halves).
    sshTargets: pulumi.all(Object.fromEntries(Object.entries(stack.servers).map(([name, vps]) => [name, pulumi.interpolate`${ADMIN_USER}@${vps.ipv4}`]))),
    sshHostKeys: pulumi.all(Object.fromEntries(Object.entries(stack.servers).map(([name, vps]) => [name, vps.hostPublicKey]))),
    backupBucket: stack.backupBucket.bucketName,
    backupEndpoint: stack.backupBucket.endpoint,
    backupRepository: stack.backupBucket.extra.repository,
    backupEncryptionPassword: stack.backupEncryptionPassword,
    backupAccessKeyId: stack.backupBucket.accessKeyId,
    backupSecretAccessKey: stack.backupBucket.secretAccessKey,
    // Absent while uploads stay on the data volume; the keys are the app's (secret).
    uploadsBucket: stack.uploadsBucket?.bucketName,
    uploadsEndpoint: stack.uploadsBucket?.endpoint,
    uploadsAccessKeyId: stack.uploadsBucket?.accessKeyId,
    uploadsSecretAccessKey: stack.uploadsBucket?.secretAccessKey,
  };
}
