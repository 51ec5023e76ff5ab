/**
 * Verification ladder step 2 (docs/ARCHITECTURE.md): what we render, checked by the real tools that will read it —
 * cloud-init's schema, nginx -t, systemd-analyze verify/security — on every case (shellcheck:
 * shellcheck.test.ts).
 */
import { REPLICATION_PASSFILE } from "../../provisioning/replication";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { VALKEY_DROP_IN_PATH, VALKEY_SERVER_BIN, VALKEY_UNIT } from "../../provisioning/valkey";
import { join } from "node:path";
import { parse } from "yaml";
import { USER_DATA_LIMIT_BYTES } from "../../provisioning/cloudInit";
import { run, tempDir, writeTree } from "../support/tools";
import { HOST_FIREWALL_PATH } from "../../provisioning/hostFirewall";
import { renderAllCases, type RenderCase } from "../support/renderCases";
import { forHostNginx, hostNginxVersion, predatesHttp2Directive } from "../support/nginx";
import { NGINX_SITE_PATH } from "../../provisioning/nginx";
import { CRITICAL_WORKER_FIRST_ID, LB_DRAIN_FILE, LB_HEALTH_PORT, webPorts } from "../../provisioning/layout";
import { renderWeb } from "../../provisioning/roles/web";

/** cloud-init modules' top-level keys we use; the schema tool accepts misspelled top-level keys, so we check them ourselves. */
const KNOWN_TOP_LEVEL_KEYS = new Set([
  "hostname", "manage_etc_hosts", "locale", "timezone", "disable_root", "ssh_pwauth", "users",
  "package_update", "package_upgrade", "packages", "write_files", "runcmd", "bootcmd", "ssh_keys",
]);
/** Keep this much room under Hetzner's 32 KiB so a growing renderer fails here, not at `pulumi up`. */
const USER_DATA_MARGIN_BYTES = 2048;
const MAX_EXPOSURE = 3.0;
/** A release id for migrate@<id>.service (the release tool names the unit after the release). */
const RELEASE_ID = "aaaa0000aaaa0000";
/** The instance a template unit is verified as: web@ a port, migrate@ a release id, the others a number. */
function instanceOf(template: string): string {
  if (template.startsWith("web@")) return "3001";
  if (template.startsWith("migrate@")) return RELEASE_ID;
  // As OnFailure=alert@%n.service names it for a web instance: a unit name as instance.
  if (template.startsWith("alert@")) return "web@3001.service";
  if (template.startsWith("worker-critical@")) return String(CRITICAL_WORKER_FIRST_ID);
  return "1";
}

describe("rendered provisioning files pass the real tools", function () {
  this.timeout(180_000);
  let cases: RenderCase[];

  before(async () => {
    cases = await renderAllCases();
  });

  it("user-data of every case stays under Hetzner's 32 KiB cap with a margin", () => {
    for (const c of cases) {
      const bytes = Buffer.byteLength(c.userData);
      console.log(`      ${c.name}: user-data ${bytes} bytes (${((bytes / USER_DATA_LIMIT_BYTES) * 100).toFixed(1)}% of ${USER_DATA_LIMIT_BYTES})`);
      assert.ok(bytes <= USER_DATA_LIMIT_BYTES - USER_DATA_MARGIN_BYTES, `${c.name}: ${bytes} bytes leaves less than ${USER_DATA_MARGIN_BYTES} bytes of margin`);
    }
  });

  it("cloud-init schema accepts every user-data (host cloud-init), with only known top-level keys", () => {
    const dir = tempDir("schema");
    for (const c of cases) {
      const file = join(dir, `${c.name}.yaml`);
      writeFileSync(file, c.userData);
      const result = run("cloud-init", ["schema", "--config-file", file]);
      assert.equal(result.status, 0, `${c.name}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /Valid cloud-config/);
      const unknown = Object.keys(parse(c.userData)).filter((k) => !KNOWN_TOP_LEVEL_KEYS.has(k));
      assert.deepEqual(unknown, [], `${c.name}: unknown top-level keys`);
    }
  });

  it("nginx -t accepts every rendered site inside Debian's nginx.conf", () => {
    noteLegacyHttp2();
    const withSite = cases.filter((c) => c.files.get("/etc/saas-vps/bootstrap.env")!.includes("50-nginx"));
    assert.ok(withSite.length >= 4, `only ${withSite.length} cases run nginx`);
    for (const c of withSite) {
      const site = c.files.get("/etc/nginx/conf.d/saas-vps.conf");
      assert.ok(site, `${c.name}: runs the nginx step but has no nginx site`);
      assertNginxAccepts(c.name, site);
    }
  });

  it("nginx -t accepts the site behind the load balancer (PROXY listeners beside loopback ones, the health listener), with and without a domain", () => {
    noteLegacyHttp2();
    for (const domain of [undefined, "app.example.com"]) {
      const [web] = renderWeb({ ports: webPorts(2), domain, acmeEmail: domain && "ops@example.com", balancer: { trustedCidr: "10.0.0.0/16" } });
      const site = web!.files.find((f) => f.path === NGINX_SITE_PATH)!.content;
      assert.match(site, new RegExp(`listen ${LB_HEALTH_PORT} proxy_protocol;`));
      assert.ok(site.includes(`if (-f ${LB_DRAIN_FILE}) { return 503; }`), "the web role drains through LB_DRAIN_FILE");
      assert.match(site, /real_ip_header proxy_protocol;/);
      assertNginxAccepts(`balancer, ${domain ?? "no domain"}`, site);
    }
  });

  it("systemd-analyze verify accepts every unit, with no warnings", () => {
    const hostSystemd = hostSystemdVersion();
    const withoutRestartMode = hostSystemd < 254;
    if (withoutRestartMode) {
      console.log(`      NOTE: host systemd ${hostSystemd} predates RestartMode= (254): verifying the units without that line; ` +
        "Debian 13's systemd 257 runs the exact files in the VM e2e test");
    }
    for (const c of cases) {
      // A throwaway root: Debian's own units, our rendered files, and stand-ins for the app's
      // binaries (verify fails when an ExecStart binary is missing).
      const root = tempDir("systemd");
      mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
      cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true });
      const files = withoutRestartMode ? new Map([...c.files].map(([p, content]) => [p, content.replace(/^RestartMode=direct\n/m, "")])) : c.files;
      writeTree(root, files, c.modes);
      for (const bin of ["/srv/app/current/bin/web", "/srv/app/current/bin/worker", `/srv/app/releases/${RELEASE_ID}/bin/migrate`, "/usr/sbin/nft"]) {
        writeTree(root, new Map([[bin, "#!/bin/sh\n"]]), new Map([[bin, "0755"]]));
      }
      const units = [...c.files.keys()]
        .filter((p) => p.startsWith("/etc/systemd/system/") && /\.(service|timer|target)$/.test(p))
        .map((p) => p.split("/").pop()!)
        .map((u) => u.replace(/@\.service$/, `@${instanceOf(u)}.service`));
      assert.ok(units.length >= 3, `${c.name}: only ${units.length} units`);
      // Valkey's unit is Debian's, our drop-in changes its command line: verify the two together.
      if (c.files.has(VALKEY_DROP_IN_PATH)) {
        assert.ok(existsSync(join(root, "usr/lib/systemd/system", VALKEY_UNIT)), `the host has no ${VALKEY_UNIT} (Debian's valkey-server package)`);
        writeTree(root, new Map([[VALKEY_SERVER_BIN, "#!/bin/sh\n"]]), new Map([[VALKEY_SERVER_BIN, "0755"]]));
        units.push(VALKEY_UNIT);
      }
      const result = run("systemd-analyze", ["verify", `--root=${root}`, ...units]);
      assert.equal(result.status, 0, `${c.name}: ${result.stderr}`);
      assert.equal(result.stderr.trim(), "", `${c.name}: ${result.stderr}`);
    }
  });

  it(`every service we render (app units, backup jobs, tls-issue, tls-share-fetch) reaches a systemd-analyze security exposure of ${MAX_EXPOSURE} or better`, () => {
    const dir = tempDir("security");
    const units = [
      ["web@.service", "web@3001.service"], ["worker@.service", "worker@1.service"],
      ["worker-critical@.service", `worker-critical@${CRITICAL_WORKER_FIRST_ID}.service`],
      ["backup.service", "backup.service"], ["restore-drill.service", "restore-drill.service"],
      ["tls-issue.service", "tls-issue.service"], ["tls-share-fetch.service", "tls-share-fetch.service"],
      ["saas-firewall.service", "saas-firewall.service"], ["migrate@.service", `migrate@${RELEASE_ID}.service`],
      ["watchdog.service", "watchdog.service"], ["alert@.service", "alert@web@3001.service.service"],
    ];
    const rendered = new Set(cases.flatMap((c) => [...c.files.keys()].filter((p) => p.endsWith(".service")).map((p) => p.split("/").pop()!)));
    assert.deepEqual([...rendered].sort(), units.map(([unit]) => unit).sort(), "a rendered service is missing from this check");
    for (const [unit, instance] of units) {
      const content = cases.map((c) => c.files.get(`/etc/systemd/system/${unit}`)).find((f) => f !== undefined)!;
      writeFileSync(join(dir, instance), content);
      const result = run("systemd-analyze", ["security", "--offline=true", join(dir, instance)]);
      const match = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(result.stdout);
      assert.ok(match, `${instance}: no exposure score in ${result.stdout}${result.stderr}`);
      console.log(`      ${instance}: exposure ${match[1]} ${match[2]}`);
      assert.ok(Number(match[1]) <= MAX_EXPOSURE, `${instance}: exposure ${match[1]} > ${MAX_EXPOSURE}`);
    }
  });

  it(`a packaged service we drop settings into (valkey-server) reaches a systemd-analyze security exposure of ${MAX_EXPOSURE} or better with our drop-in`, () => {
    const withDropIn = cases.filter((c) => c.files.has(VALKEY_DROP_IN_PATH));
    assert.ok(withDropIn.length > 0, "no case renders Valkey's drop-in");
    assert.ok(existsSync(`/usr/lib/systemd/system/${VALKEY_UNIT}`), `the host has no ${VALKEY_UNIT} (Debian's valkey-server package)`);
    for (const c of withDropIn) {
      const root = tempDir("security-drop-in");
      mkdirSync(join(root, "usr/lib/systemd/system"), { recursive: true });
      cpSync(`/usr/lib/systemd/system/${VALKEY_UNIT}`, join(root, "usr/lib/systemd/system", VALKEY_UNIT));
      writeTree(root, new Map([[VALKEY_DROP_IN_PATH, c.files.get(VALKEY_DROP_IN_PATH)!]]), c.modes);
      const result = run("systemd-analyze", ["security", "--offline=true", `--root=${root}`, VALKEY_UNIT]);
      const match = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(result.stdout);
      assert.ok(match, `${c.name}: no exposure score in ${result.stdout}${result.stderr}`);
      // The drop-in is read: its UMask and metadata block show up in the analysis.
      assert.match(result.stdout, /✓ UMask=/, `${c.name}: the drop-in's UMask=0077 was not applied`);
      console.log(`      ${c.name} ${VALKEY_UNIT} with our drop-in: exposure ${match[1]} ${match[2]}`);
      assert.ok(Number(match[1]) <= MAX_EXPOSURE, `${c.name}: exposure ${match[1]} > ${MAX_EXPOSURE}`);
    }
  });

  it("nft accepts every rendered host firewall (checked in a network namespace of its own, applied nowhere)", function () {
    if (process.getuid?.() !== 0) {
      if (process.env.CI) throw new Error("nft -c needs root (CAP_NET_ADMIN); CI runs as root");
      console.log("      SKIPPED LOUDLY: nft -c needs root");
      this.skip();
    }
    for (const c of cases) {
      const ruleset = c.files.get(HOST_FIREWALL_PATH);
      assert.ok(ruleset, `${c.name}: no ${HOST_FIREWALL_PATH}`);
      const file = join(tempDir("nft"), "firewall.nft");
      writeFileSync(file, ruleset);
      const result = run("unshare", ["--net", "nft", "-c", "-f", file]);
      assert.equal(result.status, 0, `${c.name}: nft -c: ${result.stderr}`);
    }
  });

  it("on every server only root reaches the metadata service: the firewall's output rule, and IPAddressDeny in every service unit", () => {
    for (const c of cases) {
      assert.match(c.files.get(HOST_FIREWALL_PATH)!, /chain output \{\n.*\n {4}ip daddr 169\.254\.169\.254 meta skuid 0 accept\n {4}ip daddr 169\.254\.169\.254 socket cgroupv2 level 2 @metadata_agents accept\n {4}ip daddr 169\.254\.169\.254 reject /, `${c.name}: no metadata rule`);
      // The agents' drop-ins put their units into exactly that set (systemd's NFTSet= source:family:table:set).
      assert.match(c.files.get("/etc/systemd/system/do-agent.service.d/saas-metadata.conf")!, /^NFTSet=cgroup:inet:saas_vps:metadata_agents$/m, `${c.name}: no agent drop-in`);
      const services = [...c.files].filter(([path]) => path.startsWith("/etc/systemd/system/") && path.endsWith(".service"));
      assert.ok(services.length >= 3, `${c.name}: only ${services.length} services`);
      for (const [path, unit] of services) assert.match(unit, /^IPAddressDeny=169\.254\.169\.254$/m, `${c.name}: ${path}`);
    }
  });

  it("secret files are 0600 and secrets appear in no other file (a login's password only in db.env and its own URL)", () => {
    // Each secret, by the files allowed to hold it; a case has the files of its roles.
    const secretsOf: Record<string, Array<[RegExp, string[]]>> = {
      "/etc/saas-vps/db.env": [
        [/^DB_PASSWORD=(.+)$/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/app.env"]],
        [/^DB_WEB_PASSWORD=(.+)$/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/web.env"]],
        [/^DB_WORKER_PASSWORD=(.+)$/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/worker.env"]],
      ],
      "/etc/saas-vps/app.env": [
        [/^SECRET_KEY=(.+)$/m, ["/etc/saas-vps/app.env"]],
        // A server that backs up a managed database dumps as the owner: backup.env has its login too.
        [/^DATABASE_URL=postgres:\/\/app:([^@]+)@/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/app.env", "/etc/saas-vps/backup.env"]],
      ],
      "/etc/saas-vps/web.env": [[/^DATABASE_URL=postgres:\/\/app_web:([^@]+)@/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/web.env"]]],
      "/etc/saas-vps/worker.env": [[/^DATABASE_URL=postgres:\/\/app_worker:([^@]+)@/m, ["/etc/saas-vps/db.env", "/etc/saas-vps/worker.env"]]],
      "/etc/saas-vps/backup.env": [
        [/^RESTIC_PASSWORD='(.+)'$/m, ["/etc/saas-vps/backup.env"]],
        [/^AWS_SECRET_ACCESS_KEY='(.+)'$/m, ["/etc/saas-vps/backup.env"]],
        [/^BACKUP_DB_PASSWORD='(.+)'$/m, ["/etc/saas-vps/backup.env", "/etc/saas-vps/app.env"]],
      ],
      "/etc/saas-vps/watchdog.env": [
        [/^ALERT_WEBHOOK_URL='(.+)'$/m, ["/etc/saas-vps/watchdog.env"]],
        [/^HEARTBEAT_URL='(.+)'$/m, ["/etc/saas-vps/watchdog.env"]],
      ],
    };
    let checked = 0;
    for (const c of cases) {
      for (const [secretFile, secrets] of Object.entries(secretsOf)) {
        const content = c.files.get(secretFile);
        if (content === undefined) continue;
        assert.equal(c.modes.get(secretFile), "0600", `${c.name}: ${secretFile}`);
        for (const [pattern, allowed] of secrets) {
          const secret = pattern.exec(content)?.[1];
          if (secret === undefined) continue; // app.env holds the owner's URL only where migrations run
          checked++;
          for (const [path, other] of c.files) {
            if (!allowed.includes(path)) assert.ok(!other.includes(secret), `${c.name}: ${path} contains a secret of ${secretFile}`);
          }
        }
      }
    }
    assert.ok(checked >= 30, `only ${checked} secrets checked`);
  });

  it("the bundle unpacks with GNU tar to the same files, modes and owners", () => {
    for (const c of cases) {
      const dir = tempDir("bundle");
      const writeFiles: { path: string; content: string }[] = parse(c.userData).write_files;
      const entry = writeFiles.find((f) => f.path === "/var/lib/saas-vps/first-boot-files.tar.gz")!;
      // Only the files that must exist before the package step are write_files entries of their own:
      // PostgreSQL's (no cluster from the package) where it runs, the exporter's listen address everywhere.
      const plain = writeFiles.filter((f) => f !== entry).map((f) => f.path);
      // A primary has the logins' db.env; a replica has none, but its replication passfile.
      const hasDb = c.files.has("/etc/saas-vps/db.env") || c.files.has(REPLICATION_PASSFILE);
      assert.deepEqual(plain.sort(), [...(hasDb ? ["/etc/postgresql-common/createcluster.d/50-saas-vps.conf"] : []), "/etc/default/prometheus-node-exporter"].sort(), c.name);
      writeFileSync(join(dir, "bundle.tar.gz"), Buffer.from(entry.content, "base64"));
      const listing = run("tar", ["-tzvf", join(dir, "bundle.tar.gz")]);
      assert.equal(listing.status, 0, listing.stderr);
      const lines = listing.stdout.trim().split("\n");
      // Push-only files (the release and backup commands) arrive with the day-2 push, not in the bundle.
      assert.ok(c.pushOnly.size > 0, `${c.name}: no push-only file`);
      assert.equal(lines.length, c.files.size - plain.length - c.pushOnly.size);
      for (const path of c.pushOnly) assert.ok(!lines.some((l) => l.endsWith(` ${path.slice(1)}`)), `${c.name}: push-only ${path} is in the bundle`);
      // Root-only: systemd and the release read them as root; the app user must not (app.env may hold the owner's login).
      for (const name of ["app.env", "web.env", "worker.env", "db.env"]) {
        const entry = lines.find((l) => l.endsWith(` etc/saas-vps/${name}`));
        if (c.files.has(`/etc/saas-vps/${name}`)) assert.match(entry ?? "", /^-rw------- root\/root /, `${c.name}: ${name} must unpack as 0600 root:root`);
      }
      const unpacked = join(dir, "root");
      mkdirSync(unpacked);
      assert.equal(run("tar", ["-xzpf", join(dir, "bundle.tar.gz"), "-C", unpacked, "--no-same-owner"]).status, 0);
      for (const [path, content] of c.files) {
        if (!plain.includes(path) && !c.pushOnly.has(path)) assert.equal(readFileSync(join(unpacked, path), "utf8"), c.firstBoot?.get(path) ?? content, `${c.name}: ${path}`);
      }
    }
  });

  it("bootstrap is present and the data volume is mounted by label, never by device name", () => {
    for (const c of cases) {
      const env = c.files.get("/etc/saas-vps/bootstrap.env")!;
      assert.deepEqual(parse(c.userData).runcmd, [["sh", "-c", "tar -xzpf /var/lib/saas-vps/first-boot-files.tar.gz -C / && rm -f /var/lib/saas-vps/first-boot-files.tar.gz && exec /usr/local/lib/saas-vps/bootstrap"]]);
      assert.ok(c.files.has("/usr/local/lib/saas-vps/bootstrap"), `${c.name}: no bootstrap`);
      // Only servers with the database mount the volume (a web server of a split stage has none).
      if (!/^STEPS=".*\b10-data-volume\b/m.test(env)) continue;
      assert.match(env, /^DATA_LABEL="saas-data"$/m);
      assert.match(c.files.get("/usr/local/lib/saas-vps/bootstrap.d/10-data-volume")!, /LABEL=\$DATA_LABEL \$DATA_MOUNT ext4/);
    }
  });
});

/** The host's systemd major version, e.g. 252. */
function hostSystemdVersion(): number {
  const m = /^systemd (\d+)/.exec(run("systemctl", ["--version"]).stdout);
  if (!m) throw new Error("cannot read the systemd version");
  return Number(m[1]);
}

function noteLegacyHttp2(): void {
  const hostVersion = hostNginxVersion();
  if (predatesHttp2Directive(hostVersion)) {
    console.log(`      NOTE: host nginx ${hostVersion} predates \`http2 on;\` (1.25.1): checking the sites with \`listen ... ssl http2\` instead; ` +
      "Debian 13's nginx checks the exact file in the VM e2e test (point 1b)");
  }
}

/** nginx -t, silent, of `site` inside Debian's own nginx.conf, its TLS pair and logs in a temp folder. */
function assertNginxAccepts(name: string, site: string): void {
  const dir = tempDir("nginx");
  // The server's TLS links are made by bootstrap; here they point at a throwaway pair.
  run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
  const testable = site
    .replace("/etc/saas-vps/tls/fullchain.pem", join(dir, "cert.pem"))
    .replace("/etc/saas-vps/tls/privkey.pem", join(dir, "key.pem"))
    .replaceAll("/var/log/nginx/", `${dir}/`);
  writeFileSync(join(dir, "site.conf"), forHostNginx(testable));
  // Debian's own nginx.conf, with our file where conf.d/*.conf is included: it sets gzip,
  // ssl_* and more at http level, and a duplicate of any of them fails nginx -t.
  const debian = readFileSync("/etc/nginx/nginx.conf", "utf8");
  assert.match(debian, /include \/etc\/nginx\/conf\.d\/\*\.conf;/);
  const main = debian
    .replace("include /etc/nginx/conf.d/*.conf;", `include ${dir}/site.conf;`)
    .replace("include /etc/nginx/sites-enabled/*;", "");
  writeFileSync(join(dir, "nginx.conf"), main);
  const result = run("nginx", ["-t", "-q", "-c", join(dir, "nginx.conf")]);
  assert.equal(result.status, 0, `${name}: ${result.stderr}`);
  assert.equal(result.stderr.trim(), "", `${name}: nginx warned: ${result.stderr}`);
}
