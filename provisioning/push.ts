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
 * How a file's push takes part in its onChange action. Files whose actions are the same command
 * form a group (the env files and units behind one rolling restart; the bootstrap and its
 * drop-ins): the action must run once, after every changed file of the group has landed. Run per
 * file, a change to app.env and web.env together restarted web on the new app.env and the old
 * web.env, and the health gate stopped the change half-applied.
 *   own:      the file's own action, run by its own push (a group of one, and files without one);
 *   deferred: the push writes the file and marks its action owed; `runBy`'s push runs it;
 *   runs:     the push writes its file, then runs the action once if any file of `group` owes it.
 */
export type PushAction = { kind: "own" } | { kind: "deferred"; runBy: string } | { kind: "runs"; group: string[] };

/** One push as the program registers it (components/vpsServer.ts), in registration order. */
export interface PlannedPush {
  path: string;
  action: PushAction;
  /** Paths whose pushes must have landed first: for a group's runner, the rest of its group and every file without an action (release.conf, scripts: what an action reads). */
  after: string[];
  /** Paths whose content keys the push: a change to any of them runs it again (a runner: its whole group). */
  keyedBy: string[];
}

/**
 * The pushes of a server's files: each file once, in the rendered order, except that every
 * group's runner comes last (so a runner registered after its group is also started after it
 * by anything that follows registration order, as the VM rehearsal does). A group's runner is its
 * last file that holds no secret, so the action's output is logged (a secret file's push logs
 * nothing); a group of secret files only is run by its last file.
 */
export function planPushes(files: ReadonlyArray<Pick<RenderedFile, "path" | "onChange" | "secret">>): PlannedPush[] {
  const groups = new Map<string, string[]>();
  for (const f of files) if (f.onChange !== undefined) groups.set(f.onChange, [...(groups.get(f.onChange) ?? []), f.path]);
  const secret = new Set(files.filter((f) => f.secret === true).map((f) => f.path));
  const runnerOf = new Map<string, string>();
  for (const paths of groups.values()) {
    if (paths.length < 2) continue;
    const runner = [...paths].reverse().find((p) => !secret.has(p)) ?? paths[paths.length - 1];
    for (const p of paths) runnerOf.set(p, runner);
  }
  const actionless = files.filter((f) => f.onChange === undefined).map((f) => f.path);
  const planned = files.map((f): PlannedPush => {
    const runner = runnerOf.get(f.path);
    if (runner === undefined) return { path: f.path, action: { kind: "own" }, after: [], keyedBy: [f.path] };
    if (runner !== f.path) return { path: f.path, action: { kind: "deferred", runBy: runner }, after: [], keyedBy: [f.path] };
    const group = groups.get(f.onChange!)!;
    return { path: f.path, action: { kind: "runs", group }, after: [...group.filter((p) => p !== f.path), ...actionless], keyedBy: group };
  });
  return [...planned.filter((p) => p.action.kind !== "runs"), ...planned.filter((p) => p.action.kind === "runs")];
}

/** The marker of a file's owed action, under the pending directory. */
function markerOf(path: string): string {
  return createHash("sha256").update(path).digest("hex").slice(0, 16);
}

/** What keys a push: hashFile for one file (the format every deployed push is keyed by), else a hash of the group's hashes. */
export function hashPush(files: RenderedFile[]): string {
  if (files.length === 1) return hashFile(files[0]);
  return createHash("sha256").update(files.map(hashFile).join("\n")).digest("hex");
}

/**
 * An action whose failure fails the push. `set -e` ignores a failure anywhere in an `a && b` list
 * but its last command: `nginx -t -q && systemctl reload nginx` with a broken config would end
 * the push with success, the change unapplied and no longer owed.
 */
function guarded(action: string): string {
  return `{ ${action}
} || exit $?`;
}

/**
 * Runs as the admin user over SSH; everything privileged goes through one `sudo sh -c`.
 * Waits for cloud-init first so a push on a fresh server never races the first boot.
 * `action` (planPushes) says whether the push runs its file's action itself, leaves it owed to
 * its group's runner, or is that runner.
 */
export function renderPushCommand(file: RenderedFile, action: PushAction = { kind: "own" }): string {
  const owner = file.owner ?? "root:root";
  const owed = file.onChange !== undefined;
  const pendingDir = `\${SAAS_VPS_PUSH_PENDING:-${PUSH_PENDING_DIR}}`;
  const unchanged = (): string[] => {
    // Nothing owed here (no action, or the runner's to run): an unchanged file ends the push.
    if (!owed || action.kind === "deferred") return ['  echo "unchanged: $dest"; exit 0'];
    if (action.kind === "own") {
      return ['  [ -e "$pending" ] || { echo "unchanged: $dest"; exit 0; }', '  echo "unchanged: $dest; its last change did not take effect, so its action runs again"'];
    }
    return ['  echo "unchanged: $dest"'];
  };
  const updatedNote = action.kind === "deferred" ? `; its action runs once with the push of ${action.runBy}` : "";
  const runAction = (): string[] => {
    if (!owed || action.kind === "deferred") return [];
    if (action.kind === "own") return [guarded(file.onChange!), 'rm -f "$pending"'];
    const markers = action.group.map(markerOf).join(" ");
    return [
      `group=${shellQuote(markers)}`,
      "owed=",
      `for m in $group; do [ ! -e "${pendingDir}/$m" ] || owed=yes; done`,
      '[ -n "$owed" ] || exit 0',
      `echo ${shellQuote(`running once for ${action.group.join(", ")}: ${file.onChange}`)}`,
      guarded(file.onChange!),
      `for m in $group; do rm -f "${pendingDir}/$m"; done`,
    ];
  };
  const script = [
    "set -eu",
    `dest=${shellQuote(file.path)}`,
    ...(owed ? [`pending="${pendingDir}/${markerOf(file.path)}"`] : []),
    'mkdir -p "$(dirname "$dest")"',
    "umask 077",
    'tmp=$(mktemp "$dest.push.XXXXXX")',
    "trap 'rm -f \"$tmp\"' EXIT",
    'cat > "$tmp"',
    `want=${shellQuote(`${file.mode} ${owner}`)}`,
    'if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c \'%#a %U:%G\' "$dest")" = "$want" ]; then',
    ...unchanged(),
    "else",
    ...(owed ? ['  mkdir -p "$(dirname "$pending")"', '  : > "$pending"'] : []),
    `  chown ${shellQuote(owner)} "$tmp"`,
    `  chmod ${shellQuote(file.mode)} "$tmp"`,
    '  mv -f "$tmp" "$dest"',
    `  echo "updated: $dest${updatedNote}"`,
    "fi",
    ...runAction(),
  ].join("\n");
  return `${WAIT_FOR_FIRST_BOOT}\nsudo sh -c ${shellQuote(script)}`;
}
