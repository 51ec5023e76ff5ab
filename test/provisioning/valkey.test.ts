/**
 * The cache server's Valkey, proven on the real valkey-server (Debian's package) with the files
 * stage scaled renders for it: the shipped 20-valkey step makes the TLS certificate and the bind
 * file (systemctl stubbed: it only records the restart), then valkey-server runs the rendered
 * settings and ACL file as the valkey user, in a network namespace of its own where the cache
 * server's private address (10.20.0.40) exists, on the real port. Clients use the VALKEY_URL an app
 * server's web.env gets.
 *
 * What is rewritten, and why (nothing else is): the paths under /etc/saas-vps/, /var/lib/valkey
 * and /run/valkey point into a temp folder, since the test must not write into the host's /etc
 * or the package's own directories. The port, the addresses, TLS, the ACL, persistence and memory
 * settings run as rendered.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseStackConfig } from "../../config/config";
import { planStack, VALKEY_PORT } from "../../plan/plan";
import { buildServerInput, PLACEHOLDER_CONTEXT } from "../../plan/serverInput";
import { CONFIG_DIR, STATE_DIR, WEB_ENV_FILE, WORKER_ENV_FILE } from "../../provisioning/layout";
import { loadScript } from "../../provisioning/scripts";
import { renderServer, type RenderedServer } from "../../provisioning/server";
import { planValkeyMemory, renderValkeyAcl, VALKEY_ACL_PATH, VALKEY_BIND_CONF_PATH, VALKEY_CONF_PATH, VALKEY_DIR, VALKEY_PIDFILE, VALKEY_TLS_CERT_PATH, VALKEY_TLS_KEY_PATH, VALKEY_UNIT } from "../../provisioning/valkey";
import { minimalRaw, scaledRaw } from "../support/fixtures";
import { ip } from "../support/netns";
import { bootstrapEnv, renderedContent, renderedFile } from "../support/rendered";
import { tempDir, userIds } from "../support/tools";

const CACHE_ADDRESS = "10.20.0.40";
/** Another address of the same host, where Valkey must not listen. */
const OTHER_ADDRESS = "10.20.0.99";
const RUN_DIR = "/run/valkey";

describe("@real Valkey on the cache server: the rendered settings on the real valkey-server", function () {
  this.timeout(120_000);
  const ns = `vk-${randomBytes(3).toString("hex")}`;
  let dir: string;
  let cache: RenderedServer;
  let valkeyUrl: string;
  /** The cache server's memory as planned (cacheServerType's default). */
  let cacheMemoryMiB: number;
  let server: ChildProcess | undefined;
  let serverLog = "";
  let exit: Promise<number | null>;

  /** A server path as the test has it: the three prefixes moved into the temp folder. */
  const local = (path: string) => [CONFIG_DIR, VALKEY_DIR, RUN_DIR].reduce((p, prefix) => (p.startsWith(prefix) ? join(dir, prefix, p.slice(prefix.length)) : p), path);
  const rewrite = (text: string) => [CONFIG_DIR, VALKEY_DIR, RUN_DIR].reduce((t, prefix) => t.replaceAll(prefix, join(dir, prefix)), text);
  const inNs = (cmd: string[], input?: string) => spawnSync("ip", ["netns", "exec", ns, ...cmd], { encoding: "utf8", timeout: 30_000, input });
  /** valkey-cli in the namespace; extra flags first, then the command. */
  const cli = (flags: string[], ...command: string[]) => {
    const r = inNs(["valkey-cli", "--no-auth-warning", ...flags, ...command]);
    return `${r.stdout}${r.stderr}`.trim();
  };
  /** The app's own URL, as valkey-cli takes it (it names TLS `valkeys://`; the app's client takes `rediss://`). */
  const asApp = () => ["-u", valkeyUrl.replace(/^rediss:/, "valkeys:"), "--insecure"];
  const step = () => {
    const env = join(dir, "bootstrap.env");
    const settings = bootstrapEnv(cache);
    const lines = [...settings].map(([key, value]) => `${key}="${rewrite(key === "STATE_DIR" ? join(dir, STATE_DIR) : key === "PRIVATE_IPV4_FILE" ? join(dir, "private-ipv4") : value)}"`);
    writeFileSync(env, lines.join("\n") + "\n");
    return spawnSync("bash", [join(dir, "20-valkey")], { encoding: "utf8", env: { ...process.env, BOOTSTRAP_ENV: env, PATH: `${join(dir, "bin")}:${process.env.PATH}` } });
  };
  const systemctlCalls = () => (existsSync(join(dir, "systemctl.log")) ? readFileSync(join(dir, "systemctl.log"), "utf8").trim().split("\n") : []);

  before(async function () {
    if (process.getuid?.() !== 0 || spawnSync("ip", ["-V"]).status !== 0 || spawnSync("valkey-server", ["--version"]).status !== 0) {
      if (process.env.CI) throw new Error("the Valkey test needs root, ip netns and valkey-server (npm run setup)");
      console.log("      SKIPPED LOUDLY: needs root, ip netns and valkey-server");
      this.skip();
    }
    const config = parseStackConfig({ ...minimalRaw("hetzner"), ...scaledRaw("hetzner", 2, false) });
    const plan = planStack(config);
    const render = (name: string) => renderServer(buildServerInput(config, plan.servers.find((s) => s.name === name)!, { machine: "hetzner", ...PLACEHOLDER_CONTEXT }, plan));
    cache = render("cache");
    cacheMemoryMiB = plan.servers.find((s) => s.name === "cache")!.memoryMiB;
    valkeyUrl = /^VALKEY_URL=(.+)$/m.exec(renderedContent(render("app"), WEB_ENV_FILE))![1];
    assert.equal(/^VALKEY_URL=(.+)$/m.exec(renderedContent(render("worker"), WORKER_ENV_FILE))![1], valkeyUrl, "the worker's VALKEY_URL differs from the web processes'");

    dir = tempDir("valkey");
    chmodSync(dir, 0o755); // the valkey user reads its files below it
    const [uid, gid] = userIds("valkey");
    for (const path of [VALKEY_CONF_PATH, VALKEY_ACL_PATH]) {
      const file = renderedFile(cache, path);
      mkdirSync(join(local(path), ".."), { recursive: true });
      writeFileSync(local(path), path === VALKEY_CONF_PATH ? rewrite(file.content) : file.content, { mode: parseInt(file.mode, 8) });
      chownSync(local(path), 0, file.owner === "root:valkey" ? gid : 0);
    }
    for (const owned of [VALKEY_DIR, RUN_DIR]) {
      mkdirSync(join(local(owned), ".."), { recursive: true });
      mkdirSync(local(owned), { mode: 0o750 });
      chownSync(local(owned), uid, gid);
    }
    // The step as shipped, a systemctl that records what it was asked, and the address 15-private-network found.
    writeFileSync(join(dir, "20-valkey"), loadScript("server/20-valkey"));
    mkdirSync(join(dir, "bin"));
    writeFileSync(join(dir, "bin", "systemctl"), `#!/bin/sh\necho "$*" >> ${join(dir, "systemctl.log")}\n`, { mode: 0o755 });
    writeFileSync(join(dir, "private-ipv4"), `${CACHE_ADDRESS}\n`);

    ip("netns", "add", ns);
    ip("-n", ns, "link", "set", "lo", "up");
    // The private interface: one end of a veth pair (both ends up, so it has a carrier), with the cache server's address and another.
    ip("-n", ns, "link", "add", "priv0", "type", "veth", "peer", "name", "priv0p");
    for (const address of [CACHE_ADDRESS, OTHER_ADDRESS]) ip("-n", ns, "addr", "add", `${address}/16`, "dev", "priv0");
    for (const link of ["priv0", "priv0p"]) ip("-n", ns, "link", "set", link, "up");
  });

  after(async () => {
    if (server && server.exitCode === null) {
      server.kill("SIGKILL");
      await exit;
    }
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("20-valkey makes the certificate (key readable by the valkey group only), binds to 127.0.0.1 and the private address, and restarts Valkey once", () => {
    const r = step();
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(readFileSync(local(VALKEY_BIND_CONF_PATH), "utf8"), `bind 127.0.0.1 ${CACHE_ADDRESS}\n`);
    const cert = new X509Certificate(readFileSync(local(VALKEY_TLS_CERT_PATH)));
    assert.match(cert.subjectAltName ?? "", new RegExp(`IP Address:${CACHE_ADDRESS.replace(/\./g, "\\.")}`));
    const key = statSync(local(VALKEY_TLS_KEY_PATH));
    assert.equal((key.mode & 0o777).toString(8), "640");
    assert.deepEqual([key.uid, key.gid], [0, userIds("valkey")[1]]);
    assert.deepEqual(systemctlCalls(), ["daemon-reload", `restart ${VALKEY_UNIT}`]);
  });

  it("20-valkey run again keeps the certificate and does not restart Valkey (the cache survives a bootstrap re-run)", () => {
    const before = readFileSync(local(VALKEY_TLS_CERT_PATH), "utf8");
    const r = step();
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(readFileSync(local(VALKEY_TLS_CERT_PATH), "utf8"), before);
    assert.deepEqual(systemctlCalls(), ["daemon-reload", `restart ${VALKEY_UNIT}`], "a re-run restarted Valkey");
  });

  it("valkey-server starts on the rendered settings as the valkey user and serves TLS on both addresses", async () => {
    // As the drop-in starts it (ExecStart), minus --supervised systemd: no systemd to notify here.
    // setpriv execs valkey-server as the valkey user (runuser would stay in between and die of the signal the stop test sends).
    server = spawn("ip", ["netns", "exec", ns, "setpriv", "--reuid=valkey", "--regid=valkey", "--init-groups", "--", "valkey-server", local(VALKEY_CONF_PATH), "--daemonize", "no"], { stdio: ["ignore", "pipe", "pipe"] });
    server.stdout!.on("data", (c) => (serverLog += c));
    server.stderr!.on("data", (c) => (serverLog += c));
    exit = new Promise((resolve) => server!.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 20_000;
    while (!/Ready to accept connections tls/.test(serverLog)) {
      assert.equal(server.exitCode, null, `valkey-server exited: ${serverLog}`);
      assert.ok(Date.now() < deadline, `valkey-server not ready: ${serverLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const host of ["127.0.0.1", CACHE_ADDRESS]) assert.equal(cli(["--tls", "--insecure", "-h", host, "-p", String(VALKEY_PORT), "--user", "default", "--pass", PLACEHOLDER_CONTEXT.secrets.valkeyPassword!], "PING"), "PONG", host);
  });

  it("refuses a client without the password (NOAUTH) and with a wrong one, on either address", () => {
    for (const host of ["127.0.0.1", CACHE_ADDRESS]) {
      const tls = ["--tls", "--insecure", "-h", host, "-p", String(VALKEY_PORT)];
      assert.match(cli(tls, "GET", "k"), /^NOAUTH Authentication required/, host);
      assert.match(cli([...tls, "--user", "default", "--pass", "not-the-password-at-all"], "PING"), /WRONGPASS/, host);
    }
  });

  it("takes the app's VALKEY_URL over TLS: rate-limit counters with a TTL, cache entries, INFO for the client's ready check", () => {
    assert.match(valkeyUrl, new RegExp(`^rediss://default:[^@]+@${CACHE_ADDRESS.replace(/\./g, "\\.")}:${VALKEY_PORT}$`));
    assert.equal(cli(asApp(), "INCR", "rl:203.0.113.9"), "1");
    assert.equal(cli(asApp(), "EXPIRE", "rl:203.0.113.9", "60"), "1");
    assert.equal(cli(asApp(), "SET", "cache:user:1", "v", "EX", "300"), "OK");
    assert.equal(cli(asApp(), "GET", "cache:user:1"), "v");
    assert.match(cli(asApp(), "INFO", "server"), /^valkey_version:/m);
  });

  it("speaks no plain TCP: a client without TLS gets no answer on the TLS port, and nothing listens on another address", () => {
    const plain = cli(["-h", CACHE_ADDRESS, "-p", String(VALKEY_PORT), "--user", "default", "--pass", PLACEHOLDER_CONTEXT.secrets.valkeyPassword!], "PING");
    assert.notEqual(plain, "PONG");
    assert.match(plain, /Connection reset by peer|Error|I\/O error|Server closed the connection/i, plain);
    assert.match(cli(["--tls", "--insecure", "-h", OTHER_ADDRESS, "-p", String(VALKEY_PORT)], "PING"), /Connection refused/);
    const listening = inNs(["ss", "-Hltn"]).stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)[3]).sort();
    assert.deepEqual(listening, [`${CACHE_ADDRESS}:${VALKEY_PORT}`, `127.0.0.1:${VALKEY_PORT}`].sort(), "Valkey listens elsewhere too (a plain port?)");
  });

  it("refuses the app's login the dangerous commands: FLUSHALL, FLUSHDB, CONFIG, DEBUG, KEYS, SAVE, BGSAVE, SHUTDOWN, ACL, MONITOR, REPLICAOF", () => {
    for (const command of [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["CONFIG", "SET", "save", "60 1"], ["DEBUG", "SLEEP", "0"], ["KEYS", "*"], ["SAVE"], ["BGSAVE"], ["SHUTDOWN"], ["ACL", "LIST"], ["MONITOR"], ["REPLICAOF", "192.0.2.1", "6379"]]) {
      const answer = cli(asApp(), ...command);
      // DEBUG is refused before the ACL is asked: Valkey's enable-debug-command is off by default (and in our settings).
      assert.match(answer, command[0] === "DEBUG" ? /^(NOPERM|ERR DEBUG command not allowed)/ : /^NOPERM/, `${command.join(" ")}: ${answer}`);
    }
    assert.equal(cli(asApp(), "GET", "cache:user:1"), "v", "the data is still there");
  });

  it("runs with the rendered memory cap and eviction policy, and no persistence", () => {
    const memory = cli(asApp(), "INFO", "memory");
    const { maxmemoryMiB, policy } = planValkeyMemory(cacheMemoryMiB);
    assert.match(memory, new RegExp(`^maxmemory:${maxmemoryMiB * 1024 * 1024}\\r?$`, "m"));
    assert.match(memory, new RegExp(`^maxmemory_policy:${policy}\\r?$`, "m"));
    const persistence = cli(asApp(), "INFO", "persistence");
    assert.match(persistence, /^aof_enabled:0\r?$/m);
  });

  it("leaves nothing on disk when it stops (SIGTERM, as systemctl stop sends)", async () => {
    assert.equal(cli(asApp(), "SET", "cache:last", "x"), "OK");
    server!.kill("SIGTERM");
    assert.equal(await exit, 0, serverLog);
    assert.doesNotMatch(serverLog, /Saving the final RDB snapshot|DB saved on disk/);
    assert.deepEqual(readdirSync(local(VALKEY_DIR)), [], "Valkey wrote to its directory");
  });

  it("the ACL file holds the password's hash, never the password", () => {
    const acl = readFileSync(local(VALKEY_ACL_PATH), "utf8");
    const password = PLACEHOLDER_CONTEXT.secrets.valkeyPassword!;
    assert.ok(!acl.includes(password));
    assert.ok(acl.includes(`#${createHash("sha256").update(password).digest("hex")} `));
    assert.equal(renderedFile(cache, VALKEY_ACL_PATH).mode, "0640");
    assert.equal(renderedFile(cache, VALKEY_ACL_PATH).secret, true);
  });
});

describe("Valkey's memory cap and password file (pure)", () => {
  it("caps Valkey at half the server's memory, evicting least recently used keys of any kind, and refuses under 1 GiB", () => {
    assert.deepEqual(planValkeyMemory(1024), { maxmemoryMiB: 512, policy: "allkeys-lru" });
    assert.deepEqual(planValkeyMemory(4096), { maxmemoryMiB: 2048, policy: "allkeys-lru" });
    assert.throws(() => planValkeyMemory(512), /valkey: server memory must be a whole number of at least 1024 MiB; got 512/);
  });

  it("writes one ACL line for the default user, with the hash, and refuses a short or spaced password", () => {
    assert.equal(renderValkeyAcl("abcdefghijklmnop").split("\n").filter(Boolean).length, 1);
    assert.match(renderValkeyAcl("abcdefghijklmnop"), /^user default on #[0-9a-f]{64} ~\* &\* \+@all -@dangerous \+info\n$/);
    assert.throws(() => renderValkeyAcl("short"), /valkey: the password must be 16\+ characters without whitespace/);
    assert.throws(() => renderValkeyAcl("sixteen chars and space"), /without whitespace/);
  });
});
