/**
 * The certificate's way from the issuing app server to the others (stage scaled with a domain),
 * with the real tools: sshd started here on a free loopback port with a temp config, the issuer's
 * rendered authorized_keys, publish and export scripts, and the follower's rendered fetch script,
 * key and pinned host key, with certificates made by openssl. The nginx side of the ACME
 * challenges runs under real nginx at the end.
 *
 * What differs from a server, and why: the tls-share user is this test's user (root: creating a
 * system user on the host is not a test's business; the temp sshd admits root only through a key's
 * forced command, PermitRootLogin forced-commands-only), and the forced command's path is the
 * test's copy of the script with its settings file in front (BOOTSTRAP_ENV=...): the one rewrite
 * of the rendered authorized_keys. The keys' restrict and from= options stay as rendered. Every
 * path setting points into the temp folder; systemctl is a stand-in that records the reload.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { renderNginxSite } from "../../provisioning/nginx";
import { renderWeb } from "../../provisioning/roles/web";
import type { RenderedFile } from "../../provisioning/files";
import { ACME_WEBROOT, TLS_SHARE_EXPORT } from "../../provisioning/layout";
import { acmeChallengeUpstream, renderTlsShareFollower, renderTlsShareIssuer, TLS_SHARE_AUTHORIZED_KEYS, TLS_SHARE_FETCH, TLS_SHARE_KEY, TLS_SHARE_KNOWN_HOSTS, TLS_SHARE_PUBLISH } from "../../provisioning/roles/tlsShare";
import { forHostNginx } from "../support/nginx";
import { freePort, run, tempDir } from "../support/tools";

const DOMAIN = "app.example.com";
const SSHD = "/usr/sbin/sshd";

/** The KEY="value" lines bootstrap.env has, from a contribution's settings with test paths over them. */
function envFile(path: string, settings: Record<string, string>): string {
  writeFileSync(path, Object.entries(settings).map(([k, v]) => `${k}="${v}"\n`).join(""));
  return path;
}

function fileOf(files: RenderedFile[], path: string): RenderedFile {
  const file = files.find((f) => f.path === path);
  assert.ok(file, `not rendered: ${path}`);
  return file!;
}

function sshKey(dir: string, name: string): { privateKey: string; publicKey: string; path: string } {
  const path = join(dir, name);
  const made = run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path]);
  assert.equal(made.status, 0, made.stderr);
  return { privateKey: readFileSync(path, "utf8"), publicKey: readFileSync(`${path}.pub`, "utf8").trim(), path };
}

/** A self-signed pair in `dir`: names in the SAN, expired when asked (re-signed to end yesterday). */
function certificate(dir: string, names: string[], opts: { expired?: boolean } = {}): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  const made = run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", `/CN=${names[0]}`,
    "-addext", `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`, "-keyout", key, "-out", cert]);
  assert.equal(made.status, 0, made.stderr);
  if (opts.expired) {
    const resigned = run("openssl", ["x509", "-in", cert, "-signkey", key, "-days", "-1", "-out", cert]);
    assert.equal(resigned.status, 0, resigned.stderr);
  }
  return { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") };
}

async function waitForPort(port: number, what: string, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${port}: ${log()}`);
}

describe("the shared certificate over real sshd: the rendered fetch, authorized_keys and export", function () {
  this.timeout(120_000);
  let dir: string;
  let sshd: ChildProcess;
  let port: number;
  let live: string;
  let followerTls: string;
  let followerEnv: string;
  let issuerEnv: string;
  let stub: string;
  let follower: ReturnType<typeof sshKey>;
  let elsewhere: ReturnType<typeof sshKey>;
  let stranger: ReturnType<typeof sshKey>;
  let sshdLog = "";
  let snakeoil: { cert: string; key: string };

  /** Runs the rendered fetch script as the follower's timer would, with its settings (and these over them). */
  const fetchCertificate = (overrides: Record<string, string> = {}) => {
    const env = overrides && Object.keys(overrides).length ? envFile(join(dir, "follower-override.env"), { ...readSettings(followerEnv), ...overrides }) : followerEnv;
    return run(join(dir, "bin", "tls-share-fetch"), [], { env: { ...process.env, BOOTSTRAP_ENV: env, PATH: `${stub}:${process.env.PATH}` } });
  };
  /** As tls-issue or certbot's deploy hook would: the lineage certbot names. */
  const publish = (pair: { cert: string; key: string }) => {
    writeFileSync(join(live, "fullchain.pem"), pair.cert);
    writeFileSync(join(live, "privkey.pem"), pair.key);
    const result = run(join(dir, "bin", "tls-share-publish"), [], { env: { ...process.env, BOOTSTRAP_ENV: issuerEnv, RENEWED_LINEAGE: live } });
    assert.equal(result.status, 0, result.stderr);
    return result;
  };
  const installed = () => ({ cert: readFileSync(join(followerTls, "fullchain.pem"), "utf8"), key: readFileSync(join(followerTls, "privkey.pem"), "utf8") });
  const reloads = () => (existsSync(join(dir, "systemctl.log")) ? readFileSync(join(dir, "systemctl.log"), "utf8").trim().split("\n").filter(Boolean) : []);

  before(async () => {
    dir = tempDir("tls-share");
    port = await freePort();
    const hostKey = sshKey(dir, "issuer_host_key");
    follower = sshKey(dir, "follower");
    elsewhere = sshKey(dir, "elsewhere");
    stranger = sshKey(dir, "stranger");

    // The issuer: app-2 fetches from loopback (where this test's follower is); app-3's key is
    // admitted only from an address this host does not have.
    const issuer = renderTlsShareIssuer({
      role: "issuer",
      followers: [
        { name: "app-2", publicKey: follower.publicKey, source: "127.0.0.1/32" },
        { name: "app-3", publicKey: elsewhere.publicKey, source: "10.99.0.12/32" },
      ],
    });
    const home = join(dir, "issuer-home");
    mkdirSync(home, { mode: 0o750 });
    live = join(dir, "live");
    mkdirSync(live);
    mkdirSync(join(dir, "bin"));
    for (const [path, name] of [[TLS_SHARE_EXPORT, "tls-share-export"], [TLS_SHARE_PUBLISH, "tls-share-publish"]]) {
      writeFileSync(join(dir, "bin", name), fileOf(issuer.files, path).content, { mode: 0o755 });
    }
    issuerEnv = envFile(join(dir, "issuer.env"), { ...issuer.settings, DOMAIN, TLS_SHARE_HOME: home, TLS_SHARE_USER: "root" });
    const authorizedKeys = fileOf(issuer.files, TLS_SHARE_AUTHORIZED_KEYS).content;
    assert.equal(authorizedKeys.split(`command="${TLS_SHARE_EXPORT}"`).length, 3, "each key's forced command is the export");
    writeFileSync(join(dir, "authorized_keys"), authorizedKeys.replaceAll(`command="${TLS_SHARE_EXPORT}"`, `command="BOOTSTRAP_ENV=${issuerEnv} ${join(dir, "bin", "tls-share-export")}"`));

    // The follower, with the issuer's real host key pinned.
    const rendered = renderTlsShareFollower({ role: "follower", issuer: "app", issuerAddress: "127.0.0.1", issuerHostKey: hostKey.publicKey, privateKey: follower.privateKey }, DOMAIN);
    writeFileSync(join(dir, "bin", "tls-share-fetch"), fileOf(rendered.files, TLS_SHARE_FETCH).content, { mode: 0o755 });
    const key = fileOf(rendered.files, TLS_SHARE_KEY);
    assert.equal(key.mode, "0600");
    assert.equal(key.secret, true);
    writeFileSync(join(dir, "follower_key"), key.content, { mode: 0o600 });
    writeFileSync(join(dir, "known_hosts"), fileOf(rendered.files, TLS_SHARE_KNOWN_HOSTS).content);
    followerTls = join(dir, "follower-tls");
    mkdirSync(followerTls);
    followerEnv = envFile(join(dir, "follower.env"), {
      ...rendered.settings,
      TLS_DIR: followerTls,
      TLS_SHARE_USER: "root",
      TLS_SHARE_PORT: String(port),
      TLS_SHARE_KEY: join(dir, "follower_key"),
      TLS_SHARE_KNOWN_HOSTS: join(dir, "known_hosts"),
    });
    // As 40-tls leaves a follower before its first fetch: the links at a snake-oil pair.
    snakeoil = certificate(join(dir, "snakeoil"), ["follower.invalid"]);
    symlinkSync(join(dir, "snakeoil", "cert.pem"), join(followerTls, "fullchain.pem"));
    symlinkSync(join(dir, "snakeoil", "key.pem"), join(followerTls, "privkey.pem"));
    stub = join(dir, "stub");
    mkdirSync(stub);
    writeFileSync(join(stub, "systemctl"), `#!/bin/sh\necho "$*" >> ${join(dir, "systemctl.log")}\n`, { mode: 0o755 });

    // sshd's own: the test's host key, the rendered authorized_keys, loopback only. StrictModes
    // off because the temp folder's parents (/tmp) are world-writable, which it would refuse.
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    writeFileSync(
      join(dir, "sshd_config"),
      [
        `Port ${port}`, "ListenAddress 127.0.0.1", `HostKey ${hostKey.path}`, `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(dir, "authorized_keys")}`, "PermitRootLogin forced-commands-only", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", "LogLevel VERBOSE", "",
      ].join("\n"),
    );
    const check = run(SSHD, ["-t", "-f", join(dir, "sshd_config")]);
    assert.equal(check.status, 0, check.stderr);
    sshd = spawn(SSHD, ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    sshd.stderr!.on("data", (d) => (sshdLog += d));
    await waitForPort(port, "sshd", () => sshdLog);
  });

  after(() => {
    sshd?.kill("SIGTERM");
  });

  it("fails while the issuer has no certificate, and the follower keeps serving the snake-oil pair", () => {
    const result = fetchCertificate();
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /no certificate yet/);
    assert.match(result.stderr, /keeping the current certificate/);
    assert.equal(readlinkSync(join(followerTls, "fullchain.pem")), join(dir, "snakeoil", "cert.pem"));
    assert.deepEqual(reloads(), []);
  });

  it("publishes the issuer's pair as one bundle its group alone may read", () => {
    const pair = certificate(join(dir, "first"), [DOMAIN]);
    const result = publish(pair);
    assert.match(result.stdout, /can now fetch/);
    const bundle = join(dir, "issuer-home", "bundle.pem");
    assert.equal(readFileSync(bundle, "utf8"), pair.cert + pair.key);
    assert.equal(statSync(bundle).mode & 0o777, 0o640);
    const mtime = statSync(bundle).mtimeMs;
    assert.equal(publish(pair).stdout, "", "an unchanged pair is left alone");
    assert.equal(statSync(bundle).mtimeMs, mtime);
  });

  it("pulls the pair through the forced command, installs it over the links, and reloads nginx once", () => {
    const pair = { cert: readFileSync(join(dir, "first", "cert.pem"), "utf8"), key: readFileSync(join(dir, "first", "key.pem"), "utf8") };
    const result = fetchCertificate();
    assert.equal(result.status, 0, result.stderr + sshdLog);
    assert.match(result.stdout, /nginx now serves the certificate for app\.example\.com/);
    assert.deepEqual(installed(), pair);
    // The links were replaced, not written through: the snake-oil pair is untouched.
    assert.ok(!lstatSync(join(followerTls, "fullchain.pem")).isSymbolicLink());
    assert.ok(!lstatSync(join(followerTls, "privkey.pem")).isSymbolicLink());
    assert.deepEqual({ cert: readFileSync(join(dir, "snakeoil", "cert.pem"), "utf8"), key: readFileSync(join(dir, "snakeoil", "key.pem"), "utf8") }, snakeoil);
    assert.equal(statSync(join(followerTls, "privkey.pem")).mode & 0o777, 0o600);
    assert.deepEqual(reloads(), ["try-reload-or-restart nginx"]);
  });

  it("changes nothing and does not reload when the issuer's pair is the one installed", () => {
    const result = fetchCertificate();
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /unchanged/);
    assert.equal(reloads().length, 1);
  });

  it("refuses a key that is not the certificate's, an expired certificate and one without the domain, keeping the pair it has", () => {
    const kept = installed();
    const other = certificate(join(dir, "other"), [DOMAIN]);
    const cases: Array<[string, { cert: string; key: string }, RegExp]> = [
      ["mismatched", { cert: other.cert, key: kept.key }, /key is not the certificate's/],
      ["expired", certificate(join(dir, "expired"), [DOMAIN], { expired: true }), /has expired/],
      ["another domain", certificate(join(dir, "elsewhere-cert"), ["other.example.com"]), /does not name app\.example\.com/],
    ];
    for (const [name, pair, reason] of cases) {
      publish(pair);
      const result = fetchCertificate();
      assert.notEqual(result.status, 0, name);
      assert.match(result.stderr, reason, name);
      assert.deepEqual(installed(), kept, name);
    }
    assert.equal(reloads().length, 1, "nothing was reloaded");
  });

  it("installs a renewed pair", () => {
    const renewed = certificate(join(dir, "renewed"), [DOMAIN, `www.${DOMAIN}`]);
    publish(renewed);
    const result = fetchCertificate();
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(installed(), renewed);
    assert.equal(reloads().length, 2);
  });

  it("refuses a key that is not in authorized_keys, and an admitted key from another address", async () => {
    const before = installed();
    for (const [name, key, log] of [["stranger", stranger, /Failed publickey for root/], ["app-3 from loopback", elsewhere, /correct key but not from a permitted host/]] as const) {
      const logFrom = sshdLog.length;
      const result = fetchCertificate({ TLS_SHARE_KEY: key.path });
      assert.notEqual(result.status, 0, name);
      assert.match(result.stderr, /Permission denied \(publickey\)/, name);
      // sshd's log arrives on this process's event loop, which the synchronous run held up.
      for (let i = 0; i < 50 && !log.test(sshdLog.slice(logFrom)); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(sshdLog.slice(logFrom), log, name);
    }
    assert.deepEqual(installed(), before);
  });

  it("gives the key nothing but the export, whatever command the client asks for, and no pty", () => {
    const ssh = (...extra: string[]) => run("ssh", ["-F", "none", "-p", String(port), "-i", join(dir, "follower_key"), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
      "-o", `UserKnownHostsFile=${join(dir, "known_hosts")}`, "-o", "HostKeyAlias=app", ...extra, "root@127.0.0.1", "id"]);
    const asked = ssh();
    assert.equal(asked.status, 0, asked.stderr);
    assert.doesNotMatch(asked.stdout, /uid=/);
    assert.match(asked.stdout, /^-----BEGIN CERTIFICATE-----$/m);
    const withPty = ssh("-tt");
    assert.match(withPty.stderr, /PTY allocation request failed/);
    assert.doesNotMatch(withPty.stdout, /uid=/);
  });

  it("refuses an issuer whose host key is not the pinned one", () => {
    const pinned = readFileSync(join(dir, "known_hosts"), "utf8");
    writeFileSync(join(dir, "other_known_hosts"), pinned.replace(/ssh-ed25519 \S+/, stranger.publicKey));
    const result = fetchCertificate({ TLS_SHARE_KNOWN_HOSTS: join(dir, "other_known_hosts") });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });
});

/** Settings back from an env file this test wrote. */
function readSettings(path: string): Record<string, string> {
  return Object.fromEntries(readFileSync(path, "utf8").trim().split("\n").map((line) => {
    const m = /^([A-Z_]+)="(.*)"$/.exec(line)!;
    return [m[1], m[2]];
  }));
}

describe("ACME challenges behind the balancer under real nginx: a follower passes them to the issuer's health listener", function () {
  this.timeout(60_000);
  const nginx: ChildProcess[] = [];
  let app: Server;
  let followerHttp: number;
  let issuerRelay: number;
  let dir: string;
  const TOKEN = "tok3n_-Abc";

  /** One nginx with its own prefix, pid and logs, serving `site`. */
  async function startNginx(name: string, site: string, port: number): Promise<void> {
    const prefix = join(dir, name);
    mkdirSync(prefix);
    writeFileSync(join(prefix, "site.conf"), site);
    writeFileSync(join(prefix, "nginx.conf"), `daemon off; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log; events {} http { client_body_temp_path ${prefix}; proxy_temp_path ${prefix}; include ${prefix}/site.conf; }\n`);
    const child = spawn("nginx", ["-c", join(prefix, "nginx.conf"), "-p", prefix], { stdio: "inherit" });
    nginx.push(child);
    await waitForPort(port, `${name}'s nginx`, () => (existsSync(join(prefix, "error.log")) ? readFileSync(join(prefix, "error.log"), "utf8") : ""));
  }

  before(async () => {
    dir = tempDir("tls-share-nginx");
    const webroot = join(dir, "webroot");
    mkdirSync(join(webroot, ".well-known", "acme-challenge"), { recursive: true });
    writeFileSync(join(webroot, ".well-known", "acme-challenge", TOKEN), "token.thumbprint");
    chmodSync(dir, 0o755);
    const appPort = await freePort();
    app = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => app.listen(appPort, "127.0.0.1", r));
    const [fHttp, fHttps, fHealth, iHttp, iHttps, iHealth, iRelay] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
    followerHttp = fHttp;
    issuerRelay = iRelay;
    const tls = certificate(join(dir, "tls"), [DOMAIN]);
    writeFileSync(join(dir, "tls", "fullchain.pem"), tls.cert);
    const common = (health: number, drain: string) => ({
      webPorts: [appPort], domain: DOMAIN, tlsCertificate: join(dir, "tls", "cert.pem"), tlsCertificateKey: join(dir, "tls", "key.pem"), accessLog: join(dir, `access-${health}.log`),
      balancer: { trustedCidr: "10.0.0.0/16", drainFile: drain, healthPort: health },
    });
    // Rendered as the web role renders each (roles/web.ts), with this test's ports and webroot.
    const issuerSite = renderNginxSite({ ...common(iHealth, join(dir, "issuer-drain")), httpPort: iHttp, httpsPort: iHttps, acmeRelayPort: iRelay });
    const followerSite = renderNginxSite({ ...common(fHealth, join(dir, "follower-drain")), httpPort: fHttp, httpsPort: fHttps, acmeChallengeUpstream: acmeChallengeUpstream("127.0.0.1", iRelay) });
    // The follower has no webroot of its own; the issuer's is the test's (the one path rewritten).
    assert.ok(!followerSite.includes(ACME_WEBROOT));
    await startNginx("issuer", forHostNginx(issuerSite.replaceAll(ACME_WEBROOT, webroot)), iRelay);
    await startNginx("follower", forHostNginx(followerSite), fHttp);
  });

  after(async () => {
    for (const child of nginx) child.kill("SIGQUIT");
    await new Promise((r) => app?.close(r));
  });

  it("answers a challenge that reaches the follower with the issuer's webroot file", async () => {
    // On loopback the follower's listener takes no PROXY header (the watchdog's way in); the balancer's would carry one.
    const res = await fetch(`http://127.0.0.1:${followerHttp}/.well-known/acme-challenge/${TOKEN}`, { headers: { host: DOMAIN } });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "token.thumbprint");
    const missing = await fetch(`http://127.0.0.1:${followerHttp}/.well-known/acme-challenge/nope`, { headers: { host: DOMAIN } });
    assert.equal(missing.status, 404);
    // Everything else on port 80 still redirects to HTTPS.
    const other = await fetch(`http://127.0.0.1:${followerHttp}/x`, { headers: { host: DOMAIN }, redirect: "manual" });
    assert.equal(other.status, 301);
  });

  it("serves only the challenges on the issuer's relay listener, without a PROXY header", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${issuerRelay}/.well-known/acme-challenge/${TOKEN}`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${issuerRelay}/health`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${issuerRelay}/x`)).status, 404);
  });
});

describe("rendering the shared certificate (web role, nginx)", function () {
  const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMvctGlNDjFiPCVd8yucU4YOal3DnTG6rKwQyEmd9LWB";
  const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nUExBQ0VIT0xERVI=\n-----END OPENSSH PRIVATE KEY-----\n";
  const base = { ports: [3001], domain: DOMAIN, acmeEmail: "ops@example.com", balancer: { trustedCidr: "10.20.0.5/32" } };
  const files = (parts: ReturnType<typeof renderWeb>) => new Map(parts.flatMap((p) => p.files).map((f) => [f.path, f]));
  const units = (parts: ReturnType<typeof renderWeb>) => parts.flatMap((p) => p.units);
  const packages = (parts: ReturnType<typeof renderWeb>) => parts.flatMap((p) => p.packages);
  /** One server block of the site, by the listen line it starts with. */
  const serverBlock = (site: string, listen: string) => {
    const start = site.indexOf(`server {\n    ${listen}`);
    assert.ok(start >= 0, `no server block listening ${listen}`);
    return site.slice(start, site.indexOf("\n}\n", start));
  };

  it("a follower gets the fetch, its secret key and the pinned host key instead of tls-issue, and passes challenges to the issuer", () => {
    const parts = renderWeb({ ...base, tlsShare: { role: "follower", issuer: "app", issuerAddress: "10.20.0.10", issuerHostKey: HOST_KEY, privateKey: PRIVATE_KEY } });
    const byPath = files(parts);
    assert.ok(!byPath.has("/usr/local/lib/saas-vps/tls-issue") && !units(parts).includes("tls-issue.timer") && !packages(parts).includes("certbot"));
    assert.ok(units(parts).includes("tls-share-fetch.timer"));
    assert.deepEqual([byPath.get(TLS_SHARE_KEY)?.mode, byPath.get(TLS_SHARE_KEY)?.secret], ["0600", true]);
    assert.equal(byPath.get(TLS_SHARE_KNOWN_HOSTS)?.content, `app ${HOST_KEY}\n`);
    const site = byPath.get("/etc/nginx/conf.d/saas-vps.conf")!.content;
    assert.match(serverBlock(site, "listen 80 default_server proxy_protocol;"), /location \/\.well-known\/acme-challenge\/ \{\n\s+proxy_pass http:\/\/10\.20\.0\.10:8082;/);
    assert.doesNotMatch(site, /acme-challenge\/ \{\n\s+root/, "a follower serves no webroot");
  });

  it("the issuer keeps tls-issue, gets the export, publish and deploy hook, and serves the webroot on its ACME relay listener, not on the health listener", () => {
    const parts = renderWeb({ ...base, tlsShare: { role: "issuer", followers: [{ name: "app-2", publicKey: HOST_KEY, source: "10.20.0.11/32" }] } });
    const byPath = files(parts);
    for (const path of ["/usr/local/lib/saas-vps/tls-issue", TLS_SHARE_EXPORT, TLS_SHARE_PUBLISH, TLS_SHARE_AUTHORIZED_KEYS]) assert.ok(byPath.has(path), path);
    assert.equal(byPath.get(TLS_SHARE_AUTHORIZED_KEYS)!.content.split("\n")[1], `restrict,command="${TLS_SHARE_EXPORT}",from="10.20.0.11/32" ${HOST_KEY} app-2`);
    assert.ok(parts.some((p) => p.steps.includes("45-tls-share")));
    const site = byPath.get("/etc/nginx/conf.d/saas-vps.conf")!.content;
    assert.match(serverBlock(site, "listen 8082;"), /location \/\.well-known\/acme-challenge\/ \{\n\s+root \/var\/www\/letsencrypt;/);
    assert.match(serverBlock(site, "listen 80 default_server proxy_protocol;"), /acme-challenge\/ \{\n\s+root \/var\/www\/letsencrypt;/);
    assert.doesNotMatch(serverBlock(site, "listen 8081 proxy_protocol;"), /acme-challenge/);
    // Still answering the site itself (siteAddress app), the issuer keeps its relay.
    const direct = files(renderWeb({ ...base, balancer: undefined, tlsShare: { role: "issuer", followers: [{ name: "app-2", publicKey: HOST_KEY, source: "10.20.0.11/32" }] } })).get("/etc/nginx/conf.d/saas-vps.conf")!.content;
    assert.match(serverBlock(direct, "listen 8082;"), /acme-challenge/);
    // Without sharing there is no relay.
    const alone = files(renderWeb(base)).get("/etc/nginx/conf.d/saas-vps.conf")!.content;
    assert.ok(!alone.includes("listen 8082;"));
  });

  it("refuses what would break out of authorized_keys or nginx, and sharing without a domain or balancer", () => {
    const issuer = (source: string) => renderTlsShareIssuer({ role: "issuer", followers: [{ name: "app-2", publicKey: HOST_KEY, source }] });
    assert.throws(() => issuer('10.0.0.1",command="/bin/sh'), /source must be an address or range/);
    assert.throws(() => renderTlsShareIssuer({ role: "issuer", followers: [{ name: "app-2", publicKey: `${HOST_KEY}\nssh-ed25519 AAAA`, source: "10.0.0.1/32" }] }), /one "ssh-ed25519 <base64>" key/);
    assert.throws(() => renderTlsShareFollower({ role: "follower", issuer: "app", issuerAddress: "10.20.0.10", issuerHostKey: HOST_KEY, privateKey: "not a key" }, DOMAIN), /unencrypted OpenSSH private key/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], acmeChallengeUpstream: "http://10.0.0.1:8081" }), /needs a domain/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], domain: DOMAIN, acmeChallengeUpstream: "http://10.0.0.1:8081; root /" }), /must be http:\/\/<address>:<port>/);
    assert.throws(() => renderWeb({ ...base, balancer: undefined, tlsShare: { role: "follower", issuer: "app", issuerAddress: "10.20.0.10", issuerHostKey: HOST_KEY, privateKey: PRIVATE_KEY } }), /the servers that fetch it the load balancer/);
    assert.throws(() => renderWeb({ ...base, domain: undefined, tlsShare: { role: "issuer", followers: [] } }), /needs a domain/);
    assert.throws(() => renderNginxSite({ webPorts: [3001], domain: DOMAIN, acmeRelayPort: 3001 }), /acmeRelayPort 3001 clashes/);
  });
});
