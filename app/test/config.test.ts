import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ConfigError, parseConfig } from "../src/core/config.js";
import { metricsPort } from "../src/metrics/port.js";

const valid = {
  DATABASE_URL: "postgres://app@127.0.0.1:5432/app",
  SECRET_KEY: "x".repeat(32),
  APP_URL: "https://app.example.com/",
};

function problems(env: Record<string, string | undefined>): string[] {
  try {
    parseConfig(env, "/srv/app");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail("expected a ConfigError");
}

describe("config", () => {
  it("applies the documented defaults", () => {
    const c = parseConfig(valid, "/srv/app");
    assert.equal(c.port, 3000);
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.appUrl, "https://app.example.com");
    assert.equal(c.mailFrom, "no-reply@app.example.com");
    assert.equal(c.uploadDir, "/srv/app/uploads");
    assert.equal(c.logLevel, "info");
    assert.equal(c.shutdownTimeoutMs, 10000);
    assert.equal(c.workerConcurrency, 2);
    assert.equal(c.smtpUrl, undefined);
    assert.equal(c.s3, undefined);
    assert.equal(c.metricsPortOffset, undefined, "metrics are off unless METRICS_PORT_OFFSET is set");
    assert.equal(c.sentryEnvironment, undefined);
    assert.equal(c.workerId, 1);
  });

  it("derives each instance's metrics port from one offset: web from PORT, worker from WORKER_ID", () => {
    const at = (env: Record<string, string>) => parseConfig({ ...valid, METRICS_PORT_OFFSET: "10000", ...env }, "/srv/app");
    assert.equal(metricsPort(at({ PORT: "3001" }), "web"), 13001);
    assert.equal(metricsPort(at({ PORT: "3002" }), "web"), 13002);
    assert.equal(metricsPort(at({ PORT: "3100" }), "web"), 13100, "the surge instance");
    assert.equal(metricsPort(at({ WORKER_ID: "1" }), "worker"), 10001);
    assert.equal(metricsPort(at({ WORKER_ID: "2" }), "worker"), 10002);
    assert.equal(metricsPort(parseConfig({ ...valid, PORT: "3001", METRICS_PORT_OFFSET: "" }, "/srv/app"), "web"), undefined, "empty = off");
  });

  it("refuses metrics settings under which two instances could share a port, or a port past 65535", () => {
    assert.deepEqual(problems({ ...valid, METRICS_PORT_OFFSET: "9000", PORT: "999" }), [
      "env/PORT must be at least 1000 when METRICS_PORT_OFFSET is set (METRICS_PORT_OFFSET + 1 to + 999 are the workers' metrics ports) (got \"999\")",
    ]);
    assert.deepEqual(problems({ ...valid, METRICS_PORT_OFFSET: "63000", PORT: "3001" }), [
      "env/METRICS_PORT_OFFSET must leave PORT + METRICS_PORT_OFFSET at most 65535 (PORT is 3001) (got \"63000\")",
    ]);
    assert.deepEqual(problems({ ...valid, METRICS_PORT_OFFSET: "-5" }), ["env/METRICS_PORT_OFFSET must be an integer from 1 to 64535 (got \"-5\")"]);
    assert.deepEqual(problems({ ...valid, METRICS_PORT_OFFSET: "0" }), ["env/METRICS_PORT_OFFSET must be an integer from 1 to 64535 (got \"0\")"]);
    assert.deepEqual(problems({ ...valid, WORKER_ID: "1000" }), ["env/WORKER_ID must be an integer from 1 to 999 (got \"1000\")"]);
  });

  it("takes a Sentry environment Sentry accepts (the stack's name), and nothing else", () => {
    assert.equal(parseConfig({ ...valid, SENTRY_ENVIRONMENT: "prod-eu.1_a" }, "/srv/app").sentryEnvironment, "prod-eu.1_a");
    for (const bad of ["has space", "a/b", "None", "x".repeat(65)]) {
      assert.deepEqual(problems({ ...valid, SENTRY_ENVIRONMENT: bad }), [
        `env/SENTRY_ENVIRONMENT must be at most 64 characters without whitespace or "/", and not "None" (Sentry's rule; e.g. the stack name) (got ${JSON.stringify(bad)})`,
      ]);
    }
  });

  it("reports every bad variable at once, one env/KEY line each", () => {
    const got = problems({ SECRET_KEY: "short", APP_URL: "ftp://x", PORT: "70000", LOG_LEVEL: "loud", SMTP_URL: "http://mail", WORKER_CONCURRENCY: "0" });
    assert.deepEqual(got, [
      "env/DATABASE_URL must be set: a postgres:// URL",
      "env/PORT must be an integer from 1 to 65535 (got \"70000\")",
      "env/SECRET_KEY must be at least 32 characters (got 5)",
      "env/APP_URL must be an http:// or https:// URL (got \"ftp://x\")",
      "env/SMTP_URL must be an smtp:// or smtps:// URL (got \"http://mail\")",
      "env/LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got \"loud\")",
      "env/WORKER_CONCURRENCY must be an integer from 1 to 64 (got \"0\")",
    ]);
  });

  it("treats empty variables as unset and never echoes URL credentials", () => {
    const got = problems({ ...valid, DATABASE_URL: "mysql://root:hunter2@db/app", SECRET_KEY: "" });
    assert.equal(got.length, 2);
    assert.match(got[0]!, /^env\/DATABASE_URL must be a postgres/);
    assert.ok(!got[0]!.includes("hunter2"));
    assert.match(got[1]!, /^env\/SECRET_KEY must be set/);
  });

  it("a read replica: off by default; its URL and lag bound validated, never the primary's URL, never echoing credentials", () => {
    assert.equal(parseConfig(valid, "/srv/app").readReplica, undefined);
    const on = parseConfig({ ...valid, DATABASE_READ_URL: "postgres://app_web:pw@10.20.0.31:5432/app?sslmode=require" }, "/srv/app");
    assert.deepEqual(on.readReplica, { url: "postgres://app_web:pw@10.20.0.31:5432/app?sslmode=require", maxLagMs: 10_000 });
    assert.equal(parseConfig({ ...valid, DATABASE_READ_URL: "postgres://r@h/app", DATABASE_READ_MAX_LAG_SECONDS: "2" }, "/srv/app").readReplica?.maxLagMs, 2000);
    const got = problems({ ...valid, DATABASE_READ_URL: "mysql://secret-user:secret-pw@h/app", DATABASE_READ_MAX_LAG_SECONDS: "0" });
    assert.equal(got.length, 2, got.join("\n"));
    assert.match(got[0]!, /^env\/DATABASE_READ_URL must be a postgres:\/\/ or postgresql:\/\/ URL of a read replica/);
    assert.match(got[1]!, /^env\/DATABASE_READ_MAX_LAG_SECONDS must be an integer from 1 to 3600/);
    assert.ok(!got.join("\n").includes("secret-pw"), got.join("\n"));
    const same = problems({ ...valid, DATABASE_READ_URL: valid.DATABASE_URL });
    assert.deepEqual(same, ["env/DATABASE_READ_URL must name a read replica, not the same URL as DATABASE_URL"]);
  });

  it("VALKEY_URL: off by default (empty = unset); redis:// or rediss:// with a host and a port, never echoing the password", () => {
    assert.equal(parseConfig(valid, "/srv/app").valkeyUrl, undefined);
    assert.equal(parseConfig({ ...valid, VALKEY_URL: " " }, "/srv/app").valkeyUrl, undefined);
    const url = "rediss://default:s3cr%2Ft@10.20.0.40:6379";
    assert.equal(parseConfig({ ...valid, VALKEY_URL: url }, "/srv/app").valkeyUrl, url);
    assert.equal(parseConfig({ ...valid, VALKEY_URL: "redis://127.0.0.1" }, "/srv/app").valkeyUrl, "redis://127.0.0.1", "port 6379 when left out");
    assert.equal(parseConfig({ ...valid, VALKEY_URL: "redis://127.0.0.1:6380/2" }, "/srv/app").valkeyUrl, "redis://127.0.0.1:6380/2", "a database number");
    const rule = "env/VALKEY_URL must be a redis:// or rediss:// URL with a host and a port from 1 to 65535 (rediss://default:<password>@<host>:6379)";
    for (const [given, shown] of [
      ["https://default:topsecret@10.20.0.40:6379", "https://***@10.20.0.40:6379"],
      ["rediss://default:topsecret@10.20.0.40:0", "rediss://***@10.20.0.40:0"],
      ["rediss://default:topsecret@10.20.0.40:70000", "rediss://***@10.20.0.40:70000"],
      ["rediss://default:topsecret@:6379", "rediss://***@:6379"],
      ["10.20.0.40:6379", "10.20.0.40:6379"],
    ]) {
      assert.deepEqual(problems({ ...valid, VALKEY_URL: given }), [`${rule} (got ${JSON.stringify(shown)})`], given);
    }
    assert.deepEqual(problems({ ...valid, VALKEY_URL: "rediss://default:topsecret@h:6379/cache?x=1" }), [
      'env/VALKEY_URL must have no path other than a database number (/0), no query and no fragment (got "rediss://***@h:6379/cache?x=1")',
    ]);
  });

  it("wants S3_* all or nothing", () => {
    const got = problems({ ...valid, S3_BUCKET: "media", S3_REGION: "fsn1" });
    assert.deepEqual(
      got.map((l) => l.split(" ")[0]),
      ["env/S3_ENDPOINT", "env/S3_ACCESS_KEY_ID", "env/S3_SECRET_ACCESS_KEY"],
    );
    const s3 = parseConfig({ ...valid, S3_ENDPOINT: "https://fsn1.your-objectstorage.com", S3_BUCKET: "m", S3_REGION: "fsn1", S3_ACCESS_KEY_ID: "a", S3_SECRET_ACCESS_KEY: "b" }).s3;
    assert.equal(s3?.bucket, "m");
  });

  it("billing: off by default (one unlimited free plan), Stripe keys and plans validated without echoing secrets", () => {
    const c = parseConfig(valid);
    assert.equal(c.stripe, undefined);
    assert.deepEqual(c.plans, { free: { id: "free", name: "Free", limits: {} }, paid: [] });
    assert.equal(c.auditRetentionDays, 365);

    const plans = JSON.stringify([
      { id: "free", name: "Free", limits: { projects: 3 } },
      { id: "pro", name: "Pro", stripePriceId: "price_1Pro", limits: { projects: null, members: 20 } },
    ]);
    const on = parseConfig({ ...valid, BILLING_PLANS: plans, STRIPE_SECRET_KEY: "sk_test_abc123", STRIPE_WEBHOOK_SECRET: "whsec_abc123" });
    assert.equal(on.plans.free.limits.projects, 3);
    assert.deepEqual(on.plans.paid.map((p) => [p.id, p.stripePriceId]), [["pro", "price_1Pro"]]);
    assert.equal(on.stripe?.webhookSecret, "whsec_abc123");
    assert.equal(on.stripe?.apiBase, undefined);
    // The worker gets the API key only.
    assert.equal(parseConfig({ ...valid, BILLING_PLANS: plans, STRIPE_SECRET_KEY: "rk_live_abc" }).stripe?.webhookSecret, undefined);

    const got = problems({
      ...valid,
      STRIPE_SECRET_KEY: "pk_live_publishablekeyxyz",
      STRIPE_WEBHOOK_SECRET: "not-a-whsec-value",
      STRIPE_API_BASE: "http://127.0.0.1:12111/v1",
      AUDIT_RETENTION_DAYS: "7",
    });
    assert.deepEqual(got, [
      'env/STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_live_..., sk_test_..., rk_...); got one starting "pk_"',
      'env/STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_...); got one starting "not"',
      'env/STRIPE_API_BASE must be an http(s):// URL without a path, such as http://127.0.0.1:12111 (got "http://127.0.0.1:12111/v1")',
      'env/AUDIT_RETENTION_DAYS must be an integer from 30 to 36500 (got "7")',
    ]);
    assert.ok(!got.join("\n").includes("publishablekeyxyz"));
  });

  it("billing: BILLING_PLANS errors name the variable, the place and the rule", () => {
    const bad = (value: string) => problems({ ...valid, BILLING_PLANS: value, STRIPE_SECRET_KEY: "sk_test_x1" });
    assert.match(bad("{nope")[0]!, /^env\/BILLING_PLANS must be a JSON list of plans such as \[/);
    assert.match(bad('[{"id":"free","name":"Free","limits":{"projects":-1}}]')[0]!, /^env\/BILLING_PLANS must .*at \/0\/limits\/projects: /);
    assert.match(bad('[{"id":"free","name":"Free","limits":{"seats":3}}]')[0]!, /^env\/BILLING_PLANS must .*at \/0\/limits/);
    assert.deepEqual(bad('[{"id":"pro","name":"Pro","stripePriceId":"price_1","limits":{}}]'), [
      "env/BILLING_PLANS must have exactly one plan without stripePriceId (the free plan); got 0",
    ]);
    assert.deepEqual(bad('[{"id":"free","name":"F","limits":{}},{"id":"a","name":"A","stripePriceId":"price_1","limits":{}},{"id":"b","name":"B","stripePriceId":"price_1","limits":{}}]'), [
      'env/BILLING_PLANS must name each stripePriceId once; "price_1" is repeated',
    ]);
    assert.deepEqual(problems({ ...valid, BILLING_PLANS: '[{"id":"free","name":"F","limits":{}},{"id":"pro","name":"P","stripePriceId":"price_1","limits":{}}]' }), [
      "env/STRIPE_SECRET_KEY must be set when BILLING_PLANS has paid plans (pro)",
    ]);
  });

  it("makes the web entrypoint exit non-zero with the problems on stderr", function () {
    this.timeout(15000);
    const web = fileURLToPath(new URL("../src/web.ts", import.meta.url));
    const res = spawnSync(process.execPath, ["--import", "tsx", web], {
      env: { PATH: process.env.PATH, SECRET_KEY: "too-short", APP_URL: "not a url" },
      encoding: "utf8",
    });
    assert.equal(res.status, 78);
    assert.deepEqual(res.stderr.trim().split("\n"), [
      "env/DATABASE_URL must be set: a postgres:// URL",
      "env/SECRET_KEY must be at least 32 characters (got 9)",
      "env/APP_URL must be an http:// or https:// URL (got \"not a url\")",
    ]);
  });
});
