import assert from "node:assert/strict";
import * as digitalocean from "@pulumi/digitalocean";
import * as hcloud from "@pulumi/hcloud";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { REPLACE_INPUTS, replaceInputsOf } from "../../components/replaceInputs";

/** Every resource class the components declare, by the type token its SDK registers it under. */
const DECLARED = [
  hcloud.Server, hcloud.PrimaryIp, hcloud.Volume, hcloud.VolumeAttachment, hcloud.Network, hcloud.NetworkSubnet, hcloud.SshKey, hcloud.Firewall,
  hcloud.LoadBalancer, hcloud.LoadBalancerNetwork, hcloud.LoadBalancerService, hcloud.LoadBalancerTarget,
  digitalocean.Droplet, digitalocean.Vpc, digitalocean.ReservedIp, digitalocean.ReservedIpAssignment, digitalocean.Volume,
  digitalocean.VolumeAttachment, digitalocean.SshKey, digitalocean.Firewall, digitalocean.SpacesBucket, digitalocean.SpacesKey,
  digitalocean.UptimeCheck, digitalocean.UptimeAlert, digitalocean.MonitorAlert, digitalocean.LoadBalancer,
  digitalocean.DatabaseCluster, digitalocean.DatabaseDb, digitalocean.DatabaseUser, digitalocean.DatabaseFirewall, digitalocean.DatabaseReplica,
  random.RandomPassword, random.RandomString, tls.PrivateKey,
];
const tokenOf = (cls: unknown): string => (cls as { __pulumiType: string }).__pulumiType;

describe("replace-forcing inputs (components/replaceInputs.ts)", function () {
  it("names each resource type by the token its SDK registers, and no other", () => {
    assert.deepEqual(Object.keys(REPLACE_INPUTS).sort(), DECLARED.map(tokenOf).sort());
  });

  it("refuses a resource type nobody has read the schema of, naming the module to extend", () => {
    assert.throws(() => replaceInputsOf("hcloud:index/certificate:Certificate"), /hcloud:index\/certificate:Certificate.*components\/replaceInputs\.ts/);
  });
});
