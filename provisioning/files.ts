/**
 * A file the server gets: written by cloud-init `write_files` on first boot and pushed over
 * SSH on day 2. Every renderer in provisioning/ returns these; nothing here knows Pulumi.
 */
export interface RenderedFile {
  /** Absolute path on the server. */
  path: string;
  /** Exact file content (UTF-8 text). */
  content: string;
  /** Octal permission string as cloud-init expects it, e.g. "0644". */
  mode: string;
  /** "user:group"; defaults to root:root. */
  owner?: string;
  /** Holds secrets: never printed, never world-readable (mode must deny "other"). */
  secret?: boolean;
  /**
   * Shell command that makes a changed copy take effect (reload, restart, re-run), run by the
   * day-2 push after the new content is in place. Absent: the file is read on use.
   */
  onChange?: string;
  /**
   * Must exist before cloud-init installs the packages (it configures what a package's install
   * script does), so it is a write_files entry of its own rather than part of the bundle that
   * runcmd unpacks after the package step. Not secret, small.
   */
  beforePackages?: boolean;
  /**
   * Travels only in the day-2 push that `pulumi up` runs right after the server is created,
   * never in the first-boot user-data: user-data must stay within half of Hetzner's 32 KiB cap,
   * and large tools that nothing runs before that push (the release and backup commands) would
   * take most of it. Set by the role that renders the file; nothing on first boot may run it.
   */
  pushOnly?: boolean;
}

/** Octal modes we allow: no execute for "other" on secrets, no world-writable ever. */
export function isWorldReadable(mode: string): boolean {
  return (parseInt(mode, 8) & 0o004) !== 0;
}
