import assert from "node:assert/strict";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { databaseUrl, SECRET, tmpDir, uniqueEmail } from "./helpers/app.js";
import { startEntrypoint, type Proc } from "./helpers/proc.js";

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

// The web process as systemd runs it; an upload whose body arrives slowly is the in-flight request.
describe("web process graceful shutdown", () => {
  let web: Proc | undefined;
  afterEach(() => {
    if (web && web.child.exitCode === null) web.child.kill("SIGKILL");
  });

  async function startWeb(shutdownTimeoutMs: number): Promise<{ base: string; port: number; token: string; orgId: string }> {
    const port = await freePort();
    web = startEntrypoint("web", {
      DATABASE_URL: databaseUrl(),
      SECRET_KEY: SECRET,
      APP_URL: "http://app.example.test",
      PORT: String(port),
      SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs),
      UPLOAD_DIR: tmpDir("shutdown-uploads"),
    });
    await web.waitForLog("web listening");
    const base = `http://127.0.0.1:${port}`;
    const res = await fetch(`${base}/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: uniqueEmail("shutdown"), password: "long enough pw", name: "s" }),
    });
    const body = (await res.json()) as { token: string; organization: { id: string } };
    return { base, port, token: body.token, orgId: body.organization.id };
  }

  function slowUpload(port: number, token: string, orgId: string) {
    const boundary = "----slow";
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\nContent-Type: text/plain\r\n\r\nfirst half, `;
    const tail = `second half\r\n--${boundary}--\r\n`;
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: `/orgs/${orgId}/files`,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
        "content-length": Buffer.byteLength(head) + Buffer.byteLength(tail),
      },
    });
    const response = new Promise<{ res: IncomingMessage; body: string }>((resolve, reject) => {
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ res, body }));
      });
      req.on("error", reject);
    });
    req.write(head);
    return { finish: () => req.end(tail), response };
  }

  it("stops accepting, finishes the in-flight request, exits 0", async function () {
    this.timeout(20000);
    const { base, port, token, orgId } = await startWeb(5000);
    const upload = slowUpload(port, token, orgId);
    await new Promise((r) => setTimeout(r, 300)); // the request is now being processed
    web!.child.kill("SIGTERM");
    await web!.waitForLog("shutting down");
    await assert.rejects(fetch(`${base}/health`), "new connections are refused while draining");
    upload.finish();
    const { res, body } = await upload.response;
    assert.equal(res.statusCode, 201, body);
    assert.equal(res.headers.connection, "close");
    assert.equal(JSON.parse(body).file.sizeBytes, "first half, second half".length);
    assert.deepEqual(await web!.exited, { code: 0, signal: null });
    assert.ok(web!.output.some((l) => l.includes("shutdown complete")));
  });

  it("gives up after SHUTDOWN_TIMEOUT_MS when a request never finishes, exiting 1", async function () {
    this.timeout(20000);
    const { port, token, orgId } = await startWeb(500);
    const upload = slowUpload(port, token, orgId);
    upload.response.catch(() => {}); // the connection dies with the process
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    web!.child.kill("SIGTERM");
    assert.deepEqual(await web!.exited, { code: 1, signal: null });
    assert.ok(Date.now() - t0 < 3000, `exited after ${Date.now() - t0} ms`);
    assert.ok(web!.output.some((l) => l.includes("did not finish in time")));
  });
});
