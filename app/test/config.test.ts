import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ConfigError, parseConfig } from "../src/core/config.js";

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

  it("wants S3_* all or nothing", () => {
    const got = problems({ ...valid, S3_BUCKET: "media", S3_REGION: "fsn1" });
    assert.deepEqual(
      got.map((l) => l.split(" ")[0]),
      ["env/S3_ENDPOINT", "env/S3_ACCESS_KEY_ID", "env/S3_SECRET_ACCESS_KEY"],
    );
    const s3 = parseConfig({ ...valid, S3_ENDPOINT: "https://fsn1.your-objectstorage.com", S3_BUCKET: "m", S3_REGION: "fsn1", S3_ACCESS_KEY_ID: "a", S3_SECRET_ACCESS_KEY: "b" }).s3;
    assert.equal(s3?.bucket, "m");
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
