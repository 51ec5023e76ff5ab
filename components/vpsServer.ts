/**
 * One server of the plan, on whichever provider the stack names: fixed IP, machine (with
 * firewall, keys, protected data volume, its place on the stack's private network), first-boot
 * user-data, and one day-2 push per file.
 */
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import type { HostKeyPair } from "../provisioning/cloudInit";
import type { RenderedServer } from "../provisioning/server";
import type { ServerPlan } from "../plan/plan";
import type { PrivateAddresses } from "../plan/peers";
import { CATALOGS, type Provider } from "../config/providers";
import { digitaloceanProvider } from "./digitalocean";
import { createFilePush } from "./filePush";
import type { RenderedFile } from "../provisioning/files";
import { planPushes } from "../provisioning/push";
import { hetzner } from "./hetzner";
import type { MachineProvider, ServerIds, StackNetwork } from "./machine";
import type { SshTarget } from "./sshConnection";

export const MACHINE_PROVIDERS: Record<Provider, MachineProvider> = { hetzner, digitalocean: digitaloceanProvider };

/**
 * The private addresses a server's files are rendered with. Where the provider assigns addresses
 * (DigitalOcean) first boot knows only the servers created before this one, and a rule naming a
 * server not known yet allows the whole network; the day-2 pushes, rendered once every server
 * exists, narrow it to exact addresses. Where addresses are planned, both are the same.
 */
export interface RenderAddresses {
  firstBoot: pulumi.Input<PrivateAddresses>;
  /** Default: the first boot's. */
  day2?: pulumi.Input<PrivateAddresses>;
}

export interface VpsServerArgs {
  /** The planned server: roles, type, region, firewall rules, data volume. */
  plan: ServerPlan;
  /** Hosting provider (stack config `provider`). */
  provider: Provider;
  /** The stack's SSH keys as registered at the provider (MachineProvider.createSshKeys). */
  sshKeys: pulumi.Output<string>[];
  /** The stack's private network, when it has one. */
  network?: StackNetwork;
  /** Provider ids of every server of the stack by plan name (firewall rules name peers by server). */
  serverIds: pulumi.Input<ServerIds>;
  /** The stack's load balancer, once it exists (stage scaled). */
  loadBalancerId?: pulumi.Input<string | undefined>;
  /** The server's files for its fixed IPv4, the private addresses known and its host key; called once per address set. */
  render: (ipv4: pulumi.Output<string>, privateAddresses: pulumi.Output<PrivateAddresses>, hostKey: pulumi.Output<HostKeyPair>) => pulumi.Output<RenderedServer>;
  privateAddresses: RenderAddresses;
  /** The files this server gets (path, whether it is secret, its onChange action), known before any value resolves. */
  files: Array<{ path: string; secret: boolean; onChange?: string }>;
  /** SSH private key for day-2 pushes (secret); default: the SSH agent. */
  privateKey?: pulumi.Input<string>;
}

export class VpsServer extends pulumi.ComponentResource {
  readonly ipv4: pulumi.Output<string>;
  readonly ipv6: pulumi.Output<string>;
  readonly serverId: pulumi.Output<string>;
  /** Address on the stack's private network (undefined without one). */
  readonly privateIpv4?: pulumi.Output<string>;
  /** The day-2 pushes: a release waits for them (release tool, units, env in place). */
  readonly pushes: pulumi.Resource[] = [];
  /** Size of the first-boot user-data in bytes (Hetzner's cap is 32 KiB). */
  readonly userDataBytes: pulumi.Output<number>;
  /** The server's SSH host public key ("ssh-ed25519 <base64>"), installed on first boot and pinned by every connection. */
  readonly hostPublicKey: pulumi.Output<string>;
  /** How day-2 commands reach the server: fixed IPv4, pinned host key, the stack's SSH key. */
  readonly ssh: SshTarget;

  constructor(name: string, args: VpsServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("saas-vps:server:VpsServer", name, {}, opts);
    const provider = MACHINE_PROVIDERS[args.provider];
    const fixedIp = provider.createFixedIp(name, args.plan, this);
    // Protected by kind (components/protection.ts): the server keeps the key its first boot installed,
    // and a new one would fail every pinned connection until it is on the server (README: "Rotating a
    // server's host key").
    const hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" }, { parent: this, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] });
    this.hostPublicKey = hostKey.publicKeyOpenssh.apply((k) => k.trim());
    const hostKeyPair = pulumi.secret(pulumi.all([hostKey.privateKeyOpenssh, this.hostPublicKey]).apply(([privateKey, publicKey]): HostKeyPair => ({ privateKey, publicKey })));
    const firstBoot = args.render(fixedIp.address, pulumi.output(args.privateAddresses.firstBoot), hostKeyPair);
    const day2 = args.privateAddresses.day2 === undefined ? firstBoot : args.render(fixedIp.address, pulumi.output(args.privateAddresses.day2), hostKeyPair);
    const machine = provider.createMachine(
      name,
      {
        plan: args.plan,
        network: args.network,
        serverIds: args.serverIds,
        loadBalancerId: args.loadBalancerId,
        image: CATALOGS[args.provider].debianImage,
        sshKeys: args.sshKeys,
        fixedIp,
        // user-data carries the generated secrets: it stays a Pulumi secret in state.
        userData: pulumi.secret(firstBoot.apply((r) => r.userData)),
      },
      this,
    );
    this.ssh = { host: machine.ipv4, hostKey: this.hostPublicKey, privateKey: args.privateKey };
    // Each file's day-2 render, once: its own push and its group's runner (keyed by it) share it.
    const rendered = new Map(
      args.files.map(({ path, onChange: planned }) => [
        path,
        day2.apply((r) => {
          const match = r.files.find((f) => f.path === path);
          if (!match) throw new Error(`rendered files of ${name} lost ${path}`);
          // The push order was planned from the files known up front; the render must agree.
          if (match.onChange !== planned) throw new Error(`${name}: ${path}'s action changed between the planned and the rendered files (${planned} / ${match.onChange})`);
          return match;
        }),
      ]),
    );
    const fileOf = (path: string): pulumi.Output<RenderedFile> => rendered.get(path)!;
    const secretPaths = new Set(args.files.filter((f) => f.secret).map((f) => f.path));
    const pushOf = new Map<string, pulumi.Resource>();
    for (const planned of planPushes(args.files)) {
      const secret = secretPaths.has(planned.path);
      // The render as a whole is secret (secrets go in); files marked non-secret hold none
      // (a test checks), so their diffs stay readable in `pulumi preview`.
      const file = secret ? pulumi.secret(fileOf(planned.path)) : pulumi.unsecret(fileOf(planned.path));
      const keyedBy = { files: pulumi.unsecret(pulumi.all(planned.keyedBy.map(fileOf))), secret: planned.keyedBy.some((p) => secretPaths.has(p)) };
      const push = createFilePush(
        pushResourceName(name, planned.path),
        { server: this.ssh, file, secret, action: planned.action, keyedBy, dependsOn: [...machine.ready, ...planned.after.map((p) => pushOf.get(p)!)] },
        this,
      );
      pushOf.set(planned.path, push);
      this.pushes.push(push);
    }
    this.ipv4 = machine.ipv4;
    this.ipv6 = machine.ipv6;
    this.serverId = machine.serverId;
    this.privateIpv4 = machine.privateIpv4;
    this.userDataBytes = firstBoot.apply((r) => r.userDataBytes);
    this.registerOutputs({ ipv4: this.ipv4, ipv6: this.ipv6, serverId: this.serverId });
  }
}

/** The resource name of a server's push of one file: the server's resource name and the file's path. */
export function pushResourceName(serverResourceName: string, path: string): string {
  return `${serverResourceName}-push${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
}
