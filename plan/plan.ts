/**
 * The stage planner: a parsed StackConfig in, a plain description of what to build out.
 * components/ only loops over this plan creating resources, so growing from `mvp` to
 * `separated` or `scaled` is a change here, not a rewrite of the components.
 */
import type { BackupBucketConfig, Stage, StackConfig } from "../config/config";
import type { Provider } from "../config/providers";
import { DATA_LABEL, DATA_MOUNT } from "../provisioning/layout";

/**
 * What a server does. Declared only here; provisioning/roles/index.ts maps each role to the
 * module that renders it, and plan/serverInput.ts maps config to each role's input.
 */
export type Role = "web" | "worker" | "db";

export interface FirewallRule {
  port: number;
  protocol: "tcp";
  /** CIDRs allowed in; "0.0.0.0/0" and "::/0" mean anyone. */
  sources: string[];
  description: string;
}

export interface VolumePlan {
  /** Resource name suffix, e.g. "app-data". */
  name: string;
  sizeGb: number;
  /** Filesystem label the server mounts it by (never by device name). */
  label: string;
  mountPoint: string;
}

export interface ServerPlan {
  /** Logical name, unique in the stack: used for resource names and render output folders. */
  name: string;
  roles: Role[];
  serverType: string;
  region: string;
  /** Inbound rules; everything else inbound is dropped. */
  firewall: FirewallRule[];
  /** Persistent data (PostgreSQL) lives here when the server has the db role. */
  volume?: VolumePlan;
  webInstances: number;
  workerInstances: number;
}

export interface StackPlan {
  provider: Provider;
  stage: Stage;
  servers: ServerPlan[];
  backupBucket: BackupBucketConfig;
}

export const ANYWHERE = ["0.0.0.0/0", "::/0"];
export const DEFAULT_DATA_VOLUME_GB = 20;

/** Public ingress of any server that runs web: SSH from the allowed CIDRs, HTTP(S) from anyone. */
export function planPublicFirewall(sshAllowedCidrs: string[]): FirewallRule[] {
  return [
    { port: 22, protocol: "tcp", sources: [...sshAllowedCidrs], description: "SSH from sshAllowedCidrs" },
    { port: 80, protocol: "tcp", sources: [...ANYWHERE], description: "HTTP (ACME challenge, redirect)" },
    { port: 443, protocol: "tcp", sources: [...ANYWHERE], description: "HTTPS" },
  ];
}

export function planStack(config: StackConfig): StackPlan {
  switch (config.stage) {
    case "mvp":
      return {
        provider: config.provider,
        stage: config.stage,
        servers: [
          {
            name: "app",
            roles: ["web", "worker", "db"],
            serverType: config.serverType,
            region: config.region,
            firewall: planPublicFirewall(config.sshAllowedCidrs),
            volume: { name: "app-data", sizeGb: DEFAULT_DATA_VOLUME_GB, label: DATA_LABEL, mountPoint: DATA_MOUNT },
            webInstances: config.webInstances,
            workerInstances: config.workerInstances,
          },
        ],
        backupBucket: config.backupBucket,
      };
    case "separated":
    case "scaled":
      // The parser rejects these until they are built; reaching here is a programming error.
      throw new Error(`stage ${config.stage} is not built yet`);
    default: {
      const unreachable: never = config.stage;
      throw new Error(`unhandled stage ${unreachable}`);
    }
  }
}
