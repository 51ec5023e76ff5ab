/**
 * The watchdog's alerts, raised for real on the e2e's VM (e2e.test.ts registers these steps
 * between its metadata and its backup steps, so there has been no backup yet): the staging stack
 * rendered with three stand-ins on the host that the guest reaches at 10.0.2.2 (QEMU user
 * networking, as the backup bucket): the alert webhook (`alertWebhookUrl`), the watchdog's
 * heartbeat (`watchdogHeartbeatUrl`), and a Sentry ingest endpoint (`sentryDsn`) that takes
 * Sentry's envelopes (POST /api/<project>/envelope/) and parses them. Each fault is caused for
 * real and the time from fault to the alert's arrival is recorded:
 *   O1 the app env has the metrics offset and Sentry's environment; one `watchdog check` costs
 *      (CPU seconds, peak memory) as the unit's own accounting says
 *   O2 all green: the heartbeat URL is hit once, and not again the same day
 *   O3 a web instance killed until systemd gives up: one alert naming the unit (alert@), none from
 *      the timer's check; reset-failed + start: one "resolved"
 *   O4 the data volume filled past the threshold: alert from the timer's own run; freed: resolved
 *   O5 backups: none ever made, then made stale (timer stopped, marker aged): alert; resolved
 *   O6 /health through nginx down (every web instance stopped): alert; back: resolved
 *   O7 metrics answer inside the box for web and worker, and not from the host
 *   O8 one X-Request-Id through nginx, the web log, the worker's job log, and a Sentry event
 *   O9 each condition alerted once and resolved once; the fault-to-alert table is printed and
 *      kept in the e2e's figures (`alertLatency`)
 * They were a suite of their own with its own VM; on the e2e's they cost no second boot,
 * cloud-init, pushes and release (about a quarter of CI's VM time).
 * Test-only setup, not product behaviour: the load threshold is at its maximum (an emulated VM's
 * load is the host's, not something these steps cause or check).
 */
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { freePorts } from "../../cli/lib/ports";
import { httpRequest, isHealthy, waitForHealth } from "../../cli/vm/http";
import { sleep } from "../../cli/vm/process";
import { addHostForward } from "../../cli/vm/qmp";
import type { ShippedRelease } from "../../cli/vm/release";
import { ssh } from "../../cli/vm/ssh";
import { GUEST_HOST_ADDRESS, type VmRender } from "../../cli/vm/stack";
import type { Vm } from "../../cli/vm/vm";
import { envValue, journalTail, sh, unitProps } from "./guest";

const log = (m: string) => console.log(`      ${m}`);
const HOOK_TOKEN = crypto.randomBytes(8).toString("hex");
const SENTRY_PROJECT = "7";
const SENTRY_KEY = "obspublickey";

/** An event the watchdog posted, parsed (the webhook's JSON: `text` first, then the fields). */
interface Posted { text: string; event: "alert" | "resolved"; stack: string; server: string; check: string; value: string; threshold: string; action: string; time: string; log?: string }
interface Arrival<T> { at: number; body: T }
/** One Sentry envelope: its header, and each item with its header and parsed payload. */
interface Envelope { header: Record<string, unknown>; items: { header: { type?: string; length?: number }; payload: Record<string, any> }[] }

/**
 * Sentry's envelope format (develop.sentry.dev/sdk/envelopes): a JSON header line, then per item
 * a JSON header line and its payload, either `length` bytes or up to the next newline.
 */
function parseEnvelope(body: Buffer): Envelope {
  let pos = 0;
  const line = (): Buffer => {
    const end = body.indexOf(0x0a, pos);
    const out = body.subarray(pos, end === -1 ? body.length : end);
    pos = end === -1 ? body.length : end + 1;
    return out;
  };
  const header = JSON.parse(line().toString("utf8")) as Record<string, unknown>;
  const items: Envelope["items"] = [];
  while (pos < body.length) {
    const raw = line();
    if (raw.length === 0) continue;
    const itemHeader = JSON.parse(raw.toString("utf8")) as { type?: string; length?: number };
    let payload: Buffer;
    if (typeof itemHeader.length === "number") {
      payload = body.subarray(pos, pos + itemHeader.length);
      pos += itemHeader.length;
      if (body[pos] === 0x0a) pos++;
    } else {
      payload = line();
    }
    items.push({ header: itemHeader, payload: JSON.parse(payload.toString("utf8")) as Record<string, any> });
  }
  return { header, items };
}

/** The host's stand-ins: the alert webhook, the heartbeat, Sentry's ingest. */
export class ObservabilityStandIns {
  readonly alerts: Arrival<Posted>[] = [];
  readonly heartbeats: number[] = [];
  readonly envelopes: Arrival<Envelope>[] = [];
  readonly rejected: string[] = [];
  private server?: http.Server;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const at = Date.now();
        const body = Buffer.concat(chunks);
        const url = req.url ?? "";
        try {
          if (req.method === "POST" && url === `/alerts/${HOOK_TOKEN}`) {
            assert.match(String(req.headers["content-type"]), /^application\/json/);
            this.alerts.push({ at, body: JSON.parse(body.toString("utf8")) as Posted });
            return void res.writeHead(200).end("ok");
          }
          if (req.method === "GET" && url === `/heartbeat/${HOOK_TOKEN}`) {
            this.heartbeats.push(at);
            return void res.writeHead(200).end("ok");
          }
          if (req.method === "POST" && url.startsWith(`/api/${SENTRY_PROJECT}/envelope/`)) {
            assert.match(url, new RegExp(`[?&]sentry_key=${SENTRY_KEY}(&|$)`));
            this.envelopes.push({ at, body: parseEnvelope(body) });
            return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
          }
        } catch (e) {
          this.rejected.push(`${req.method} ${url}: ${(e as Error).message}`);
          return void res.writeHead(400).end();
        }
        this.rejected.push(`${req.method} ${url}`);
        res.writeHead(404).end();
      });
    });
    // QEMU's user network maps 10.0.2.2 to the host's loopback.
    this.server.listen(0, "127.0.0.1");
    await new Promise((r) => this.server!.once("listening", r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  of(check: string): Arrival<Posted>[] {
    return this.alerts.filter((a) => a.body.check === check);
  }

  /**
   * Waits until `check` has `count` events; returns them. The callers' timeouts are hang guards
   * (beside other VMs an emulated guest has run one check 20 times slower than alone): the time
   * each alert took is recorded in the latency table, not asserted.
   */
  async waitFor(check: string, count: number, timeoutMs: number, onWait?: () => Promise<void>): Promise<Arrival<Posted>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.of(check).length >= count) return this.of(check);
      if (Date.now() > deadline) assert.fail(`no ${count}th event for ${check} after ${timeoutMs / 1000} s; got: ${JSON.stringify(this.alerts.map((a) => a.body.text))}`);
      if (onWait) await onWait();
      await sleep(250);
    }
  }
}

/** The stack settings that point the watchdog and Sentry at the host's stand-ins. */
export function standInSettings(hooks: ObservabilityStandIns): Record<string, string> {
  const host = `http://${GUEST_HOST_ADDRESS}:${hooks.port}`;
  return {
    alertWebhookUrl: `${host}/alerts/${HOOK_TOKEN}`,
    watchdogHeartbeatUrl: `${host}/heartbeat/${HOOK_TOKEN}`,
    sentryDsn: `http://${SENTRY_KEY}@${GUEST_HOST_ADDRESS}:${hooks.port}/${SENTRY_PROJECT}`,
    watchdogLoadPercent: "2000",
  };
}

/** What the steps need from the suite that registers them, read when each step runs. */
export interface ObservabilityStepsContext {
  stack: string;
  vm: Vm;
  render: VmRender;
  release: ShippedRelease | undefined;
  figures: Record<string, unknown>;
}

/**
 * Registers steps O1-O9 as tests of the calling describe, in order, at the place of the call.
 * Preconditions: the release is shipped and healthy, the guest trusts the backup bucket, and no
 * backup has run yet (O5 starts from "none ever made").
 */
export function observabilitySteps(hooks: ObservabilityStandIns, context: () => ObservabilityStepsContext): void {
  /** Fault to alert (and back to resolved), seconds, per case. */
  const latency: { case: string; faultToAlert: number; fixToResolved?: number; how: string }[] = [];
  const secondsSince = (t: number, at: number) => Math.round((at - t) / 100) / 10;
  let vm: Vm;
  let render: VmRender;
  let release: ShippedRelease;
  let stack = "";
  let figures: Record<string, unknown> = {};
  const bind = () => {
    const c = context();
    assert.ok(c.release, "no release was shipped: the observability steps need a healthy app");
    ({ vm, render, figures, stack } = c);
    release = c.release;
  };

  /** The web instances' ports and the worker units, as the release config lists them. */
  const releaseConf = () => render.files.get("/etc/saas-vps/release.conf")!.replace(/"/g, "'");
  const webUnits = () => envValue(releaseConf(), "WEB_PORTS").split(" ").map((p) => `web@${p}.service`);

  /** One `watchdog check`, as the timer starts it (the unit, its sandbox); waits for it to end. */
  const runWatchdog = () => sh(vm, "sudo systemctl start watchdog.service");

  it("O1. the app env carries METRICS_PORT_OFFSET and SENTRY_ENVIRONMENT; one `watchdog check`'s CPU and peak memory, from the unit's own accounting", async function () {
    bind();
    const appEnv = await sh(vm, "sudo grep -E '^(METRICS_PORT_OFFSET|SENTRY_ENVIRONMENT)=' /etc/saas-vps/app.env");
    assert.deepEqual(appEnv.trim().split("\n").sort(), ["METRICS_PORT_OFFSET=10000", `SENTRY_ENVIRONMENT=${stack}`]);
    assert.equal((await unitProps(vm, "watchdog.timer", ["ActiveState"])).ActiveState, "active");
    const runs: { cpuSeconds: number; peakMiB: number }[] = [];
    for (let i = 0; i < 3; i++) {
      await runWatchdog();
      const p = await unitProps(vm, "watchdog.service", ["CPUUsageNSec", "MemoryPeak", "Result"]);
      assert.equal(p.Result, "success");
      assert.match(p.CPUUsageNSec, /^\d+$/, `CPUUsageNSec=${p.CPUUsageNSec}: systemd keeps no accounting for the finished run`);
      assert.match(p.MemoryPeak, /^\d+$/, `MemoryPeak=${p.MemoryPeak}`);
      runs.push({ cpuSeconds: Number(p.CPUUsageNSec) / 1e9, peakMiB: Number(p.MemoryPeak) / 1048576 });
    }
    figures.watchdogRuns = runs.map((r) => ({ cpuSeconds: +r.cpuSeconds.toFixed(3), peakMiB: +r.peakMiB.toFixed(1) }));
    log(`watchdog check: ${JSON.stringify(figures.watchdogRuns)}`);
    // CPU seconds under TCG emulation are the emulator's, several times a real core's: recorded,
    // not asserted (README gives both). Memory does not depend on the emulation.
    for (const r of runs) assert.ok(r.peakMiB < 64, `a watchdog run peaked at ${r.peakMiB} MiB`);
    assert.deepEqual(hooks.alerts.map((a) => a.body.text), [], "alerts on a healthy, freshly released box");
  });

  it("O2. all green: the heartbeat URL is hit once, and not again by later runs the same day", async function () {
    bind();
    // The first all-green run (the timer's or step 1's) sent it.
    assert.equal(hooks.heartbeats.length, 1, `heartbeats: ${hooks.heartbeats.length}\n${await journalTail(vm, "watchdog.service", 20)}`);
    await runWatchdog();
    await runWatchdog();
    assert.equal(hooks.heartbeats.length, 1);
    assert.match(await sh(vm, "sudo journalctl -u watchdog.service -b -o cat --no-pager"), /all green: heartbeat sent/);
  });

  it("O3. a web instance killed until systemd gives up: one alert naming it (alert@), none from the next check; reset-failed and start: one resolved", async function () {
    bind();
    const unit = "web@3002.service";
    const check = `failed-unit:${unit}`;
    const faultAt = Date.now();
    // SIGKILL each new main process as soon as it exists, until the start limit (10 in 60 s) fails the unit.
    const kills = await sh(vm, `n=0; for i in $(seq 1 600); do
      [ "$(systemctl show -p ActiveState --value ${unit})" = failed ] && break
      pid=$(systemctl show -p MainPID --value ${unit})
      if [ "$pid" != 0 ] && sudo kill -9 "$pid" 2>/dev/null; then n=$((n + 1)); fi
      sleep 0.2
    done; echo "$n"`, 180000);
    const gaveUpAt = Date.now();
    const gaveUp = await unitProps(vm, unit, ["ActiveState", "Result", "NRestarts"]);
    figures.killsUntilFailed = { kills: Number(kills.trim()), ...gaveUp };
    log(`SIGKILLs until systemd gave up: ${kills.trim()}; ${JSON.stringify(gaveUp)}`);
    assert.equal(gaveUp.ActiveState, "failed", JSON.stringify(gaveUp));
    const [alert] = await hooks.waitFor(check, 1, 300000);
    latency.push({ case: "web instance failed for good", faultToAlert: secondsSince(faultAt, alert.at), how: `alert@ (OnFailure=), ${secondsSince(gaveUpAt, alert.at)} s after systemd gave up` });
    assert.equal(alert.body.event, "alert");
    assert.deepEqual([alert.body.stack, alert.body.server], [stack, "app"]);
    assert.match(alert.body.text, new RegExp(`^ALERT ${stack}/app: failed-unit:web@3002\\.service is failed \\(systemd gave up restarting it\\)`));
    assert.match(alert.body.action, /journalctl -u web@3002\.service -n 50/);
    assert.ok(alert.body.log && alert.body.log.length > 0, "the alert carries the unit's last journal lines");
    assert.equal(Object.keys(alert.body)[0], "text", "Slack-compatible: text first");
    // The timer's check sees the unit failed and says nothing more.
    await runWatchdog();
    assert.equal(hooks.of(check).length, 1, JSON.stringify(hooks.of(check).map((a) => a.body.text)));

    const fixAt = Date.now();
    await sh(vm, `sudo systemctl reset-failed ${unit} && sudo systemctl start ${unit}`);
    await runWatchdog();
    const events = await hooks.waitFor(check, 2, 180000);
    latency[latency.length - 1].fixToResolved = secondsSince(fixAt, events[1].at);
    assert.deepEqual(events.map((e) => e.body.event), ["alert", "resolved"]);
    assert.equal(events[1].body.value, "not failed any more");
    await runWatchdog();
    assert.equal(hooks.of(check).length, 2, "resolved once");
    assert.equal((await unitProps(vm, unit, ["ActiveState"])).ActiveState, "active");
  });

  it("O4. the data volume filled past the threshold: the timer's own run alerts; freed: resolved", async function () {
    bind();
    const check = "disk-data";
    const [size, used] = (await sh(vm, "df -B1 --output=size,used /srv/data | tail -1")).trim().split(/\s+/).map(Number);
    const fill = Math.ceil(size * 0.9 - used);
    const faultAt = Date.now();
    await sh(vm, `sudo fallocate -l ${fill} /srv/data/observability-fill`);
    // The timer's next run (every 2 minutes), not one started by hand.
    const [alert] = await hooks.waitFor(check, 1, 420000);
    latency.push({ case: "data volume past 85 %", faultToAlert: secondsSince(faultAt, alert.at), how: "watchdog.timer (every 2 min)" });
    assert.match(alert.body.text, new RegExp(`^ALERT ${stack}/app: disk-data is \\d+% used \\(threshold 85%\\)\\. First: `));
    assert.ok(parseInt(alert.body.value, 10) > 85, alert.body.value);
    const fixAt = Date.now();
    await sh(vm, "sudo rm /srv/data/observability-fill");
    await runWatchdog();
    const events = await hooks.waitFor(check, 2, 180000);
    latency[latency.length - 1].fixToResolved = secondsSince(fixAt, events[1].at);
    assert.equal(events[1].body.event, "resolved");
  });

  it("O5. backups: none ever made for longer than the threshold alerts, a real backup resolves it; a stale one (timer stopped, marker aged) alerts and resolves", async function () {
    bind();
    const check = "backup";
    const state = "/var/lib/saas-vps/backup";
    assert.equal((await ssh(vm, `sudo test -e ${state}/last-success`)).code, 1, "a backup ran before this step");
    // No backup ever: the age counts from the watchdog's first run.
    let faultAt = Date.now();
    await sh(vm, "sudo touch -d '-27 hours' /var/lib/saas-vps/watchdog/since");
    await runWatchdog();
    let [alert] = await hooks.waitFor(check, 1, 180000);
    latency.push({ case: "no backup ever (27 h)", faultToAlert: secondsSince(faultAt, alert.at), how: "check started by hand" });
    assert.match(alert.body.value, /^no good backup recorded in 27h$/);
    const tb = Date.now();
    const backup = await ssh(vm, "sudo systemctl start backup.service", { timeoutMs: 10 * 60000 });
    assert.equal(backup.code, 0, `backup.service failed: ${backup.stderr}\n${await journalTail(vm, "backup.service")}`);
    figures.firstBackupSeconds = secondsSince(tb, Date.now());
    await runWatchdog();
    let events = await hooks.waitFor(check, 2, 180000);
    latency[latency.length - 1].fixToResolved = secondsSince(tb, events[1].at);
    assert.equal(events[1].body.event, "resolved");
    assert.match(events[1].body.value, /^0h since the last good backup$/);

    // Stale: the nightly timer stopped, the last good backup 27 hours old.
    await sh(vm, "sudo systemctl stop backup.timer");
    faultAt = Date.now();
    await sh(vm, `sudo touch -d '-27 hours' ${state}/last-success`);
    await runWatchdog();
    events = await hooks.waitFor(check, 3, 180000);
    alert = events[2];
    latency.push({ case: "last backup 27 h old", faultToAlert: secondsSince(faultAt, alert.at), how: "check started by hand" });
    assert.equal(alert.body.event, "alert");
    assert.equal(alert.body.value, "27h since the last good backup");
    assert.equal(alert.body.threshold, "26h");
    const fixAt = Date.now();
    await sh(vm, `sudo touch ${state}/last-success && sudo systemctl start backup.timer`);
    await runWatchdog();
    events = await hooks.waitFor(check, 4, 180000);
    latency[latency.length - 1].fixToResolved = secondsSince(fixAt, events[3].at);
    assert.deepEqual(events.map((e) => e.body.event), ["alert", "resolved", "alert", "resolved"]);
  });

  it("O6. /health through nginx down (every web instance stopped): alert; started again: resolved", async function () {
    bind();
    const check = "health";
    const faultAt = Date.now();
    await sh(vm, `sudo systemctl stop ${webUnits().join(" ")}`);
    await runWatchdog();
    const [alert] = await hooks.waitFor(check, 1, 180000);
    latency.push({ case: "/health through nginx down", faultToAlert: secondsSince(faultAt, alert.at), how: "check started by hand" });
    assert.equal(alert.body.value, "HTTP 502");
    assert.equal(alert.body.threshold, "none");
    assert.match(alert.body.text, new RegExp(`^ALERT ${stack}/app: health is HTTP 502 \\(threshold none\\)\\. First: systemctl list-units 'web@\\*' nginx\\.service`));
    const fixAt = Date.now();
    await sh(vm, `sudo systemctl start ${webUnits().join(" ")}`);
    await waitForHealth(vm, { timeoutMs: 120000, log });
    await runWatchdog();
    const events = await hooks.waitFor(check, 2, 180000);
    latency[latency.length - 1].fixToResolved = secondsSince(fixAt, events[1].at);
    assert.deepEqual([events[1].body.event, events[1].body.value], ["resolved", "HTTP 200"]);
    // Stopping units on purpose is no failure: no failed-unit alert came from it.
    assert.deepEqual(hooks.alerts.filter((a) => a.body.check.startsWith("failed-unit:") && a.body.check !== "failed-unit:web@3002.service"), []);
  });

  it("O7. metrics: inside the box web and worker answer on 127.0.0.1 at the offset; from the host those ports do not answer", async function () {
    bind();
    const offset = 10000;
    const webPorts = envValue(releaseConf(), "WEB_PORTS").split(" ").map(Number);
    const workerIds = envValue(releaseConf(), "WORKER_UNITS").split(" ").map((u) => Number(/^worker@(\d+)\.service$/.exec(u)![1]));
    const expected = [...webPorts, ...workerIds].map((n) => `127.0.0.1:${offset + n}`).sort();
    for (const port of webPorts) assert.match(await sh(vm, `curl -fsS -m 10 http://127.0.0.1:${offset + port}/metrics`), /^# TYPE http_request_duration_seconds histogram$/m, `web@${port}`);
    for (const id of workerIds) assert.match(await sh(vm, `curl -fsS -m 10 http://127.0.0.1:${offset + id}/metrics`), /^# TYPE worker_jobs_total counter$/m, `worker@${id}`);
    // Every metrics listener of the box, and only on loopback.
    const listening = (await sh(vm, "sudo ss -Hltnp")).trim().split("\n").map((l) => l.trim().split(/\s+/)[3])
      .filter((local) => Number(local.slice(local.lastIndexOf(":") + 1)) > offset);
    assert.deepEqual(listening.sort(), expected);
    const tried: Record<string, string> = {};
    for (const guestPort of [offset + webPorts[0], offset + workerIds[0]]) {
      const [hostPort] = await freePorts(1);
      await addHostForward(vm.qmpSocket, hostPort, guestPort);
      tried[guestPort] = await httpRequest(hostPort, { path: "/metrics", timeoutMs: 4000, agent: false })
        .then((r) => `answered ${r.status}`, (e: Error) => `no answer: ${e.message}`);
    }
    figures.metricsFromHost = tried;
    for (const [port, r] of Object.entries(tried)) assert.match(r, /^no answer/, `metrics port ${port} answered from outside: ${r}`);
  });

  it("O8. one request id: nginx's access log, the web log, the worker's welcome-job log, and a Sentry event from a real failure (PostgreSQL stopped)", async function () {
    bind();
    const id = `obs-${crypto.randomBytes(6).toString("hex")}`;
    const email = `obs-${crypto.randomBytes(4).toString("hex")}@example.com`;
    const r = await httpRequest(vm.ports.http, {
      method: "POST", path: "/auth/register", headers: { "x-request-id": id },
      body: { email, password: "a long observability password 1", name: "Obs", organizationName: "Obs Org" }, timeoutMs: 60000,
    });
    assert.equal(r.status, 202, r.body);
    assert.equal(r.headers["x-request-id"], id, "nginx kept the client's id");
    const access = (await sh(vm, `sudo grep -F '"request_id":"${id}"' /var/log/nginx/saas-vps.access.log`)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(access.map((l) => [l.method, l.uri, l.status]), [["POST", "/auth/register", 202]]);
    const webLines = (await sh(vm, "sudo journalctl -u 'web@*' -b -o cat --no-pager")).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.request_id === id);
    assert.ok(webLines.length > 0, "no web log line with the request id");
    // The app's log shape: level, service, request_id, message (pino adds time and pid).
    for (const key of ["level", "service", "request_id", "message"]) assert.equal(typeof webLines[0][key], "string", `${key} in ${JSON.stringify(webLines[0])}`);
    let workerLine: Record<string, unknown> | undefined;
    for (const deadline = Date.now() + 240000; !workerLine && Date.now() < deadline; await sleep(2000)) {
      workerLine = (await sh(vm, "sudo journalctl -u 'worker@*' -b -o cat --no-pager")).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
        .find((l) => l.request_id === id && l.message === "job done" && l.task === "send_welcome_email");
    }
    assert.ok(workerLine, "no worker line for the welcome job with the request id");
    figures.requestIdLines = { nginx: access.length, web: webLines.length };

    // A real failure: PostgreSQL down while an authenticated request needs it (500, reported).
    const sentryId = `obs-sentry-${crypto.randomBytes(6).toString("hex")}`;
    const pg = (await sh(vm, "systemctl list-units --plain --no-legend 'postgresql@*-main.service' | awk '{print $1}'")).trim();
    assert.match(pg, /^postgresql@\d+-main\.service$/);
    const before = hooks.envelopes.length;
    await sh(vm, `sudo systemctl stop ${pg}`);
    let failed;
    try {
      failed = await httpRequest(vm.ports.http, { path: "/me", headers: { authorization: "Bearer sess_observability", "x-request-id": sentryId }, timeoutMs: 60000 });
    } finally {
      await sh(vm, `sudo systemctl start ${pg}`);
    }
    const failedAt = Date.now();
    assert.equal(failed.status, 500, failed.body);
    let event: Record<string, any> | undefined;
    for (const deadline = Date.now() + 60000; !event && Date.now() < deadline; await sleep(250)) {
      event = hooks.envelopes.slice(before).flatMap((e) => e.body.items).find((i) => i.header.type === "event" && i.payload.tags?.request_id === sentryId)?.payload;
    }
    assert.ok(event, `no Sentry event with request_id ${sentryId}; envelopes: ${JSON.stringify(hooks.envelopes.slice(before).map((e) => e.body.items.map((i) => i.header.type)))}; rejected: ${hooks.rejected.join("; ")}`);
    figures.sentryEventSeconds = secondsSince(failedAt, Date.now());
    assert.equal(event.environment, stack);
    assert.equal(event.release, release.id);
    assert.deepEqual(event.tags, { component: "web", request_id: sentryId });
    assert.ok(event.exception?.values?.length > 0, "the event carries the exception");
    await waitForHealth(vm, { timeoutMs: 120000, log });
  });

  it("O9. after every fault: each condition alerted once and resolved once, nothing left firing, still one heartbeat today", async function () {
    bind();
    figures.alertLatency = latency;
    log(`fault to alert (host clock; seconds):\n${table(latency)}`);
    await runWatchdog();
    const byCheck = new Map<string, string[]>();
    for (const a of hooks.alerts) byCheck.set(a.body.check, [...(byCheck.get(a.body.check) ?? []), a.body.event]);
    figures.events = Object.fromEntries(byCheck);
    assert.deepEqual(Object.fromEntries(byCheck), {
      "failed-unit:web@3002.service": ["alert", "resolved"],
      "disk-data": ["alert", "resolved"],
      backup: ["alert", "resolved", "alert", "resolved"],
      health: ["alert", "resolved"],
    });
    assert.match(await sh(vm, "sudo watchdog status"), /^all green: no condition alerted$/m);
    assert.equal(hooks.heartbeats.length, 1);
    assert.deepEqual(hooks.rejected, []);
    assert.ok(isHealthy(await httpRequest(vm.ports.http, { path: "/health" })));
  });
}

function table(rows: { case: string; faultToAlert: number; fixToResolved?: number; how: string }[]): string {
  const head = ["case", "fault->alert s", "fix->resolved s", "how"];
  const cells = rows.map((r) => [r.case, String(r.faultToAlert), r.fixToResolved === undefined ? "-" : String(r.fixToResolved), r.how]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [head, ...cells].map((c) => `        ${c.map((v, i) => v.padEnd(widths[i])).join("  ")}`).join("\n");
}
