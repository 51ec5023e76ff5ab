// The metrics listener: a bare node:http server of its own on 127.0.0.1, apart from the public
// app (which nginx exposes), so /metrics is never reachable from outside the server. It answers
// GET /metrics and 404 to anything else.
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import type { Logger } from "../core/logger.js";
import { METRICS_HOST } from "./port.js";

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:`port`; rejects when the port is taken (the process then fails to start, as it would for PORT). */
export async function startMetricsServer(registry: Registry, port: number, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?", 1)[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) => {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, "metrics: collecting failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("collecting metrics failed\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, METRICS_HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
  log.info({ host: METRICS_HOST, port }, "metrics listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection would hold close() open; a scrape is safe to cut.
        server.closeAllConnections();
      }),
  };
}
