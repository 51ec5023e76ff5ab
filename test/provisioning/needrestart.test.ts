/**
 * needrestart reads /etc/needrestart/needrestart.conf, which evaluates every conf.d/*.conf drop-in
 * as Perl. Here the real Debian file loads our rendered drop-in from a temp conf.d the same way,
 * and the setting that results is automatic restarts.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NEEDRESTART_CONF_PATH, renderNeedrestartConfig } from "../../provisioning/system";
import { renderAllCases } from "../support/renderCases";
import { run, tempDir } from "../support/tools";

const DEBIAN_CONF = "/etc/needrestart/needrestart.conf";

describe("needrestart drop-in (Debian's needrestart.conf, real Perl)", function () {
  this.timeout(120_000);

  it("is on every server, and Debian's needrestart.conf loads it to restart services automatically", async function () {
    if (!existsSync(DEBIAN_CONF)) {
      if (process.env.CI) throw new Error(`${DEBIAN_CONF} is missing; CI runs cli/setup.sh, which installs needrestart`);
      console.log("      SKIPPED: needrestart is not installed here (npm run setup installs it); the drop-in is NOT checked");
      this.skip();
    }
    for (const c of await renderAllCases()) assert.equal(c.files.get(NEEDRESTART_CONF_PATH), renderNeedrestartConfig(), c.name);
    const dir = tempDir("needrestart");
    // The drop-ins in a directory of their own: Debian's file evaluates every *.conf there, and
    // would evaluate itself (without end) if it sat among them.
    const confD = join(dir, "conf.d");
    mkdirSync(confD);
    writeFileSync(join(confD, "50-saas-vps.conf"), renderNeedrestartConfig());
    const main = join(dir, "needrestart.conf");
    const debian = readFileSync(DEBIAN_CONF, "utf8");
    assert.ok(debian.includes("/etc/needrestart/conf.d"), `${DEBIAN_CONF} no longer reads conf.d`);
    writeFileSync(main, debian.replaceAll("/etc/needrestart/conf.d", confD));
    const script = `our %nrconf; our $LOGPREF = ""; do $ARGV[0]; die $@ if $@; print "$nrconf{restart}\\n";`;
    const result = run("perl", ["-e", script, main]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, "a\n", "needrestart's mode after Debian's file and our drop-in");
  });
});
