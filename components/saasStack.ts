/**
 * The whole stack for one parsed config: generated secrets, the backup bucket, and every
 * server of the stage plan. It only loops over the plan; deciding what to build is plan/.
 */
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { renderServer, type MachineKind } from "../provisioning/server";
import type { StackConfig } from "../config/config";
import { planStack, type ServerPlan, type StackPlan } from "../plan/plan";
import { plannedAddresses, type PrivateAddresses } from "../plan/peers";
import { buildServerInput, PLACEHOLDER_CONTEXT, type TlsShareContext } from "../plan/serverInput";
import { runsApp } from "../provisioning/roles/index";
import { existsSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { ConfigError } from "../config/config";
import { AppRelease, type AppBuild, type AppReleaseArgs } from "./appRelease";
import { runsMigrations } from "../plan/database";
import { hashSourceTree } from "../plan/appSource";
import { backupRepositoryUrl } from "../provisioning/backup";
import { backupSpacesSettings, ObjectBucket, UPLOADS_SPACES_SETTINGS } from "./objectBucket";
import { ManagedDatabase } from "./managedDatabase";
import { StackMonitoring } from "./monitoring";
import { healthCheckTarget } from "../plan/monitoring";
import { protectKinds } from "./protection";
import type { MachineProvider, ServerIds, StackLoadBalancer, StackNetwork } from "./machine";
import { MACHINE_PROVIDERS, type RenderAddresses, VpsServer } from "./vpsServer";

export interface SaasStackArgs {
  /** The parsed, validated stack config. */
  config: StackConfig;
  /** Pulumi stack name (staging, prod, ...): names the bucket and tags resources. */
  stackName: string;
  /**
   * Kind of machine the rendered files are for; default: the provider's. `qemu` renders for the
   * local VM (`npm run vm`), where only the data volume's device name differs.
   */
  machineKind?: MachineKind;
}

export class SaasStack extends pulumi.ComponentResource {
  readonly plan: StackPlan;
  /** The stack's private network (Hetzner Network, DigitalOcean VPC); a managed database joins it too. */
  readonly network?: StackNetwork;
  readonly servers: Record<string, VpsServer> = {};
  readonly releases: Record<string, AppRelease> = {};
  readonly backupBucket: ObjectBucket<{ repository: pulumi.Output<string> }>;
  /** Where the app keeps uploaded files, when not on the data volume. */
  readonly uploadsBucket?: ObjectBucket;
  /** DigitalOcean Managed PostgreSQL, when the plan's database is managed. */
  readonly managedDatabase?: ManagedDatabase;
  /** The server with the web role: the site's address, its releases first. */
  readonly webServer: string;
  /** The provider's load balancer in front of the app servers (stage scaled). */
  readonly loadBalancer?: StackLoadBalancer;
  /** What watches the stack from outside; absent with `monitoring: none`. */
  readonly monitoring?: StackMonitoring;
  /**
   * The key each app server but the certificate's issuer fetches the certificate with, by plan
   * name (stage scaled with a domain). Its private half is a secret in state and reaches only that
   * server's user-data and push; the public half, the issuer's authorized_keys.
   */
  readonly tlsShareKeys: Record<string, tls.PrivateKey> = {};
  private readonly baseName: string;
  /** Secret: restic repository password; with the bucket keys it restores backups anywhere. */
  readonly backupEncryptionPassword: pulumi.Output<string>;

  constructor(name: string, args: SaasStackArgs, opts?: pulumi.ComponentResourceOptions) {
    // Every resource below gets `protect` from its type (components/protection.ts), before any other transformation sees it.
    super("saas-vps:stack:SaasStack", name, {}, { ...opts, transformations: [protectKinds, ...(opts?.transformations ?? [])] });
    this.baseName = name;
    const { config } = args;
    this.plan = planStack(config);
    this.webServer = this.plan.servers.find((s) => s.roles.includes("web"))!.name;
    const appDir = resolveAppDir(config.appDir);
    const sourceHash = hashSourceTree(appDir);
    const secret = (id: string, length: number) =>
      new random.RandomPassword(`${name}-${id}`, { length, special: false }, { parent: this }).result;
    // The schema owner's keeps the resource name it always had: an existing stack keeps its password.
    const databasePassword = secret("db-password", 32);
    const databaseWebPassword = secret("db-web-password", 32);
    const databaseWorkerPassword = secret("db-worker-password", 32);
    const appSecretKey = secret("app-secret-key", 48);
    const backupPassword = secret("backup-password", 48);
    this.backupEncryptionPassword = pulumi.secret(backupPassword);
    this.backupBucket = new ObjectBucket(
      `${name}-backups`,
      {
        purpose: "backup",
        bucket: this.plan.backupBucket,
        stackName: args.stackName,
        spaces: backupSpacesSettings(config.backupRetentionDays),
        // restic repository URL, for restoring by hand on another machine.
        extraOutputs: (b) => ({ repository: pulumi.all([b.endpoint, b.bucketName]).apply(([endpoint, name]) => backupRepositoryUrl({ endpoint, name })) }),
      },
      { parent: this },
    );
    if (this.plan.uploadsBucket) {
      this.uploadsBucket = new ObjectBucket(
        `${name}-uploads`,
        { purpose: "uploads", bucket: this.plan.uploadsBucket, stackName: args.stackName, spaces: UPLOADS_SPACES_SETTINGS },
        { parent: this },
      );
    }
    const uploadsBucket = this.uploadsBucket?.resolved ?? pulumi.output(undefined);

    // One object, so a new secret is one more key (pulumi.all's typed tuples stop at eight).
    // Only a stack with a replica has the replication login (and so this resource).
    const replicationPassword = this.plan.servers.some((s) => s.roles.includes("replica")) ? secret("db-replication-password", 32) : undefined;
    // Only a stack with a cache server (stage scaled) has the app's Valkey login.
    const valkeyPassword = this.plan.servers.some((s) => s.roles.includes("cache")) ? secret("valkey-password", 32) : undefined;
    const secrets = pulumi.output({ databasePassword, databaseWebPassword, databaseWorkerPassword, appSecretKey, backupPassword, replicationPassword, valkeyPassword });
    const provider = MACHINE_PROVIDERS[config.provider];
    const sshKeys = provider.createSshKeys(name, config.sshPublicKeys, this);
    this.network = provider.createNetwork(name, this.plan, this);
    const network = this.plan.network;
    // The real range: a DigitalOcean VPC made at stage mvp keeps the range DigitalOcean chose.
    const networkRange = this.network?.cidr ?? pulumi.output(undefined);
    // Known once every server exists: firewalls naming servers, and (DigitalOcean) the day-2 renders.
    const [serverIds, resolveServerIds] = pulumi.deferredOutput<ServerIds>();
    const [loadBalancerId, resolveLoadBalancerId] = pulumi.deferredOutput<string | undefined>();
    const [assignedAddresses, resolveAssignedAddresses] = pulumi.deferredOutput<PrivateAddresses>();
    const createdAddresses: Record<string, pulumi.Output<string>> = {};
    const machine: MachineKind = args.machineKind ?? config.provider;
    // The local VM, like Hetzner, attaches the planned addresses (its network-config names them).
    const addressesPlanned = provider.plansPrivateAddresses || machine === "qemu";
    const renderAddresses = (): RenderAddresses =>
      addressesPlanned || !network
        ? { firstBoot: plannedAddresses(this.plan) }
        : { firstBoot: pulumi.all({ ...createdAddresses }), day2: assignedAddresses };
    // A managed cluster is declared before the servers whose files name it, in the stack's VPC.
    this.managedDatabase = this.declareManagedDatabase(name);
    const managedDatabase = this.managedDatabase
      ? pulumi.output({
          endpoint: this.managedDatabase.endpoint,
          readEndpoint: this.managedDatabase.readEndpoint,
          credentials: this.managedDatabase.credentials,
          caCertificate: this.managedDatabase.caCertificate,
        })
      : pulumi.output(undefined);

    this.declareTlsShareKeys(name);

    for (const server of creationOrder(this.plan.servers)) {
      const files = renderServer(buildServerInput(config, server, { machine, ...PLACEHOLDER_CONTEXT, stack: args.stackName }, this.plan)).files;
      const tlsShare = this.tlsShareOf(server.name);
      this.servers[server.name] = new VpsServer(
        `${name}-${server.name}`,
        {
          plan: server,
          provider: config.provider,
          sshKeys,
          network: this.network,
          serverIds,
          loadBalancerId,
          files: files.map((f) => ({ path: f.path, secret: f.secret === true, onChange: f.onChange })),
          privateKey: config.sshPrivateKey ? pulumi.secret(config.sshPrivateKey) : undefined,
          privateAddresses: renderAddresses(),
          render: (ipv4, privateAddresses, hostKey) =>
            pulumi
              .output({ ip: ipv4, addresses: privateAddresses, range: networkRange, secrets, bucket: this.backupBucket.resolved, uploads: uploadsBucket, managed: managedDatabase, hostKey, share: tlsShare })
              .apply(({ ip, addresses, range, secrets, bucket, uploads, managed, hostKey, share }) =>
                renderServer({
                  ...buildServerInput(config, server, {
                    machine,
                    stack: args.stackName,
                    ipv4: ip,
                    secrets,
                    backupBucket: bucket,
                    uploadsBucket: uploads,
                    privateAddresses: addresses,
                    managedDatabase: managed,
                    tlsShare: share && { publicKeyOf: (server: string) => share.publicKeys[server], issuerHostKey: share.issuerHostKey, privateKey: share.privateKey },
                  }, { ...this.plan, network: network && range ? { ...network, cidr: range } : network }),
                  hostKey,
                }),
              ),
        },
        { parent: this },
      );
      const created = this.servers[server.name].privateIpv4;
      if (created) createdAddresses[server.name] = created;
    }
    resolveServerIds(pulumi.all(Object.fromEntries(Object.entries(this.servers).map(([n, vps]) => [n, vps.serverId]))));
    resolveAssignedAddresses(pulumi.all(createdAddresses));
    this.loadBalancer = this.declareLoadBalancer(name, provider);
    resolveLoadBalancerId(this.loadBalancer?.id ?? pulumi.output(undefined));
    this.monitoring = this.declareMonitoring(name, args.stackName, config);
    const handover = this.admitToManagedDatabase(config.sshPrivateKey);
    this.declareReleases(name, { appDir, command: config.appBuildCommand }, sourceHash, config.sshPrivateKey, handover ? [handover] : []);
    this.registerOutputs({});
  }

  /**
   * One key per app server that fetches the certificate from its issuer. The keys come from
   * Pulumi, not from the servers, so the issuer's authorized_keys can name them before any of
   * those servers exists (the issuer is created first: the others need its address).
   */
  private declareTlsShareKeys(name: string): void {
    const issuer = this.plan.certificateIssuer;
    if (!issuer) return;
    for (const server of this.plan.loadBalancer?.targets ?? []) {
      if (server === issuer) continue;
      this.tlsShareKeys[server] = new tls.PrivateKey(
        `${name}-${server}-tls-share-key`,
        { algorithm: "ED25519" },
        { parent: this, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] },
      );
    }
  }

  /**
   * A server's part in sharing the certificate, as the render takes it: the issuer gets the
   * others' public keys; each of those its own private key (a secret) and the issuer's host key,
   * known because the issuer is declared first (creationOrder).
   */
  private tlsShareOf(server: string): pulumi.Output<{ publicKeys: Record<string, string>; issuerHostKey?: string; privateKey?: string } | undefined> {
    const issuer = this.plan.certificateIssuer;
    if (!issuer) return pulumi.output(undefined);
    const trim = (key: pulumi.Output<string>) => key.apply((k) => k.trim());
    if (server === issuer) {
      return pulumi.output({ publicKeys: pulumi.all(Object.fromEntries(Object.entries(this.tlsShareKeys).map(([n, key]) => [n, trim(key.publicKeyOpenssh)]))) });
    }
    const key = this.tlsShareKeys[server];
    if (!key) return pulumi.output(undefined);
    const issuerVps = this.servers[issuer];
    if (!issuerVps) throw new Error(`server ${server} fetches the certificate from ${issuer}, which must be declared before it (creationOrder)`);
    return pulumi.output({ publicKeys: {}, issuerHostKey: issuerVps.hostPublicKey, privateKey: pulumi.secret(key.privateKeyOpenssh) });
  }

  /**
   * Where the site answers: the load balancer when there is one and the site's record names it,
   * else the web server's fixed IP (also in stage scaled while siteAddress is app).
   */
  get siteIpv4(): pulumi.Output<string> {
    return this.loadBalancer && this.plan.loadBalancer?.servesSite ? this.loadBalancer.ipv4 : this.servers[this.webServer].ipv4;
  }

  private declareLoadBalancer(name: string, provider: MachineProvider): StackLoadBalancer | undefined {
    const plan = this.plan.loadBalancer;
    if (!plan) return undefined;
    if (!this.network) throw new Error("a load balancer needs the stack's private network (the planner gives one to stage scaled)");
    const targets = Object.fromEntries(plan.targets.map((server) => [server, this.servers[server].serverId]));
    return provider.createLoadBalancer(name, { plan, network: this.network, targets }, this);
  }

  /** The uptime check of the site and the alerts on every server, unless the stack says none. */
  private declareMonitoring(name: string, stackName: string, config: StackConfig): StackMonitoring | undefined {
    const monitoring = config.monitoring;
    if (monitoring.service === "none") return undefined;
    return new StackMonitoring(
      `${name}-monitoring`,
      {
        stackName,
        config,
        route: monitoring.route,
        thresholds: monitoring.thresholds,
        healthCheck: this.siteIpv4.apply((ip) => healthCheckTarget(config, ip)),
        serverIds: Object.values(this.servers).map((vps) => vps.serverId),
      },
      { parent: this },
    );
  }

  /** The managed cluster when the plan's database is managed, in the stack's VPC. */
  private declareManagedDatabase(name: string): ManagedDatabase | undefined {
    const database = this.plan.database;
    if (database.kind !== "managed") return undefined;
    if (!this.network) throw new Error("a managed database needs the stack's private network (the config parser allows it only in split stages)");
    const region = this.plan.servers[0].region;
    return new ManagedDatabase(
      `${this.baseName}-db`,
      { size: database.size, region, vpcId: this.network.id, tags: ["saas-vps"], ...(database.replicaSize ? { replicaSize: database.replicaSize } : {}) },
      { parent: this },
    );
  }

  /**
   * Once every server exists: the database firewall admits exactly the stack's droplets, and the
   * server with the backup role (in the VPC, admitted) runs the owner handover. Releases wait for
   * it: their migrations run as the owner it makes.
   */
  private admitToManagedDatabase(sshPrivateKey: string | undefined): pulumi.Resource | undefined {
    if (!this.managedDatabase) return undefined;
    // The servers that connect to PostgreSQL: those that run the app, and the backup's runner (the cache server does not).
    const clients = this.plan.servers.filter((server) => runsApp(server.roles) || server.roles.includes("backup"));
    const firewalls = this.managedDatabase.admit(clients.map((server) => this.servers[server.name].serverId));
    const runner = this.plan.servers.find((server) => server.roles.includes("backup"));
    if (!runner) throw new Error("a managed database needs a server with the backup role (plan/plan.ts gives it to the app server)");
    const vps = this.servers[runner.name];
    return this.managedDatabase.handOver({ server: vps.ssh, dependsOn: [...firewalls, ...vps.pushes] });
  }

  /**
   * One release per server that runs the app. The server that runs the migrations (the one with
   * web instances) releases first and builds the artifact; every other server uploads that
   * artifact and runs its release only once the first has finished healthy, so its workers never
   * run new code on a schema not yet migrated; app servers behind the load balancer also wait for
   * the one before them. The first never waits for the others.
   */
  private declareReleases(name: string, build: AppBuild, sourceHash: string, sshPrivateKey: string | undefined, database: pulumi.Resource[]): void {
    const appServers = this.plan.servers.filter((server) => runsApp(server.roles));
    if (appServers.length === 0) return;
    const migrating = appServers.filter((server) => runsMigrations(server));
    if (migrating.length !== 1) {
      throw new Error(`the plan must have exactly one app server that runs migrations; it has ${migrating.map((s) => s.name).join(", ") || "none"}`);
    }
    const release = (server: ServerPlan, artifact: AppReleaseArgs["artifact"], after: AppRelease[]) => {
      const vps = this.servers[server.name];
      this.releases[server.name] = new AppRelease(
        `${name}-${server.name}-app`,
        {
          artifact,
          sourceHash,
          after,
          server: vps.ssh,
          dependsOn: [...vps.pushes, ...database],
        },
        { parent: this },
      );
      return this.releases[server.name];
    };
    const [owner] = migrating;
    const first = release(owner, { build }, []);
    // Servers behind the load balancer release one after another, so the others keep serving;
    // every other server waits for the first only.
    const balanced = new Set(this.plan.loadBalancer?.targets ?? []);
    let previous = first;
    for (const server of appServers.filter((s) => s !== owner)) {
      if (!balanced.has(server.name)) {
        release(server, { builtBy: first }, [first]);
        continue;
      }
      previous = release(server, { builtBy: first }, previous === first ? [first] : [first, previous]);
    }
  }
}

/**
 * The order servers are declared in: a server that others reach over the private network (its
 * rules name them as peers) before each of them, otherwise the plan's order. Where the provider
 * assigns private addresses, a client's first boot then already knows the address of every server
 * it connects to: the db before the app servers and the worker, the replica before the app
 * servers, and the certificate's issuer before the app servers that fetch from it. A server
 * declared earlier never needs one declared later, so there is no cycle; a plan with one is refused.
 */
export function creationOrder(servers: ServerPlan[]): ServerPlan[] {
  // Who must come before each server: every server whose rules name it as a peer.
  const before = new Map(servers.map((s) => [s.name, servers.filter((other) => other !== s && other.firewall.some((rule) => rule.peers?.includes(s.name))).map((o) => o.name)]));
  const placed: ServerPlan[] = [];
  const done = new Set<string>();
  while (placed.length < servers.length) {
    const next = servers.find((s) => !done.has(s.name) && before.get(s.name)!.every((name) => done.has(name)));
    if (!next) throw new Error(`the plan's servers reach each other in a cycle: ${servers.filter((s) => !done.has(s.name)).map((s) => s.name).join(", ")}`);
    placed.push(next);
    done.add(next.name);
  }
  return placed;
}

/** The project root (where Pulumi.yaml is): relative appDir values are taken from there. */
const PROJECT_ROOT = join(__dirname, "..");

function resolveAppDir(appDir: string): string {
  const dir = isAbsolute(appDir) ? appDir : join(PROJECT_ROOT, appDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError([`saas-vps:appDir: ${JSON.stringify(appDir)} is not a folder (looked at ${dir}); point it at your app's source`]);
  }
  return dir;
}
