/**
 * The backup bucket's name when the stack sets no `backupBucketName`: derived from the project
 * and the Pulumi stack name. Spaces names are global, so a bucket the program creates there gets a
 * random suffix too. Pulumi allows stack names (uppercase, `_`, `.`, long) that no S3 store
 * accepts in a bucket name: the program checks the derived name before it declares anything.
 */
import { BUCKET_NAME_RULE, isBucketName } from "../config/validators";

/** Length of the random suffix a created Spaces bucket gets (`-` + these characters). */
export const CREATED_BUCKET_SUFFIX_LENGTH = 6;

export function defaultBackupBucketName(stackName: string): string {
  return `saas-vps-${stackName}-backups`;
}

/**
 * The problem lines (ConfigError form) of a derived bucket name; none when the stack sets its
 * own name or the derived one is valid. `created`: the program creates it (Spaces), suffix added.
 */
export function derivedBucketNameProblems(stackName: string, opts: { name?: string; created: boolean }): string[] {
  if (opts.name !== undefined) return [];
  const longest = defaultBackupBucketName(stackName) + (opts.created ? `-${"x".repeat(CREATED_BUCKET_SUFFIX_LENGTH)}` : "");
  if (isBucketName(longest)) return [];
  return [
    `saas-vps:backupBucketName: not set, and the name derived from stack "${stackName}" (${JSON.stringify(defaultBackupBucketName(stackName))}` +
      `${opts.created ? ` plus a ${CREATED_BUCKET_SUFFIX_LENGTH}-character suffix` : ""}) is not a bucket name: ${BUCKET_NAME_RULE}; set saas-vps:backupBucketName`,
  ];
}
