/**
 * A small HTTP load generator for releases behind the balancer (test/release/acrossServers.test.ts,
 * bench/rollAcross.ts, the scaled VM suite): loops that each send GET and POST in turn, as fast as
 * the answers come or with a pause after each, and count every answer outside 2xx/3xx, every
 * connection error and every timeout as a failed request. Half the loops keep their connections
 * alive (as browsers do: the balancer forwards connections, so those stay on the server they were
 * sent to), the other half open a connection per request (each one balanced anew, so a drained
 * server visibly stops getting them).
 *
 * Run in another network namespace (the client's, behind the balancer) as a child process:
 *   node --import tsx test/support/httpLoad.ts '<LoadPlan as JSON>'
 * It starts at once, stops when a line arrives on stdin, and prints its LoadReport as JSON.
 */
import http from "node:http";

export interface LoadPlan {
  /** e.g. http://203.0.113.1 */
  base: string;
  /** GET here (path and query). */
  getPath: string;
  /** POST `postBody()` here: a JSON object, `{n}` in its string values replaced by a serial number. */
  postPath: string;
  postBody: Record<string, string>;
  headers: Record<string, string>;
  /** Concurrent loops; even ones keep their connections alive, odd ones open one per request. */
  loops: number;
  /** Seconds a request may take before it counts as failed. */
  timeoutSeconds: number;
  /** Milliseconds each loop waits after an answer (default 0: as fast as the answers come); emulated servers need a lighter load. */
  pauseMs?: number;
}

export interface Failure {
  /** ms since the epoch, when the request ended. */
  t: number;
  method: string;
  /** "503 <body>" or the error's code/message. */
  what: string;
}

export interface LoadReport {
  startedAt: number;
  stoppedAt: number;
  ok: number;
  failed: Failure[];
  /** ms since the epoch of every answered (2xx/3xx) request, in the order they ended. */
  okTimes: number[];
  /** Answers per method ("GET 200", "POST 201" ...), failures included. */
  byMethodStatus: Record<string, number>;
  /** 2xx/3xx answers per X-App-Release header (the release that served them). */
  byRelease: Record<string, number>;
  /** X-App-Release of the last answer of each loop: what the site serves at the end. */
  lastReleases: string[];
}

/** Runs the plan until `stop` resolves; the report once every loop's request in flight has ended. */
export async function runLoad(plan: LoadPlan, stop: Promise<void>): Promise<LoadReport> {
  const report: LoadReport = { startedAt: Date.now(), stoppedAt: 0, ok: 0, failed: [], okTimes: [], byMethodStatus: {}, byRelease: {}, lastReleases: [] };
  let running = true;
  void stop.then(() => {
    running = false;
    report.stoppedAt = Date.now();
  });
  let serial = 0;
  const count = (key: string) => (report.byMethodStatus[key] = (report.byMethodStatus[key] ?? 0) + 1);

  const once = (agent: http.Agent, post: boolean): Promise<string | undefined> =>
    new Promise((resolve) => {
      const method = post ? "POST" : "GET";
      const body = post ? JSON.stringify(Object.fromEntries(Object.entries(plan.postBody).map(([k, v]) => [k, v.replaceAll("{n}", String(++serial))]))) : undefined;
      const fail = (what: string) => {
        count(`${method} ${what.split(" ")[0]}`);
        report.failed.push({ t: Date.now(), method, what });
        resolve(undefined);
      };
      const req = http.request(`${plan.base}${post ? plan.postPath : plan.getPath}`, {
        method,
        agent,
        timeout: plan.timeoutSeconds * 1000,
        headers: { ...plan.headers, ...(body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }) },
      }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("error", (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 399) return fail(`${status} ${text.slice(0, 120)}`);
          count(`${method} ${status}`);
          report.ok++;
          report.okTimes.push(Date.now());
          const release = String(res.headers["x-app-release"] ?? "");
          report.byRelease[release] = (report.byRelease[release] ?? 0) + 1;
          resolve(release);
        });
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
      req.on("error", (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
      req.end(body);
    });

  const loop = async (i: number) => {
    // One socket per loop: a keep-alive loop reuses it as long as the server keeps it open.
    const agent = new http.Agent({ keepAlive: i % 2 === 0, maxSockets: 1 });
    let last = "";
    for (let n = 0; running; n++) {
      last = (await once(agent, n % 2 === 1)) ?? last;
      if (plan.pauseMs && running) await new Promise((r) => setTimeout(r, plan.pauseMs));
    }
    agent.destroy();
    return last;
  };
  report.lastReleases = await Promise.all(Array.from({ length: plan.loops }, (_, i) => loop(i)));
  return report;
}

if (require.main === module) {
  const plan = JSON.parse(process.argv[2] ?? "") as LoadPlan;
  const stop = new Promise<void>((resolve) => process.stdin.once("data", () => resolve()));
  // Exit only once the report is written: stdout to a pipe is asynchronous, and a long report
  // cut short by an early exit is not JSON.
  void runLoad(plan, stop).then((report) => process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(0)));
}
