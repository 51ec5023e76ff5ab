/**
 * The worker role: background job processes. Everything they need (units, environment, the
 * release command) is the shared app part; the role only says how many run here.
 */
import type { RoleContribution } from "./contribution";

export interface WorkerInput {
  /** Worker units on this server (worker@1.service, ...); may be empty. */
  units: string[];
  /** Workers of their own for the critical tasks (worker-critical@101.service, ...); the others then run every task but these. */
  critical?: CriticalWorkers;
}

/** The critical workers of a server: their units, and the app's tasks they alone run. */
export interface CriticalWorkers {
  units: string[];
  tasks: string[];
}

export function renderWorker(_input: WorkerInput): RoleContribution[] {
  return [];
}
