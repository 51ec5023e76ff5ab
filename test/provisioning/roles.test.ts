/**
 * A server is the sum of its roles: what each role brings (and only it), that the sum does
 * not depend on the order roles are listed in, that first boot never needs a file only the
 * day-2 push brings, and the user-data budget.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { parseStackConfig, type StackConfig } from "../../config/config";
import { projectConfigOf } from "../../config/keysFromPulumi";
import { planStack, type Role } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { USER_DATA_BUDGET_BYTES } from "../../provisioning/cloudInit";
import { RenderError } from "../../provisioning/errors";
import { renderServer, type RenderedServer } from "../../provisioning/server";
import { readStackFile, readUserDataBundle } from "../../cli/lib/renderStack";
import { minimalRaw, withDomain } from "../support/fixtures";
import { bootstrapEnv, renderedContent } from "../support/rendered";

const ROOT = join(__dirname, "..", "..");

function render(config: StackConfig, roles?: Role[]): RenderedServer {
  const [server] = planStack(config).servers;
  return renderServer(buildServerInput(config, { ...server, roles: roles ?? server.roles }, { machine: config.provider, ...PLACEHOLDER_CONTEXT }));
}

function stackConfig(stack: string): StackConfig {
  const { config } = readStackFile(join(ROOT, `Pulumi.${stack}.yaml`));
  return parseStackConfig(projectConfigOf(config));
}


const words = (value: string | undefined) => (value ? value.split(" ") : []);

/** Values of `key=` lines in a unit file (repeated keys and space-separated lists flattened). */
function unitValues(content: string, key: string): string[] {
  return content.split("\n").filter((l) => l.startsWith(`${key}=`)).flatMap((l) => words(l.slice(key.length + 1)));
}

/**
 * Every unit first boot starts, and what they start in turn (a timer's service, a target's
 * wants, OnFailure= handlers), with the files they run.
 */
function startedOnFirstBoot(server: RenderedServer): Map<string, string[]> {
  // A template's instance may itself be a unit name (alert@web@3001.service.service).
  const unitFile = (unit: string) => server.files.find((f) => f.path === `/etc/systemd/system/${unit.replace(/@.+\.(service|timer|target)$/, "@.$1")}`)?.content;
  const found = new Map<string, string[]>();
  const queue = words(bootstrapEnv(server).get("ENABLE_UNITS")).map((u) => (u.includes(".") ? u : `${u}.service`));
  for (let unit = queue.shift(); unit; unit = queue.shift()) {
    if (found.has(unit)) continue;
    const content = unitFile(unit);
    // A unit that checks for its command first (ConditionFileIsExecutable=) is skipped, not failed, without it.
    const guarded = content ? unitValues(content, "ConditionFileIsExecutable") : [];
    found.set(unit, content ? unitValues(content, "ExecStart").filter((w) => w.startsWith("/") && !guarded.includes(w)) : []);
    if (!content) continue; // a package's unit (nginx, fail2ban, ...): runs nothing of ours
    if (unit.endsWith(".timer")) queue.push(unitValues(content, "Unit")[0] ?? unit.replace(/\.timer$/, ".service"));
    queue.push(...unitValues(content, "Wants").filter((u) => !u.endsWith(".target")), ...unitValues(content, "OnFailure").map((u) => u.replace("%n", unit)));
  }
  return found;
}

describe("roles: a server is the sum of its roles", () => {
  const config = parseStackConfig(withDomain({ ...minimalRaw("hetzner"), webInstances: "2", workerInstances: "1" }));

  it("a db-only server sets up the volume and PostgreSQL, makes no app directories and starts no app or nginx", () => {
    const db = render(config, ["db"]);
    const env = bootstrapEnv(db);
    assert.deepEqual(words(env.get("STEPS")), ["10-data-volume", "20-postgresql", "80-system-settings", "90-enable-units"]);
    assert.deepEqual(words(env.get("ENABLE_UNITS")), ["fail2ban", "saas-firewall.service", "unattended-upgrades"]);
    assert.deepEqual(words(env.get("ENABLE_ONLY_UNITS")), ["backup.timer", "restore-drill.timer"]);
    assert.ok(!db.packages.includes("nginx") && !db.packages.includes("nodejs"), db.packages.join(" "));
    const paths = db.files.map((f) => f.path);
    for (const absent of ["/etc/systemd/system/web@.service", "/etc/saas-vps/app.env", "/usr/local/sbin/release", "/etc/nginx/conf.d/saas-vps.conf"]) {
      assert.ok(!paths.includes(absent), `db-only server got ${absent}`);
    }
    assert.ok(!env.has("APP_ROOT") && !env.has("DOMAIN"), "db-only server has app or TLS settings");
  });

  it("a web-only server mounts nothing and touches no PostgreSQL cluster, and gets the release command", () => {
    const web = render(config, ["web"]);
    const env = bootstrapEnv(web);
    assert.deepEqual(words(env.get("STEPS")), ["30-app-dirs", "40-tls", "50-nginx", "80-system-settings", "90-enable-units"]);
    assert.deepEqual(words(env.get("ENABLE_UNITS")), ["fail2ban", "nginx", "saas-app.target", "saas-firewall.service", "tls-issue.timer", "unattended-upgrades"]);
    assert.deepEqual(words(env.get("ENABLE_ONLY_UNITS")), []);
    assert.ok(!env.has("DATA_DEVICE_GLOB") && !env.has("DB_ENV_FILE"), "web-only server has volume or database settings");
    // The client only (psql, for ops status); no server package, no cluster.
    assert.ok(web.packages.includes("postgresql-client"), web.packages.join(" "));
    assert.ok(!web.packages.some((p) => (p.startsWith("postgresql") && p !== "postgresql-client") || p === "restic" || p === "e2fsprogs"), web.packages.join(" "));
    const paths = web.files.map((f) => f.path);
    for (const absent of ["/etc/saas-vps/db.env", "/usr/local/sbin/backup", "/etc/systemd/system/backup.timer", "/etc/systemd/system/postgresql@.service.d/50-saas-vps.conf"]) {
      assert.ok(!paths.includes(absent), `web-only server got ${absent}`);
    }
    assert.ok(web.files.some((f) => f.path === "/usr/local/sbin/release" && f.pushOnly));
  });

  it("the app part comes once for web and worker together, with both roles' processes", () => {
    const both = render(config, ["web", "worker"]);
    assert.equal(both.files.filter((f) => f.path === "/etc/saas-vps/app.env").length, 1);
    assert.match(renderedContent(both, "/etc/systemd/system/saas-app.target"), /^Wants=web@3001\.service web@3002\.service worker@1\.service$/m);
    assert.match(renderedContent(both, "/etc/saas-vps/release.conf"), /^WEB_PORTS="3001 3002"$/m);
    assert.match(renderedContent(both, "/etc/saas-vps/release.conf"), /^WORKER_UNITS="worker@1\.service"$/m);
  });

  it("the order roles are listed in changes nothing rendered", () => {
    const a = render(config, ["web", "worker", "db"]);
    const b = render(config, ["db", "worker", "web"]);
    assert.equal(b.userData, a.userData);
    assert.deepEqual(new Map(b.files.map((f) => [f.path, f])), new Map(a.files.map((f) => [f.path, f])));
  });

  it("the all-in-one server brings nothing that a web-only, worker-only or db-only server does not", () => {
    const all = render(config);
    const single = (["web", "worker", "db"] as const).map((r) => render(config, [r]));
    const fromRoles = new Set(single.flatMap((s) => s.files.map((f) => f.path)));
    assert.deepEqual(all.files.map((f) => f.path).filter((p) => !fromRoles.has(p)), []);
  });

  for (const [name, make] of [
    ["stack staging", () => stackConfig("staging")],
    ["stack prod", () => stackConfig("prod")],
    ["one web, no workers", () => parseStackConfig({ ...minimalRaw("hetzner"), webInstances: "1", workerInstances: "0" })],
    ["16 web, 16 workers, domain", () => parseStackConfig(withDomain({ ...minimalRaw("digitalocean"), webInstances: "16", workerInstances: "16" }))],
  ] as const) {
    it(`${name}: nothing first boot runs needs a push-only file, and the push starts what waits for one`, () => {
      const server = render(make());
      const pushOnly = server.files.filter((f) => f.pushOnly);
      // The release command and the migrations unit it starts arrive with the push; nothing runs them before a release.
      // So do the backup command and its settings: the push starts the timers that run it.
      // So do the watchdog's files: its push enables and starts its timer; the metadata drop-in of
      // DigitalOcean's agent: its push restarts the agent into the firewall's set; and the metrics
      // exporter's collectors and sandbox: first boot has only its listen address.
      assert.deepEqual(pushOnly.map((f) => f.path).sort(), [
        "/etc/saas-vps/backup.env",
        "/etc/saas-vps/watchdog.env",
        "/etc/systemd/system/alert@.service",
        "/etc/systemd/system/do-agent.service.d/saas-metadata.conf",
        "/etc/systemd/system/migrate@.service",
        "/etc/systemd/system/prometheus-node-exporter.service.d/50-saas-vps.conf",
        "/etc/systemd/system/watchdog.service",
        "/etc/systemd/system/watchdog.timer",
        "/usr/local/sbin/backup",
        "/usr/local/sbin/release",
        "/usr/local/sbin/watchdog",
      ]);
      assert.ok(pushOnly.some((f) => /systemctl enable --now watchdog\.timer$/.test(f.onChange ?? "")), "no push starts watchdog.timer");
      // Not in the user-data, but in the files the pushes carry.
      const installed = readUserDataBundle(server.userData);
      for (const f of pushOnly) assert.ok(!installed.has(f.path), `${f.path} is in the user-data`);
      // No unit first boot starts runs one (timers, their services, a target's instances, OnFailure handlers).
      const started = startedOnFirstBoot(server);
      assert.ok(started.has("saas-app.target") && started.has("fail2ban.service"), [...started.keys()].join(" "));
      assert.ok(!started.has("backup.timer") && !started.has("backup.service"), "backup runs before its command arrives");
      // A web instance's OnFailure= notifier is reached, and guarded: the watchdog command is push-only.
      assert.deepEqual(started.get("alert@web@3001.service.service"), []);
      for (const [unit, runs] of started) {
        for (const f of pushOnly) assert.ok(!runs.includes(f.path), `${unit} is started on first boot and runs push-only ${f.path}`);
      }
      // No first-boot script calls one.
      const firstBootScripts = server.files.filter((f) => f.path.startsWith("/usr/local/lib/saas-vps/bootstrap"));
      assert.ok(firstBootScripts.length >= 5);
      for (const script of firstBootScripts) {
        for (const f of pushOnly) {
          const name = f.path.split("/").pop()!;
          assert.doesNotMatch(script.content, new RegExp(`${f.path}|(^|[;&|]\\s*|^\\s+)${name}\\b`, "m"), `${script.path} calls push-only ${f.path}`);
        }
      }
      // Units enabled but left stopped on first boot are started by the push of the file they run.
      const waiting = words(bootstrapEnv(server).get("ENABLE_ONLY_UNITS"));
      assert.deepEqual(waiting, ["backup.timer", "restore-drill.timer"]);
      for (const unit of waiting) {
        assert.ok(pushOnly.some((f) => new RegExp(`systemctl start .*\\b${unit.replace(".", "\\.")}\\b`).test(f.onChange ?? "")), `no push starts ${unit}`);
      }
    });
  }

  it(`refuses user-data over ${USER_DATA_BUDGET_BYTES} bytes (half of Hetzner's cap), naming the server and its size`, () => {
    // An app setting of incompressible text makes app.env (in the user-data) too big.
    const big = randomBytes(12 * 1024).toString("base64url");
    const input = buildServerInput(config, planStack(config).servers[0], { machine: "hetzner", ...PLACEHOLDER_CONTEXT });
    input.app!.environment = { SENTRY_DSN: big };
    assert.throws(() => renderServer(input), (err: unknown) => {
      assert.ok(err instanceof RenderError);
      assert.match(err.message, /^server app: user-data is \d+ bytes; the limit is 16384 \(half of Hetzner's 32768-byte cap/);
      return true;
    });
  });
});
