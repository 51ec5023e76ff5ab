/** HTTP to the VM through its forwarded nginx port: requests, and waiting for the app's /health. */
import * as http from "node:http";
import { CLIENT_KEEPALIVE_TIMEOUT_SECONDS } from "../../provisioning/nginx";
import { stderrLog, type VmLogger } from "./log";
import { sleep } from "./process";
import { ssh } from "./ssh";
import { type Vm, elapsed } from "./vm";

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * Connections reused between requests, dropped after a quarter of the time nginx keeps an idle
 * one: a request sent on a connection nginx is closing fails with "socket hang up", and Node does
 * not retry it.
 */
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16, timeout: (CLIENT_KEEPALIVE_TIMEOUT_SECONDS * 1000) / 4 });

export function httpRequest(port: number, opts: {
  method?: string; path?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number; agent?: http.Agent | false;
  /** Default 127.0.0.1 (a VM's forwarded port); the balancer stand-in's frontend is elsewhere. */
  host?: string;
} = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = http.request({
      host: opts.host ?? "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path ?? "/",
      agent: opts.agent === undefined ? keepAlive : opts.agent,
      timeout: opts.timeoutMs ?? 10000,
      headers: { ...(payload ? { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) } : {}), ...opts.headers },
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 10000} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Whether a response is the app's health answer: 200 {"status":"ok"} (not nginx's default page). */
export function isHealthy(r: HttpResult): boolean {
  if (r.status !== 200) return false;
  try {
    return JSON.parse(r.body)?.status === "ok";
  } catch {
    return false;
  }
}

/**
 * Calls `probe` every `everyMs` until its answer isHealthy, and returns that answer; past the
 * deadline, throws `failure(last)` with the last answer or error seen (one line).
 */
async function untilHealthy(probe: () => Promise<HttpResult>, opts: { timeoutMs?: number; everyMs: number; failure: (last: string) => string }): Promise<HttpResult> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120000);
  let last = "";
  for (;;) {
    try {
      const r = await probe();
      if (isHealthy(r)) return r;
      last = `${r.status} ${r.body.slice(0, 80).replace(/\s+/g, " ")}`;
    } catch (e) {
      last = (e as Error).message.trim().slice(0, 160);
    }
    if (Date.now() > deadline) throw new Error(opts.failure(last));
    await sleep(opts.everyMs);
  }
}

const releaseOf = (r: HttpResult) => String(r.headers["x-app-release"] ?? "");

/** Poll GET /health through nginx until healthy; resolves with seconds since VM start and the release header. */
export async function waitForHealth(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<{ seconds: number; release: string }> {
  const r = await untilHealthy(() => httpRequest(vm.ports.http, { path: "/health", timeoutMs: 5000, agent: false }), {
    timeoutMs: opts.timeoutMs, everyMs: 500,
    failure: (last) => `GET /health through nginx (127.0.0.1:${vm.ports.http}) not healthy after ${elapsed(vm)} s; last: ${last}`,
  });
  const s = elapsed(vm);
  (opts.log ?? stderrLog)(`[vm ${s.toFixed(1).padStart(6)} s] GET /health through nginx: 200 ${r.body.trim()} (X-App-Release ${releaseOf(r)})`);
  return { seconds: s, release: releaseOf(r) };
}

/** GET /health with curl inside the guest, on nginx's loopback listener: the answer as httpRequest gives it. */
async function healthInGuest(vm: Vm): Promise<HttpResult> {
  // Headers and body in one answer: the status line and headers, a blank line, the JSON.
  const r = await ssh(vm, "curl -sS -m 5 -D - http://127.0.0.1/health", { timeoutMs: 30000 });
  if (r.code !== 0) throw new Error(`curl in the guest: exit ${r.code} ${r.stderr}`);
  const [head = "", body = ""] = r.stdout.split(/\r?\n\r?\n/);
  const release = /^x-app-release:\s*(\S+)/im.exec(head)?.[1];
  return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(head)?.[1] ?? 0), headers: release ? { "x-app-release": release } : {}, body };
}

/**
 * Poll GET /health from inside the guest, on nginx's loopback listener, until healthy. Behind a
 * load balancer this is the only way in but the balancer: nginx wants a PROXY header on the
 * server's own addresses and its firewall admits port 80 from the balancer alone, so the host's
 * forwarded port gets nothing.
 */
export async function waitForHealthInGuest(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<{ seconds: number; release: string }> {
  const r = await untilHealthy(() => healthInGuest(vm), {
    timeoutMs: opts.timeoutMs, everyMs: 1000,
    failure: (last) => `GET /health through nginx on the guest's loopback not healthy after ${elapsed(vm)} s; last: ${last}`,
  });
  const s = elapsed(vm);
  (opts.log ?? stderrLog)(`[vm ${s.toFixed(1).padStart(6)} s] GET /health through nginx (loopback, in the guest): 200 ${r.body.trim()} (X-App-Release ${releaseOf(r)})`);
  return { seconds: s, release: releaseOf(r) };
}

/**
 * Poll GET /health at host:port (the load balancer stand-in's frontend) until healthy; resolves
 * with the milliseconds it took and the release header of the answer.
 */
export async function waitForHealthAt(host: string, port: number, opts: { timeoutMs?: number; what?: string } = {}): Promise<{ ms: number; release: string }> {
  const t0 = Date.now();
  const r = await untilHealthy(() => httpRequest(port, { host, path: "/health", timeoutMs: 5000, agent: false }), {
    timeoutMs: opts.timeoutMs, everyMs: 500,
    failure: (last) => `GET /health ${opts.what ?? `at ${host}:${port}`} not healthy after ${((Date.now() - t0) / 1000).toFixed(0)} s; last: ${last}`,
  });
  return { ms: Date.now() - t0, release: releaseOf(r) };
}
