/**
 * The stacks and settings the @vm tests boot, in one place: the tests use them, and CI builds
 * their VM images ahead of time from the same list (test/vm/prebuildImages.ts).
 */
import * as path from "node:path";
import { qualifyKey } from "../../config/keysFromPulumi";
import { readStackFile } from "../../cli/lib/renderStack";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { REPLICA_SERVER } from "../../plan/scaled";

/** The one-server e2e: the staging stack (DigitalOcean) with prod's process counts. */
export const MVP_E2E_STACK = "staging";
export function mvpE2eSettings(): Record<string, string> {
  const prod = readStackFile(path.join(PROJECT_DIR, "Pulumi.prod.yaml")).config;
  return { webInstances: prod[qualifyKey("webInstances")], workerInstances: prod[qualifyKey("workerInstances")] };
}

/** The split-stack e2e and the move: the example stack at stage separated. */
export const SPLIT_STACK = "separated";
/**
 * Plain HTTP (no domain: no ACME here; plainHttp is the opt-in that takes), and no SMTP server: the example's smtpUrl is a placeholder
 * secret, and without SMTP_URL the app logs each mail instead of sending it, which the checks read.
 */
export const SPLIT_SETTINGS = { domain: null, acmeEmail: null, plainHttp: "true", smtpUrl: null } as const;

/** Stage scaled behind the balancer's stand-in: the example stack, no SMTP server (as above). */
export const SCALED_STACK = "scaled";
export const SCALED_SETTINGS = { smtpUrl: null } as const;
/**
 * The servers the scaled suite boots unless SAAS_VPS_VM_SERVERS says otherwise, as `npm test` runs
 * it: the balanced part, both app servers behind the balancer's stand-in and db, and the read
 * replica (naming it plans one). Every server (worker and cache too: five emulated VMs without
 * the replica, about 45 minutes on 2 cores) does not fit CI's hour beside the e2e;
 * SAAS_VPS_VM_SERVERS=all (`npm run test:scaled`) boots them all.
 */
export const SCALED_DEFAULT_SERVERS = ["app", "app-2", "db", REPLICA_SERVER];

/**
 * The stack's settings for a scaled run that boots `servers` (undefined: every one). The example
 * stack has no read replica; a run that names its server (`replica`) plans one (readReplica).
 */
export function scaledSettings(servers: string[] | undefined): Record<string, string | null> {
  return { ...SCALED_SETTINGS, ...(servers?.includes(REPLICA_SERVER) ? { readReplica: "true" } : {}) };
}

/** The servers a scaled run boots: SAAS_VPS_VM_SERVERS (comma-separated names, or `all`: undefined), else the default part. */
export function scaledServers(env = process.env.SAAS_VPS_VM_SERVERS): string[] | undefined {
  if (env === "all") return undefined;
  const names = env?.split(",").map((n) => n.trim()).filter(Boolean);
  return names && names.length > 0 ? names : SCALED_DEFAULT_SERVERS;
}

/**
 * The renders `npm test`'s VM suites boot servers from (stack, settings, the servers booted; the
 * private CIDR changes no package), whose images CI builds ahead. The suites outside `npm test`
 * (stage separated's, the move, every scaled server) build theirs when they run.
 */
export function vmTestRenders(): { stack: string; settings: Record<string, string | null>; servers?: string[] }[] {
  return [
    { stack: MVP_E2E_STACK, settings: mvpE2eSettings() },
    { stack: SCALED_STACK, settings: scaledSettings(SCALED_DEFAULT_SERVERS), servers: SCALED_DEFAULT_SERVERS },
  ];
}
