import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BACKUP_PATHS,
  renderBackupFiles,
  validateBackupOptions,
  type BackupRenderOptions,
} from "../../provisioning/backup";
import { DEFAULTS } from "../../config/config";
import { BUCKET_NAME_RULE } from "../../config/validators";
import { RenderError } from "../../provisioning/errors";
import { isWorldReadable } from "../../provisioning/files";
import { VALID } from "./fixtures";
import { run, tempDir } from "./helpers";

const byPath = (opts: BackupRenderOptions) => new Map(renderBackupFiles(opts).map((f) => [f.path, f]));

describe("backup renderer", () => {
  it("renders the command, a root-only secret env file and the units", () => {
    const files = byPath(VALID);
    assert.deepEqual([...files.keys()].sort(), [
      "/etc/saas-vps/backup.env",
      "/etc/systemd/system/backup.service",
      "/etc/systemd/system/backup.timer",
      "/etc/systemd/system/restore-drill.service",
      "/etc/systemd/system/restore-drill.timer",
      "/usr/local/sbin/backup",
    ]);
    const env = files.get(BACKUP_PATHS.envFile)!;
    assert.equal(env.secret, true);
    assert.equal(env.mode, "0600");
    assert.equal(env.owner, "root:root");
    assert.equal(isWorldReadable(env.mode), false);
    // Secrets live in the env file only.
    for (const f of files.values()) {
      if (f.path === BACKUP_PATHS.envFile) continue;
      for (const secret of ["s3-secret-value", "generated-password-0123456789"]) {
        assert.ok(!f.content.includes(secret), `${f.path} contains a secret`);
      }
      assert.equal(f.secret, undefined, f.path);
    }
  });

  // Its bytes are in the goldens (test/golden/*/files/usr/local/sbin/backup); here, what makes it the shipped form.
  it("installs the command executable, in its shipped form: no comment lines but the provenance header and shellcheck directives", () => {
    const command = byPath(VALID).get(BACKUP_PATHS.command)!;
    assert.equal(command.mode, "0755");
    const lines = command.content.split("\n");
    assert.equal(lines[0], "#!/usr/bin/env bash");
    assert.match(lines[1], /^# Shipped without comments .*provisioning\/assets\/backup\/backup\.sh/);
    // Heredoc bodies (the help text, SQL) are data and kept; none of their lines starts with "#".
    const comments = lines.slice(2).filter((l) => /^\s*#/.test(l) && !/^\s*# shellcheck /.test(l));
    assert.deepEqual(comments, []);
  });

  it("schedules both timers persistently with a random delay, and wires OnFailure to the watchdog's notifier", () => {
    const files = byPath({ ...VALID, schedule: "*-*-* 01:30:00 UTC", drillSchedule: "Sat *-*-* 06:00:00 UTC" });
    const lines = (p: string) => files.get(`/etc/systemd/system/${p}`)!.content.split("\n");
    for (const [timer, onCalendar] of [
      ["backup.timer", "*-*-* 01:30:00 UTC"],
      ["restore-drill.timer", "Sat *-*-* 06:00:00 UTC"],
    ]) {
      assert.ok(lines(timer).includes(`OnCalendar=${onCalendar}`), timer);
      assert.ok(lines(timer).includes("Persistent=true"), timer);
      assert.ok(lines(timer).some((l) => /^RandomizedDelaySec=\d+min$/.test(l)), timer);
    }
    assert.ok(lines("backup.service").includes("ExecStart=/usr/local/sbin/backup now"));
    assert.ok(lines("restore-drill.service").includes("ExecStart=/usr/local/sbin/backup drill"));
    for (const svc of ["backup.service", "restore-drill.service"]) {
      assert.ok(lines(svc).includes("OnFailure=alert@%n.service"), svc);
    }
    assert.ok(byPath(VALID).get("/etc/systemd/system/restore-drill.timer")!.content.includes(`OnCalendar=${DEFAULTS.restoreDrillSchedule}`));
  });

  it("writes an env file that bash reads back exactly, whatever characters the secrets hold", async () => {
    const tricky = `it's "quoted" $HOME \`x\` \\ back; rm -rf /`;
    const opts = {
      ...VALID,
      encryptionPassword: tricky,
      bucket: { ...VALID.bucket, secretAccessKey: `a'b"c$d` },
      heartbeatUrl: "https://hc.example.com/ping/abc?x=1&y=2",
    };
    const env = byPath(opts).get(BACKUP_PATHS.envFile)!.content;
    const names = ["RESTIC_REPOSITORY", "RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "BACKUP_HEARTBEAT_URL", "BACKUP_RETENTION_DAYS", "BACKUP_MIGRATIONS_TABLE"];
    const dir = tempDir("backup-env-");
    const file = join(dir, "backup.env");
    writeFileSync(file, env);
    const script = `. "$1"; printf '%s\\0' ${names.map((n) => `"$${n}"`).join(" ")}`;
    const r = await run("bash", ["-c", script, "bash", file], { env: { PATH: process.env.PATH } });
    rmSync(dir, { recursive: true });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split("\0").slice(0, -1), [
      "s3:https://fsn1.your-objectstorage.com/acme-prod-backups/restic",
      tricky,
      `a'b"c$d`,
      "https://hc.example.com/ping/abc?x=1&y=2",
      "14",
      "pgmigrations",
    ]);
  });

  it("collects every problem in one error, each naming its field", () => {
    const bad = {
      ...VALID,
      schedule: "",
      retentionDays: 0,
      databaseName: "app; drop",
      bucket: { ...VALID.bucket, endpoint: "ftp://files.example.com", name: "Bad_Bucket" },
      heartbeatUrl: "not a url",
      migrationsTable: "a.b.c",
    };
    assert.throws(
      () => renderBackupFiles(bad),
      (e: unknown) => {
        assert.ok(e instanceof RenderError);
        assert.deepEqual(e.problems, [
          "backup: schedule is required and must be a non-empty string",
          "backup: retentionDays must be an integer >= 1; got 0",
          'backup: databaseName must be a plain PostgreSQL name (letter or _, then letters, digits, _ or -; at most 63); got "app; drop"',
          'backup: bucket.endpoint must be an http(s) URL; got "ftp://files.example.com"',
          `backup: bucket.name must be ${BUCKET_NAME_RULE}; got "Bad_Bucket"`,
          "backup: heartbeatUrl must be an http(s) URL",
          'backup: migrationsTable must be a table name, optionally schema.table; got "a.b.c"',
        ]);
        return true;
      },
    );
  });

  it("rejects a fractional retention, an endpoint with a path, and a short password", () => {
    assert.deepEqual(
      validateBackupOptions({
        ...VALID,
        retentionDays: 1.5,
        bucket: { ...VALID.bucket, endpoint: "https://s3.example.com/bucket" },
        encryptionPassword: "short",
      }),
      [
        "backup: retentionDays must be an integer >= 1; got 1.5",
        'backup: bucket.endpoint must be scheme://host[:port] only, without path, query or credentials; got "https://s3.example.com/bucket"',
        "backup: encryptionPassword must be at least 16 characters (use a generated secret)",
      ],
    );
    assert.deepEqual(validateBackupOptions({ ...VALID, retentionDays: 1, bucket: { ...VALID.bucket, endpoint: "http://127.0.0.1:9000" } }), []);
  });

  it("names a bad secret without ever printing it", () => {
    const secret = "super-secret-value\nwith a newline";
    const problems = validateBackupOptions({
      ...VALID,
      encryptionPassword: secret,
      bucket: { ...VALID.bucket, secretAccessKey: secret },
    });
    assert.deepEqual(problems, [
      "backup: bucket.secretAccessKey must not contain newlines or control characters",
      "backup: encryptionPassword must not contain newlines or control characters",
    ]);
    assert.ok(!problems.join("\n").includes("super-secret-value"));
  });
});
