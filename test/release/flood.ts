/**
 * Requests from a chosen loopback address (127.0.0.2, 127.0.0.3, ...: every 127/8 address is the
 * loopback interface on Linux), so that nginx's per-address limits see several clients on one
 * machine. Shared by test/release/rateLimit.test.ts and bench/authFlood.ts.
 */
import http from "node:http";

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One keep-alive agent per source address (each connection is bound to it). */
export function agentFrom(localAddress: string, maxSockets = 16): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets, localAddress } as http.AgentOptions);
}

/** A JSON POST (or a GET without `json`) sent from `agent`'s address. */
export function requestFrom(agent: http.Agent, url: string, json?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const body = json === undefined ? undefined : JSON.stringify(json);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      agent,
      method: body === undefined ? "GET" : "POST",
      headers: { ...(body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }), ...headers },
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** `count` requests from `agent`'s address, `concurrency` at a time; the count of answers per status. */
export async function floodFrom(agent: http.Agent, url: string, json: unknown, count: number, concurrency: number): Promise<Record<number, number>> {
  const byStatus: Record<number, number> = {};
  let sent = 0;
  const lane = async () => {
    while (sent < count) {
      sent++;
      const { status } = await requestFrom(agent, url, json);
      byStatus[status] = (byStatus[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return byStatus;
}
