/**
 * The inputs whose change makes the provider replace a resource (delete and create again), per
 * resource type this program declares. A protected resource must never see one of them change:
 * Pulumi would refuse the update, and an unprotected one would be rebuilt empty.
 *
 * Read from the providers' schemas (Terraform providers bridged by @pulumi/hcloud and
 * @pulumi/digitalocean): attributes marked `ForceNew: true` (SDKv2) or with a `RequiresReplace`
 * plan modifier (plugin framework), in
 *   terraform-provider-hcloud        internal/{server,network,primaryip,volume,sshkey,loadbalancer}/resource*.go
 *   terraform-provider-digitalocean  digitalocean/{droplet,vpc,reservedip,volume,sshkey,spaces,loadbalancer}/resource_*.go
 * at their newest commits of August 2026 (hcloud f81c9af, v1.68.0; digitalocean 401992a), and
 *   terraform-provider-digitalocean  digitalocean/uptime/resource_uptime_{check,alert}.go,
 *                                    digitalocean/monitoring/resource_monitor_alert.go
 * (48a186e, 034b61f, 95da01c), and
 *   terraform-provider-digitalocean  digitalocean/database/resource_database_{cluster,db,user,firewall,replica}.go
 * (401992a). Input
 * names are Pulumi's (camelCase of the Terraform attribute). Besides these, Pulumi itself
 * replaces a resource whose URN changes (its name, type or parent) unless an alias names the
 * old URN.
 */

import type * as digitalocean from "@pulumi/digitalocean";
import type * as hcloud from "@pulumi/hcloud";
import type * as random from "@pulumi/random";
import type * as tls from "@pulumi/tls";

export interface ReplaceRule {
  /** Pulumi inputs whose change replaces the resource. */
  inputs: readonly string[];
  /** What else a reader should know about the resource's updates. */
  note?: string;
}

/** Input names checked against the SDK's argument type: a misspelt name does not compile. */
const inputsOf =
  <Args>() =>
  <K extends keyof Args & string>(...names: K[]): readonly string[] =>
    names;

const RANDOM_ARGS = ["length", "special", "upper", "lower", "numeric", "minLower", "minUpper", "minNumeric", "minSpecial", "overrideSpecial", "keepers"] as const;

export const REPLACE_INPUTS: Readonly<Record<string, ReplaceRule>> = {
  "hcloud:index/server:Server": {
    inputs: inputsOf<hcloud.ServerArgs>()("image", "location", "userData", "sshKeys"),
    note: "networks, firewallIds, publicNets, serverType and labels update in place (a network is attached or detached live; a changed private ip detaches and re-attaches)",
  },
  "hcloud:index/primaryIp:PrimaryIp": { inputs: inputsOf<hcloud.PrimaryIpArgs>()("type", "location") },
  "hcloud:index/volume:Volume": { inputs: inputsOf<hcloud.VolumeArgs>()("location"), note: "size only grows in place" },
  "hcloud:index/volumeAttachment:VolumeAttachment": { inputs: inputsOf<hcloud.VolumeAttachmentArgs>()("volumeId", "serverId") },
  "hcloud:index/network:Network": { inputs: inputsOf<hcloud.NetworkArgs>()("ipRange") },
  "hcloud:index/networkSubnet:NetworkSubnet": { inputs: inputsOf<hcloud.NetworkSubnetArgs>()("networkId", "type", "networkZone", "ipRange", "vswitchId") },
  "hcloud:index/sshKey:SshKey": { inputs: inputsOf<hcloud.SshKeyArgs>()("publicKey") },
  "hcloud:index/firewall:Firewall": { inputs: [] },
  "hcloud:index/loadBalancer:LoadBalancer": {
    inputs: inputsOf<hcloud.LoadBalancerArgs>()("location", "networkZone"),
    note: "loadBalancerType and algorithm update in place: a busier stack resizes its balancer without a new address",
  },
  "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork": { inputs: inputsOf<hcloud.LoadBalancerNetworkArgs>()("loadBalancerId", "networkId", "subnetId", "ip") },
  "hcloud:index/loadBalancerService:LoadBalancerService": {
    inputs: inputsOf<hcloud.LoadBalancerServiceArgs>()("loadBalancerId", "protocol", "listenPort"),
    note: "the health check, destination port and proxyprotocol update in place",
  },
  "hcloud:index/loadBalancerTarget:LoadBalancerTarget": { inputs: inputsOf<hcloud.LoadBalancerTargetArgs>()("loadBalancerId", "serverId", "labelSelector", "ip") },
  "digitalocean:index/droplet:Droplet": {
    inputs: inputsOf<digitalocean.DropletArgs>()("image", "region", "publicNetworking", "sshKeys", "userData", "monitoring", "dropletAgent", "vpcUuid", "gpuPartitionMode"),
    note: "size and ipv6 (enabling it) update in place",
  },
  "digitalocean:index/vpc:Vpc": { inputs: inputsOf<digitalocean.VpcArgs>()("region", "ipRange"), note: "ipRange is optional and computed: left out, DigitalOcean picks a /20" },
  "digitalocean:index/reservedIp:ReservedIp": { inputs: inputsOf<digitalocean.ReservedIpArgs>()("region") },
  "digitalocean:index/reservedIpAssignment:ReservedIpAssignment": { inputs: inputsOf<digitalocean.ReservedIpAssignmentArgs>()("ipAddress", "dropletId") },
  "digitalocean:index/volume:Volume": {
    inputs: inputsOf<digitalocean.VolumeArgs>()("region", "name", "description", "snapshotId", "initialFilesystemType", "initialFilesystemLabel"),
  },
  "digitalocean:index/volumeAttachment:VolumeAttachment": { inputs: inputsOf<digitalocean.VolumeAttachmentArgs>()("dropletId", "volumeId") },
  "digitalocean:index/sshKey:SshKey": { inputs: inputsOf<digitalocean.SshKeyArgs>()("publicKey") },
  "digitalocean:index/firewall:Firewall": { inputs: [] },
  "digitalocean:index/loadBalancer:LoadBalancer": {
    inputs: inputsOf<digitalocean.LoadBalancerArgs>()("region", "vpcUuid", "subnetUuid", "ip", "type", "network", "networkStack"),
    note: "dropletIds, forwarding rules, the health check and sizeUnit update in place: an app server added joins the same balancer",
  },
  "digitalocean:index/spacesBucket:SpacesBucket": {
    inputs: inputsOf<digitalocean.SpacesBucketArgs>()("region", "name"),
    note: "the schema marks only region; a bucket cannot be renamed, so a changed name means another bucket",
  },
  "digitalocean:index/spacesKey:SpacesKey": { inputs: [], note: "name and grants update in place" },
  "digitalocean:index/uptimeCheck:UptimeCheck": { inputs: [], note: "name, target, type, regions and enabled update in place" },
  "digitalocean:index/uptimeAlert:UptimeAlert": {
    inputs: [],
    note: "checkId is not ForceNew, but an update is sent under the check it names: the check must never be replaced (nothing forces it)",
  },
  "digitalocean:index/monitorAlert:MonitorAlert": { inputs: [], note: "entities, thresholds and alerts update in place: a droplet added by a stage change joins the policy" },
  "digitalocean:index/databaseCluster:DatabaseCluster": {
    inputs: inputsOf<digitalocean.DatabaseClusterArgs>()("name", "engine", "privateNetworkUuid", "projectId"),
    note: "size, nodeCount, version and region update in place (DigitalOcean resizes, upgrades or migrates the cluster)",
  },
  "digitalocean:index/databaseDb:DatabaseDb": { inputs: inputsOf<digitalocean.DatabaseDbArgs>()("name", "clusterId") },
  "digitalocean:index/databaseUser:DatabaseUser": { inputs: inputsOf<digitalocean.DatabaseUserArgs>()("name", "clusterId") },
  "digitalocean:index/databaseFirewall:DatabaseFirewall": { inputs: inputsOf<digitalocean.DatabaseFirewallArgs>()("clusterId"), note: "rules update in place: a droplet added by a stage change is admitted by the same firewall" },
  "digitalocean:index/databaseReplica:DatabaseReplica": {
    inputs: inputsOf<digitalocean.DatabaseReplicaArgs>()("name", "clusterId", "region", "privateNetworkUuid", "tags"),
    note: "size updates in place, upwards only (DigitalOcean does not shrink a read-only node)",
  },
  // The random provider replaces on any argument change: that is how a new value is drawn.
  "random:index/randomPassword:RandomPassword": { inputs: inputsOf<random.RandomPasswordArgs>()(...RANDOM_ARGS) },
  "random:index/randomString:RandomString": { inputs: inputsOf<random.RandomStringArgs>()(...RANDOM_ARGS) },
  // terraform-provider-tls internal/provider/resource_private_key.go: every argument has RequiresReplace (a new key is drawn).
  "tls:index/privateKey:PrivateKey": { inputs: inputsOf<tls.PrivateKeyArgs>()("algorithm", "rsaBits", "ecdsaCurve") },
};

/** The replace-forcing inputs of a resource type; an unknown type is a programming error. */
export function replaceInputsOf(type: string): readonly string[] {
  const rule = REPLACE_INPUTS[type];
  if (!rule) throw new Error(`no replace-forcing inputs recorded for ${type}: read its provider schema and add them to components/replaceInputs.ts`);
  return rule.inputs;
}
