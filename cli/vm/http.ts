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

/** Poll GET /health through nginx until healthy; resolves with seconds since VM start and the release header. */
export async function waitForHealth(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<{ seconds: number; release: string }> {
  const log = opts.log ?? stderrLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 120000);
  let last = "";
  for (;;) {
    try {
      const r = await httpRequest(vm.ports.http, { path: "/health", timeoutMs: 5000, agent: false });
      if (isHealthy(r)) {
        const s = elapsed(vm);
        log(`[vm ${s.toFixed(1).padStart(6)} s] GET /health through nginx: 200 ${r.body.trim()} (X-App-Release ${r.headers["x-app-release"]})`);
        return { seconds: s, release: String(r.headers["x-app-release"] ?? "") };
      }
      last = `${r.status} ${r.body.slice(0, 80).replace(/\s+/g, " ")}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`GET /health through nginx (127.0.0.1:${vm.ports.http}) not healthy after ${elapsed(vm)} s; last: ${last}`);
    await sleep(500);
  }
}

/**
 * Poll GET /health from inside the guest, on nginx's loopback listener, until healthy. Behind a
 * load balancer this is the only way in but the balancer: nginx wants a PROXY header on the
 * server's own addresses and its firewall admits port 80 from the balancer alone, so the host's
 * forwarded port gets nothing.
 */
export async function waitForHealthInGuest(vm: Vm, opts: { timeoutMs?: number; log?: VmLogger } = {}): Promise<{ seconds: number; release: string }> {
  const log = opts.log ?? stderrLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 120000);
  let last = "";
  for (;;) {
    // Headers and body in one answer: the release header, then the JSON.
    const r = await ssh(vm, "curl -sS -m 5 -D - http://127.0.0.1/health", { timeoutMs: 30000 }).catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
    const [head = "", body = ""] = r.stdout.split(/\r?\n\r?\n/);
    const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(head)?.[1] ?? 0);
    const release = /^x-app-release:\s*(\S+)/im.exec(head)?.[1] ?? "";
    if (r.code === 0 && isHealthy({ status, headers: {}, body })) {
      const s = elapsed(vm);
      log(`[vm ${s.toFixed(1).padStart(6)} s] GET /health through nginx (loopback, in the guest): 200 ${body.trim()} (X-App-Release ${release})`);
      return { seconds: s, release };
    }
    last = r.code === 0 ? `${status} ${body.slice(0, 80).replace(/\s+/g, " ")}` : `${r.stderr.trim().slice(0, 120)}`;
    if (Date.now() > deadline) throw new Error(`GET /health through nginx on the guest's loopback not healthy after ${elapsed(vm)} s; last: ${last}`);
    await sleep(1000);
  }
}

/**
 * Poll GET /health at host:port (the load balancer stand-in's frontend) until healthy; resolves
 * with the milliseconds it took and the release header of the answer.
 */
export async function waitForHealthAt(host: string, port: number, opts: { timeoutMs?: number; what?: string } = {}): Promise<{ ms: number; release: string }> {
  const t0 = Date.now();
  const deadline = t0 + (opts.timeoutMs ?? 120000);
  let last = "";
  for (;;) {
    try {
      const r = await httpRequest(port, { host, path: "/health", timeoutMs: 5000, agent: false });
      if (isHealthy(r)) return { ms: Date.now() - t0, release: String(r.headers["x-app-release"] ?? "") };
      last = `${r.status} ${r.body.slice(0, 80).replace(/\s+/g, " ")}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`GET /health ${opts.what ?? `at ${host}:${port}`} not healthy after ${((Date.now() - t0) / 1000).toFixed(0)} s; last: ${last}`);
    await sleep(500);
  }
}
