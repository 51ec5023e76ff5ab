/**
 * Day-2 updates: one @pulumi/command resource per rendered file, keyed by the file's content
 * hash. A changed file gets a new hash, so only its resource is replaced, which re-runs the
 * push (atomic write + its onChange action) over SSH. The server itself is never replaced.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { RenderedFile } from "../provisioning/files";
import { hashFile, renderPushCommand } from "../provisioning/push";
import { sshConnection, type SshTarget } from "./sshConnection";

export interface FilePushArgs {
  server: SshTarget;
  /** The file as rendered now (an Output: its content may hold secrets). */
  file: pulumi.Output<RenderedFile>;
  /** Whether the file holds secrets: its content and hash are then kept secret. */
  secret: boolean;
  dependsOn: pulumi.Resource[];
}

export function createFilePush(name: string, args: FilePushArgs, parent: pulumi.Resource): command.remote.Command {
  const keep = <T>(value: pulumi.Output<T>) => (args.secret ? pulumi.secret(value) : value);
  return new command.remote.Command(
    name,
    {
      connection: sshConnection(args.server),
      create: args.file.apply(renderPushCommand),
      stdin: keep(args.file.apply((f) => f.content)),
      triggers: [keep(args.file.apply(hashFile))],
      // Command output can echo what it ran; keep it out of logs and state for secret files.
      logging: args.secret ? "none" : "stdoutAndStderr",
    },
    { parent, dependsOn: args.dependsOn, deleteBeforeReplace: false },
  );
}
