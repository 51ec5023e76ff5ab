/** `npm run render` end to end, as a user runs it: both example stacks, and a bad key. */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run, tempDir } from "./support/tools";

const ROOT = join(__dirname, "..");
const render = (...args: string[]) => run("npm", ["run", "-s", "render", "--", ...args], { cwd: ROOT });

describe("npm run render", function () {
  this.timeout(60_000);

  for (const stack of ["staging", "prod"]) {
    it(`writes user-data and every installed file for stack ${stack}`, () => {
      const out = tempDir(`render-${stack}`);
      const result = render("--stack", stack, "--out", out);
      assert.equal(result.status, 0, result.stderr);
      const summary = /^app: user-data \d+ bytes \(\d+\.\d% of Hetzner's 32768\), (\d+) files, (\d+) day-2 pushes -> /m.exec(result.stdout);
      assert.ok(summary, result.stdout);
      assert.match(result.stdout, /^app: only by push: (none|(\/\S+ ?)+)$/m);
      // Every file the server gets is on disk: as many as the summary counts.
      assert.equal(run("find", [join(out, "app", "files"), "-type", "f"]).stdout.trim().split("\n").length, Number(summary[1]));
      const userData = readFileSync(join(out, "app", "user-data.yaml"), "utf8");
      assert.ok(userData.startsWith("#cloud-config\n"));
      for (const path of ["etc/nginx/conf.d/saas-vps.conf", "etc/systemd/system/web@.service", "etc/saas-vps/app.env", "usr/local/lib/saas-vps/bootstrap"]) {
        assert.ok(existsSync(join(out, "app", "files", path)), `missing ${path}`);
      }
      // Secrets on disk: stack-file secrets became placeholders, generated ones are the mocks' FAKE values.
      const env = readFileSync(join(out, "app", "files", "etc/saas-vps/app.env"), "utf8");
      assert.match(env, /^SECRET_KEY=fake[0-9a-f]+$/m);
      assert.equal(statSync(join(out, "app", "files", "etc/saas-vps/app.env")).mode & 0o077, 0, "rendered files are readable by others");
    });
  }

  it("renders the example stack of stage scaled: every server the plan has", async () => {
    const out = tempDir("render-scaled");
    const result = render("--stack", "scaled", "--out", out);
    assert.equal(result.status, 0, result.stderr);
    // The plan decides the servers: two app servers behind the balancer, the worker, the db server.
    assert.deepEqual([...result.stdout.matchAll(/^([\w-]+): user-data /gm)].map((m) => m[1]).sort(), ["app", "app-2", "cache", "db", "worker"]);
    assert.ok(existsSync(join(out, "app-2", "user-data.yaml")));
  });

  it("names a wrong key in a stack file and exits non-zero before writing anything", () => {
    const stackFile = join(ROOT, "Pulumi.render-test-bad.yaml");
    writeFileSync(stackFile, readFileSync(join(ROOT, "Pulumi.staging.yaml"), "utf8").replace("saas-vps:region: fra1", "saas-vps:regoin: fra1").replace("saas-vps:webInstances: 2", "saas-vps:webInstances: 99"));
    try {
      const out = tempDir("render-bad");
      const result = render("--stack", "render-test-bad", "--out", out);
      assert.equal(result.status, 1);
      assert.equal(
        result.stderr.trim(),
        [
          "error: stack render-test-bad config is invalid:",
          "saas-vps:regoin: unknown key; did you mean saas-vps:region?",
          'saas-vps:webInstances: must be a whole number from 1 to 16; got "99"',
        ].join("\n"),
      );
      assert.ok(!existsSync(join(out, "app")));
    } finally {
      rmSync(stackFile, { force: true });
    }
  });

  it("takes credentials with --set-secret, and refuses them in plain --set", () => {
    const args = ["--stack", "staging", "--set", "backupBucketProvider=s3", "--set", "backupBucketEndpoint=https://s3.example.com", "--set", "backupBucketName=my-backups", "--set", "backupAccessKeyId=AKID"];
    const plain = render(...args, "--set", "backupSecretAccessKey=s3cr3t", "--out", tempDir("render-plain"));
    assert.equal(plain.status, 1);
    assert.match(plain.stderr, /saas-vps:backupSecretAccessKey: is a credential and is stored in plain text/);
    const out = tempDir("render-secret");
    const secret = render(...args, "--set-secret", "backupSecretAccessKey=s3cr3t", "--out", out);
    assert.equal(secret.status, 0, secret.stderr);
    assert.match(readFileSync(join(out, "app", "files", "etc/saas-vps/backup.env"), "utf8"), /^AWS_SECRET_ACCESS_KEY='s3cr3t'$/m);
  });

  it("warns loudly, last on screen, when nothing watches the stack from outside (monitoring none)", () => {
    const result = render("--stack", "staging", "--set", "monitoring=none", "--out", tempDir("render-unwatched"));
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /^WARNING: saas-vps:monitoring is none: NOTHING watches this stack from outside\. /m);
    const watched = render("--stack", "staging", "--out", tempDir("render-watched"));
    assert.equal(watched.status, 0, watched.stderr);
    assert.doesNotMatch(watched.stderr, /saas-vps:monitoring/);
  });

  it("answers an unknown flag with the flag and the usage text, exit 2", () => {
    const result = render("--stack", "staging", "--out", tempDir("render-flag"), "--outt", "x");
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^render: Unknown option '--outt'/);
    assert.match(result.stderr, /^usage: npm run render -- --stack <name> --out <dir>/m);
  });

  it("says which stacks exist when the stack file is missing", () => {
    const result = render("--stack", "nope", "--out", tempDir("render-missing"));
    assert.equal(result.status, 1);
    assert.match(result.stderr, /no stack file Pulumi\.nope\.yaml; stacks here: managed, prod, scaled, separated, staging/);
  });
});
