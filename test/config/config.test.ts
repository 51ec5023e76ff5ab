import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { DEFAULTS, parseStackConfig } from "../../config/config";
import { readStackFile } from "../../cli/lib/renderStack";
import { ED25519_KEY, minimalRaw, separatedRaw } from "../support/fixtures";
import { CATALOGS, MIN_CACHE_MEMORY_MIB } from "../../config/providers";
import { configProblems } from "../support/configProblems";


describe("stack config: parseStackConfig", () => {
  it("applies the documented defaults per provider", () => {
    const h = parseStackConfig(minimalRaw("hetzner"));
    assert.equal(h.stage, "mvp");
    assert.equal(h.region, "fsn1");
    assert.equal(h.serverType, "cx23");
    assert.equal(h.serverMemoryMiB, 4096);
    assert.equal(h.webInstances, DEFAULTS.webInstances);
    assert.equal(h.workerInstances, 1);
    assert.equal(h.metricsPortOffset, 10000);
    assert.equal(h.backupSchedule, "*-*-* 03:00:00 UTC");
    assert.equal(h.backupRetentionDays, 14);
    assert.equal(h.restoreDrillSchedule, "Sun *-*-* 04:30:00 UTC");
    assert.deepEqual(h.backupBucket, { provider: "hetzner", region: "fsn1", endpoint: "https://fsn1.your-objectstorage.com", name: undefined, accessKeyId: "HETZNERKEYID", secretAccessKey: "hetzner-secret-key" });
    const d = parseStackConfig(minimalRaw("digitalocean"));
    assert.equal(d.region, "fra1");
    assert.equal(d.serverType, "s-2vcpu-4gb");
    assert.equal(d.backupBucket.endpoint, "https://fra1.digitaloceanspaces.com");
  });

  // Each bad fragment, merged into a minimal valid config, gives exactly these lines.
  const table: Array<[string, Record<string, string | undefined>, string[]]> = [
    ["missing provider", { provider: undefined }, ["saas-vps:provider: is required; use one of hetzner, digitalocean"]],
    ["unknown provider", { provider: "aws" }, ['saas-vps:provider: "aws" is not allowed; use one of hetzner, digitalocean']],
    ["misspelled key", { regoin: "fsn1" }, ["saas-vps:regoin: unknown key; did you mean saas-vps:region?"]],
    ["region of the other provider", { region: "nyc3" }, ['saas-vps:region: "nyc3" is not a Hetzner location; use one of fsn1, nbg1, hel1, ash, hil, sin']],
    ["unknown server type", { serverType: "cx21" }, ['saas-vps:serverType: "cx21" is not a Hetzner server type (did you mean cx22?); use one of cx22, cx32, cx42, cx52, cx23, cx33, cx43, cx53, cpx11, cpx21, cpx31, cpx41, cpx51, cax11, cax21, cax31, cax41, ccx13, ccx23, ccx33, ccx43, ccx53, ccx63']],
    ["unknown stage", { stage: "large" }, ['saas-vps:stage: "large" is not allowed; use one of mvp, separated, scaled']],
    ["no workers where the worker has its own server", { stage: "separated", workerInstances: "0", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" }, ["saas-vps:workerInstances: must be 1-16 at stage separated: the worker has a server of its own there, which would run nothing; got 0"]],
    ["unknown stage", { stage: "big" }, ['saas-vps:stage: "big" is not allowed; use one of mvp, separated, scaled']],
    ["domain with scheme", { plainHttp: undefined, domain: "https://app.example.com", acmeEmail: "ops@example.com" }, ['saas-vps:domain: must be a bare hostname such as app.example.com (no scheme, path, port or spaces); got "https://app.example.com"']],
    ["domain with a space", { plainHttp: undefined, domain: "app example.com", acmeEmail: "ops@example.com" }, ['saas-vps:domain: must be a bare hostname such as app.example.com (no scheme, path, port or spaces); got "app example.com"']],
    ["domain without acmeEmail", { plainHttp: undefined, domain: "app.example.com" }, ['saas-vps:acmeEmail: is required when saas-vps:domain is set (Let\'s Encrypt needs a contact); domain is "app.example.com"']],
    ["bad email", { plainHttp: undefined, domain: "app.example.com", acmeEmail: "ops" }, ['saas-vps:acmeEmail: must be an email address for Let\'s Encrypt notices; got "ops"']],
    ["ssh keys missing", { sshPublicKeys: undefined }, ['saas-vps:sshPublicKeys: is required; set a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]']],
    ["ssh keys not a list", { sshPublicKeys: ED25519_KEY }, [`saas-vps:sshPublicKeys: must be a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]; got "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVXFYK2vjsGfH6+8RIcq..."`]],
    ["empty ssh key list", { sshPublicKeys: "[]" }, ['saas-vps:sshPublicKeys: must list at least one entry; set a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]']],
    ["a private key pasted", { sshPublicKeys: JSON.stringify(["-----BEGIN OPENSSH PRIVATE KEY-----"]) }, ['saas-vps:sshPublicKeys: entry 0: "-----BEGIN OPENSSH PRIVATE KEY-----" does not start with an OpenSSH key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...)']],
    ["key with the wrong type prefix", { sshPublicKeys: JSON.stringify([ED25519_KEY.replace("ssh-ed25519", "ssh-rsa")]) }, ["saas-vps:sshPublicKeys: entry 0: ssh-rsa key data is truncated or belongs to another key type"]],
    ["bad CIDR", { sshAllowedCidrs: JSON.stringify(["203.0.113.7", "10.0.0.0/33"]) }, ['saas-vps:sshAllowedCidrs: "203.0.113.7" is not an IPv4 or IPv6 CIDR such as 203.0.113.7/32 or 2001:db8::/48', 'saas-vps:sshAllowedCidrs: "10.0.0.0/33" is not an IPv4 or IPv6 CIDR such as 203.0.113.7/32 or 2001:db8::/48']],
    ["the same key twice, comments aside", { sshPublicKeys: JSON.stringify([ED25519_KEY, ED25519_KEY.replace("you@laptop", "me@desktop")]) }, ["saas-vps:sshPublicKeys: entries 0 and 1 are the same ssh-ed25519 key (only the comments may differ); list each key once"]],
    ["CIDRs with host bits set", { sshAllowedCidrs: JSON.stringify(["10.0.0.1/24", "2001:db8::1/32", "10.0.0.0/24"]) }, ['saas-vps:sshAllowedCidrs: "10.0.0.1/24" has host bits set; write the network 10.0.0.0/24, or 10.0.0.1/32 for that one address', 'saas-vps:sshAllowedCidrs: "2001:db8::1/32" has host bits set; write the network 2001:db8::/32, or 2001:db8::1/128 for that one address']],
    ["an IPv4 address as domain", { plainHttp: undefined, domain: "203.0.113.7", acmeEmail: "ops@example.com" }, [`saas-vps:domain: "203.0.113.7" is an IP address: Let's Encrypt gives no certificate for it via HTTP-01; set a hostname whose DNS points at the server, or leave domain unset to serve plain HTTP on the IP`]],
    ["an IPv6 address as domain", { plainHttp: undefined, domain: "2001:db8::7", acmeEmail: "ops@example.com" }, [`saas-vps:domain: "2001:db8::7" is an IP address: Let's Encrypt gives no certificate for it via HTTP-01; set a hostname whose DNS points at the server, or leave domain unset to serve plain HTTP on the IP`]],
    ["a bucket name with dots", { backupBucketName: "backups.example.com" }, ['saas-vps:backupBucketName: must be 3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break TLS for virtual-host-style S3 requests); got "backups.example.com"']],
    ["too many web instances", { webInstances: "17" }, ['saas-vps:webInstances: must be a whole number from 1 to 16; got "17"']],
    ["fractional workers", { workerInstances: "1.5" }, ['saas-vps:workerInstances: must be a whole number from 0 to 16; got "1.5"']],
    ["zero retention", { backupRetentionDays: "0" }, ['saas-vps:backupRetentionDays: must be a whole number from 1 to 3650; got "0"']],
    ["schedule with a newline", { backupSchedule: "daily\nExecStart=/bin/sh" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "daily\\nExecStart=/bin/sh": contains a line break or another control character']],
    ["hour 25", { backupSchedule: "*-*-* 25:00:00" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "*-*-* 25:00:00": hour 25 is outside 0-23 or repeats past it']],
    ["day 32", { restoreDrillSchedule: "*-*-32 03:00:00" }, ['saas-vps:restoreDrillSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "*-*-32 03:00:00": day 32 is outside 1-31 or repeats past it']],
    ["minute 61", { backupSchedule: "03:61" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "03:61": minute 61 is outside 0-59 or repeats past it']],
    ["unknown time zone", { backupSchedule: "*-*-* 03:00:00 Europe/Berln" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "*-*-* 03:00:00 Europe/Berln": time zone "Europe/Berln" is not a tz database zone such as UTC or Europe/Berlin (did you mean Europe/Berlin?)']],
    ["a date that never comes", { backupSchedule: "*-02-30 03:00" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "*-02-30 03:00": never occurs: no month it names has that day']],
    ["a schedule with a year", { backupSchedule: "2027-*-* 03:00" }, ['saas-vps:backupSchedule: must be a systemd OnCalendar expression such as "*-*-* 03:00:00 UTC" or "daily" (systemd.time(7)); got "2027-*-* 03:00": names a year; a recurring schedule uses * so that it never runs out']],
    ["server type under 2 GiB", { provider: "digitalocean", serverType: "s-1vcpu-1gb" }, ['saas-vps:serverType: "s-1vcpu-1gb" has 1024 MiB of memory; PostgreSQL, nginx and the app need at least 2048 MiB']],
    ["hetzner bucket without keys", { backupAccessKeyId: undefined, backupSecretAccessKey: undefined }, ["saas-vps:backupAccessKeyId: is required when saas-vps:backupBucketProvider is hetzner (Hetzner's API cannot create S3 keys; make them in the Hetzner console)", "saas-vps:backupSecretAccessKey: is required when saas-vps:backupBucketProvider is hetzner (Hetzner's API cannot create S3 keys; make them in the Hetzner console); set it with --secret"]],
    ["s3 bucket without endpoint", { provider: "digitalocean", backupBucketProvider: "s3", backupAccessKeyId: "AK", backupSecretAccessKey: "SK", backupBucketName: "my-backups" }, ['saas-vps:backupBucketEndpoint: is required for backupBucketProvider s3 and must be an http(s) URL such as https://s3.eu-central-1.amazonaws.com; got ""']],
    ["spaces region that has none", { provider: "digitalocean", backupBucketRegion: "fsn1" }, ['saas-vps:backupBucketRegion: "fsn1" has no Spaces; use one of nyc3, sfo2, sfo3, ams3, sgp1, fra1, syd1, blr1, lon1, atl1, tor1']],
    ["smtp URL of another scheme", { smtpUrl: "https://mail.example.com" }, ["saas-vps:smtpUrl: must be an smtp:// or smtps:// URL such as smtps://user:pass@smtp.example.com:465; got a value that is not one"]],
    ["no domain and no plainHttp", { plainHttp: undefined }, ["saas-vps:domain: is unset, so the site would be plain HTTP on the server's IP and send passwords and session tokens unencrypted; set domain (and acmeEmail) for HTTPS, or accept an unencrypted site with saas-vps:plainHttp: true"]],
    ["no domain and plainHttp false", { plainHttp: "false" }, ["saas-vps:domain: is unset, so the site would be plain HTTP on the server's IP and send passwords and session tokens unencrypted; set domain (and acmeEmail) for HTTPS, or accept an unencrypted site with saas-vps:plainHttp: true"]],
    ["plainHttp with a domain", { domain: "app.example.com", acmeEmail: "ops@example.com" }, ['saas-vps:plainHttp: is only for a stack without saas-vps:domain; with domain "app.example.com" the site is HTTPS (plain HTTP only redirects): remove the key']],
    ["plainHttp not a boolean", { plainHttp: "yes" }, ['saas-vps:plainHttp: must be true or false; got "yes"']],
    ["a metrics offset that puts a worker on a web port", { metricsPortOffset: "3000" }, ["saas-vps:metricsPortOffset: gives metrics ports 3001-6002 (offset + web ports 3001-3002, offset + worker numbers 1-1), of which 3001 already taken (web ports, 22, 25, 53, 80, 443, 5432, 6379, 8081, 8082, 9100); pick an offset that keeps them clear, e.g. 10000; got 3000"]],
    ["a metrics offset that puts a web instance on the node exporter", { metricsPortOffset: "6099" }, ["saas-vps:metricsPortOffset: gives metrics ports 6100-9101 (offset + web ports 3001-3002, offset + worker numbers 1-1), of which 9100 already taken (web ports, 22, 25, 53, 80, 443, 5432, 6379, 8081, 8082, 9100); pick an offset that keeps them clear, e.g. 10000; got 6099"]],
    ["a metrics offset that puts a worker on PostgreSQL", { metricsPortOffset: "5431" }, ["saas-vps:metricsPortOffset: gives metrics ports 5432-8433 (offset + web ports 3001-3002, offset + worker numbers 1-1), of which 5432 already taken (web ports, 22, 25, 53, 80, 443, 5432, 6379, 8081, 8082, 9100); pick an offset that keeps them clear, e.g. 10000; got 5431"]],
    ["a metrics offset past the port range", { metricsPortOffset: "63000" }, ["saas-vps:metricsPortOffset: gives metrics ports 63001-66002 (offset + web ports 3001-3002, offset + worker numbers 1-1), of which 66001, 66002 past 65535; pick an offset that keeps them clear, e.g. 10000; got 63000"]],
    ["a metrics offset of 0", { metricsPortOffset: "0" }, ['saas-vps:metricsPortOffset: must be a whole number from 1 to 64535; got "0"']],
    ["alert webhook not a URL", { alertWebhookUrl: "hooks.example.com" }, ["saas-vps:alertWebhookUrl: must be an http(s) URL that accepts a JSON POST; got a value that is not one"]],
    ["a Stripe publishable key as secret key", { stripeSecretKey: "pk_live_abc123" }, ["saas-vps:stripeSecretKey: must be a Stripe secret or restricted key (sk_live_..., sk_test_..., rk_live_...); got a value that is not one"]],
    ["a webhook secret that is not one", { stripeSecretKey: "sk_test_abc", stripeWebhookSecret: "we_123" }, ["saas-vps:stripeWebhookSecret: must be a Stripe webhook signing secret (whsec_...); got a value that is not one"]],
    ["a webhook secret without the key", { stripeWebhookSecret: "whsec_abc" }, ["saas-vps:stripeSecretKey: is required when saas-vps:stripeWebhookSecret is set (the app verifies webhooks with the Stripe library, which needs the key)"]],
  ];
  for (const [title, fragment, expected] of table) {
    it(`rejects ${title}`, () => {
      const raw: Record<string, string> = { ...minimalRaw("hetzner") };
      for (const [k, v] of Object.entries(fragment)) {
        if (v === undefined) delete raw[k];
        else raw[k] = v;
      }
      assert.deepEqual(configProblems(raw), expected);
    });
  }

  it("reports every problem of a config at once, one line per key", () => {
    const problems = configProblems({ provider: "digitalocean", regoin: "x", webInstances: "0", sshAllowedCidrs: "[]", domain: "a b" });
    assert.deepEqual(problems, [
      "saas-vps:regoin: unknown key; did you mean saas-vps:region?",
      'saas-vps:domain: must be a bare hostname such as app.example.com (no scheme, path, port or spaces); got "a b"',
      'saas-vps:sshPublicKeys: is required; set a JSON list of OpenSSH public keys, e.g. ["ssh-ed25519 AAAA... you@laptop"]',
      'saas-vps:sshAllowedCidrs: must list at least one entry; set a JSON list of IPv4/IPv6 CIDRs allowed to reach SSH, e.g. ["203.0.113.7/32"]',
      'saas-vps:webInstances: must be a whole number from 1 to 16; got "0"',
      "saas-vps:monitoring: is digitalocean (the default), which checks the site and alerts, but no alert route is set: set saas-vps:alertEmails (addresses verified on the DigitalOcean account) and/or saas-vps:alertWebhookUrl (a Slack incoming webhook), or turn watching off with saas-vps:monitoring: none",
    ]);
    assert.ok(problems.every((line) => line.startsWith("saas-vps:")));
  });

  it("rejects a credential stored in plain text when Pulumi says which keys are secret", () => {
    const raw = { ...minimalRaw(), alertWebhookUrl: "https://hooks.example.com/x" };
    assert.deepEqual(configProblems(raw, new Set(["backupSecretAccessKey"])), [
      "saas-vps:alertWebhookUrl: is a credential and is stored in plain text; set it with: pulumi config set --secret saas-vps:alertWebhookUrl <value>",
    ]);
    assert.equal(parseStackConfig(raw, { secretKeys: new Set(["alertWebhookUrl", "backupSecretAccessKey"]) }).alertWebhookUrl, "https://hooks.example.com/x");
  });

  it("accepts IPv6 CIDRs, every key type and the OnCalendar forms people write", () => {
    const ecdsa = execFileSync("sh", ["-c", "d=$(mktemp -d) && ssh-keygen -q -t ecdsa -N '' -f $d/k && cat $d/k.pub && rm -r $d"]).toString().trim();
    const config = parseStackConfig({
      ...minimalRaw(),
      sshPublicKeys: JSON.stringify([ED25519_KEY, ecdsa]),
      sshAllowedCidrs: JSON.stringify(["2001:db8::/48", "0.0.0.0/0"]),
      backupSchedule: "Mon..Fri *-*-* 02:15:00 Europe/Berlin",
      restoreDrillSchedule: "weekly",
    });
    assert.equal(config.sshPublicKeys.length, 2);
    assert.equal(config.backupSchedule, "Mon..Fri *-*-* 02:15:00 Europe/Berlin");
  });

  for (const stack of ["staging", "prod"]) {
    it(`parses the example stack Pulumi.${stack}.yaml`, () => {
      const file = readStackFile(join(__dirname, "..", "..", `Pulumi.${stack}.yaml`));
      const raw = Object.fromEntries(Object.entries(file.config).filter(([k]) => k.startsWith("saas-vps:")).map(([k, v]) => [k.slice(9), v]));
      const secretKeys = new Set(file.secretKeys.filter((k) => k.startsWith("saas-vps:")).map((k) => k.slice(9)));
      const config = parseStackConfig(raw, { secretKeys });
      assert.equal(config.stage, "mvp");
    });
  }
});

describe("stack config: stage scaled", () => {
  const scaledRaw = (extra: Record<string, string> = {}) => ({ ...minimalRaw("hetzner"), stage: "scaled", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S", ...extra });
  const problemsOf = (raw: Record<string, string>) => {
    try {
      parseStackConfig(raw);
      return [];
    } catch (e) {
      return (e as Error).message.split("\n");
    }
  };

  it("the example stack Pulumi.scaled.yaml: two app servers on the smallest type, no replica, credentials as secrets", () => {
    const file = readStackFile(join(__dirname, "..", "..", "Pulumi.scaled.yaml"));
    const raw = Object.fromEntries(Object.entries(file.config).filter(([k]) => k.startsWith("saas-vps:")).map(([k, v]) => [k.slice(9), v]));
    const secretKeys = new Set(file.secretKeys.filter((k) => k.startsWith("saas-vps:")).map((k) => k.slice(9)));
    const config = parseStackConfig(raw, { secretKeys });
    assert.equal(config.stage, "scaled");
    assert.equal(config.appServers, 2);
    assert.equal(config.readReplica, false);
    assert.deepEqual([config.servers.web.memoryMiB, config.servers.db.memoryMiB], [2048, 2048]);
  });

  it("takes two app servers and no replica by default, the replica's type from the db server's", () => {
    const config = parseStackConfig(scaledRaw({ dbServerType: "cx33" }));
    assert.equal(config.appServers, 2);
    assert.equal(config.readReplica, false);
    assert.deepEqual(config.servers.replica, config.servers.db);
    const typed = parseStackConfig(scaledRaw({ readReplica: "true", replicaServerType: "cx43" }));
    assert.deepEqual(typed.servers.replica, { serverType: "cx43", memoryMiB: 16384 });
  });

  it("refuses app servers out of 2-10, naming the key and the value", () => {
    for (const count of ["1", "11", "two"]) {
      assert.deepEqual(problemsOf(scaledRaw({ appServers: count })), [`saas-vps:appServers: must be a whole number from 2 to 10; got "${count}"`]);
    }
  });

  it("refuses a replica server type without a replica", () => {
    assert.deepEqual(problemsOf(scaledRaw({ replicaServerType: "cx33" })), [
      'saas-vps:replicaServerType: is only for saas-vps:readReplica true; this stack has no replica, so nothing would use it: remove the key or set readReplica to true; got "cx33"',
    ]);
  });

  describe("a read replica of a managed cluster (DigitalOcean's read-only node)", () => {
    const managed = (extra: Record<string, string> = {}) => ({ ...minimalRaw("digitalocean"), stage: "scaled", databaseMode: "managed", readReplica: "true", ...extra });
    const sizes = "db-s-1vcpu-1gb, db-s-1vcpu-2gb, db-s-2vcpu-4gb, db-s-4vcpu-8gb, db-s-6vcpu-16gb, db-s-8vcpu-32gb, db-s-16vcpu-64gb";

    it("is allowed, sized like the cluster unless managedReplicaSize says otherwise", () => {
      assert.deepEqual(parseStackConfig(managed()).database, { mode: "managed", size: "db-s-1vcpu-2gb", replicaSize: "db-s-1vcpu-2gb" });
      assert.deepEqual(parseStackConfig(managed({ managedDatabaseSize: "db-s-2vcpu-4gb" })).database, { mode: "managed", size: "db-s-2vcpu-4gb", replicaSize: "db-s-2vcpu-4gb" });
      assert.deepEqual(parseStackConfig(managed({ managedReplicaSize: "db-s-4vcpu-8gb" })).database, { mode: "managed", size: "db-s-1vcpu-2gb", replicaSize: "db-s-4vcpu-8gb" });
      // Without readReplica the cluster has no replica size.
      assert.deepEqual(parseStackConfig(managed({ readReplica: "false" })).database, { mode: "managed", size: "db-s-1vcpu-2gb" });
    });

    it("refuses a replica server type with a managed database: the node has a size, not a server type", () => {
      assert.deepEqual(problemsOf(managed({ replicaServerType: "s-2vcpu-4gb" })), [
        `saas-vps:replicaServerType: is only for saas-vps:databaseMode server (a replica on a server of its own); with databaseMode managed the replica is a read-only node of the cluster, which has a node size: remove the key and set saas-vps:managedReplicaSize (one of ${sizes}) if the cluster's size is not right; got "s-2vcpu-4gb"`,
      ]);
    });

    it("refuses a node smaller than the cluster, and a size that is not one", () => {
      assert.deepEqual(problemsOf(managed({ managedDatabaseSize: "db-s-2vcpu-4gb", managedReplicaSize: "db-s-1vcpu-2gb" })), [
        `saas-vps:managedReplicaSize: must be at least the cluster's size (saas-vps:managedDatabaseSize db-s-2vcpu-4gb): DigitalOcean makes no read-only node smaller than its cluster; use one of db-s-2vcpu-4gb, db-s-4vcpu-8gb, db-s-6vcpu-16gb, db-s-8vcpu-32gb, db-s-16vcpu-64gb; got "db-s-1vcpu-2gb"`,
      ]);
      assert.deepEqual(problemsOf(managed({ managedReplicaSize: "db-s-huge" })), [`saas-vps:managedReplicaSize: "db-s-huge" is not a DigitalOcean Managed PostgreSQL size; use one of ${sizes}`]);
    });

    it("refuses managedReplicaSize without a replica, or with the replica on a server", () => {
      assert.deepEqual(problemsOf(managed({ readReplica: "false", managedReplicaSize: "db-s-2vcpu-4gb" })), [
        'saas-vps:managedReplicaSize: is only for saas-vps:readReplica true; this stack has no replica, so nothing would use it: remove the key or set readReplica to true; got "db-s-2vcpu-4gb"',
      ]);
      assert.deepEqual(problemsOf(scaledRaw({ readReplica: "true", managedReplicaSize: "db-s-2vcpu-4gb" })), [
        'saas-vps:managedReplicaSize: is only for saas-vps:databaseMode managed (a read-only node of the cluster); databaseMode is server, where saas-vps:replicaServerType sizes the replica\'s server: remove the key; got "db-s-2vcpu-4gb"',
      ]);
    });

    it("stays refused outside stage scaled, and on Hetzner", () => {
      assert.deepEqual(configProblems({ ...minimalRaw("digitalocean"), stage: "separated", databaseMode: "managed", readReplica: "true", managedReplicaSize: "db-s-2vcpu-4gb" }), [
        "saas-vps:readReplica: is for stage scaled only; this stack's stage is separated (remove the key or change saas-vps:stage)",
        "saas-vps:managedReplicaSize: is for stage scaled only; this stack's stage is separated (remove the key or change saas-vps:stage)",
      ]);
      assert.deepEqual(problemsOf(scaledRaw({ databaseMode: "managed", readReplica: "true" })), [
        'saas-vps:databaseMode: "managed" is DigitalOcean Managed PostgreSQL; Hetzner has no managed PostgreSQL, so use databaseMode server (its own server) there',
      ]);
    });
  });

  it("gives the cache server the provider's cheapest type with 1 GiB or more by default, or cacheServerType", () => {
    for (const provider of ["hetzner", "digitalocean"] as const) {
      const config = parseStackConfig({ ...minimalRaw(provider), stage: "scaled", uploadsAccessKeyId: "K", uploadsSecretAccessKey: "S" });
      const catalog = CATALOGS[provider];
      assert.equal(config.servers.cache.serverType, catalog.defaultCacheServerType, provider);
      assert.equal(config.servers.cache.memoryMiB, catalog.serverTypes[catalog.defaultCacheServerType].memoryMiB, provider);
      assert.ok(config.servers.cache.memoryMiB >= MIN_CACHE_MEMORY_MIB, provider);
    }
    assert.equal(parseStackConfig({ ...minimalRaw("digitalocean"), stage: "scaled", cacheServerType: "s-2vcpu-4gb" }).servers.cache.memoryMiB, 4096);
    // Not serverType's: the cache does not follow the app's size.
    assert.equal(parseStackConfig(scaledRaw({ serverType: "cx33" })).servers.cache.serverType, "cx23");
  });

  it("refuses a cache server type the provider does not have, naming the key, what is allowed and the value", () => {
    const [line] = problemsOf(scaledRaw({ cacheServerType: "cx99" }));
    assert.match(line, /^saas-vps:cacheServerType: "cx99" is not a Hetzner server type \(did you mean cx\d\d\?\); use one of cx22, /);
    assert.equal(problemsOf(scaledRaw({ cacheServerType: "cpx11" })).length, 0, "2 GiB is enough for the cache");
  });

  it("refuses the scaled keys in another stage", () => {
    assert.deepEqual(configProblems({ ...minimalRaw("hetzner"), appServers: "3", readReplica: "true" }), [
      "saas-vps:appServers: is for stage scaled only; this stack's stage is mvp (remove the key or change saas-vps:stage)",
      "saas-vps:readReplica: is for stage scaled only; this stack's stage is mvp (remove the key or change saas-vps:stage)",
    ]);
    for (const stage of ["mvp", "separated"]) {
      const raw = stage === "mvp" ? minimalRaw("hetzner") : { ...minimalRaw("hetzner"), ...separatedRaw("hetzner") };
      assert.deepEqual(configProblems({ ...raw, cacheServerType: "cx23" }), [
        `saas-vps:cacheServerType: is for stage scaled only; this stack's stage is ${stage} (remove the key or change saas-vps:stage)`,
      ]);
    }
  });
});
