/**
 * fail2ban's bans behind the load balancer: every connection comes from the balancer, so the
 * nginx jail bans in nginx instead of the host firewall. The rendered ban script writes a `deny`
 * file that the balanced site includes; real nginx then refuses the banned client by the address
 * in the PROXY header and still serves everyone else. The header is written by hand here, from
 * 127.0.0.2: the balanced site takes it on every address but 127.0.0.1.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { join } from "node:path";
import { NGINX_DENY_ACTION, NGINX_DENY_SCRIPT, renderNginxDenyAction, renderNginxJail, renderNginxJailFiles } from "../../provisioning/fail2ban";
import { renderNginxSite } from "../../provisioning/nginx";
import { loadScript } from "../../provisioning/scripts";
import { freePort, run, tempDir } from "../support/tools";

/** One request over a fresh connection that opens with a PROXY v1 header naming `client`. */
function requestAs(port: number, client: string): Promise<number> {
  const family = client.includes(":") ? "TCP6" : "TCP4";
  const balancer = client.includes(":") ? "2001:db8::5" : "10.0.0.5";
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.2", port }, () => {
      socket.write(`PROXY ${family} ${client} ${balancer} 40000 80\r\nGET /api HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`);
    });
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (d) => (answer += d));
    socket.on("end", () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (status) resolve(Number(status[1]));
      else reject(new Error(`no HTTP answer: ${JSON.stringify(answer.slice(0, 200))}`));
    });
    socket.on("error", reject);
  });
}

/** The status `client` gets once nginx's reload has taken (old workers finish what they hold). */
async function settlesTo(port: number, client: string, expected: number): Promise<void> {
  let last = 0;
  for (let i = 0; i < 50; i++) {
    last = await requestAs(port, client);
    if (last === expected) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(last, expected, `${client} still gets ${last}`);
}

describe("fail2ban behind the load balancer bans in nginx, by the client's address from the PROXY header (real nginx, the rendered ban script)", function () {
  this.timeout(60_000);
  let dir: string;
  let port: number;
  let upstream: http.Server;
  let script: (args: string[]) => ReturnType<typeof run>;
  const denyDir = () => join(dir, "denied");

  before(async () => {
    dir = tempDir("nginx-deny");
    const webPort = await freePort();
    upstream = http.createServer((_req, res) => res.end("ok")).listen(webPort, "127.0.0.1");
    port = await freePort();
    const healthPort = await freePort();
    writeFileSync(join(dir, "site.conf"), renderNginxSite({
      webPorts: [webPort], httpPort: port, accessLog: join(dir, "access.log"),
      balancer: { trustedCidr: "127.0.0.0/8", drainFile: join(dir, "drain"), healthPort, denyDir: denyDir() },
    }));
    mkdirSync(join(dir, "tmp"));
    const conf = join(dir, "nginx.conf");
    writeFileSync(conf, `pid ${dir}/nginx.pid; error_log ${dir}/error.log; events {} http { client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; include ${dir}/site.conf; }\n`);
    execFileSync("nginx", ["-p", dir, "-c", conf]);
    // The script as rendered; its settings from a bootstrap.env of the test's, and systemctl a
    // stand-in that reloads this nginx (no systemd here).
    const bin = join(dir, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "nginx-deny"), loadScript("server/nginx-deny"));
    writeFileSync(join(bin, "systemctl"), `#!/bin/sh\n[ "$*" = "try-reload-or-restart nginx" ] || { echo "unexpected systemctl $*" >&2; exit 1; }\nexec nginx -p ${dir} -c ${conf} -s reload\n`);
    chmodSync(join(bin, "nginx-deny"), 0o755);
    chmodSync(join(bin, "systemctl"), 0o755);
    writeFileSync(join(dir, "bootstrap.env"), `NGINX_DENY_DIR=${denyDir()}\n`);
    script = (args) => run(join(bin, "nginx-deny"), args, { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, BOOTSTRAP_ENV: join(dir, "bootstrap.env") } });
  });

  after(() => {
    if (existsSync(join(dir, "nginx.pid"))) execFileSync("nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-s", "stop"], { stdio: "ignore" });
    upstream?.close();
  });

  it("a banned address gets 403 through the balancer while others are served; unban and flush let it back", async () => {
    assert.equal(await requestAs(port, "203.0.113.9"), 200);
    const ban = script(["ban", "203.0.113.9"]);
    assert.equal(ban.status, 0, ban.stderr);
    await settlesTo(port, "203.0.113.9", 403);
    assert.equal(await requestAs(port, "203.0.113.10"), 200, "a client next to the banned one is still served");

    assert.equal(script(["ban", "2001:db8:1::7"]).status, 0);
    await settlesTo(port, "2001:db8:1::7", 403);
    assert.equal(await requestAs(port, "2001:db8:1::8"), 200);

    assert.equal(script(["unban", "203.0.113.9"]).status, 0);
    await settlesTo(port, "203.0.113.9", 200);
    assert.equal(await requestAs(port, "2001:db8:1::7"), 403, "unbanning one address lifted another's ban");

    assert.equal(script(["flush"]).status, 0);
    await settlesTo(port, "2001:db8:1::7", 200);
    assert.deepEqual(readdirSync(denyDir()), []);
  });

  it("refuses anything but one address, and writes nothing then", () => {
    for (const bad of [["ban", "203.0.113.9; allow all"], ["ban", "../../etc/x"], ["ban"], ["unban", "*"], ["restart"]]) {
      const r = script(bad);
      assert.equal(r.status, 2, `${bad.join(" ")}: exit ${r.status} ${r.stderr}`);
    }
    assert.deepEqual(existsSync(denyDir()) ? readdirSync(denyDir()) : [], []);
  });

  it("the jail of a balanced server names the action, the action the script; an unbalanced server's jail bans in nftables", () => {
    assert.match(renderNginxJail(true), new RegExp(`^banaction = ${NGINX_DENY_ACTION}$`, "m"));
    assert.match(renderNginxJail(false), /^banaction = nftables\[type=multiport\]$/m);
    assert.match(renderNginxDenyAction(), new RegExp(`^actionban = ${NGINX_DENY_SCRIPT} ban <ip>$`, "m"));
    assert.deepEqual(renderNginxJailFiles(false).map((f) => f.path), ["/etc/fail2ban/jail.d/60-saas-vps-nginx.conf"]);
    assert.ok(renderNginxJailFiles(true).some((f) => f.path === NGINX_DENY_SCRIPT && f.mode === "0755"));
  });
});
