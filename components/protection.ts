/**
 * The kinds of resources that hold what a stack cannot get back by running `pulumi up` again:
 * data (servers, volumes, buckets, database clusters), addresses users and DNS point at (fixed
 * IPs, load balancers), the private network every server sits in, and generated secrets (a new
 * restic password cannot open the old backups; a new bucket suffix is another bucket).
 *
 * One table, two readers: the stack protects every resource of these types (`protectKinds`, a
 * transformation on the root component, so no resource can be declared without it), and the
 * replace guard (`npm run guard`, cli/guard.ts) fails a preview that would replace or delete
 * one. Component resources are not listed: they hold nothing themselves, a deleted component
 * takes its children with it and the children are what is listed; and `protect` on a component
 * would spread to every child (a bucket's access key must stay rotatable).
 */
import type * as pulumi from "@pulumi/pulumi";

/** Resource type token → what it is, in the words the guard and the policy pack print. */
export const PROTECTED_KINDS: Readonly<Record<string, string>> = {
  "hcloud:index/server:Server": "server",
  "digitalocean:index/droplet:Droplet": "server",
  "hcloud:index/volume:Volume": "data volume",
  "digitalocean:index/volume:Volume": "data volume",
  "hcloud:index/primaryIp:PrimaryIp": "fixed IP",
  "hcloud:index/floatingIp:FloatingIp": "fixed IP",
  "digitalocean:index/reservedIp:ReservedIp": "fixed IP",
  "digitalocean:index/floatingIp:FloatingIp": "fixed IP",
  "digitalocean:index/spacesBucket:SpacesBucket": "bucket",
  "digitalocean:index/databaseCluster:DatabaseCluster": "database cluster",
  "digitalocean:index/databaseReplica:DatabaseReplica": "database replica",
  "digitalocean:index/databaseDb:DatabaseDb": "database",
  "hcloud:index/loadBalancer:LoadBalancer": "load balancer",
  "digitalocean:index/loadBalancer:LoadBalancer": "load balancer",
  // A replaced network detaches (Hetzner) or replaces (DigitalOcean: vpcUuid forces it) every server in it.
  "hcloud:index/network:Network": "private network",
  "hcloud:index/networkSubnet:NetworkSubnet": "private network",
  "digitalocean:index/vpc:Vpc": "private network",
  "random:index/randomPassword:RandomPassword": "generated secret",
  "random:index/randomString:RandomString": "generated secret",
  "random:index/randomBytes:RandomBytes": "generated secret",
  "random:index/randomId:RandomId": "generated secret",
};

/** What a resource type is when it is protected; undefined for every other type. */
export function protectedKindOf(type: string): string | undefined {
  return Object.hasOwn(PROTECTED_KINDS, type) ? PROTECTED_KINDS[type] : undefined;
}

/**
 * Sets `protect` on every resource of a protected kind below the component it is given to.
 * Pulumi then refuses to delete or replace one; removing it takes `pulumi state unprotect`.
 */
export const protectKinds: pulumi.ResourceTransformation = ({ type, props, opts }) =>
  protectedKindOf(type) === undefined ? undefined : { props, opts: { ...opts, protect: true } };
