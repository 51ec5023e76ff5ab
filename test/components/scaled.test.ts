/**
 * Stage scaled under Pulumi mocks, for both providers (the parity contract of the load balancer):
 * the app servers behind the provider's balancer, reachable over HTTP only from it, a read
 * replica, releases that roll one app server at a time; growing from 2 to 3 app servers and moving
 * from separated to scaled replace nothing.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { decodeWriteFiles } from "../../cli/lib/renderStack";
import { isWrappedSecret, unwrapSecrets, valueOf, type RecordedResource } from "../../cli/lib/pulumiMocks";
import { HOST_FIREWALL_PATH } from "../../provisioning/hostFirewall";
import { ACME_RELAY_PORT, APP_ENV_FILE, LB_DRAIN_FILE, LB_HEALTH_PORT, TLS_SHARE_EXPORT, WEB_ENV_FILE, WORKER_ENV_FILE } from "../../provisioning/layout";
import { NGINX_SITE_PATH } from "../../provisioning/nginx";
import { TLS_SHARE_AUTHORIZED_KEYS, TLS_SHARE_KEY, TLS_SHARE_KNOWN_HOSTS } from "../../provisioning/roles/tlsShare";
import { VALKEY_ACL_PATH } from "../../provisioning/valkey";
import { VALKEY_PORT } from "../../plan/plan";
import { drainSeconds, LOAD_BALANCER_HEALTH_CHECK, undrainSeconds } from "../../plan/scaled";
import { RELEASE_PATHS } from "../../provisioning/release";
import { minimalRaw, scaledRaw, separatedRaw, withDomain } from "../support/fixtures";
import { clearPaths, pushOf, runProgram, runProgramOf, type MockRun } from "../support/mockProgram";
import { byUrn, changesBetween } from "../support/urns";

type ProviderName = "hetzner" | "digitalocean";
const SERVER: Record<ProviderName, string> = { hetzner: "hcloud:index/server:Server", digitalocean: "digitalocean:index/droplet:Droplet" };
const FIREWALL: Record<ProviderName, string> = { hetzner: "hcloud:index/firewall:Firewall", digitalocean: "digitalocean:index/firewall:Firewall" };
const LB: Record<ProviderName, string> = { hetzner: "hcloud:index/loadBalancer:LoadBalancer", digitalocean: "digitalocean:index/loadBalancer:LoadBalancer" };
const HCLOUD_LB_SERVICE = "hcloud:index/loadBalancerService:LoadBalancerService";
const HCLOUD_LB_TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget";
const HCLOUD_LB_NETWORK = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork";
const APP_SERVERS = ["app", "app-2", "app-3"];
/** The servers whose processes use Valkey: the app servers and the worker. */
const VALKEY_CLIENTS = [...APP_SERVERS, "worker"];

/** A value with every Pulumi secret in it blanked: what state and the engine show in clear. */
function clearPart(value: any): any {
  if (isWrappedSecret(value)) return "[secret]";
  if (Array.isArray(value)) return value.map(clearPart);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clearPart(v)]));
  return value;
}

const scaled = (provider: ProviderName, appServers = 3) => withDomain({ ...minimalRaw(provider), ...scaledRaw(provider, appServers) });

function serverOf(run: MockRun, provider: ProviderName, name: string): RecordedResource {
  const found = run.mocks.ofType(SERVER[provider]).find((s) => s.name === `saas-test-${name}-server`);
  assert.ok(found, `no ${name} server`);
  return found!;
}

/** A file as the server's first boot writes it. */
function firstBootFile(run: MockRun, provider: ProviderName, server: string, path: string): string {
  const file = decodeWriteFiles(unwrapSecrets(serverOf(run, provider, server).inputs.userData)).get(path);
  assert.ok(file !== undefined, `${server} has no ${path}`);
  return file!;
}

/** A file as the day-2 push writes it (every address known by then). */
function pushedFile(run: MockRun, server: string, path: string): string {
  return unwrapSecrets(pushOf(run, server, path).inputs.stdin);
}

/** Inbound cloud firewall rules of a server, normalized: "port from …". */
function cloudRules(run: MockRun, provider: ProviderName, server: string): string[] {
  const firewalls = run.mocks.ofType(FIREWALL[provider]).filter((fw) => fw.name.startsWith(`saas-test-${server}-fw`));
  return firewalls.flatMap((fw) =>
    provider === "hetzner"
      ? fw.inputs.rules.map((r: any) => `${r.port} from ${r.sourceIps.join(",")}`)
      : fw.inputs.inboundRules.map((r: any) =>
          [
            r.portRange,
            r.sourceAddresses && `from ${r.sourceAddresses.join(",")}`,
            r.sourceDropletIds && `from droplets ${r.sourceDropletIds.length}`,
            r.sourceLoadBalancerUids && `from balancer ${r.sourceLoadBalancerUids.join(",")}`,
          ]
            .filter(Boolean)
            .join(" "),
        ),
  );
}

/** A server's private address: planned on Hetzner, the droplet's own on DigitalOcean. */
function privateAddressOf(run: MockRun, provider: ProviderName, name: string): string {
  return provider === "hetzner" ? { app: "10.20.0.10", "app-2": "10.20.0.11", "app-3": "10.20.0.12" }[name]! : serverOf(run, provider, name).state.ipv4AddressPrivate;
}

function pushExists(run: MockRun, server: string, path: string): boolean {
  try {
    pushOf(run, server, path);
    return true;
  } catch {
    return false;
  }
}

/** The host firewall's accept lines for one port. */
function hostRulesFor(nft: string, port: number): string[] {
  return nft.split("\n").filter((line) => new RegExp(`tcp dport ${port} accept`).test(line)).map((l) => l.trim());
}

for (const provider of ["hetzner", "digitalocean"] as const) {
  describe(`components under Pulumi mocks: ${provider}, stage scaled (load balancer parity contract)`, function () {
    let run: MockRun;
    before(async () => {
      run = await runProgramOf(scaled(provider));
    });

    it("creates the app servers, the worker, the db server, the replica and the cache server, each once", () => {
      const names = run.mocks.ofType(SERVER[provider]).map((s) => s.name.replace(/^saas-test-|-server$/g, "")).sort();
      assert.deepEqual(names, [...APP_SERVERS, "cache", "db", "replica", "worker"].sort());
    });

    it("creates the cache server before every server that uses it (their first boot names its address)", () => {
      const order = run.mocks.ofType(SERVER[provider]).map((s) => s.name.replace(/^saas-test-|-server$/g, ""));
      for (const client of VALKEY_CLIENTS) assert.ok(order.indexOf("cache") < order.indexOf(client), `${client} before cache: ${order.join(", ")}`);
    });

    it("opens the cache server to SSH from the allowed CIDRs and Valkey from the app servers and the worker only, over the private network", () => {
      const rules = cloudRules(run, provider, "cache");
      // Hetzner's firewall does not filter the private network: there the host firewall alone admits Valkey.
      assert.deepEqual(rules.sort(), (provider === "hetzner" ? ["22 from 203.0.113.7/32"] : ["22 from 203.0.113.7/32", `${VALKEY_PORT} from droplets ${VALKEY_CLIENTS.length}`]).sort());
      if (provider === "digitalocean") {
        const firewalls = run.mocks.ofType(FIREWALL[provider]).filter((fw) => fw.name.startsWith("saas-test-cache-fw"));
        const valkey = firewalls.flatMap((fw) => fw.inputs.inboundRules).find((r: any) => r.portRange === String(VALKEY_PORT));
        assert.equal(valkey.sourceAddresses, undefined, "Valkey is open to addresses");
        assert.deepEqual(valkey.sourceDropletIds.map(String).sort(), VALKEY_CLIENTS.map((n) => String(serverOf(run, provider, n).id)).sort());
      }
      const at = (name: string) => (provider === "hetzner" ? { app: "10.20.0.10", "app-2": "10.20.0.11", "app-3": "10.20.0.12", worker: "10.20.0.20" }[name] : serverOf(run, provider, name).state.ipv4AddressPrivate);
      const nft = pushedFile(run, "cache", HOST_FIREWALL_PATH);
      const lines = hostRulesFor(nft, VALKEY_PORT);
      assert.equal(lines.length, 1, lines.join(" | "));
      assert.deepEqual(lines[0].match(/^ip saddr \{ ([^}]*) \}/)![1].split(", ").sort(), VALKEY_CLIENTS.map((n) => `${at(n)}/32`).sort());
      const ports = [...nft.matchAll(/tcp dport (\d+) accept/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
      assert.deepEqual(ports, [22, VALKEY_PORT], "the cache server admits nothing else");
    });

    it("gives the app servers' and the worker's processes VALKEY_URL (TLS, the default user, the cache server's address) from first boot on, and the cache server the password's hash only", () => {
      const password = run.mocks.ofType("random:index/randomPassword:RandomPassword").find((r) => r.name === "saas-test-valkey-password")!.state.result;
      assert.match(password, /^[a-z0-9]{32}$/);
      const cache = provider === "hetzner" ? "10.20.0.40" : serverOf(run, provider, "cache").state.ipv4AddressPrivate;
      const want = `VALKEY_URL=rediss://default:${password}@${cache}:${VALKEY_PORT}`;
      for (const name of VALKEY_CLIENTS) {
        const path = name === "worker" ? WORKER_ENV_FILE : WEB_ENV_FILE;
        assert.ok(pushedFile(run, name, path).split("\n").includes(want), `${name}: ${path}`);
        assert.ok(firstBootFile(run, provider, name, path).split("\n").includes(want), `${name}: ${path} at first boot`);
        assert.doesNotMatch(pushedFile(run, name, APP_ENV_FILE), /VALKEY/, `${name}: app.env (read by the migrate step) names Valkey`);
      }
      const acl = pushedFile(run, "cache", VALKEY_ACL_PATH);
      assert.ok(acl.includes(`#${createHash("sha256").update(password).digest("hex")} `), acl);
      assert.ok(!acl.includes(password));
      const push = pushOf(run, "cache", VALKEY_ACL_PATH);
      assert.ok(isWrappedSecret(push.inputs.stdin), "the ACL file is pushed in clear");
      assert.ok(unwrapSecrets(push.inputs.create).includes("0640 root:valkey"), "the ACL file is not 0640 root:valkey");
    });

    it("keeps the Valkey password a secret: in no clear output, and in no resource input outside a secret", async () => {
      const password: string = run.mocks.ofType("random:index/randomPassword:RandomPassword").find((r) => r.name === "saas-test-valkey-password")!.state.result;
      for (const [key, output] of Object.entries(run.outputs)) {
        if (!pulumi.Output.isInstance(output)) continue;
        if (await (pulumi.isSecret(output as pulumi.Output<unknown>) as unknown as Promise<boolean>)) continue;
        assert.ok(!String(JSON.stringify(await valueOf(output as pulumi.Output<unknown>))).includes(password), `output ${key} shows the Valkey password`);
      }
      let carriers = 0;
      for (const resource of run.mocks.resources) {
        if (resource.name === "saas-test-valkey-password") continue;
        if (JSON.stringify(unwrapSecrets(resource.inputs)).includes(password)) carriers++;
        assert.ok(!JSON.stringify(clearPart(resource.inputs)).includes(password), `${resource.type} ${resource.name} carries the Valkey password in clear`);
      }
      // The check saw the password where it goes in clear text: the env pushes of the app servers and the worker.
      assert.ok(carriers >= VALKEY_CLIENTS.length, `only ${carriers} resources carry the password`);
      // The user-data carries it inside the gzipped bundle, where the search above cannot see it: it is a secret whole.
      for (const name of [...VALKEY_CLIENTS, "cache"]) assert.ok(isWrappedSecret(serverOf(run, provider, name).inputs.userData), `${name}: user-data in clear`);
    });

    it("creates one load balancer, in the stack's private network, forwarding TCP 80 and 443 with the PROXY protocol", () => {
      const lbs = run.mocks.ofType(LB[provider]);
      assert.equal(lbs.length, 1);
      const lb = lbs[0];
      if (provider === "hetzner") {
        const network = run.mocks.ofType(HCLOUD_LB_NETWORK);
        assert.equal(network.length, 1);
        assert.equal(String(network[0].inputs.networkId), run.mocks.ofType("hcloud:index/network:Network")[0].id);
        assert.equal(network[0].inputs.ip, "10.20.0.5");
        const services = run.mocks.ofType(HCLOUD_LB_SERVICE).map((s) => `${s.inputs.protocol} ${s.inputs.listenPort}->${s.inputs.destinationPort} proxy=${s.inputs.proxyprotocol}`);
        assert.deepEqual(services.sort(), ["tcp 443->443 proxy=true", "tcp 80->80 proxy=true"]);
      } else {
        assert.equal(lb.inputs.vpcUuid, run.mocks.ofType("digitalocean:index/vpc:Vpc")[0].id);
        assert.equal(lb.inputs.enableProxyProtocol, true);
        const rules = lb.inputs.forwardingRules.map((r: any) => `${r.entryProtocol} ${r.entryPort}->${r.targetProtocol} ${r.targetPort}`);
        assert.deepEqual(rules.sort(), ["tcp 443->tcp 443", "tcp 80->tcp 80"]);
      }
    });

    it("checks every app server's health listener over HTTP with the plan's interval, timeout and thresholds", () => {
      const check = LOAD_BALANCER_HEALTH_CHECK;
      const seen =
        provider === "hetzner"
          ? run.mocks.ofType(HCLOUD_LB_SERVICE).map((s) => {
              const h = s.inputs.healthCheck;
              return { protocol: h.protocol, port: h.port, path: h.http.path, interval: h.interval, timeout: h.timeout, out: h.retries, back: h.retries };
            })
          : [run.mocks.ofType(LB[provider])[0].inputs.healthcheck].map((h: any) => ({
              protocol: h.protocol,
              port: h.port,
              path: h.path,
              interval: h.checkIntervalSeconds,
              timeout: h.responseTimeoutSeconds,
              out: h.unhealthyThreshold,
              back: h.healthyThreshold,
            }));
      assert.ok(seen.length > 0);
      for (const h of seen) {
        assert.deepEqual(h, { protocol: "http", port: LB_HEALTH_PORT, path: "/health", interval: check.intervalSeconds, timeout: check.timeoutSeconds, out: check.unhealthyThreshold, back: check.healthyThreshold });
      }
    });

    it("targets exactly the app servers, by their private addresses", () => {
      const ids = APP_SERVERS.map((name) => String(serverOf(run, provider, name).id)).sort();
      if (provider === "hetzner") {
        const targets = run.mocks.ofType(HCLOUD_LB_TARGET);
        assert.deepEqual(targets.map((t) => String(t.inputs.serverId)).sort(), ids);
        for (const t of targets) {
          assert.equal(t.inputs.type, "server");
          assert.equal(t.inputs.usePrivateIp, true);
        }
      } else {
        assert.deepEqual(run.mocks.ofType(LB[provider])[0].inputs.dropletIds.map(String).sort(), ids);
      }
    });

    it("lets HTTP(S) and the health check reach app servers only from the balancer (and the issuer's from the other app servers): no public 80/443 in the cloud firewall", () => {
      const lbId = run.mocks.ofType(LB[provider])[0].id;
      for (const name of APP_SERVERS) {
        const rules = cloudRules(run, provider, name);
        // The certificate's issuer also admits the other two app servers to SSH and its ACME relay.
        const issuer = name === "app";
        const expected =
          provider === "hetzner"
            ? ["22 from 203.0.113.7/32"] // Hetzner's firewall does not filter the private network: the host firewall does.
            : [
                "22 from 203.0.113.7/32",
                ...(issuer ? ["22 from droplets 2"] : []),
                `80 from balancer ${lbId}`,
                `443 from balancer ${lbId}`,
                `${LB_HEALTH_PORT} from balancer ${lbId}`,
                ...(issuer ? [`${ACME_RELAY_PORT} from droplets 2`] : []),
              ];
        assert.deepEqual(rules.sort(), expected.sort(), name);
      }
    });

    it("has the host firewall admit 80, 443 and the health port from the balancer's address only (the private network where the provider picks it)", () => {
      const source = provider === "hetzner" ? "10.20.0.5/32" : "10.20.0.0/16";
      for (const name of APP_SERVERS) {
        const nft = pushedFile(run, name, HOST_FIREWALL_PATH);
        for (const port of [80, 443, LB_HEALTH_PORT]) {
          const lines = hostRulesFor(nft, port);
          assert.equal(lines.length, 1, `${name}: ${port}: ${lines.join(" | ")}`);
          assert.match(lines[0], new RegExp(`^ip saddr \\{ ${source.replace(/[./]/g, "\\$&")} \\} tcp dport ${port} accept`), `${name}: ${port}`);
        }
      }
    });

    it("lets the db server's PostgreSQL take every app server, the worker and the replica, and the replica's the app servers only", () => {
      const count = (server: string) => cloudRules(run, provider, server).find((r) => r.startsWith("5432"));
      if (provider === "digitalocean") {
        assert.equal(count("db"), "5432 from droplets 5");
        assert.equal(count("replica"), "5432 from droplets 3");
      }
      const at = (name: string) => (provider === "hetzner" ? { app: "10.20.0.10", "app-2": "10.20.0.11", "app-3": "10.20.0.12", worker: "10.20.0.20", replica: "10.20.0.31" }[name] : serverOf(run, provider, name).state.ipv4AddressPrivate);
      const sources = (server: string) => hostRulesFor(pushedFile(run, server, HOST_FIREWALL_PATH), 5432)[0].match(/\{ ([^}]*) \}/)![1].split(", ").sort();
      assert.deepEqual(sources("db"), [...APP_SERVERS, "worker", "replica"].map((n) => `${at(n)}/32`).sort());
      assert.deepEqual(sources("replica"), APP_SERVERS.map((n) => `${at(n)}/32`).sort());
    });

    it("gives the schema owner's login to the first app server only, and every app server's web processes the replica for reads", () => {
      const replica = provider === "hetzner" ? "10.20.0.31" : serverOf(run, provider, "replica").state.ipv4AddressPrivate;
      for (const name of APP_SERVERS) {
        const appEnv = pushedFile(run, name, APP_ENV_FILE);
        assert.equal(/^DATABASE_URL=/m.test(appEnv), name === "app", `${name}: owner login in app.env`);
        const webEnv = pushedFile(run, name, WEB_ENV_FILE);
        assert.match(webEnv, new RegExp(`^DATABASE_READ_URL=postgres://app_web:[^@]+@${replica.replace(/\./g, "\\.")}:5432/`, "m"), name);
      }
    });

    it("has every app server's release drain it at the balancer for the health check's time, and no other server's", () => {
      for (const name of APP_SERVERS) {
        const conf = firstBootFile(run, provider, name, RELEASE_PATHS.config);
        assert.match(conf, new RegExp(`^LB_DRAIN_FILE="${LB_DRAIN_FILE}"$`, "m"), name);
        assert.match(conf, new RegExp(`^LB_OUT_SECONDS="${drainSeconds(LOAD_BALANCER_HEALTH_CHECK)}"$`, "m"), name);
        assert.match(conf, new RegExp(`^LB_IN_SECONDS="${undrainSeconds(LOAD_BALANCER_HEALTH_CHECK)}"$`, "m"), name);
      }
      assert.doesNotMatch(firstBootFile(run, provider, "worker", RELEASE_PATHS.config), /LB_/);
    });

    it("rolls releases: the first app server migrates, then each app server after the one before it", async () => {
      const deps = async (name: string) => {
        const release = run.mocks.resources.find((r) => r.type === "command:remote:Command" && r.name.startsWith(`saas-test-${name}-app`) && /release$/.test(r.name));
        assert.ok(release, `no release command for ${name}: ${run.mocks.ofType("command:remote:Command").filter((r) => r.name.startsWith(`saas-test-${name}-app`)).map((r) => r.name).join(", ")}`);
        const dependsOn = (run.options.get(release!.name)?.dependsOn ?? []) as pulumi.Resource[];
        return (await Promise.all(dependsOn.map((r) => valueOf(r.urn)))).map((urn) => urn.slice(urn.lastIndexOf("::") + 2));
      };
      const waitsFor = async (name: string) => (await deps(name)).filter((d) => /^saas-test-[a-z0-9-]+-app-release$/.test(d)).sort();
      assert.deepEqual(await waitsFor("app"), []);
      assert.deepEqual(await waitsFor("app-2"), ["saas-test-app-app-release"]);
      assert.deepEqual(await waitsFor("app-3"), ["saas-test-app-2-app-release", "saas-test-app-app-release"]);
      assert.deepEqual(await waitsFor("worker"), ["saas-test-app-app-release"]);
    });

    it("shares one certificate: the issuer alone runs tls-issue, the other app servers fetch it and pass ACME's challenges to it", () => {
      const issuerAddress = privateAddressOf(run, provider, "app");
      for (const name of APP_SERVERS) {
        const env = pushedFile(run, name, "/etc/saas-vps/bootstrap.env");
        const units = /^ENABLE_UNITS="(.*)"$/m.exec(env)![1].split(" ");
        const site = pushedFile(run, name, NGINX_SITE_PATH);
        if (name === "app") {
          assert.ok(units.includes("tls-issue.timer") && !units.includes("tls-share-fetch.timer"), `${name}: ${units.join(" ")}`);
          assert.match(site, /location \/\.well-known\/acme-challenge\/ \{\n\s+root \/var\/www\/letsencrypt;\n\s+\}\n\s+location \/ \{\n\s+return 404;/, "the health listener serves the webroot");
        } else {
          assert.ok(!units.includes("tls-issue.timer") && units.includes("tls-share-fetch.timer"), `${name}: ${units.join(" ")}`);
          assert.ok(!pushExists(run, name, "/usr/local/lib/saas-vps/tls-issue"), `${name} has tls-issue`);
          assert.match(env, new RegExp(`^TLS_SHARE_ISSUER="${issuerAddress.replace(/\./g, "\\.")}"$`, "m"), name);
          assert.ok(site.includes(`proxy_pass http://${issuerAddress}:${ACME_RELAY_PORT};`), `${name}: challenges not passed to the issuer`);
        }
      }
    });

    it("gives each app server but the issuer an ED25519 key of its own, which the issuer admits only for the export, only from that server", () => {
      const keys = run.mocks.ofType("tls:index/privateKey:PrivateKey").filter((k) => k.name.endsWith("-tls-share-key"));
      assert.deepEqual(keys.map((k) => k.name).sort(), ["saas-test-app-2-tls-share-key", "saas-test-app-3-tls-share-key"]);
      for (const key of keys) assert.equal(key.inputs.algorithm, "ED25519");
      const lines = pushedFile(run, "app", TLS_SHARE_AUTHORIZED_KEYS).split("\n").filter((l) => l.startsWith("restrict"));
      const expected = ["app-2", "app-3"].map((name) => {
        const key = keys.find((k) => k.name === `saas-test-${name}-tls-share-key`)!;
        return `restrict,command="${TLS_SHARE_EXPORT}",from="${privateAddressOf(run, provider, name)}/32" ${key.state.publicKeyOpenssh.trim()} ${name}`;
      });
      assert.deepEqual(lines, expected);
      // The host firewall admits the same servers, and only them, to SSH and the ACME relay.
      const nft = pushedFile(run, "app", HOST_FIREWALL_PATH);
      const followers = ["app-2", "app-3"].map((n) => `${privateAddressOf(run, provider, n)}/32`);
      assert.ok(hostRulesFor(nft, 22).some((l) => l.startsWith(`ip saddr { ${followers.join(", ")} } tcp dport 22 accept`)), hostRulesFor(nft, 22).join(" | "));
      assert.deepEqual(hostRulesFor(nft, ACME_RELAY_PORT).map((l) => l.split(" tcp dport")[0]), [`ip saddr { ${followers.join(", ")} }`]);
    });

    it("pins the issuer's host key on the others, and their first boot already knows the issuer's address (it is created first)", () => {
      const hostKey = run.mocks.ofType("tls:index/privateKey:PrivateKey").find((k) => k.name === "saas-test-app-host-key")!.state.publicKeyOpenssh.trim();
      for (const name of ["app-2", "app-3"]) {
        assert.equal(firstBootFile(run, provider, name, TLS_SHARE_KNOWN_HOSTS), `app ${hostKey}\n`);
        assert.match(firstBootFile(run, provider, name, "/etc/saas-vps/bootstrap.env"), new RegExp(`^TLS_SHARE_ISSUER="${privateAddressOf(run, provider, "app").replace(/\./g, "\\.")}"$`, "m"));
      }
      const servers = run.mocks.ofType(SERVER[provider]).map((s) => s.name);
      assert.ok(servers.indexOf("saas-test-app-server") < servers.indexOf("saas-test-app-2-server"), servers.join(", "));
      if (provider === "digitalocean") {
        // The issuer exists before the others, so its first boot admits them from the VPC; the day-2 push names each.
        assert.match(firstBootFile(run, provider, "app", TLS_SHARE_AUTHORIZED_KEYS), /from="10\.20\.0\.0\/16" ssh-ed25519 \S+ app-2/);
      }
    });

    it("keeps each follower's private key a secret: only in its own user-data and push, as secrets, never in clear, never in an output", async () => {
      const keys = run.mocks.ofType("tls:index/privateKey:PrivateKey").filter((k) => k.name.endsWith("-tls-share-key"));
      const outputs = JSON.stringify(await Promise.all(Object.values(run.outputs).map((o) => (o === undefined || typeof o === "string" ? o : valueOf(o as pulumi.Output<unknown>)))));
      for (const key of keys) {
        const secret = key.state.privateKeyOpenssh.trim();
        const server = key.name.replace(/^saas-test-|-tls-share-key$/g, "");
        const inClear = run.mocks.resources.filter((r) => r.name !== key.name).flatMap((r) => clearPaths(r.inputs, secret).map((p) => `${r.name}${p.slice(1)}`));
        assert.deepEqual(inClear, [], `${server}'s key in clear`);
        assert.ok(!outputs.includes(secret), `${server}'s key in a stack output`);
        // Besides the key itself, only the server's push of its key file holds it (user-data is a gzipped bundle, read below);
        // the line past the header and the public half: the private part.
        const holders = run.mocks.resources.filter((r) => r.name !== key.name && JSON.stringify(unwrapSecrets(r.inputs)).includes(secret.split("\n")[3]));
        assert.deepEqual(holders.map((r) => r.name), [`saas-test-${server}-push-etc-saas-vps-tls-share-id-ed25519`]);
        for (const other of run.mocks.ofType(SERVER[provider])) {
          const files = [...decodeWriteFiles(unwrapSecrets(other.inputs.userData)).values()].join("\n");
          assert.equal(files.includes(secret), other.name === `saas-test-${server}-server`, `${other.name}'s first boot and ${server}'s key`);
        }
        assert.equal(firstBootFile(run, provider, server, TLS_SHARE_KEY).trim(), secret);
        assert.ok(isWrappedSecret(pushOf(run, server, TLS_SHARE_KEY).inputs.stdin));
      }
    });

    it("the stack's address is the balancer's", async () => {
      const lb = run.mocks.ofType(LB[provider])[0];
      assert.equal(await valueOf(run.outputs.ipv4), provider === "hetzner" ? lb.state.ipv4 : lb.state.ip);
    });
  });

  describe(`growing stage scaled under Pulumi mocks: ${provider}`, function () {
    it("2 → 3 app servers adds exactly the new server and its pieces, and replaces nothing", async () => {
      const two = await runProgramOf(scaled(provider, 2));
      const twoUrns = await byUrn(two);
      const three = await runProgramOf(scaled(provider, 3));
      const change = changesBetween(two, twoUrns, three, await byUrn(three));
      assert.deepEqual(change.replaced, []);
      assert.deepEqual(change.deleted, []);
      const notApp3 = change.created.filter((name) => !name.includes("-app-3"));
      assert.deepEqual(notApp3, []);
      assert.ok(change.created.includes("saas-test-app-3-server"), `created: ${change.created.join(", ")}`);
      // One more key for the certificate's fetch; the issuer's authorized_keys changes in place.
      assert.ok(change.created.includes("saas-test-app-3-tls-share-key"), `created: ${change.created.join(", ")}`);
      assert.equal(three.mocks.ofType("tls:index/privateKey:PrivateKey").filter((k) => k.name.endsWith("-tls-share-key")).length, 2);
      if (provider === "hetzner") assert.ok(change.created.includes("saas-test-lb-app-3"), "no balancer target for app-3");
      else assert.equal(three.mocks.ofType(LB[provider])[0].inputs.dropletIds.length, 3);
    });

    it("separated → scaled replaces and deletes nothing the separated stack has", async () => {
      const separated = await runProgram(withDomain({ ...minimalRaw(provider), ...separatedRaw(provider) }));
      const separatedUrns = await byUrn(separated);
      const grown = await runProgramOf(scaled(provider, 2));
      const change = changesBetween(separated, separatedUrns, grown, await byUrn(grown));
      assert.deepEqual(change.replaced, []);
      assert.deepEqual(change.deleted, []);
    });
  });

  describe(`moving from separated to scaled with the site's record still on app (siteAddress app): ${provider}`, function () {
    this.timeout(60_000);
    const moving = () => ({ ...scaled(provider, 2), siteAddress: "app" });
    let separated: MockRun;
    let run: MockRun;
    before(async () => {
      separated = await runProgram(withDomain({ ...minimalRaw(provider), ...separatedRaw(provider) }));
      run = await runProgramOf(moving());
    });

    it("app keeps answering on its fixed IP as in separated: its public firewall, nginx without the PROXY protocol, no drain; the balancer serves through app-2", async () => {
      // Plus, with a domain, what the certificate's issuer opens to the other app servers (DigitalOcean's cloud firewall names them).
      const issuerRules = provider === "digitalocean" ? ["22 from droplets 1", `${ACME_RELAY_PORT} from droplets 1`] : [];
      assert.deepEqual(cloudRules(run, provider, "app").sort(), [...cloudRules(separated, provider, "app"), ...issuerRules].sort());
      assert.match(firstBootFile(run, provider, "app", NGINX_SITE_PATH), new RegExp(`listen ${ACME_RELAY_PORT};`), "the issuer serves the challenges the others pass on");
      assert.doesNotMatch(firstBootFile(run, provider, "app", NGINX_SITE_PATH), /proxy_protocol/);
      assert.match(firstBootFile(run, provider, "app-2", NGINX_SITE_PATH), /listen 80 default_server proxy_protocol;/);
      assert.doesNotMatch(firstBootFile(run, provider, "app", RELEASE_PATHS.config), /LB_/);
      const app2 = String(serverOf(run, provider, "app-2").id);
      if (provider === "hetzner") assert.deepEqual(run.mocks.ofType(HCLOUD_LB_TARGET).map((t) => String(t.inputs.serverId)), [app2]);
      else assert.deepEqual(run.mocks.ofType(LB[provider])[0].inputs.dropletIds.map(String), [app2]);
    });

    it("the stack's address stays app's, the same as in separated; the balancer's is its own output, where the record moves", async () => {
      const lb = run.mocks.ofType(LB[provider])[0];
      const lbIp = provider === "hetzner" ? lb.state.ipv4 : lb.state.ip;
      assert.equal(await valueOf(run.outputs.ipv4), await valueOf(separated.outputs.ipv4));
      assert.notEqual(await valueOf(run.outputs.ipv4), lbIp);
      assert.ok(run.outputs.loadBalancerIpv4, "no loadBalancerIpv4 output in stage scaled");
      assert.equal(await valueOf(run.outputs.loadBalancerIpv4), lbIp);
      assert.equal(separated.outputs.loadBalancerIpv4, undefined, "a separated stack has no balancer");
    });

    it("separated → scaled (siteAddress app) → scaled (balancer) replaces and deletes nothing; app joins the balancer at the second step", async () => {
      const first = changesBetween(separated, await byUrn(separated), run, await byUrn(run));
      assert.deepEqual([first.replaced, first.deleted], [[], []]);
      const done = await runProgramOf(scaled(provider, 2));
      const second = changesBetween(run, await byUrn(run), done, await byUrn(done));
      assert.deepEqual([second.replaced, second.deleted], [[], []]);
      if (provider === "hetzner") assert.deepEqual(second.created, ["saas-test-lb-app"]);
      else assert.equal(done.mocks.ofType(LB[provider])[0].inputs.dropletIds.length, 2);
      assert.match(firstBootFile(done, provider, "app", NGINX_SITE_PATH), /listen 80 default_server proxy_protocol;/);
    });

    it("siteAddress is a key of stage scaled only, and names what it allows", async () => {
      await assert.rejects(runProgram({ ...withDomain({ ...minimalRaw(provider), ...separatedRaw(provider) }), siteAddress: "app" }), /saas-vps:siteAddress/);
      await assert.rejects(runProgramOf({ ...moving(), siteAddress: "lb" }), /saas-vps:siteAddress: "lb" is not allowed; use one of balancer, app/);
    });
  });
}
