/**
 * npm run -s deploy:check-secrets -- --stack <name> --for deploy|rollback
 * The first step of every deploy and rollback job (.github/workflows/deploy.yml, rollback.yml):
 * exit 1 naming each repository secret the stack needs and the run lacks
 * (cli/lib/deploySecrets.ts), before any pulumi step touches the stack. Reads only whether
 * each variable is set, never prints a value.
 */
import { existsSync } from "node:fs";
import { ConfigError } from "../config/config";
import { parseCommandLine, usageError } from "./lib/args";
import { missingSecrets, type Purpose } from "./lib/deploySecrets";
import { missingStackMessage, stackFilePath } from "./lib/stacks";

const USAGE = "usage: npm run -s deploy:check-secrets -- --stack <name> --for deploy|rollback";

function main(): number {
  const { values } = parseCommandLine("deploy:check-secrets", USAGE, { options: { stack: { type: "string" }, for: { type: "string" } } });
  if (!values.stack) usageError("deploy:check-secrets", USAGE, "--stack is required");
  if (values.for !== "deploy" && values.for !== "rollback") usageError("deploy:check-secrets", USAGE, `--for must be deploy or rollback; got ${JSON.stringify(values.for ?? "")}`);
  const stack = values.stack;
  const file = stackFilePath(stack);
  if (!existsSync(file)) {
    console.error(`error: ${missingStackMessage(stack)}`);
    return 1;
  }
  let missing;
  try {
    missing = missingSecrets(file, values.for as Purpose, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`error: stack ${stack} config is invalid:\n${err.message}`);
    return 1;
  }
  const annotate = process.env.GITHUB_ACTIONS === "true";
  for (const m of missing) {
    const line = `stack ${stack} needs the repository secret ${m.secret}: ${m.why}${m.orStackKey ? ` (or set it in the stack: pulumi config set --secret ${m.orStackKey} ...)` : ""}`;
    console.error(annotate ? `::error title=Missing secret ${m.secret}::${line}` : `error: ${line}`);
  }
  if (missing.length) {
    console.error(`${values.for} of ${stack} stopped before touching the stack: ${missing.length} secret(s) missing (repository Settings > Secrets and variables > Actions)`);
    return 1;
  }
  console.log(`${values.for} of ${stack}: every secret it needs is set`);
  return 0;
}

process.exitCode = main();
