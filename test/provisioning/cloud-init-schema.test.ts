import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCloudInitSchema, PINNED_SCHEMA, PINNED_VERSION, validateCloudConfig } from "./cloudInitSchema";

const ROOT = join(__dirname, "..", "..");

/** A small valid cloud-config; each bad case below changes one thing in it. */
const GOOD = `#cloud-config
hostname: app
package_update: true
packages:
  - nginx
write_files:
  - path: /etc/nginx/conf.d/app.conf
    content: "server {}\\n"
    permissions: "0644"
    defer: true
runcmd:
  - [systemctl, reload, nginx]
`;

/** Renders a stack the way a developer does and returns each server's user-data by name. */
function renderUserData(stack: string): Map<string, string> {
  const out = mkdtempSync(join(tmpdir(), `cloud-init-schema-${stack}-`));
  try {
    execFileSync("npm", ["run", "-s", "render", "--", "--stack", stack, "--out", out], { cwd: ROOT, stdio: "pipe" });
    return new Map(readdirSync(out).map((server) => [server, readFileSync(join(out, server, "user-data.yaml"), "utf8")]));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

// @real: cloud-init 25's own schema, pinned in test/support/cloud-init/ (no download here).
describe("@real cloud-init 25 schema (Debian 13) accepts our user-data", function () {
  it("is the pinned schema of a Debian 13 cloud-init 25 package", function () {
    const { version } = loadCloudInitSchema();
    assert.match(version, /^25\.\d+(\.\d+)*-\d+(\+deb13u\d+)?$/, `${PINNED_VERSION} names ${version}`);
    // The schema file is the package's, untouched: cloud-init's own meta-schema id and module list.
    const schema = JSON.parse(readFileSync(PINNED_SCHEMA, "utf8"));
    assert.equal(schema.$schema, "http://json-schema.org/draft-04/schema#");
    assert.ok(schema.allOf.length > 50, `only ${schema.allOf.length} modules in ${PINNED_SCHEMA}`);
  });

  it("accepts a known-good cloud-config", function () {
    assert.deepEqual(validateCloudConfig(GOOD), []);
  });

  it("rejects packages that is not a list", function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("packages:\n  - nginx", "packages: nginx")), [
      "packages: must be array",
    ]);
  });

  it("rejects an unknown key in a write_files entry", function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("    defer: true", "    defer: true\n    mode: \"0644\"")), [
      'write_files.0: unknown key "mode"',
    ]);
  });

  it("rejects a misspelled top-level key, which cloud-init would silently ignore", function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("write_files:", "write_file:")), [
      "write_file: unknown top-level key; cloud-init ignores it",
    ]);
  });

  it('rejects defer: "yes" (a string, not a boolean)', function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("defer: true", 'defer: "yes"')), [
      "write_files.0.defer: must be boolean",
    ]);
  });

  it("reads YAML 1.1 as cloud-init's PyYAML does: unquoted yes is a boolean", function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("defer: true", "defer: yes")), []);
  });

  it("reports deprecated top-level keys and a missing #cloud-config header", function () {
    assert.deepEqual(validateCloudConfig(GOOD.replace("package_update:", "apt_update:")), [
      "apt_update: deprecated since cloud-init 22.2. Use **package_update** instead.",
    ]);
    assert.match(validateCloudConfig(GOOD.replace("#cloud-config\n", ""))[0], /must start with a "#cloud-config" line/);
  });

  for (const stack of ["staging", "prod"]) {
    it(`accepts the rendered user-data of every server in stack ${stack}`, function () {
      const servers = renderUserData(stack);
      assert.ok(servers.size > 0, `stack ${stack} rendered no server`);
      for (const [server, userData] of servers) {
        assert.deepEqual(validateCloudConfig(userData), [], `${stack}/${server}/user-data.yaml`);
      }
    });
  }
});
