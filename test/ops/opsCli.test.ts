/**
 * `npm run ops`: its command line (parsed as typed; the real CLI for the exit status of a bad
 * one), the status lines it reads from cli/ops/status.sh laid out for a person, and the stack
 * outputs it finds the servers in.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { OpsUsageError, parseOpsArgs } from "../../cli/lib/opsArgs";
import { logsCommand, logsScript, NOT_HERE, passThroughCommand } from "../../cli/lib/opsRemote";
import { formatStatus, parseStatusLines, serverStatus } from "../../cli/lib/opsStatus";
import { writeFileSync } from "node:fs";
import { run, tempDir } from "../support/tools";
import { knownHostsFor, OpsTargetError, stackServersFromOutputs } from "../../cli/lib/opsTargets";

const ROOT = join(__dirname, "..", "..");
const KEY_APP = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgQhqhz7570cVflJzFU7G+rWj7+er6oB85ewHM+R5QD";
const KEY_DB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ2eZ7Yv6Qm2o0y3y6o7kq4n9Q6w5mQq0b5mC3T0xQ2d";

describe("npm run ops: command line", () => {
  it("status, logs, release and backup as typed", () => {
    assert.deepEqual(parseOpsArgs(["status", "--stack", "prod"]), { command: "status", stack: "prod", vm: false, name: undefined, runDir: undefined, server: undefined, passThrough: [], help: false });
    assert.equal(parseOpsArgs(["logs", "--stack", "prod", "web@3001"]).unit, "web@3001.service");
    assert.equal(parseOpsArgs(["logs", "--stack", "prod", "backup.timer"]).unit, "backup.timer");
    assert.equal(parseOpsArgs(["logs", "--stack", "prod"]).unit, undefined);
    assert.deepEqual(parseOpsArgs(["release", "rollback", "0123456789abcdef", "--stack", "prod", "--server", "app"]).passThrough, ["rollback", "0123456789abcdef"]);
    assert.deepEqual(parseOpsArgs(["backup", "--stack", "staging", "--", "now", "--verbose"]).passThrough, ["now", "--verbose"]);
    const vm = parseOpsArgs(["status", "--vm", "--run-dir", "/tmp/x"]);
    assert.equal(vm.vm, true);
    assert.equal(vm.runDir, "/tmp/x");
  });

  for (const [argv, message] of [
    [[], /give a command: status, logs, release, backup/],
    [["frob", "--stack", "prod"], /unknown command "frob"; the commands are status, logs, release, backup/],
    [["status"], /give --stack NAME \(a deployed stack\), or --vm for the local VM/],
    [["status", "--vm"], /--vm needs --stack NAME/],
    [["status", "--stack", "prod", "extra"], /status takes no arguments; got extra/],
    [["logs", "--stack", "prod", "web@3001", "worker@1"], /logs takes at most one unit/],
    [["logs", "--stack", "prod", "web@3001;id"], /"web@3001;id" is not a unit name/],
    [["status", "--stack", "prod", "--bogus"], /Unknown option '--bogus'/],
    [["status", "--stack", "../etc"], /--stack must be a stack name/],
  ] as const) {
    it(`refuses ${JSON.stringify(argv)}`, () => {
      assert.throws(() => parseOpsArgs([...argv]), (e: unknown) => e instanceof OpsUsageError && message.test(e.message));
    });
  }

  it("the CLI answers a bad command line with the reason and the usage, exit 2, before any SSH", () => {
    for (const [argv, reason] of [
      [["frob", "--stack", "prod"], 'ops: unknown command "frob"'],
      [["status"], "ops: give --stack NAME"],
      [["status", "--stack", "nosuch"], "ops: no stack file Pulumi.nosuch.yaml; stacks here: managed, prod, scaled, separated, staging"],
      [["logs", "--stack", "prod", "a;b"], 'ops: logs: "a;b" is not a unit name'],
    ] as const) {
      const r = spawnSync("npx", ["tsx", "cli/ops.ts", ...argv], { cwd: ROOT, encoding: "utf8" });
      assert.equal(r.status, 2, `${argv.join(" ")}: ${r.stderr}`);
      assert.ok(r.stderr.startsWith(reason), r.stderr);
      assert.match(r.stderr, /usage:\n {2}npm run ops -- status/);
      assert.equal(r.stdout, "");
    }
  });
});

describe("npm run ops -- status: the script's lines, for a person", () => {
  // As cli/ops/status.sh printed them on the e2e VM (details shortened).
  const printed = [
    "OK\tunit web@3001.service\tactive (running)",
    "FAIL\tunit worker@1.service\tinactive (dead), result success: journalctl -u worker@1.service -n 50",
    "OK\tlisten 127.0.0.1:9100\tprometheus-node: metrics (node exporter)",
    "WARN\tmemory\t15% available (301 of 1973 MiB); alert below 10%",
    "OK\treplication\tn/a: no PostgreSQL on this server",
    "",
  ].join("\n");

  it("reads each line; anything else the run printed is a FAIL, never dropped", () => {
    assert.deepEqual(parseStatusLines(printed)[3], { level: "WARN", check: "memory", detail: "15% available (301 of 1973 MiB); alert below 10%" });
    assert.deepEqual(parseStatusLines("OK\tdisk-root\t/ 20% used\nbash: line 3: jq: command not found\n"), [
      { level: "OK", check: "disk-root", detail: "/ 20% used" },
      { level: "FAIL", check: "status script", detail: "unexpected output: bash: line 3: jq: command not found" },
    ]);
  });

  it("lays them out aligned under a heading that counts them", () => {
    assert.equal(formatStatus("app (admin@192.0.2.10)", parseStatusLines(printed)), [
      "app (admin@192.0.2.10): 3 OK, 1 WARN, 1 FAIL",
      "  OK    unit web@3001.service  active (running)",
      "  FAIL  unit worker@1.service  inactive (dead), result success: journalctl -u worker@1.service -n 50",
      "  OK    listen 127.0.0.1:9100  prometheus-node: metrics (node exporter)",
      "  WARN  memory                 15% available (301 of 1973 MiB); alert below 10%",
      "  OK    replication            n/a: no PostgreSQL on this server",
      "",
    ].join("\n"));
  });

  it("a run that could not log in, or ended without its lines, is a FAIL of its own", () => {
    assert.deepEqual(serverStatus({ code: 255, stdout: "", stderr: "Host key verification failed.\n" }),
      [{ level: "FAIL", check: "ssh", detail: "Host key verification failed." }]);
    assert.deepEqual(serverStatus({ code: 1, stdout: "OK\tmemory\t80% available\n", stderr: "sudo: a password is required\n" }), [
      { level: "OK", check: "memory", detail: "80% available" },
      { level: "FAIL", check: "status script", detail: "exit 1: sudo: a password is required" },
    ]);
    assert.equal(serverStatus({ code: 1, stdout: printed, stderr: "" }).length, 5);
  });
});

describe("npm run ops: the servers from the stack outputs", () => {
  it("every server, app first, each with the host key to pin", () => {
    const servers = stackServersFromOutputs("prod", { sshTargets: { db: "admin@192.0.2.30", app: "admin@192.0.2.10" }, sshHostKeys: { db: KEY_DB, app: KEY_APP }, url: "http://192.0.2.10" });
    assert.deepEqual(servers.map((s) => s.server), ["app", "db"]);
    assert.equal(knownHostsFor(servers), `192.0.2.10 ${KEY_APP}\n192.0.2.30 ${KEY_DB}\n`);
  });

  it("outputs from before these existed, or a secret in their place, are refused with what to do", () => {
    assert.throws(() => stackServersFromOutputs("prod", { releaseSshTargets: { app: "admin@192.0.2.10" } }),
      (e: unknown) => e instanceof OpsTargetError && /stack prod has no outputs sshTargets and sshHostKeys: run pulumi up/.test(e.message));
    assert.throws(() => stackServersFromOutputs("prod", { sshTargets: { app: "[secret]" }, sshHostKeys: { app: KEY_APP } }),
      /output sshTargets.app is not user@IPv4; got "\[secret\]"/);
    assert.throws(() => stackServersFromOutputs("prod", { sshTargets: { app: "admin@192.0.2.10" }, sshHostKeys: {} }),
      /output sshHostKeys.app is not an ssh-ed25519 public key; got undefined/);
  });
});

describe("npm run ops: what runs on the server", () => {
  it("every remote command and the script inside it pass shellcheck", () => {
    for (const script of [logsScript(undefined), logsScript("worker@1.service"), logsCommand("web@3001.service"), logsCommand(undefined),
      passThroughCommand("release", ["rollback", "0123456789abcdef"]), passThroughCommand("backup", ["now"])]) {
      const r = run("shellcheck", ["-s", "bash", "-"], { input: `${script}\n` });
      assert.equal(r.status, 0, `${script}\n${r.stdout}`);
    }
  });

  it("release and backup pass the words through as words, each quoted once; 97 where the server has no such command", () => {
    const dir = tempDir("ops-remote");
    // sudo as root would be: run the command. A stand-in for the server's command prints its words.
    writeFileSync(join(dir, "sudo"), '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });
    writeFileSync(join(dir, "release"), "#!/bin/sh\nprintf '<%s>' \"$@\"\n", { mode: 0o755 });
    const env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
    const words = run("bash", ["-c", passThroughCommand("release", ["rollback", "it's; $(echo injected) `echo x`"], join(dir, "release"))], { env });
    assert.deepEqual([words.status, words.stdout], [0, "<rollback><it's; $(echo injected) `echo x`>"]);
    const absent = run("bash", ["-c", passThroughCommand("backup", ["now"], join(dir, "backup"))], { env });
    assert.equal(absent.status, NOT_HERE);
  });
});
