/**
 * The web role's fail2ban jail, checked by fail2ban itself: `fail2ban-client -t` loads Debian's
 * configuration with every jail file a server gets, and `fail2ban-regex` runs the jail's filter
 * over the error log real nginx wrote while refusing a burst of logins (the rendered site).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NGINX_DENY_ACTION, NGINX_DENY_ACTION_PATH, NGINX_DENY_SCRIPT, NGINX_ERROR_LOG, NGINX_JAIL_PATH, NGINX_LIMIT_FILTER, renderNginxJail } from "../../provisioning/fail2ban";
import { AUTH_ROUTES, renderNginxSite } from "../../provisioning/nginx";
import { freePort, run, tempDir } from "../support/tools";
import { renderAllCases } from "../support/renderCases";

/** fail2ban is a package of cli/setup.sh: CI has it; elsewhere a missing tool is said loudly and skipped. */
function requireFail2ban(ctx: Mocha.Context): void {
  if (spawnSync("fail2ban-client", ["--version"]).error === undefined) return;
  if (process.env.CI) throw new Error("fail2ban-client is not installed; CI runs cli/setup.sh, which installs it");
  console.log("      SKIPPED: fail2ban is not installed here (npm run setup installs it); the jail is NOT checked by fail2ban");
  ctx.skip();
}

describe("fail2ban jail for nginx's rate limit (real fail2ban, real nginx)", function () {
  this.timeout(60_000);

  it("fail2ban-client -t accepts Debian's configuration with every jail file of every web server", async function () {
    requireFail2ban(this);
    if (!existsSync(NGINX_ERROR_LOG)) throw new Error(`${NGINX_ERROR_LOG} is missing: nginx (cli/setup.sh) creates it; the jail needs it to exist`);
    const cases = (await renderAllCases()).filter((c) => c.files.has(NGINX_JAIL_PATH));
    assert.ok(cases.length > 0, "no rendered case has the nginx jail");
    for (const c of cases) {
      const dir = join(tempDir("fail2ban"), "etc");
      cpSync("/etc/fail2ban", dir, { recursive: true });
      for (const [path, content] of c.files) {
        if (path.startsWith("/etc/fail2ban/")) writeFileSync(join(dir, path.slice("/etc/fail2ban/".length)), content);
      }
      const result = run("fail2ban-client", ["-c", dir, "-t"]);
      assert.equal(result.status, 0, `${c.name}: ${result.stdout}${result.stderr}`);
      const dump = run("fail2ban-client", ["-c", dir, "-d"]);
      assert.match(dump.stdout, /\['add', 'nginx-limit-req'/, `${c.name}: the jail is not enabled`);
      // Behind the load balancer the host firewall never sees a client: the jail bans in nginx there.
      const balanced = c.files.has(NGINX_DENY_ACTION_PATH);
      const action = balanced ? NGINX_DENY_ACTION : "nftables";
      assert.match(dump.stdout, new RegExp(`\\['set', 'nginx-limit-req', 'addaction', '${action}'\\]`), `${c.name}: the jail does not ban through ${action}`);
      if (balanced) assert.match(dump.stdout, new RegExp(`'actionban', '${NGINX_DENY_SCRIPT} ban <ip>'`), `${c.name}: the action does not run the ban script`);
    }
  });

  it("its filter matches each of nginx's refusals in the error log, with the client's address, and nothing else", async function () {
    requireFail2ban(this);
    const dir = tempDir("fail2ban-nginx");
    const port = await freePort();
    const upstreamPort = await freePort(); // nothing listens: requests nginx lets through get a 502
    writeFileSync(join(dir, "site.conf"), renderNginxSite({ webPorts: [upstreamPort], httpPort: port, listenAddress: "127.0.0.1", accessLog: join(dir, "access.log") }));
    mkdirSync(join(dir, "tmp"));
    writeFileSync(join(dir, "nginx.conf"),
      `pid ${dir}/nginx.pid; error_log ${dir}/error.log; events {} http { client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; include ${dir}/site.conf; }\n`);
    execFileSync("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")]);
    let refused = 0;
    try {
      for (let i = 0; i < 15; i++) {
        const res = await fetch(`http://127.0.0.1:${port}${AUTH_ROUTES[i % AUTH_ROUTES.length]}`, { method: "POST", body: "{}" });
        await res.arrayBuffer();
        if (res.status === 429) refused++;
      }
    } finally {
      execFileSync("nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-s", "stop"], { stdio: "ignore" });
    }
    assert.ok(refused >= 5, `nginx refused only ${refused} of 15`);
    const log = readFileSync(join(dir, "error.log"), "utf8");
    // A refusal in another zone (none of ours) must not count toward a ban.
    const own = log.split("\n").find((l) => l.includes("limiting requests"))!;
    writeFileSync(join(dir, "error.log"), `${log}${own.replace(/zone "[^"]+", client: [^,]+/, 'zone "another_zone", client: 127.0.0.9')}\n`);
    // The filter as the jail names it, zone option included.
    assert.ok(renderNginxJail().includes(`filter = ${NGINX_LIMIT_FILTER}`));
    const result = run("fail2ban-regex", ["-v", join(dir, "error.log"), NGINX_LIMIT_FILTER]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const matched = Number(/^Lines: \d+ lines, \d+ ignored, (\d+) matched/m.exec(result.stdout)?.[1]);
    assert.equal(matched, refused, `fail2ban-regex matched ${matched} lines; nginx refused ${refused}\n${log}\n${result.stdout}`);
    assert.match(result.stdout, /^\|\s+127\.0\.0\.1\s+\w{3} /m, "the banned address is the client's");
    assert.doesNotMatch(result.stdout, /^\|\s+127\.0\.0\.9\s/m, "a refusal of another zone was matched");
    // The upstream errors of the requests let through (connect() failed) are in the same log and not matched.
    assert.match(log, /connect\(\) failed/);
  });
});
