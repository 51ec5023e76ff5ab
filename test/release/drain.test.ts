/**
 * A release behind the provider's load balancer (stage scaled, release.conf's LB_* keys): the
 * server is drained at the balancer before any instance stops, for LB_OUT_SECONDS, and the release
 * returns only LB_IN_SECONDS after the drain file is gone, so the next server's release starts
 * once this one serves again; a failed release undrains after its rollback; a first release and
 * `release restart` never drain. The stand-in app through the service shim (as script.test.ts),
 * with a wrapper that records, at every service call, whether the drain file exists. The balancer
 * itself acting on the file is test/provisioning/loadBalancerDrain.test.ts.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { renderReleaseConf } from "../../provisioning/release";
import { FakeServer, SERVICE_SHIM, STANDIN_APP, fakeId, freePorts, packArtifact, tempDir } from "./harness";

const BROKEN_WEB = "#!/bin/sh\necho 'web: cannot start' >&2\nexit 1\n";
const OUT_SECONDS = 2;
const IN_SECONDS = 2;

interface Call {
  at: number;
  verb: string;
  unit: string;
  /** The drain file's mtime (seconds) when it existed at the call, else undefined. */
  drainedSince?: number;
}

describe("@real release script behind a load balancer: drain before, undrain after (stand-in app)", function () {
  this.timeout(180_000);
  let dir: string;
  let server: FakeServer;
  let drainFile: string;
  let callLog: string;

  before(async () => {
    dir = tempDir("release-drain");
    drainFile = path.join(dir, "run/saas-vps/lb-drain");
    callLog = path.join(dir, "calls.log");
    // Records each service call with the drain file's state, then does what the shim does.
    const wrapper = path.join(dir, "recording-ctl.sh");
    fs.writeFileSync(
      wrapper,
      `#!/bin/bash\nif [[ -e ${drainFile} ]]; then d=$(stat -c %.3Y ${drainFile}); else d=-; fi\necho "$(date +%s.%N) $1 $2 $d" >>${callLog}\nexec ${SERVICE_SHIM} "$@"\n`,
      { mode: 0o755 },
    );
    const conf = renderReleaseConf({ webPorts: await freePorts(2), workerUnits: [], migrate: true, balancer: { drainFile, outSeconds: OUT_SECONDS, inSeconds: IN_SECONDS } })
      .replace('APP_USER="app"', 'APP_USER="root"')
      .split("\n")
      .filter((line) => /^[A-Z_]+=/.test(line));
    server = new FakeServer(path.join(dir, "server"), {
      webPorts: [],
      env: { DATABASE_URL: "postgres://unused@127.0.0.1/x", SECRET_KEY: "s".repeat(40), APP_URL: "http://example.test", MIGRATE_LOG: path.join(dir, "migrate.log") },
      // The rendered file's keys win over the harness's own (read last).
      conf: ["SETTLE_SECONDS=0", "HEALTH_TIMEOUT=5", ...conf],
    });
  });
  after(() => {
    server?.stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[]) => server.run(args, { RELEASE_SERVICE_CTL: `/usr/bin/env SHIM_STATE=${server.shimState} ${path.join(dir, "recording-ctl.sh")}` });
  const artifact = (id: string, overrides: Record<string, string> = {}) => packArtifact(STANDIN_APP, id, dir, overrides);
  const callsFrom = (from: number): Call[] =>
    (fs.existsSync(callLog) ? fs.readFileSync(callLog, "utf8").trim().split("\n") : [])
      .slice(from)
      .map((line) => {
        const [at, verb, unit, drained] = line.split(" ");
        return { at: Number(at), verb, unit, ...(drained === "-" ? {} : { drainedSince: Number(drained) }) };
      });
  const logLength = () => (fs.existsSync(callLog) ? fs.readFileSync(callLog, "utf8").trim().split("\n").length : 0);
  const stops = (calls: Call[]) => calls.filter((c) => c.verb === "stop" && c.unit.startsWith("web@"));

  it("a first release drains nothing: the server is not in rotation before it is healthy", async () => {
    const r = await run([artifact(fakeId("a"))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(callsFrom(0).every((c) => c.drainedSince === undefined), "the drain file existed during a first release");
    assert.doesNotMatch(r.stdout, /load balancer/);
  });

  it("drains before the first instance stops, for LB_OUT_SECONDS, and returns LB_IN_SECONDS after undraining", async () => {
    const from = logLength();
    const r = await run([artifact(fakeId("b"))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const stopped = stops(callsFrom(from));
    assert.equal(stopped.length, 2, r.stdout);
    for (const stop of stopped) {
      assert.ok(stop.drainedSince !== undefined, `${stop.unit} stopped while the server was in rotation`);
      assert.ok(stop.at - stop.drainedSince >= OUT_SECONDS - 0.05, `${stop.unit} stopped ${(stop.at - stop.drainedSince).toFixed(2)}s after the drain, before the balancer's ${OUT_SECONDS}s`);
    }
    assert.equal(fs.existsSync(drainFile), false, "still drained after the release");
    // The drain log line comes before the switch, the undrain one before OK, LB_IN_SECONDS apart from the end.
    const line = (pattern: RegExp) => r.stdout.split("\n").findIndex((l) => pattern.test(l));
    assert.ok(line(/load balancer: draining/) < line(/switching current/), r.stdout);
    assert.ok(line(/load balancer: undrained; 2s/) > line(/healthy on/), r.stdout);
    const undrainedAt = Number(/\[\+(\d+\.\d)s\] load balancer: undrained/.exec(r.stdout)?.[1]);
    const total = Number(/release: OK — .* in (\d+\.\d)s/.exec(r.stdout)?.[1]);
    assert.ok(total - undrainedAt >= IN_SECONDS - 0.1, `returned ${(total - undrainedAt).toFixed(1)}s after undraining: ${r.stdout}`);
    assert.match(r.stdout, /load balancer +drained 2s before the roll/);
    assert.match(r.stdout, /load balancer +back in rotation after 2s/);
  });

  it("a failed release rolls back drained, then undrains", async () => {
    const from = logLength();
    const r = await run([artifact(fakeId("c"), { "bin/web": BROKEN_WEB })]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /rolled back; [0-9a-f]{16} is serving/);
    // Migrations run before the drain (they touch no instance); every web instance's stop and start after it.
    const calls = callsFrom(from).filter((c) => c.verb !== "is-active" && c.unit.startsWith("web@"));
    assert.ok(calls.length >= 2 && calls.every((c) => c.drainedSince !== undefined), `a web instance of the failed release or its rollback was touched undrained: ${JSON.stringify(calls)}`);
    assert.equal(fs.existsSync(drainFile), false, "still drained after the rollback");
    assert.match(r.stdout + r.stderr, /load balancer: undrained \(/);
  });

  it("status says whether the server is drained", async () => {
    fs.mkdirSync(path.dirname(drainFile), { recursive: true });
    fs.writeFileSync(drainFile, "");
    try {
      assert.match((await run(["status"])).stdout, /^load balancer: DRAINED/m);
    } finally {
      fs.rmSync(drainFile);
    }
    assert.match((await run(["status"])).stdout, /^load balancer: in rotation/m);
  });

  it("restart never drains: a day-2 change restarts every server at once", async () => {
    const from = logLength();
    const r = await run(["restart"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(stops(callsFrom(from)).length, 2);
    assert.ok(callsFrom(from).every((c) => c.drainedSince === undefined), "restart drained the server");
  });
});
