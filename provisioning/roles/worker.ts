/**
 * The worker role: background job processes. Everything they need (units, environment, the
 * release command) is the shared app part; the role only says how many run here.
 */
import type { RoleContribution } from "./contribution";

export interface WorkerInput {
  /** Worker units on this server (worker@1.service, ...); may be empty. */
  units: string[];
}

export function renderWorker(_input: WorkerInput): RoleContribution[] {
  return [];
}
