/** The project's stack files (`Pulumi.<stack>.yaml` beside Pulumi.yaml), for the commands in cli/. */
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";

/** The project root: where Pulumi.yaml and the stack files are. */
export const PROJECT_DIR = resolve(__dirname, "..", "..");

export function stackFilePath(stack: string, projectDir = PROJECT_DIR): string {
  return join(projectDir, `Pulumi.${stack}.yaml`);
}

/** Names of the stacks that have a stack file, sorted. */
export function listStacks(projectDir = PROJECT_DIR): string[] {
  return readdirSync(projectDir)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => Boolean(s))
    .sort();
}

/** The error for a stack without a stack file, naming the ones that exist. */
export function missingStackMessage(stack: string, projectDir = PROJECT_DIR): string {
  return `no stack file Pulumi.${stack}.yaml; stacks here: ${listStacks(projectDir).join(", ") || "none"}`;
}
