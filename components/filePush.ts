/**
 * Day-2 updates: one @pulumi/command resource per rendered file, keyed by the file's content
 * hash. A changed file gets a new hash, so only its resource is replaced, which re-runs the
 * push (atomic write + its onChange action) over SSH. The server itself is never replaced.
 * A group's runner (provisioning/push.ts planPushes) is keyed by its whole group, so a change
 * to any file of the group runs the group's action once, after the group has landed.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { RenderedFile } from "../provisioning/files";
import { ADMIN_USER } from "../provisioning/layout";
import { hashPush, type PushAction, renderPushCommand } from "../provisioning/push";

export interface FilePushArgs {
  host: pulumi.Input<string>;
  /** SSH private key of a key in sshPublicKeys; without it the SSH agent (SSH_AUTH_SOCK) is used. */
  privateKey?: pulumi.Input<string>;
  /** The file as rendered now (an Output: its content may hold secrets). */
  file: pulumi.Output<RenderedFile>;
  /** Whether the file holds secrets: its content and hash are then kept secret. */
  secret: boolean;
  /** Who runs the file's action (planPushes). */
  action: PushAction;
  /** The files whose content keys the push (the file itself; a runner: its group), and whether any holds secrets. */
  keyedBy: { files: pulumi.Output<RenderedFile[]>; secret: boolean };
  dependsOn: pulumi.Resource[];
}

export function createFilePush(name: string, args: FilePushArgs, parent: pulumi.Resource): command.remote.Command {
  const keep = <T>(value: pulumi.Output<T>) => (args.secret ? pulumi.secret(value) : value);
  return new command.remote.Command(
    name,
    {
      connection: {
        host: args.host,
        user: ADMIN_USER,
        ...(args.privateKey ? { privateKey: args.privateKey } : { agentSocketPath: process.env.SSH_AUTH_SOCK }),
      },
      create: args.file.apply((f) => renderPushCommand(f, args.action)),
      stdin: keep(args.file.apply((f) => f.content)),
      triggers: [args.keyedBy.secret ? pulumi.secret(args.keyedBy.files.apply(hashPush)) : args.keyedBy.files.apply(hashPush)],
      // Command output can echo what it ran; keep it out of logs and state for secret files.
      logging: args.secret ? "none" : "stdoutAndStderr",
    },
    { parent, dependsOn: args.dependsOn, deleteBeforeReplace: false },
  );
}
