/**
 * The day-2 push of one rendered file: the shell command that replaces the file atomically
 * (content arrives on stdin, never on a command line) and runs its onChange action only when
 * the content really changed — or when the last change's action failed: a failed push fails
 * `pulumi up`, and the retry finds the file already in place, so a marker remembers that the
 * action is still owed (a config change whose restart failed must not count as applied).
 * Pure: components/ hands it to @pulumi/command over SSH.
 */
import { createHash } from "node:crypto";
import type { RenderedFile } from "./files";
import { STATE_DIR } from "./layout";

/**
 * Markers of onChange actions still owed, one per file. Tests point it elsewhere through
 * SAAS_VPS_PUSH_PENDING (on a server, sudo starts the script with a clean environment).
 */
export const PUSH_PENDING_DIR = `${STATE_DIR}/push-pending`;

/** Content hash that keys the push resource: a new hash means a new push. */
export function hashFile(file: RenderedFile): string {
  return createHash("sha256").update(`${file.path}\0${file.mode}\0${file.owner ?? "root:root"}\0${file.content}`).digest("hex");
}

/** Single-quotes a value for POSIX sh. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Waits until cloud-init has finished the first boot, so a push never races it. cloud-init
 * writes boot-finished at the end of its final stage; testing for it costs nothing, whereas
 * `cloud-init status` starts Python each time (3.5 s of a 4.4 s push on the emulated test VM).
 */
export const WAIT_FOR_FIRST_BOOT = "test -e /var/lib/cloud/instance/boot-finished || cloud-init status --wait >/dev/null 2>&1 || true";

/**
 * Runs as the admin user over SSH; everything privileged goes through one `sudo sh -c`.
 * Waits for cloud-init first so a push on a fresh server never races the first boot.
 */
export function renderPushCommand(file: RenderedFile): string {
  const owner = file.owner ?? "root:root";
  const marker = createHash("sha256").update(file.path).digest("hex").slice(0, 16);
  const owed = file.onChange !== undefined;
  const script = [
    "set -eu",
    `dest=${shellQuote(file.path)}`,
    ...(owed ? [`pending="\${SAAS_VPS_PUSH_PENDING:-${PUSH_PENDING_DIR}}/${marker}"`] : []),
    'mkdir -p "$(dirname "$dest")"',
    "umask 077",
    'tmp=$(mktemp "$dest.push.XXXXXX")',
    "trap 'rm -f \"$tmp\"' EXIT",
    'cat > "$tmp"',
    `want=${shellQuote(`${file.mode} ${owner}`)}`,
    'if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c \'%#a %U:%G\' "$dest")" = "$want" ]; then',
    ...(owed
      ? ['  [ -e "$pending" ] || { echo "unchanged: $dest"; exit 0; }', '  echo "unchanged: $dest; its last change did not take effect, so its action runs again"']
      : ['  echo "unchanged: $dest"; exit 0']),
    "else",
    ...(owed ? ['  mkdir -p "$(dirname "$pending")"', '  : > "$pending"'] : []),
    `  chown ${shellQuote(owner)} "$tmp"`,
    `  chmod ${shellQuote(file.mode)} "$tmp"`,
    '  mv -f "$tmp" "$dest"',
    '  echo "updated: $dest"',
    "fi",
    ...(owed ? [file.onChange!, 'rm -f "$pending"'] : []),
  ].join("\n");
  return `${WAIT_FOR_FIRST_BOOT}\nsudo sh -c ${shellQuote(script)}`;
}
