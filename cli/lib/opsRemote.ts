/**
 * The commands `npm run ops` runs on a server over SSH (ssh hands them to the admin's login
 * shell): built here, apart from the CLI, so a test can shellcheck them.
 */
import { shellQuote } from "../../provisioning/push";

/** The app's own units: what `logs` follows when no unit is named. */
export const APP_UNIT_GLOBS = ["web@*", "worker@*", "worker-critical@*", "migrate@*"];
/** The server's command said it is not installed there (see passThroughCommand). */
export const NOT_HERE = 97;

/** Runs on the server as root: the named unit's journal (refused with 2 when there is no such unit), or the app's. */
export function logsScript(unit: string | undefined): string {
  const app = APP_UNIT_GLOBS.map((g) => `-u ${shellQuote(g)}`).join(" ");
  if (unit === undefined) return `exec journalctl -f -n 50 ${app}`;
  const u = shellQuote(unit);
  return [
    `if [ -z "$(systemctl list-units --all --plain --no-legend ${u})" ] && [ -z "$(systemctl list-unit-files --plain --no-legend ${u})" ]; then`,
    `  echo "ops logs: no unit ${unit} on $(hostname); the app's: $(systemctl list-units --all --plain --no-legend ${APP_UNIT_GLOBS.map(shellQuote).join(" ")} | awk '{print $1}' | xargs)" >&2`,
    "  exit 2",
    "fi",
    `exec journalctl -f -n 50 -u ${u}`,
  ].join("\n");
}

/** `logs` as the remote shell gets it: root, for the journal of system units. */
export function logsCommand(unit: string | undefined): string {
  return `sudo bash -c ${shellQuote(logsScript(unit))}`;
}

/** The server's own command with the given words, where it is installed; NOT_HERE where it is not. */
export function passThroughCommand(command: "release" | "backup", words: string[], bin = `/usr/local/sbin/${command}`): string {
  return `sudo bash -c ${shellQuote(`[ -x ${bin} ] || exit ${NOT_HERE}; exec ${bin} "$@"`)} ${command} ${words.map(shellQuote).join(" ")}`.trim();
}
