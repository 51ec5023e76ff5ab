import assert from "node:assert/strict";
import { Agent, request as httpRequest, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { databaseUrl, registerOverHttp, SECRET, tmpDir } from "./helpers/app.js";
import { freePort, startEntrypoint, type Proc } from "./helpers/proc.js";

/** A new connection's fate: "connected", or the connect error's code (ECONNREFUSED once the server stopped listening). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve("connected")));
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** One request through `agent`; the body is read, so a keep-alive socket goes back to the agent's pool. */
function send(agent: Agent, port: number, method: string, path: string, body?: string) {
  return new Promise<{ res: IncomingMessage; body: string; reusedSocket: boolean; socket: Socket }>((resolve, reject) => {
    const req = httpRequest({ agent, host: "127.0.0.1", port, method, path, headers: body === undefined ? {} : { "content-type": "application/json" } });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ res, body: text, reusedSocket: req.reusedSocket, socket: req.socket as Socket }));
    });
    req.on("error", reject);
    req.end(body);
  });
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
    // Not kept alive: the only keep-alive connections left are the ones a test opens on purpose.
    const { token, orgId } = await registerOverHttp(base, "shutdown");
    return { base, port, token, orgId };
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
    const { port, token, orgId } = await startWeb(5000);
    const upload = slowUpload(port, token, orgId);
    await new Promise((r) => setTimeout(r, 300)); // the request is now being processed
    web!.child.kill("SIGTERM");
    await web!.waitForLog("shutting down");
    assert.equal(await tryConnect(port), "ECONNREFUSED", "new connections are refused while draining");
    upload.finish();
    const { res, body } = await upload.response;
    assert.equal(res.statusCode, 201, body);
    assert.equal(res.headers.connection, "close");
    assert.equal(JSON.parse(body).file.sizeBytes, "first half, second half".length);
    assert.deepEqual(await web!.exited, { code: 0, signal: null });
    assert.ok(web!.output.some((l) => l.includes("shutdown complete")));
  });

  // nginx keeps idle keep-alive connections to the instance and may be writing a request onto one
  // at any moment; a POST it has sent is never retried elsewhere, so if the app closed idle
  // connections on SIGTERM, that POST would come back 502. The app must leave them to the client.
  it("keeps an idle keep-alive connection open while draining and answers a request sent on it, then exits 0", async function () {
    this.timeout(20000);
    const { port } = await startWeb(8000);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await send(agent, port, "GET", "/health");
    assert.equal(first.res.statusCode, 200, first.body);
    const idle = first.socket;
    let closedBy: string | undefined;
    idle.once("end", () => (closedBy ??= "server (FIN)"));
    idle.once("close", () => (closedBy ??= "close"));

    web!.child.kill("SIGTERM");
    await web!.waitForLog("shutting down");
    assert.equal(await tryConnect(port), "ECONNREFUSED", "new connections are refused while draining");
    await new Promise((r) => setTimeout(r, 1000)); // a server that reaps idle connections has done so by now
    assert.equal(closedBy, undefined, "the idle keep-alive connection must stay open while the app drains");
    assert.equal(web!.child.exitCode, null, "the app waits for that connection before it exits");

    const post = await send(agent, port, "POST", "/no-such-route", "{}");
    assert.ok(post.reusedSocket, "the POST went on the idle connection");
    assert.equal(post.socket, idle);
    assert.equal(post.res.statusCode, 404, post.body);
    assert.equal(post.res.headers.connection, "close", "answers while draining end their connection");
    assert.deepEqual(await web!.exited, { code: 0, signal: null });
    assert.ok(web!.output.some((l) => l.includes("shutdown complete")));
    agent.destroy();
  });

  // A client that never closes its idle connection (nginx closes its own after 3 s) cannot hold the
  // drain up to SHUTDOWN_TIMEOUT_MS: the app's keep-alive timeout (5 s, +1 s in Node) ends it.
  it("ends a client's idle connection at the keep-alive timeout and exits 0", async function () {
    this.timeout(20000);
    const { port } = await startWeb(10000);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await send(agent, port, "GET", "/health");
    assert.equal(first.res.statusCode, 200, first.body);
    const idleSince = Date.now();
    // "end": the server's FIN (this agent has no idle timeout of its own, so it never closes first).
    const closed = new Promise<number>((resolve) => first.socket.once("end", () => resolve(Date.now() - idleSince)));
    web!.child.kill("SIGTERM");
    assert.deepEqual(await web!.exited, { code: 0, signal: null });
    const idleMs = await closed;
    assert.ok(idleMs >= 4000 && idleMs < 9000, `the server closed the idle connection after ${idleMs} ms`);
    agent.destroy();
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
