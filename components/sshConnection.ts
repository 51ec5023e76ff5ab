/**
 * How every day-2 command reaches a server: as the admin user, with the stack's key (or the SSH
 * agent), and verifying the server by the host key the program made for it (VpsServer), so a
 * machine on the path that answers in its place receives none of the secret pushes.
 */
import type * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import { ADMIN_USER } from "../provisioning/layout";

export interface SshTarget {
  host: pulumi.Input<string>;
  /** The server's host public key, "ssh-ed25519 <base64>": the connection fails on any other. */
  hostKey: pulumi.Input<string>;
  /** SSH private key of a key in sshPublicKeys; without it the SSH agent (SSH_AUTH_SOCK) is used. */
  privateKey?: pulumi.Input<string>;
}

export function sshConnection(target: SshTarget): command.types.input.remote.ConnectionArgs {
  return {
    host: target.host,
    user: ADMIN_USER,
    hostKey: target.hostKey,
    ...(target.privateKey ? { privateKey: target.privateKey } : { agentSocketPath: process.env.SSH_AUTH_SOCK }),
  };
}
