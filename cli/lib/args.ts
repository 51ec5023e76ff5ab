/**
 * Command-line parsing for the commands in cli/: node:util parseArgs, strict, with one way of
 * answering bad flags: `<command>: <what is wrong>` and the usage text on stderr, exit 2.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** Exit status for a command line the command cannot run with. */
export const USAGE_EXIT = 2;

/** Prints `<command>: <message>` (if any) and the usage text to stderr, then exits 2. */
export function usageError(command: string, usage: string, message?: string): never {
  if (message) process.stderr.write(`${command}: ${message}\n`);
  process.stderr.write(`${usage}\n`);
  process.exit(USAGE_EXIT);
}

/** parseArgs (strict, its default); an unknown flag, a missing value or a stray argument ends in usageError. */
export function parseCommandLine<T extends ParseArgsConfig>(command: string, usage: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config); // strict by default: unknown flags and missing values throw
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (code.startsWith("ERR_PARSE_ARGS_")) usageError(command, usage, (err as Error).message);
    throw err;
  }
}
