/**
 * The database part of each server's input: which logins a server holds, where its app reaches
 * PostgreSQL, and the db server's pg_hba clients, all from the plan (the PostgreSQL firewall rule
 * and the servers' roles); and the rendered files that carry them.
 */
import assert from "node:assert/strict";
import { parseStackConfig } from "../../config/config";
import { databaseUrl, loginsFor } from "../../plan/database";
import { planStack, type StackPlan } from "../../plan/plan";
import { buildServerInput, databaseEndpointFor, PLACEHOLDER_CONTEXT, postgresClientsFor } from "../../plan/serverInput";
import { planPostgresTuning, renderPgHba } from "../../provisioning/postgres";
import { renderServer } from "../../provisioning/server";
import { minimalRaw, scaledRaw, separatedRaw } from "../support/fixtures";

const separated = parseStackConfig({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner"), dbServerType: "cx33" });
const mvp = parseStackConfig(minimalRaw("hetzner"));
const server = (plan: StackPlan, name: string) => plan.servers.find((s) => s.name === name)!;
const input = (config: typeof mvp, name: string, privateAddresses?: Record<string, string | undefined>) => {
  const plan = planStack(config);
  return buildServerInput(config, server(plan, name), { machine: "hetzner", ...PLACEHOLDER_CONTEXT, privateAddresses }, plan);
};

describe("database logins and endpoints per server", () => {
  it("the web server holds the owner's login (it runs migrations) and web's; the worker server only worker's; all-in-one all three", () => {
    assert.deepEqual(loginsFor({ roles: ["web"] }), ["owner", "web"]);
    assert.deepEqual(loginsFor({ roles: ["worker"] }), ["worker"]);
    assert.deepEqual(loginsFor({ roles: ["db"] }), []);
    assert.deepEqual(loginsFor({ roles: ["web", "worker", "db"] }), ["owner", "web", "worker"]);
    // Stage scaled: app servers after the first serve only; the owner's login stays on the one that migrates.
    assert.deepEqual(loginsFor({ roles: ["web"], migrates: false }), ["web"]);
    assert.deepEqual(Object.keys(input(separated, "app").app!.database.credentials), ["owner", "web"]);
    assert.deepEqual(Object.keys(input(separated, "worker").app!.database.credentials), ["worker"]);
    assert.deepEqual(input(separated, "worker").app!.database.credentials.worker, { user: "app_worker", password: "placeholder-database-worker-password" });
  });

  it("all-in-one: loopback without TLS; split: the db server's private address with TLS, with a URL that says so", () => {
    const local = input(mvp, "app").app!.database.endpoint;
    assert.deepEqual(local, { host: "127.0.0.1", port: 5432, database: "app", tls: false });
    assert.equal(databaseUrl(local, { user: "app_web", password: "pw" }), "postgres://app_web:pw@127.0.0.1:5432/app");
    const remote = input(separated, "worker").app!.database.endpoint;
    assert.deepEqual(remote, { host: "10.20.0.30", port: 5432, database: "app", tls: true });
    assert.equal(databaseUrl(remote, { user: "app_worker", password: "pw" }), "postgres://app_worker:pw@10.20.0.30:5432/app?sslmode=require&uselibpqcompat=true");
    // The db server's real address, once known, is what the app gets.
    assert.equal(input(separated, "app", { app: "10.20.5.1", db: "10.20.7.7" }).app!.database.endpoint.host, "10.20.7.7");
  });

  it("refuses to render an app server while the db server's address is unknown, and a managed plan without its endpoint", () => {
    const plan = planStack(separated);
    assert.throws(() => databaseEndpointFor(server(plan, "app"), plan, { app: "10.20.0.10" }, undefined), /private address of db server db is not known yet/);
    assert.throws(() => databaseEndpointFor(server(plan, "app"), { ...plan, database: { kind: "managed", size: "db-s-1vcpu-2gb" } }, {}, undefined), /managed, but no managed cluster endpoint/);
  });

  it("Valkey: the app's servers of stage scaled get VALKEY_URL at the cache server's known address, separated gets none, and an unknown address or a missing password is refused", () => {
    const scaled = parseStackConfig({ ...minimalRaw("hetzner"), ...scaledRaw("hetzner", 2, false) });
    const password = PLACEHOLDER_CONTEXT.secrets.valkeyPassword!;
    assert.equal(input(scaled, "worker").app!.valkeyUrl, `rediss://default:${password}@10.20.0.40:6379`);
    assert.equal(input(scaled, "app-2", { app: "10.20.0.10", "app-2": "10.20.0.11", worker: "10.20.0.20", db: "10.20.0.30", cache: "10.20.9.9" }).app!.valkeyUrl, `rediss://default:${password}@10.20.9.9:6379`);
    assert.equal(input(separated, "app").app!.valkeyUrl, undefined);
    // DigitalOcean, an app server rendered before the cache droplet exists: the stack declares the cache first, so this is a bug.
    assert.throws(() => input(scaled, "app", { app: "10.20.0.10", db: "10.20.0.30" }), /server app: the private address of cache server cache is not known yet/);
    const plan = planStack(scaled);
    const { valkeyPassword: _, ...secrets } = PLACEHOLDER_CONTEXT.secrets;
    for (const name of ["app", "cache"]) {
      assert.throws(() => buildServerInput(scaled, server(plan, name), { machine: "hetzner", ...PLACEHOLDER_CONTEXT, secrets }, plan), new RegExp(`server ${name}: the plan has a cache server, but no Valkey password was given`));
    }
    // The cache server's own input: the password (its ACL file keeps the hash) and the server's memory.
    assert.deepEqual(input(scaled, "cache").roles.cache, { memoryMiB: server(plan, "cache").memoryMiB, password });
  });

  it("the db server's clients come from its PostgreSQL rule: each peer's address and the logins its roles use; an unknown address is the network", () => {
    const plan = planStack(separated);
    const db = server(plan, "db");
    assert.deepEqual(postgresClientsFor(db, plan, { app: "10.20.0.10", worker: "10.20.0.20" }), [
      { name: "app", sources: ["10.20.0.10/32"], users: ["app", "app_web"] },
      { name: "worker", sources: ["10.20.0.20/32"], users: ["app_worker"] },
    ]);
    assert.deepEqual(postgresClientsFor(db, plan, { app: "10.20.0.10" })![1], { name: "worker", sources: ["10.20.0.0/16"], users: ["app_worker"] });
    assert.equal(postgresClientsFor(server(planStack(mvp), "app"), planStack(mvp), {}), undefined);
  });

  it("pg_hba lets in from the network only hostssl lines for the clients, and refuses a client that would be anyone", () => {
    const text = renderPgHba("app", [{ name: "app", sources: ["10.20.0.10/32"], users: ["app", "app_web"] }]);
    const network = text.split("\n").filter((l) => /^(host|hostssl|hostnossl|hostgssenc)\s/.test(l) && !/\s(127\.0\.0\.1\/32|::1\/128)\s/.test(l));
    assert.deepEqual(network.map((l) => l.split(/\s+/)), [["hostssl", "app", "app,app_web", "10.20.0.10/32", "scram-sha-256"]]);
    // One client holding all three logins (the app server while moving from mvp): every field stays apart.
    const all = renderPgHba("app", [{ name: "app", sources: ["10.20.0.10/32"], users: ["app", "app_web", "app_worker"] }]);
    const fields = all.split("\n").find((l) => l.startsWith("hostssl"))!.split(/\s+/);
    assert.deepEqual(fields, ["hostssl", "app", "app,app_web,app_worker", "10.20.0.10/32", "scram-sha-256"]);
    assert.throws(() => renderPgHba("app", [{ name: "x", sources: ["0.0.0.0/0"], users: ["app_web"] }]), /source "0\.0\.0\.0\/0" must be an IPv4 network of \/8 to \/32/);
    assert.throws(() => renderPgHba("app", [{ name: "x", sources: ["10.20.0.10/32"], users: ["app web"] }]), /must be role names/);
  });

  it("a db server of its own gives PostgreSQL three quarters of its memory as cache; the all-in-one box half", () => {
    assert.equal(planPostgresTuning(8192, true).effectiveCacheSizeMiB, 6144);
    assert.equal(planPostgresTuning(8192, false).effectiveCacheSizeMiB, 4096);
    assert.equal(planPostgresTuning(8192, true).sharedBuffersMiB, planPostgresTuning(8192, false).sharedBuffersMiB);
  });

  it("renders each login into its own root-only file: the owner's never reaches web.env or worker.env, nor the worker's server", () => {
    const files = (config: typeof mvp, name: string) => new Map(renderServer(input(config, name)).files.map((f) => [f.path, f]));
    const all = files(mvp, "app");
    for (const [path, user] of [["/etc/saas-vps/app.env", "app"], ["/etc/saas-vps/web.env", "app_web"], ["/etc/saas-vps/worker.env", "app_worker"]] as const) {
      const f = all.get(path)!;
      assert.deepEqual([f.mode, f.owner, f.secret], ["0600", "root:root", true], path);
      assert.deepEqual([...f.content.matchAll(/^DATABASE_URL=postgres:\/\/([a-z_]+):/gm)].map((m) => m[1]), [user], path);
    }
    const web = files(separated, "app");
    assert.ok(!web.has("/etc/saas-vps/worker.env") && !web.has("/etc/saas-vps/db.env"));
    assert.match(web.get("/etc/systemd/system/web@.service")!.content, /^EnvironmentFile=\/etc\/saas-vps\/app\.env\nEnvironmentFile=\/etc\/saas-vps\/web\.env$/m);
    assert.match(web.get("/etc/systemd/system/worker@.service")!.content, /^EnvironmentFile=\/etc\/saas-vps\/app\.env\nEnvironmentFile=\/etc\/saas-vps\/worker\.env$/m);
    // The worker server's app.env carries no database login at all (it cannot render yet: its
    // release command needs a web port, so this checks the input the renderer gets).
    assert.equal(input(separated, "worker").app!.database.credentials.owner, undefined);
  });
});

describe("Stripe's keys per process kind", () => {
  const stripe = { stripeSecretKey: "sk_live_k3y", stripeWebhookSecret: "whsec_s3cret" };
  const keysIn = (content: string) => [...content.matchAll(/^(STRIPE_[A-Z_]+)=(.*)$/gm)].map((m) => `${m[1]}=${m[2]}`);

  it("web.env gets the API key and the webhook secret, worker.env the API key only, app.env neither", () => {
    const files = new Map(renderServer(input(parseStackConfig({ ...minimalRaw("hetzner"), ...stripe }), "app")).files.map((f) => [f.path, f.content]));
    assert.deepEqual(keysIn(files.get("/etc/saas-vps/web.env")!), ["STRIPE_SECRET_KEY=sk_live_k3y", "STRIPE_WEBHOOK_SECRET=whsec_s3cret"]);
    assert.deepEqual(keysIn(files.get("/etc/saas-vps/worker.env")!), ["STRIPE_SECRET_KEY=sk_live_k3y"]);
    assert.deepEqual(keysIn(files.get("/etc/saas-vps/app.env")!), []);
    // Split: the worker server's input carries the API key and never the webhook secret.
    const worker = input(parseStackConfig({ ...minimalRaw("hetzner"), ...separatedRaw("hetzner"), dbServerType: "cx33", ...stripe }), "worker").app!;
    assert.deepEqual(worker.processEnvironment!.worker, { STRIPE_SECRET_KEY: "sk_live_k3y" });
    assert.deepEqual(Object.keys(worker.environment).filter((k) => k.startsWith("STRIPE")), []);
  });

  it("without the keys nothing Stripe is rendered", () => {
    for (const f of renderServer(input(mvp, "app")).files) assert.deepEqual(keysIn(f.content), [], f.path);
  });
});

describe("the app's observability settings in app.env", () => {
  const settings = (content: string) => [...content.matchAll(/^((?:SENTRY|METRICS)_[A-Z_]+)=(.*)$/gm)].map((m) => `${m[1]}=${m[2]}`);
  const appEnv = (config: typeof mvp, stack: string) =>
    renderServer(buildServerInput(config, server(planStack(config), "app"), { machine: "hetzner", ...PLACEHOLDER_CONTEXT, stack })).files.find((f) => f.path === "/etc/saas-vps/app.env")!.content;

  it("the metrics port offset always (its key's value), Sentry's environment = the stack, next to the DSN", () => {
    const dsn = "https://k3y@o1.ingest.sentry.io/7";
    assert.deepEqual(settings(appEnv(parseStackConfig({ ...minimalRaw("hetzner"), sentryDsn: dsn, metricsPortOffset: "20000" }), "shop-prod")),
      [`SENTRY_DSN=${dsn}`, "SENTRY_ENVIRONMENT=shop-prod", "METRICS_PORT_OFFSET=20000"]);
    assert.deepEqual(settings(appEnv(mvp, "shop-prod")), ["METRICS_PORT_OFFSET=10000"], "no DSN: no Sentry setting at all");
  });

  it("refuses a stack name Sentry would refuse as an environment, naming the key", () => {
    const config = parseStackConfig({ ...minimalRaw("hetzner"), sentryDsn: "https://k3y@o1.ingest.sentry.io/7" });
    assert.throws(() => appEnv(config, "None"), /^Error: saas-vps:sentryDsn: Sentry takes the stack name as the environment, .* the stack is "None"$/);
  });
});
