/**
 * PostgreSQL settings for an all-in-one box, derived from the server's memory. The numbers
 * follow the PostgreSQL docs' guidance (shared_buffers ≈ 25 % of RAM, effective_cache_size
 * ≈ 50 % when the app shares the box): https://www.postgresql.org/docs/current/runtime-config-resource.html
 */
import { throwIfProblems } from "./errors";
import { CONFIG_DIR } from "./layout";
import type { RenderedFile } from "./files";

export const POSTGRES_CONF_PATH = `${CONFIG_DIR}/postgresql.conf`;

export interface PostgresTuning {
  sharedBuffersMiB: number;
  effectiveCacheSizeMiB: number;
  workMemMiB: number;
  maintenanceWorkMemMiB: number;
  maxConnections: number;
}

/** Memory shares for a box that also runs nginx, several Node processes and the OS. */
export function planPostgresTuning(memoryMiB: number): PostgresTuning {
  throwIfProblems(memoryMiB >= 1024 ? [] : [`postgres: server memory must be at least 1024 MiB; got ${memoryMiB}`]);
  const maxConnections = 100;
  return {
    sharedBuffersMiB: Math.floor(memoryMiB / 4),
    effectiveCacheSizeMiB: Math.floor(memoryMiB / 2),
    // work_mem is per sort/hash per query: keep a burst of connections from exhausting RAM.
    workMemMiB: Math.max(4, Math.floor(memoryMiB / 4 / maxConnections)),
    maintenanceWorkMemMiB: Math.min(1024, Math.max(64, Math.floor(memoryMiB / 16))),
    maxConnections,
  };
}

export function renderPostgresConf(memoryMiB: number): string {
  const t = planPostgresTuning(memoryMiB);
  return [
    "# Rendered by saas-vps (provisioning/postgres.ts) for a server with " + memoryMiB + " MiB of memory.",
    "# Linked into the cluster's conf.d by bootstrap; changing shared_buffers needs a restart.",
    "# Local connections only: the app talks to 127.0.0.1; a private network comes with stage separated.",
    "listen_addresses = 'localhost'",
    `max_connections = ${t.maxConnections}`,
    `shared_buffers = ${t.sharedBuffersMiB}MB`,
    `effective_cache_size = ${t.effectiveCacheSizeMiB}MB`,
    `work_mem = ${t.workMemMiB}MB`,
    `maintenance_work_mem = ${t.maintenanceWorkMemMiB}MB`,
    "password_encryption = scram-sha-256",
    "wal_compression = on",
    "checkpoint_completion_target = 0.9",
    "random_page_cost = 1.1",
    "log_min_duration_statement = 1000",
    "log_line_prefix = '%m [%p] %q%u@%d '",
    "",
  ].join("\n");
}

/**
 * Read by postgresql-common (its createcluster.conf has `include_dir` on this directory): the
 * package's install script then makes no "main" cluster on the root disk. bootstrap creates
 * the one cluster we use on the data volume; without this, first boot ran initdb for a cluster
 * only to drop it (about 80 s of a first boot under emulation, measured in the VM).
 */
export const CREATECLUSTER_DROP_IN_PATH = "/etc/postgresql-common/createcluster.d/50-saas-vps.conf";

export function renderPostgresFiles(memoryMiB: number): RenderedFile[] {
  return [
    // reload applies all but shared_buffers, which changes with the server type: a resize reboots anyway.
    { path: POSTGRES_CONF_PATH, content: renderPostgresConf(memoryMiB), mode: "0644", onChange: "systemctl reload postgresql" },
    {
      path: CREATECLUSTER_DROP_IN_PATH,
      content: "# Rendered by saas-vps: the package makes no cluster; bootstrap creates it on the data volume.\ncreate_main_cluster = false\n",
      mode: "0644",
      beforePackages: true,
    },
  ];
}
