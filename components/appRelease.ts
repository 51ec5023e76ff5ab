/**
 * Ships the app to one server: build it here (once per source hash), upload the artifact,
 * and run the server's `release` command, which migrates, rolls the web instances one at a
 * time behind their health checks and rolls back by itself on failure — so a failed release
 * fails `pulumi up` while the site keeps serving the previous version.
 *
 * A stack with several app servers builds once: the first server's release (the one that runs
 * the migrations) builds, the others upload the artifact it built and run their `release` only
 * after its release has finished (`after`), so no server runs new code on an old schema.
 *
 * All resources are keyed by the source hash: an unchanged app means no diff in
 * `pulumi preview`, a changed one means exactly these components' resources are replaced.
 * @pulumi/command replaces (create-before-delete) on a trigger change; none of them has a
 * delete step, so replacing never undoes a release.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { shellQuote, WAIT_FOR_FIRST_BOOT } from "../provisioning/push";
import { sshConnection, type SshTarget } from "./sshConnection";

/** How the app is built: once per `pulumi up`, by the release that builds. */
export interface AppBuild {
  /** Absolute path of the app's source folder (stack config `appDir`, default app/). */
  appDir: string;
  /** Command run in appDir that builds the artifact and prints its path as the last stdout line. */
  command: string;
}

export interface AppReleaseArgs {
  /** Build the artifact here, or take the one another release of this `pulumi up` built. */
  artifact: { build: AppBuild } | { builtBy: AppRelease };
  /** Hash of the app's sources: the release key. */
  sourceHash: string;
  /**
   * Releases on other servers that must have finished (healthy) before this server's `release`
   * runs: the release of the server that runs the migrations. Its upload does not wait.
   */
  after?: AppRelease[];
  /** The server: its fixed IPv4, pinned host key and the SSH key (secret; default: the SSH agent). */
  server: SshTarget;
  /** Provisioning that must be in place first (release tool, units, env file). */
  dependsOn: pulumi.Resource[];
}

export const ARTIFACTS_DIR = "/srv/app/artifacts";

/** Server-side command: move the upload into place and release it (root via sudo). */
export function renderReleaseCommand(uploadPath: string, artifactName: string): string {
  const target = `${ARTIFACTS_DIR}/${artifactName}`;
  return [
    `{ ${WAIT_FOR_FIRST_BOOT}; }`,
    `sudo install -D -m 0644 ${shellQuote(uploadPath)} ${shellQuote(target)}`,
    `rm -f ${shellQuote(uploadPath)}`,
    `sudo /usr/local/sbin/release ${shellQuote(target)}`,
  ].join(" && ");
}

/** The artifact path a build printed: its last non-empty stdout line, relative to appDir unless absolute. */
export function artifactPathFrom(stdout: string, appDir: string): string {
  const last = stdout.trim().split("\n").pop()?.trim() ?? "";
  if (!/\.tar\.gz$/.test(last)) throw new Error(`the app build must print the artifact (.tar.gz) path as its last line; it printed ${JSON.stringify(last)}`);
  return last.startsWith("/") ? last : `${appDir}/${last}`;
}

export class AppRelease extends pulumi.ComponentResource {
  /** The release key (source hash) this server was last released with. */
  readonly releaseId: pulumi.Output<string>;
  /** Local path of the artifact (it carries the build as a dependency). */
  readonly artifact: pulumi.Output<string>;
  /** The server-side `release` run: done once it has finished healthy. */
  readonly released: command.remote.Command;

  constructor(name: string, args: AppReleaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("saas-vps:app:AppRelease", name, {}, opts);
    const triggers = [args.sourceHash];
    const artifact = "build" in args.artifact ? buildArtifact(name, args.artifact.build, triggers, this) : args.artifact.builtBy.artifact;
    const connection = sshConnection(args.server);
    const uploadPath = `/tmp/saas-app-${args.sourceHash}.tar.gz`;
    const upload = new command.remote.CopyToRemote(
      `${name}-upload`,
      { connection, source: artifact.apply((path) => new pulumi.asset.FileAsset(path)), remotePath: uploadPath, triggers },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.released = new command.remote.Command(
      `${name}-release`,
      { connection, create: renderReleaseCommand(uploadPath, `saas-app-${args.sourceHash}.tar.gz`), triggers, logging: "stdoutAndStderr" },
      { parent: this, dependsOn: [upload, ...args.dependsOn, ...(args.after ?? []).map((r) => r.released)] },
    );
    this.artifact = artifact;
    this.releaseId = pulumi.output(args.sourceHash);
    this.registerOutputs({ releaseId: this.releaseId });
  }
}

/** The one build of a `pulumi up`: a local command in appDir; the artifact path it printed. */
function buildArtifact(name: string, build: AppBuild, triggers: string[], parent: pulumi.Resource): pulumi.Output<string> {
  const built = new command.local.Command(`${name}-build`, { create: build.command, dir: build.appDir, triggers, logging: "stderr" }, { parent });
  return built.stdout.apply((out) => artifactPathFrom(out, build.appDir));
}
