/**
 * The scripts the deploy, rollback and preview workflows run (cli/ci/*.sh, cli/checkDeploySecrets.ts),
 * run for real here: bash, jq, git and the migration linter; only the GitHub runner is missing.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { missingSecrets, neededSecrets } from "../cli/lib/deploySecrets";
import { run, tempDir } from "./support/tools";

const ROOT = join(__dirname, "..");
const CI = join(ROOT, "cli", "ci");

describe("deploy scripts: run summary and the release tool's reason on failure", () => {
  it("deploy-summary.sh: the release id and the outputs that matter, never a secret output", () => {
    const outputs = join(tempDir("deploy-summary"), "outputs.json");
    writeFileSync(outputs, JSON.stringify({
      provider: "hetzner", stage: "separated", ipv4: "203.0.113.10", url: "https://app.example.com", releaseId: "0123456789abcdef",
      releaseSshTargets: { app: "admin@203.0.113.10", worker: "admin@203.0.113.11" },
      backupEncryptionPassword: "[secret]", backupSecretAccessKey: "[secret]", uploadsBucket: null,
    }));
    const result = run("bash", [join(CI, "deploy-summary.sh"), "prod", outputs]);
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.split("\n");
    assert.equal(lines[0], "### prod: release 0123456789abcdef");
    assert.ok(lines.includes("| releaseId | `0123456789abcdef` |"));
    assert.ok(lines.includes("| url | `https://app.example.com` |"));
    assert.ok(lines.includes('| releaseSshTargets | `{"app":"admin@203.0.113.10","worker":"admin@203.0.113.11"}` |'));
    assert.doesNotMatch(result.stdout, /secret|uploadsBucket/i);
  });

  it("release-failure.sh: the release tool's own lines, once each, as annotations and summary", () => {
    // What pulumi prints for a failed command:remote:Command with logging stdoutAndStderr: the
    // output as diagnostics, then again inside the error, quoted with \n for newlines.
    const releaseScript = readFileSync(join(ROOT, "provisioning", "assets", "release", "release"), "utf8");
    assert.match(releaseScript, /printf 'release: FAILED: %s\\nrelease: rolled back; %s is serving\\n'/, "the release tool's failure lines changed: update release-failure.sh");
    const log = join(tempDir("release-failure"), "up.log");
    writeFileSync(log, [
      "  command:remote:Command (saas-prod-app-release):",
      "    release: FAILED: web@3002 did not answer /health with release fedcba9876543210 within 60s",
      "    release: rolled back; 0123456789abcdef is serving",
      "",
      '    error: Process exited with status 1: running "sudo /usr/local/sbin/release x.tar.gz":\\nrelease: FAILED: web@3002 did not answer /health with release fedcba9876543210 within 60s\\nrelease: rolled back; 0123456789abcdef is serving\\n',
    ].join("\n"));
    const result = run("bash", [join(CI, "release-failure.sh"), "prod", log]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, [
      "::error title=Release failed on prod::release: FAILED: web@3002 did not answer /health with release fedcba9876543210 within 60s",
      "::error title=Release failed on prod::release: rolled back; 0123456789abcdef is serving",
      "",
    ].join("\n"));
    assert.match(result.stdout, /^### prod: deploy failed\n\n- `release: FAILED: web@3002 [^`]+`\n- `release: rolled back; 0123456789abcdef is serving`\n$/);
  });

  it("release-failure.sh: without a release line, pulumi's own error lines", () => {
    const log = join(tempDir("release-failure"), "up.log");
    writeFileSync(log, "Updating (staging)\n    error: digitalocean: Unable to authenticate you\nerror: update failed\n");
    const result = run("bash", [join(CI, "release-failure.sh"), "staging", log]);
    assert.equal(result.status, 0);
    assert.match(result.stderr, /^::error title=pulumi up failed on staging::error: digitalocean: Unable to authenticate you$/m);
    assert.match(result.stdout, /- `error: update failed`/);
  });

  it("rollback.sh refuses a release id that is not 16 hex digits before any SSH (exit 2)", () => {
    const targets = join(tempDir("rollback"), "targets.json");
    writeFileSync(targets, JSON.stringify({ app: "admin@203.0.113.10" }));
    for (const id of ["abc; reboot", "0123456789ABCDEF", "0123456789abcde"]) {
      // No PATH: neither jq nor ssh could run, so the refusal comes first.
      const result = run("/bin/bash", [join(CI, "rollback.sh"), targets, id], { env: { ...process.env, PATH: "/nonexistent" } });
      assert.equal(result.status, 2, `${id}: ${result.stderr}`);
      assert.match(result.stderr, /is not a release id/);
    }
  });
});

describe("migration-review.sh: the migrations a pull request adds, for its comment", function () {
  this.timeout(120_000);

  /** A git repository with the app's migration as the base and `add` (fixture name → new file) on top. */
  function pullRequest(add: Record<string, string>, editInit = false): { dir: string; base: string } {
    const dir = tempDir("migration-review");
    const git = (...args: string[]) => {
      const r = run("git", args, { cwd: dir });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    git("init", "-q");
    git("config", "user.email", "ci@example.com");
    git("config", "user.name", "ci");
    mkdirSync(join(dir, "app", "migrations"), { recursive: true });
    copyFileSync(join(ROOT, "app", "migrations", "001_init.sql"), join(dir, "app", "migrations", "001_init.sql"));
    git("add", "-A");
    git("commit", "-qm", "base");
    const base = git("rev-parse", "HEAD");
    for (const [fixture, name] of Object.entries(add)) copyFileSync(join(ROOT, "test", "fixtures", "migrations", fixture), join(dir, "app", "migrations", name));
    if (editInit) writeFileSync(join(dir, "app", "migrations", "001_init.sql"), "-- edited\n", { flag: "a" });
    git("add", "-A");
    git("commit", "-q", "--allow-empty", "-m", "pull request");
    return { dir, base };
  }

  it("lists an unsafe migration it adds with its findings, names an edited old one, exit 1", () => {
    const { dir, base } = pullRequest({ "unsafe/drop_column.sql": "002_drop_name.sql", "safe/add_column_with_default.sql": "003_archived.sql" }, true);
    const result = run("bash", [join(CI, "migration-review.sh"), base, join(dir, "comment.md")], { cwd: dir });
    assert.equal(result.status, 1, result.stdout + result.stderr);
    const comment = readFileSync(join(dir, "comment.md"), "utf8");
    assert.match(comment, /^<!-- saas-vps:migration-review -->\n/);
    assert.match(comment, /- `app\/migrations\/002_drop_name\.sql`\n- `app\/migrations\/003_archived\.sql`\n/);
    assert.match(comment, /app\/migrations\/002_drop_name\.sql:2: ban-drop-column: /);
    assert.doesNotMatch(comment, /003_archived\.sql:\d+:/);
    assert.match(comment, /Existing migrations changed[^\n]*\n\n- `app\/migrations\/001_init\.sql`/);
  });

  it("a pull request adding a safe migration: listed, no findings, exit 0; none added: says so", () => {
    const safe = pullRequest({ "safe/foreign_key_not_valid.sql": "002_owner.sql" });
    const ok = run("bash", [join(CI, "migration-review.sh"), safe.base, join(safe.dir, "comment.md")], { cwd: safe.dir });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(readFileSync(join(safe.dir, "comment.md"), "utf8"), /- `app\/migrations\/002_owner\.sql`\n\n\*\*lint:migrations: no findings\.\*\*/);
    const none = pullRequest({});
    const quiet = run("bash", [join(CI, "migration-review.sh"), none.base, join(none.dir, "comment.md")], { cwd: none.dir });
    assert.equal(quiet.status, 0, quiet.stdout + quiet.stderr);
    assert.match(readFileSync(join(none.dir, "comment.md"), "utf8"), /This pull request adds no migration/);
  });
});

describe("deploy:check-secrets (what a stack's deploy or rollback needs)", function () {
  // Two spawns of tsx, each loading the config parser: minutes on a loaded 2-core machine.
  this.timeout(300_000);

  function stackFile(body: string): string {
    const file = join(tempDir("deploy-secrets"), "Pulumi.x.yaml");
    writeFileSync(file, body);
    return file;
  }
  const KEYS = [
    "  saas-vps:sshPublicKeys:",
    "    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVXFYK2vjsGfH6+8RIcqpGq71+8HcRDZONLfjwL/4GU you@laptop",
    "  saas-vps:sshAllowedCidrs:",
    "    - 203.0.113.7/32",
    "  saas-vps:plainHttp: true",
    "  saas-vps:alertEmails:",
    "    - ops@example.com",
  ].join("\n");
  const SECURE = "\n    secure: v1:AAAA:BBBB";

  it("Hetzner servers with backups in Spaces, nothing in the stack: every token, the Spaces keys and the SSH key", () => {
    const file = stackFile(`config:\n  saas-vps:provider: hetzner\n${KEYS}\n  saas-vps:backupBucketProvider: digitalocean\n  saas-vps:backupBucketRegion: ams3\n`);
    assert.deepEqual(missingSecrets(file, "deploy", {}).map((m) => m.secret), [
      "PULUMI_ACCESS_TOKEN", "HCLOUD_TOKEN", "DIGITALOCEAN_TOKEN", "SPACES_ACCESS_KEY_ID", "SPACES_SECRET_ACCESS_KEY", "SSH_PRIVATE_KEY",
    ]);
  });

  it("Hetzner servers and buckets need DigitalOcean's token only for the outside checks, and not with monitoring none", () => {
    const body = (monitoring: string) =>
      `config:\n  saas-vps:provider: hetzner\n${monitoring === "none" ? KEYS.replace(/\n  saas-vps:alertEmails:\n    - \S+/, "") : KEYS}\n  saas-vps:monitoring: ${monitoring}\n  saas-vps:backupAccessKeyId: KEYID\n  saas-vps:backupSecretAccessKey:${SECURE}\n`;
    const watched = missingSecrets(stackFile(body("digitalocean")), "deploy", {});
    assert.deepEqual(watched.map((m) => m.secret), ["PULUMI_ACCESS_TOKEN", "HCLOUD_TOKEN", "DIGITALOCEAN_TOKEN", "SSH_PRIVATE_KEY"]);
    assert.match(watched.find((m) => m.secret === "DIGITALOCEAN_TOKEN")!.why, /uptime checks and alerts/);
    assert.deepEqual(missingSecrets(stackFile(body("none")), "deploy", {}).map((m) => m.secret), ["PULUMI_ACCESS_TOKEN", "HCLOUD_TOKEN", "SSH_PRIVATE_KEY"]);
  });

  it("a credential the stack holds as a secret, or a set environment variable, is not missing", () => {
    const file = stackFile(`config:\n  saas-vps:provider: digitalocean\n${KEYS}\n  digitalocean:token:${SECURE}\n  saas-vps:sshPrivateKey:${SECURE}\n  digitalocean:spacesAccessId:${SECURE}\n`);
    assert.deepEqual(missingSecrets(file, "deploy", {}).map((m) => m.secret), ["PULUMI_ACCESS_TOKEN", "SPACES_SECRET_ACCESS_KEY"]);
    assert.deepEqual(missingSecrets(file, "deploy", { SPACES_SECRET_ACCESS_KEY: "set" }).map((m) => m.secret), ["PULUMI_ACCESS_TOKEN"]);
    assert.deepEqual(missingSecrets(file, "deploy", { PULUMI_ACCESS_TOKEN: "set", SPACES_SECRET_ACCESS_KEY: "set" }), []);
    assert.deepEqual(missingSecrets(file, "deploy", { PULUMI_ACCESS_TOKEN: "  ", SPACES_SECRET_ACCESS_KEY: "set" }).map((m) => m.secret), ["PULUMI_ACCESS_TOKEN"]);
  });

  it("a passphrase stack needs PULUMI_CONFIG_PASSPHRASE; a rollback needs the SSH key even when the stack holds one", () => {
    const file = stackFile(`encryptionsalt: v1:abc=:v1:def:ghi\nconfig:\n  saas-vps:provider: digitalocean\n${KEYS}\n  saas-vps:sshPrivateKey:${SECURE}\n`);
    assert.deepEqual(neededSecrets(file, "rollback").map((m) => m.secret), ["PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "SSH_PRIVATE_KEY"]);
    assert.ok(neededSecrets(file, "deploy").some((m) => m.secret === "PULUMI_CONFIG_PASSPHRASE"));
  });

  it("the command stops (exit 1) naming each missing secret, and passes (exit 0) with them set", () => {
    const tsx = join(ROOT, "node_modules", ".bin", "tsx");
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/TOKEN|PASSPHRASE|SPACES|SSH_PRIVATE_KEY|GITHUB_ACTIONS/.test(k)));
    const missing = run(tsx, [join(ROOT, "cli", "checkDeploySecrets.ts"), "--stack", "staging", "--for", "deploy"], { cwd: ROOT, env: { ...env, GITHUB_ACTIONS: "true" } });
    assert.equal(missing.status, 1, missing.stdout + missing.stderr);
    assert.match(missing.stderr, /^::error title=Missing secret PULUMI_ACCESS_TOKEN::stack staging needs the repository secret PULUMI_ACCESS_TOKEN/m);
    assert.match(missing.stderr, /^::error title=Missing secret SSH_PRIVATE_KEY::/m);
    assert.doesNotMatch(missing.stderr, /DIGITALOCEAN_TOKEN/, "staging holds digitalocean:token itself");
    // Its backups go to a Spaces bucket it creates, and the stack file holds no Spaces keys.
    assert.match(missing.stderr, /^::error title=Missing secret SPACES_ACCESS_KEY_ID::/m);
    assert.match(missing.stderr, /deploy of staging stopped before touching the stack: 4 secret\(s\) missing/);
    const all = { PULUMI_ACCESS_TOKEN: "set", SSH_PRIVATE_KEY: "set", SPACES_ACCESS_KEY_ID: "set", SPACES_SECRET_ACCESS_KEY: "set" };
    const ok = run(tsx, [join(ROOT, "cli", "checkDeploySecrets.ts"), "--stack", "staging", "--for", "deploy"], { cwd: ROOT, env: { ...env, ...all } });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  });
});
