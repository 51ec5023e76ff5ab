/**
 * The command line of `npm run ops` (cli/ops.ts), parsed without side effects so tests can
 * feed it real command lines: a bad one is an OpsUsageError, which the CLI prints with the
 * usage and exit status 2.
 */
import { parseArgs } from "node:util";

export const OPS_USAGE = `usage:
  npm run ops -- status  --stack NAME [--server S]
      every check on every server of the stack (or S), one line each: OK / WARN / FAIL, what, detail;
      exit 1 when any line is FAIL
  npm run ops -- logs    --stack NAME [--server S] [UNIT]
      follow the journal of the app's units (web@*, worker@*, worker-critical@*, migrate@*), or of UNIT, until Ctrl-C
  npm run ops -- release --stack NAME [--server S] [ARGS ...]
  npm run ops -- backup  --stack NAME [--server S] [ARGS ...]
      the server's own \`sudo release ARGS\` / \`sudo backup ARGS\` on every server that has the
      command (release: the app server before the worker server), stopping at the first that fails;
      words that start with - go after --, e.g. npm run ops -- release --stack prod -- help

  The stack's servers come from \`pulumi stack output\` (sshTargets, sshHostKeys: every connection
  pins the host key the program made); your SSH agent or default key logs in as admin.
  The local VMs instead (npm run vm): add --vm; --stack NAME (or --name NAME, --run-dir DIR) says
  which run dir under .vm/, as for npm run vm.`;

export const OPS_COMMANDS = ["status", "logs", "release", "backup"] as const;
export type OpsCommand = (typeof OPS_COMMANDS)[number];

export interface OpsArgs {
  command: OpsCommand;
  /** A deployed stack, or with vm the run dir .vm/<name>. */
  stack?: string;
  vm: boolean;
  /** With vm: .vm/<name> (default: the stack's name). */
  name?: string;
  runDir?: string;
  server?: string;
  /** logs: the unit (".service" added when it has no suffix). */
  unit?: string;
  /** release, backup: the words passed to the server's command. */
  passThrough: string[];
  help: boolean;
}

export class OpsUsageError extends Error {}

/** A unit name as systemd spells one; it goes into a remote shell command, so nothing else passes. */
const UNIT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9@._:-]*$/;
/** Pulumi's own stack name rule. */
const STACK_PATTERN = /^[A-Za-z0-9._-]+$/;

export function parseOpsArgs(argv: string[]): OpsArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      tokens: true,
      options: {
        stack: { type: "string" }, vm: { type: "boolean" }, name: { type: "string" }, "run-dir": { type: "string" },
        server: { type: "string" }, help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS_")) throw new OpsUsageError((err as Error).message);
    throw err;
  }
  const { values, tokens } = parsed;
  const terminator = tokens.find((t) => t.kind === "option-terminator")?.index ?? argv.length;
  const words = tokens.filter((t) => t.kind === "positional" && t.index < terminator).map((t) => (t as { value: string }).value);
  const afterTerminator = argv.slice(terminator + 1);
  const help = Boolean(values.help);
  const [command, ...rest] = words;
  if (command === undefined) {
    if (help) return { command: "status", vm: false, passThrough: [], help };
    throw new OpsUsageError(`give a command: ${OPS_COMMANDS.join(", ")}`);
  }
  if (!(OPS_COMMANDS as readonly string[]).includes(command)) {
    throw new OpsUsageError(`unknown command ${JSON.stringify(command)}; the commands are ${OPS_COMMANDS.join(", ")}`);
  }
  const args: OpsArgs = {
    command: command as OpsCommand, vm: Boolean(values.vm), stack: values.stack, name: values.name, runDir: values["run-dir"],
    server: values.server, passThrough: [], help,
  };
  if (help) return args;
  if (args.stack !== undefined && !STACK_PATTERN.test(args.stack)) throw new OpsUsageError(`--stack must be a stack name (letters, digits, . _ -); got ${JSON.stringify(args.stack)}`);
  if (args.vm) {
    if (!args.stack && !args.name && !args.runDir) throw new OpsUsageError("--vm needs --stack NAME (or --name NAME, --run-dir DIR): which local VM");
  } else {
    if (!args.stack) throw new OpsUsageError("give --stack NAME (a deployed stack), or --vm for the local VM");
    if (args.name || args.runDir) throw new OpsUsageError("--name and --run-dir are for the local VM (with --vm)");
  }
  if (args.server !== undefined && !/^[a-z][a-z0-9-]*$/.test(args.server)) throw new OpsUsageError(`--server must be a server name (app, worker, db); got ${JSON.stringify(args.server)}`);
  switch (args.command) {
    case "status":
      if (rest.length + afterTerminator.length > 0) throw new OpsUsageError(`status takes no arguments; got ${[...rest, ...afterTerminator].join(" ")}`);
      break;
    case "logs": {
      const units = [...rest, ...afterTerminator];
      if (units.length > 1) throw new OpsUsageError(`logs takes at most one unit; got ${units.join(" ")}`);
      if (units.length === 1) {
        if (!UNIT_PATTERN.test(units[0])) throw new OpsUsageError(`logs: ${JSON.stringify(units[0])} is not a unit name (e.g. web@3001, worker@1.service, nginx)`);
        args.unit = /\.[a-z]+$/.test(units[0]) ? units[0] : `${units[0]}.service`;
      }
      break;
    }
    case "release":
    case "backup":
      args.passThrough = [...rest, ...afterTerminator];
      break;
  }
  return args;
}
