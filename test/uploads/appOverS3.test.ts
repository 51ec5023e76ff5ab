/**
 * Uploads in object storage, end to end on real parts: the app.env our renderer writes for a stack
 * whose uploads go to a bucket (here an existing S3 bucket: s3rver over TLS, as real stores are
 * HTTPS), handed to the reference app's real web process (app/src/web.ts) the way systemd hands
 * it over, on a scratch PostgreSQL. An upload lands in the bucket and nowhere on the server's
 * disk; reading it back and deleting it go through the bucket too.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../cli/lib/ports";
import { parseStackConfig } from "../../config/config";
import { planStack } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { renderServer } from "../../provisioning/server";
import { REPO_ROOT, runOk, startPg, startS3, tempDir, type S3Server, type ScratchPg } from "../backup/helpers";
import { minimalRaw } from "../support/fixtures";

const APP_DIR = join(REPO_ROOT, "app");
const TSX = join(REPO_ROOT, "node_modules", ".bin", "tsx");
const BUCKET = "acme-uploads";

/** KEY=value lines as systemd's EnvironmentFile reads them (our values are never quoted). */
function readEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** The app.env the app server gets for a stack with its uploads in the given S3 bucket. */
function renderedAppEnv(s3: S3Server): Record<string, string> {
  const config = parseStackConfig({
    ...minimalRaw("hetzner"),
    uploadsStorage: "bucket",
    uploadsBucketProvider: "s3",
    uploadsBucketEndpoint: s3.endpoint,
    uploadsBucketName: BUCKET,
    uploadsAccessKeyId: "S3RVER",
    uploadsSecretAccessKey: "S3RVER",
  });
  if (config.uploads.storage !== "bucket") throw new Error("uploads are not in a bucket");
  // What the uploads component resolves a given bucket to (components/objectBucket.ts).
  const { endpoint, name, region, accessKeyId, secretAccessKey } = config.uploads.bucket;
  const uploadsBucket = { endpoint, name: name!, region, accessKeyId: accessKeyId!, secretAccessKey: secretAccessKey! };
  const [server] = planStack(config).servers;
  const { files } = renderServer(buildServerInput(config, server, { machine: "hetzner", ...PLACEHOLDER_CONTEXT, uploadsBucket }));
  return readEnvFile(files.find((f) => f.path === "/etc/saas-vps/app.env")!.content);
}

async function waitForHealth(url: string, web: ChildProcess, output: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (web.exitCode !== null) throw new Error(`web exited ${web.exitCode}:\n${output()}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`web never answered /health:\n${output()}`);
}

describe("uploads in object storage: the rendered app.env, the real app, an S3 server over TLS", function () {
  this.timeout(180_000);
  let pg: ScratchPg;
  let s3: S3Server;
  let web: ChildProcess;
  let url: string;
  let workDir: string;
  let env: Record<string, string>;
  let output = "";

  before(async () => {
    [pg, s3] = await Promise.all([startPg(), startS3([BUCKET])]);
    env = renderedAppEnv(s3);
    workDir = tempDir("uploads-app-");
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // Metrics are not what this test is about, and a free port plus the rendered offset may pass 65535.
    const { METRICS_PORT_OFFSET: _metrics, ...appEnv } = env;
    const processEnv = {
      PATH: process.env.PATH!,
      ...appEnv,
      // The server's database and URL are not what this test is about.
      DATABASE_URL: `postgres://postgres@${pg.host}:${pg.port}/postgres`,
      APP_URL: url,
      HOST: "127.0.0.1",
      PORT: String(port),
      // The test server's certificate is self-signed; a real store's is publicly trusted.
      NODE_EXTRA_CA_CERTS: s3.certFile,
    };
    await runOk(TSX, [join(APP_DIR, "src", "migrate.ts")], { env: processEnv, cwd: workDir });
    // cwd is where the app would put ./uploads were UPLOAD_DIR its storage.
    web = spawn(TSX, [join(APP_DIR, "src", "web.ts")], { env: processEnv, cwd: workDir, stdio: ["ignore", "pipe", "pipe"] });
    web.stdout!.on("data", (b: Buffer) => (output += b));
    web.stderr!.on("data", (b: Buffer) => (output += b));
    await waitForHealth(url, web, () => output);
  });

  after(async () => {
    if (web && web.exitCode === null) {
      web.kill("SIGTERM");
      await new Promise((r) => web.once("exit", r));
    }
    await Promise.all([s3?.close(), pg?.stop()]);
  });

  it("app.env names the bucket and carries no upload directory", () => {
    assert.deepEqual(
      Object.keys(env).filter((k) => k.startsWith("S3_") || k === "UPLOAD_DIR").sort(),
      ["S3_ACCESS_KEY_ID", "S3_BUCKET", "S3_ENDPOINT", "S3_REGION", "S3_SECRET_ACCESS_KEY"],
    );
    assert.equal(env.S3_ENDPOINT, s3.endpoint);
    assert.equal(env.S3_REGION, "us-east-1");
    assert.match(output, /"storage":"s3"/, "the app does not say it stores in S3");
  });

  it("an upload lands in the bucket, not on disk; it reads back and deletes through the bucket", async () => {
    const register = await fetch(`${url}/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "uploader@example.test", password: "correct horse battery", name: "uploader" }),
    });
    assert.equal(register.status, 202, await register.clone().text());
    // The address is confirmed with SQL (the verification token is only in the mail), then the owner logs in.
    await pg.psql("postgres", "UPDATE users SET email_verified_at = now() WHERE email = 'uploader@example.test'");
    const organization = { id: (await pg.psql("postgres", "SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'uploader@example.test'")).trim() };
    const login = await fetch(`${url}/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "uploader@example.test", password: "correct horse battery" }),
    });
    assert.equal(login.status, 200, await login.clone().text());
    const { token } = (await login.json()) as { token: string };
    const auth = { authorization: `Bearer ${token}` };

    const bytes = Buffer.from(`report ${"x".repeat(50_000)} end`);
    const form = new FormData();
    form.append("file", new Blob([bytes], { type: "text/plain" }), "report.txt");
    const upload = await fetch(`${url}/orgs/${organization.id}/files`, { method: "POST", headers: auth, body: form });
    assert.equal(upload.status, 201, await upload.clone().text());
    const { file } = (await upload.json()) as { file: { id: string } };

    const stored = s3.objects(BUCKET);
    assert.deepEqual(stored.map((o) => o.key), [`${organization.id}/${file.id}`]);
    assert.deepEqual(readFileSync(stored[0].file), bytes);
    assert.equal(existsSync(join(workDir, "uploads")), false, "the app wrote uploads to local disk");

    const content = await fetch(`${url}/orgs/${organization.id}/files/${file.id}/content`, { headers: auth });
    assert.equal(content.status, 200);
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);

    const removed = await fetch(`${url}/orgs/${organization.id}/files/${file.id}`, { method: "DELETE", headers: auth });
    assert.equal(removed.status, 204);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});
