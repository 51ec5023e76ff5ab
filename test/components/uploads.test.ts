/**
 * The uploads bucket under Pulumi mocks: created private on Spaces with a key that reaches only
 * it, given on Hetzner and S3; its keys stay secret; every server that runs the app gets the
 * app's S3 settings in its 0600 app.env, and no upload directory.
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { readUserDataBundle } from "../../cli/lib/renderStack";
import { isWrappedSecret, unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { runsApp } from "../../provisioning/roles/index";
import { minimalRaw } from "../support/fixtures";
import { pushOf, runProgram, type MockRun } from "../support/mockProgram";

const SPACES_BUCKET = "digitalocean:index/spacesBucket:SpacesBucket";
const SPACES_KEY = "digitalocean:index/spacesKey:SpacesKey";

/** Environment lines of a file as a map. */
function envOf(text: string): Map<string, string> {
  return new Map(text.split("\n").filter((l) => /^[A-Z][A-Z0-9_]*=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

/** What a server's day-2 push installs at `path` (content unwrapped), and whether it travelled as a secret. */
function pushed(run: MockRun, server: string, path: string): { content: string; secret: boolean } {
  const push = pushOf(run, server, path);
  return { content: unwrapSecrets(push.inputs.stdin), secret: isWrappedSecret(push.inputs.stdin) };
}

describe("components under Pulumi mocks: the uploads bucket", function () {
  this.timeout(120_000);

  describe("on Spaces (created), beside a Spaces backup bucket", () => {
    let run: MockRun;
    before(async () => {
      run = await runProgram({ ...minimalRaw("digitalocean"), uploadsStorage: "bucket" });
    });

    const uploadsBucket = () => run.mocks.ofType(SPACES_BUCKET).find((b) => b.name === "saas-test-uploads-bucket")!;

    it("creates it private (no public reads or listing), unversioned, protected, in the server's region", () => {
      assert.equal(run.mocks.ofType(SPACES_BUCKET).length, 2, "a backup and an uploads bucket");
      const bucket = uploadsBucket();
      assert.ok(bucket, "no uploads bucket");
      assert.equal(bucket.inputs.acl, "private");
      assert.equal(bucket.inputs.region, "fra1");
      assert.match(bucket.inputs.name, /^saas-vps-test-uploads-[a-z0-9]{6}$/);
      assert.equal(bucket.inputs.versioning, undefined);
      assert.deepEqual(bucket.inputs.lifecycleRules, [{ enabled: true, abortIncompleteMultipartUploadDays: 7 }]);
      assert.equal(run.options.get("saas-test-uploads-bucket")?.protect, true);
      assert.match(run.urns.get("saas-test-uploads-bucket")!, /saas-vps:uploads:UploadsBucket\$digitalocean:index\/spacesBucket:SpacesBucket::/);
    });

    it("mints the app a key that reaches the uploads bucket only, and keeps it secret", async () => {
      const keys = run.mocks.ofType(SPACES_KEY);
      const appKey = keys.find((k) => k.name === "saas-test-uploads-key")!;
      assert.ok(appKey, `no uploads key among ${keys.map((k) => k.name).join(", ")}`);
      const bucketName = uploadsBucket().inputs.name;
      assert.deepEqual(appKey.inputs.grants, [{ bucket: bucketName, permission: "readwrite" }]);
      assert.equal(appKey.inputs.name, `${bucketName}-app`);
      const backupKey = keys.find((k) => k.name === "saas-test-backups-key")!;
      assert.ok(backupKey.inputs.grants.every((g: { bucket: string }) => g.bucket !== bucketName), "the backup key reaches the uploads bucket");
      assert.equal(await pulumi.isSecret(run.outputs.uploadsAccessKeyId!), true);
      assert.equal(await pulumi.isSecret(run.outputs.uploadsSecretAccessKey!), true);
      assert.equal(await pulumi.isSecret(run.outputs.uploadsBucket!), false);
      assert.equal(await valueOf(run.outputs.uploadsBucket!), bucketName);
      assert.equal(await valueOf(run.outputs.uploadsEndpoint!), "https://fra1.digitaloceanspaces.com");
    });

    it("hands the app its S3 settings in app.env (0600, pushed as a secret), and no upload directory", async () => {
      const env = pushed(run, "app", "/etc/saas-vps/app.env");
      assert.equal(env.secret, true, "app.env travelled in clear");
      const vars = envOf(env.content);
      assert.equal(vars.get("S3_ENDPOINT"), "https://fra1.digitaloceanspaces.com");
      assert.equal(vars.get("S3_BUCKET"), uploadsBucket().inputs.name);
      assert.equal(vars.get("S3_REGION"), "fra1");
      assert.equal(vars.get("S3_ACCESS_KEY_ID"), unwrapSecrets(await valueOf(run.outputs.uploadsAccessKeyId!)));
      assert.equal(vars.get("S3_SECRET_ACCESS_KEY"), unwrapSecrets(await valueOf(run.outputs.uploadsSecretAccessKey!)));
      assert.notEqual(vars.get("S3_ACCESS_KEY_ID"), unwrapSecrets(await valueOf(run.outputs.backupAccessKeyId)), "the app got the backup key");
      assert.equal(vars.has("UPLOAD_DIR"), false);
      const server = run.mocks.ofType("digitalocean:index/droplet:Droplet")[0];
      const bundle = readUserDataBundle(unwrapSecrets(server.inputs.userData));
      assert.deepEqual({ mode: bundle.get("/etc/saas-vps/app.env")!.mode, owner: bundle.get("/etc/saas-vps/app.env")!.owner }, { mode: "0600", owner: "root:root" });
      assert.equal(envOf(pushed(run, "app", "/etc/saas-vps/bootstrap.env").content).has("UPLOAD_DIR"), false);
      const web = pushed(run, "app", "/etc/systemd/system/web@.service").content;
      assert.match(web, /^ReadWritePaths=\/srv\/app\/shared$/m);
    });
  });

  describe("on Hetzner Object Storage (given keys)", () => {
    let run: MockRun;
    before(async () => {
      run = await runProgram(
        { ...minimalRaw("hetzner"), uploadsStorage: "bucket", uploadsBucketRegion: "nbg1", uploadsAccessKeyId: "UPLOADSKEYID", uploadsSecretAccessKey: "uploads-secret-key" },
        ["backupSecretAccessKey", "uploadsSecretAccessKey"],
      );
    });

    it("creates nothing at the provider, names the derived bucket, keeps the given keys secret and hands them to the app", async () => {
      assert.equal(run.mocks.ofType(SPACES_BUCKET).length, 0);
      assert.equal(await valueOf(run.outputs.uploadsBucket!), "saas-vps-test-uploads");
      assert.equal(await pulumi.isSecret(run.outputs.uploadsSecretAccessKey!), true);
      assert.equal(await pulumi.isSecret(run.outputs.uploadsAccessKeyId!), true);
      const vars = envOf(pushed(run, "app", "/etc/saas-vps/app.env").content);
      assert.deepEqual(
        ["S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"].map((k) => vars.get(k)),
        ["https://nbg1.your-objectstorage.com", "saas-vps-test-uploads", "nbg1", "UPLOADSKEYID", "uploads-secret-key"],
      );
    });
  });

  describe("with uploads on the volume (mvp's default)", () => {
    it("declares no uploads bucket and exports none", async () => {
      const run = await runProgram(minimalRaw("digitalocean"));
      assert.deepEqual(run.mocks.ofType(SPACES_BUCKET).map((b) => b.name), ["saas-test-backups-bucket"]);
      assert.equal(run.outputs.uploadsBucket, undefined);
      const vars = envOf(pushed(run, "app", "/etc/saas-vps/app.env").content);
      assert.equal(vars.get("UPLOAD_DIR"), "/srv/data/uploads");
      assert.ok(![...vars.keys()].some((k) => k.startsWith("S3_")));
    });
  });

  describe("stage separated", () => {
    const config = parseStackConfig({ ...minimalRaw("digitalocean"), stage: "separated" });
    const plan = planStack(config);

    it("plans the uploads bucket and hands it to the app on every server that runs it (app and worker), none to db", () => {
      assert.deepEqual(plan.uploadsBucket, config.uploads.storage === "bucket" ? config.uploads.bucket : undefined);
      assert.ok(plan.uploadsBucket, "no uploads bucket planned");
      const appServers = plan.servers.filter((s) => runsApp(s.roles)).map((s) => s.name);
      assert.deepEqual(appServers, ["app", "worker"]);
      for (const server of plan.servers) {
        const input = buildServerInput(config, server, { machine: "digitalocean", ...PLACEHOLDER_CONTEXT }, plan);
        if (appServers.includes(server.name)) assert.deepEqual(input.app?.uploads, { storage: "bucket", bucket: PLACEHOLDER_CONTEXT.uploadsBucket }, server.name);
        else assert.equal(input.app, undefined, server.name);
      }
    });

    it("renders S3_* into app.env on the app and worker servers (the whole program under mocks)", async () => {
      const run = await runProgram({ ...minimalRaw("digitalocean"), stage: "separated" });
      const bucketName = run.mocks.ofType(SPACES_BUCKET).find((b) => b.name === "saas-test-uploads-bucket")!.inputs.name;
      for (const server of ["app", "worker"]) {
        const env = pushed(run, server, "/etc/saas-vps/app.env");
        assert.equal(env.secret, true, `${server}: app.env travelled in clear`);
        assert.equal(envOf(env.content).get("S3_BUCKET"), bucketName, server);
        assert.equal(envOf(env.content).has("UPLOAD_DIR"), false, server);
      }
    });
  });
});
