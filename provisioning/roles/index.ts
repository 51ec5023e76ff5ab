/**
 * The role registry: every role a plan can give a server, with the module that renders it.
 * Adding a role is a module under roles/ and a line here; renderServer sums whatever a
 * server's roles contribute and knows none of them by name.
 */
import type { Role } from "../../plan/plan";
import type { AppProcesses } from "./app";
import { renderBackup, type BackupInput } from "./backup";
import { renderCache, type CacheInput } from "./cache";
import type { RoleContribution } from "./contribution";
import { renderDb, type DbInput } from "./db";
import { renderReplica, type ReplicaInput } from "./replica";
import { renderWeb, type WebInput } from "./web";
import { renderWorker, type WorkerInput } from "./worker";

export interface RoleModule<Input> {
  /**
   * The app processes the role runs on the server. A server with any role that has this gets
   * the shared app part (roles/app.ts) once, with the processes of all its roles.
   */
  appProcesses?: (input: Input) => Partial<AppProcesses>;
  render(input: Input): RoleContribution[];
}

/** Each role's input, as its module takes it. */
export interface RoleInputs {
  web: WebInput;
  worker: WorkerInput;
  db: DbInput;
  replica: ReplicaInput;
  backup: BackupInput;
  cache: CacheInput;
}

export const ROLE_MODULES: { [R in Role]: RoleModule<RoleInputs[R]> } = {
  web: { appProcesses: (input) => ({ webPorts: input.ports, surgePort: input.surgePort }), render: renderWeb },
  worker: { appProcesses: (input) => ({ workerUnits: input.units, ...(input.critical ? { criticalWorkers: input.critical } : {}) }), render: renderWorker },
  db: { render: renderDb },
  replica: { render: renderReplica },
  backup: { render: renderBackup },
  cache: { render: renderCache },
};

/** Whether a server with these roles runs a PostgreSQL server: the primary (db) or a read replica. */
export function runsPostgres(roles: readonly Role[]): boolean {
  return roles.includes("db") || roles.includes("replica");
}

/** Whether a server with these roles runs the app (and so gets releases). */
export function runsApp(roles: readonly Role[]): boolean {
  return roles.some((role) => ROLE_MODULES[role].appProcesses !== undefined);
}
