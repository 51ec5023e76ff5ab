import assert from "node:assert/strict";
import { readdirSync, existsSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import S3rver from "s3rver";
import { register, startTestApp, tmpDir, type Registered, type TestApp } from "./helpers/app.js";
import { LocalDiskStorage } from "../src/files/local-storage.js";
import { S3Storage } from "../src/files/s3-storage.js";
import type { FileStorage } from "../src/files/storage.js";
import { MAX_UPLOAD_BYTES } from "../src/files/upload-guard.js";

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from("not really pixels, but a PNG signature")]);

function multipart(filename: string, contentType: string, content: Buffer, field = "file"): { payload: Buffer; headers: Record<string, string> } {
  const boundary = "----saasapptest";
  const payload = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { payload, headers: { "content-type": `multipart/form-data; boundary=${boundary}` } };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

describe("files", () => {
  let s3: S3rver;
  let s3Endpoint: string;
  before(async () => {
    s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: tmpDir("s3rver"), configureBuckets: [{ name: "media" }] });
    const addr = await s3.run();
    s3Endpoint = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => s3.close());

  const s3Env = () => ({ S3_ENDPOINT: s3Endpoint, S3_BUCKET: "media", S3_REGION: "us-east-1", S3_ACCESS_KEY_ID: "S3RVER", S3_SECRET_ACCESS_KEY: "S3RVER" });

  // The same contract for both implementations.
  for (const kind of ["local", "s3"] as const) {
    describe(`${kind} storage`, () => {
      let storage: FileStorage;
      before(() => {
        storage =
          kind === "local"
            ? new LocalDiskStorage(tmpDir("store"))
            : new S3Storage({ endpoint: s3Endpoint, bucket: "media", region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });
      });

      it("stores, reads back and deletes bytes", async () => {
        const key = `org-1/${kind}-${Date.now()}`;
        const { size } = await storage.put(key, Readable.from([PNG]), "image/png");
        assert.equal(size, PNG.length);
        assert.deepEqual(await readAll(await storage.get(key)), PNG);
        await storage.delete(key);
        await assert.rejects(storage.get(key));
        await storage.delete(key); // idempotent
      });

      it("keeps nothing when the incoming stream fails", async () => {
        const key = `org-1/${kind}-broken`;
        async function* broken() {
          yield Buffer.from("partial");
          throw new Error("client went away");
        }
        await assert.rejects(storage.put(key, Readable.from(broken()), "text/plain"), /client went away/);
        await assert.rejects(storage.get(key));
      });
    });
  }

  describe("upload API (local disk)", () => {
    let t: TestApp;
    let u: Registered;
    before(async () => {
      t = await startTestApp();
      u = await register(t, "uploader");
    });
    after(async () => t.close());

    const upload = (m: { payload: Buffer; headers: Record<string, string> }, query = "") =>
      t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/files${query}`, headers: { ...u.auth, ...m.headers }, payload: m.payload });

    it("accepts an allowed type, attached to a project, and serves it back", async () => {
      const project = (await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/projects`, headers: u.auth, payload: { name: "p" } })).json().project.id;
      const res = await upload(multipart("logo.png", "image/png", PNG), `?projectId=${project}`);
      assert.equal(res.statusCode, 201, res.body);
      const file = res.json().file;
      assert.equal(file.sizeBytes, PNG.length);
      assert.equal(file.contentType, "image/png");
      assert.equal(file.projectId, project);
      const got = await t.app.inject({ method: "GET", url: `/orgs/${u.orgId}/files/${file.id}/content`, headers: u.auth });
      assert.equal(got.statusCode, 200);
      assert.deepEqual(got.rawPayload, PNG);
      assert.equal(got.headers["content-type"], "image/png");
      assert.equal(got.headers["x-content-type-options"], "nosniff");
      assert.ok(existsSync(path.join(t.config.uploadDir, u.orgId, file.id)));
      // Deleting the project removes its files, rows and bytes.
      assert.equal((await t.app.inject({ method: "DELETE", url: `/orgs/${u.orgId}/projects/${project}`, headers: u.auth })).statusCode, 204);
      assert.equal((await t.app.inject({ method: "GET", url: `/orgs/${u.orgId}/files/${file.id}`, headers: u.auth })).statusCode, 404);
      assert.ok(!existsSync(path.join(t.config.uploadDir, u.orgId, file.id)));
    });

    it("refuses disallowed types, lying content and oversize files, keeping nothing", async () => {
      const before = (await t.pool.query("SELECT count(*)::int AS n FROM files WHERE org_id = $1", [u.orgId])).rows[0].n;
      const html = await upload(multipart("x.html", "text/html", Buffer.from("<script>alert(1)</script>")));
      assert.equal(html.statusCode, 415);
      assert.match(html.json().message, /not allowed/);
      const liar = await upload(multipart("x.png", "image/png", Buffer.from("<html>definitely not a png</html>")));
      assert.equal(liar.statusCode, 415);
      assert.match(liar.json().message, /does not match its declared type image\/png/);
      const big = await upload(multipart("big.txt", "text/plain", Buffer.alloc(MAX_UPLOAD_BYTES + 1, "a")));
      assert.equal(big.statusCode, 413);
      const exact = await upload(multipart("exact.txt", "text/plain", Buffer.alloc(MAX_UPLOAD_BYTES, "a")));
      assert.equal(exact.statusCode, 201, "the limit itself is allowed");
      const after = (await t.pool.query("SELECT count(*)::int AS n FROM files WHERE org_id = $1", [u.orgId])).rows[0].n;
      assert.equal(after, before + 1);
      assert.deepEqual(filesUnder(t.config.uploadDir).length, 1, "no partial or rejected file left on disk");
    });

    it("answers 400 when the request is not a multipart upload with a file field", async () => {
      const json = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/files`, headers: u.auth, payload: { file: "x" } });
      assert.equal(json.statusCode, 400);
      assert.match(json.json().message, /multipart\/form-data/);
      const wrongField = await upload(multipart("a.txt", "text/plain", Buffer.from("hello"), "attachment"));
      assert.equal(wrongField.statusCode, 400);
      assert.match(wrongField.json().message, /field named "file"/);
    });
  });

  describe("upload API (S3-compatible, configured by S3_*)", () => {
    it("stores the upload in the bucket, same API", async () => {
      const t = await startTestApp(s3Env());
      try {
        assert.equal(t.storage.kind, "s3");
        const u = await register(t, "s3user");
        const m = multipart("notes.txt", "text/plain", Buffer.from("hello from s3"));
        const res = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/files`, headers: { ...u.auth, ...m.headers }, payload: m.payload });
        assert.equal(res.statusCode, 201, res.body);
        const id = res.json().file.id;
        const direct = new S3Storage({ endpoint: s3Endpoint, bucket: "media", region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });
        assert.equal((await readAll(await direct.get(`${u.orgId}/${id}`))).toString(), "hello from s3");
        const got = await t.app.inject({ method: "GET", url: `/orgs/${u.orgId}/files/${id}/content`, headers: u.auth });
        assert.equal(got.body, "hello from s3");
        assert.deepEqual(filesUnder(t.config.uploadDir), [], "nothing on local disk");
      } finally {
        await t.close();
      }
    });

    it("deletes the object from the bucket when its file, or its project, is deleted", async () => {
      const t = await startTestApp(s3Env());
      try {
        const u = await register(t, "s3deleter");
        const direct = new S3Storage({ endpoint: s3Endpoint, bucket: "media", region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });
        const project = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/projects`, headers: u.auth, payload: { name: "with files" } });
        assert.equal(project.statusCode, 201, project.body);
        const projectId = project.json().project.id;
        const uploadTo = async (query: string) => {
          const m = multipart("a.txt", "text/plain", Buffer.from("to be deleted"));
          const res = await t.app.inject({ method: "POST", url: `/orgs/${u.orgId}/files${query}`, headers: { ...u.auth, ...m.headers }, payload: m.payload });
          assert.equal(res.statusCode, 201, res.body);
          return `${u.orgId}/${res.json().file.id}`;
        };
        const stored = async (key: string) => direct.get(key).then(() => true, (err: Error) => (/HTTP 404/.test(err.message) ? false : Promise.reject(err)));

        const loose = await uploadTo("");
        const inProject = [await uploadTo(`?projectId=${projectId}`), await uploadTo(`?projectId=${projectId}`)];
        for (const key of [loose, ...inProject]) assert.equal(await stored(key), true, key);

        const del = await t.app.inject({ method: "DELETE", url: `/orgs/${u.orgId}/files/${loose.split("/")[1]}`, headers: u.auth });
        assert.equal(del.statusCode, 204, del.body);
        assert.equal(await stored(loose), false, "the file's object is still in the bucket");
        for (const key of inProject) assert.equal(await stored(key), true, "another file's object went too");

        const delProject = await t.app.inject({ method: "DELETE", url: `/orgs/${u.orgId}/projects/${projectId}`, headers: u.auth });
        assert.equal(delProject.statusCode, 204, delProject.body);
        for (const key of inProject) assert.equal(await stored(key), false, `${key} is still in the bucket`);
      } finally {
        await t.close();
      }
    });
  });
});
