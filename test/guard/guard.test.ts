/**
 * The replace guard (cli/guard.ts) and the drift lister (cli/drift.ts) against recorded preview
 * documents. The fixtures under fixtures/ have the shape Pulumi's CLI prints for
 * `pulumi preview --json` and `pulumi refresh --preview-only --json`: its PreviewDigest and
 * PreviewStep (pulumi/pulumi pkg/display/json.go), filled by ShowPreviewDigest
 * (pkg/backend/display/json.go) with apitype.ResourceV3 states (sdk/go/common/apitype/core.go)
 * whose secrets read "[secret]"; the step operations are pkg/resource/deploy/step.go's; the
 * protected-replace error is the step generator's message. The exit codes are checked through the
 * real command (`npx tsx cli/guard.ts`), as a workflow runs it.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROTECTED_KINDS } from "../../components/protection";
import { guardPreview } from "../../cli/lib/guard";
import { PreviewFormatError, readPreview } from "../../cli/lib/previewJson";
import { run, tempDir } from "../support/tools";

const ROOT = join(__dirname, "..", "..");
const FIXTURES = join(__dirname, "fixtures");
const fixture = (name: string) => join(FIXTURES, name);
const tsx = join(ROOT, "node_modules", ".bin", "tsx");

/** Runs the guard as `npm run guard` does, without GUARD_ALLOW from the caller's environment. */
function guard(args: string[], env: Record<string, string> = {}) {
  const { GUARD_ALLOW: _ignored, ...base } = process.env;
  return run(tsx, [join(ROOT, "cli", "guard.ts"), ...args], { cwd: ROOT, env: { ...base, ...env } });
}

function drift(args: string[]) {
  return run(tsx, [join(ROOT, "cli", "drift.ts"), ...args], { cwd: ROOT });
}

/** Writes a document to a temp file and returns its path. */
function documentFile(content: string): string {
  const file = join(tempDir("guard"), "preview.json");
  writeFileSync(file, content);
  return file;
}

const SERVER_URN = "urn:pulumi:prod::saas-vps::saas-vps:stack:SaasStack$saas-vps:server:VpsServer$hcloud:index/server:Server::saas-prod-app-server";

describe("replace guard: npm run guard on recorded previews", function () {
  // Each case starts the command (tsx) once or twice: seconds idle, up to a minute on a loaded machine.
  this.timeout(240_000);

  it("a plain update (a pushed file changes) passes", () => {
    const result = guard([fixture("update-push.json")]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /no protected resource would be replaced or deleted/);
  });

  it("a server replacement fails, naming its URN, type, operation and the property that forces it", () => {
    const result = guard([fixture("replace-server.json")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /replace server saas-prod-app-server \(hcloud:index\/server:Server\)/);
    assert.ok(result.stdout.includes(`urn: ${SERVER_URN}`), result.stdout);
    assert.match(result.stdout, /replaced because of: location/);
    assert.match(result.stdout, /changes: location \(update-replace\)/);
    // Pulumi's own refusal (a preview error) is passed on too.
    assert.match(result.stdout, /pulumi reported an error: unable to replace resource/);
    // The firewall's in-place update in the same preview is not a finding.
    assert.doesNotMatch(result.stdout, /saas-prod-app-fw/);
  });

  it("a volume deletion fails, naming the volume and not its (unprotected) attachment", () => {
    const result = guard([fixture("delete-volume.json")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /delete data volume saas-staging-app-app-data \(digitalocean:index\/volume:Volume\)/);
    assert.doesNotMatch(result.stdout, /app-data-attach/);
  });

  it("a bucket replacement fails in every step that shows it (--show-replacement-steps)", () => {
    const result = guard([fixture("replace-bucket-steps.json")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    for (const op of ["create-replacement", "replace", "delete-replaced"]) {
      assert.match(result.stdout, new RegExp(`\\n  ${op} bucket saas-staging-backups-bucket \\(digitalocean:index/spacesBucket:SpacesBucket\\)`));
    }
    assert.doesNotMatch(result.stdout, /saas-staging-backups-key/);
  });

  it("an allowed replacement passes: by name with --allow, by URN in GUARD_ALLOW", () => {
    const byName = guard([fixture("replace-server.json"), "--allow", "saas-prod-app-server"]);
    assert.equal(byName.status, 0, byName.stdout + byName.stderr);
    assert.match(byName.stdout, /allowed by: saas-prod-app-server/);
    const byUrn = guard([fixture("replace-server.json")], { GUARD_ALLOW: `unrelated-name, ${SERVER_URN}` });
    assert.equal(byUrn.status, 0, byUrn.stdout + byUrn.stderr);
    assert.match(byUrn.stdout, /allowance unrelated-name matches no protected change/);
  });

  it("an allowance covers only what it names: allowing the bucket leaves the volume blocked", () => {
    const result = guard([fixture("delete-volume.json"), "--allow", "saas-staging-backups-bucket,saas-staging-app-app-data-attach"]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /delete data volume saas-staging-app-app-data/);
  });

  it("creates, updates and secrets shown as \"[secret]\" pass (a stage move adding a server)", () => {
    const result = guard([fixture("create-separated.json")]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /\[secret\]/);
  });

  it("writes the findings as a pull-request comment with --markdown", () => {
    const file = join(tempDir("guard"), "guard.md");
    const result = guard([fixture("replace-server.json"), "--markdown", file, "--title", "prod"]);
    assert.equal(result.status, 1);
    const md = readFileSync(file, "utf8");
    assert.match(md, /^### prod\n/);
    assert.match(md, /\| replace \| server \| `saas-prod-app-server` \| `hcloud:index\/server:Server` \| `location` \| `location \(update-replace\)` \|/);
    assert.match(md, /allow-replace:<resource>/);
  });

  it("malformed or unknown input fails closed (exit 2) with the reader's message", () => {
    for (const [content, message] of [["", /the document is empty/], ['{"steps": [{"op": "obliterate"}]}', /steps\[0\]\.op: expected one of/]] as const) {
      const result = guard([documentFile(content)]);
      assert.equal(result.status, 2, `${JSON.stringify(content)}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, /is not a pulumi preview --json document/);
      assert.match(result.stderr, message);
    }
  });

  it("a missing file or no file is a usage error (exit 2)", () => {
    assert.equal(guard([join(tempDir("guard"), "none.json")]).status, 2);
    const none = guard([]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /usage: npm run guard/);
  });
});

describe("replace guard: judgement", () => {
  const doc = (steps: unknown[]) => readPreview(JSON.stringify({ steps }));
  const urn = (type: string, name: string) => `urn:pulumi:prod::saas-vps::saas-vps:stack:SaasStack$${type}::${name}`;

  it("every protected kind is guarded, whatever the operation that destroys it", () => {
    for (const type of Object.keys(PROTECTED_KINDS)) {
      for (const op of ["replace", "delete", "delete-replaced", "create-replacement", "import-replacement", "remove-pending-replace"]) {
        const result = guardPreview(doc([{ op, urn: urn(type, "x") }]), []);
        assert.equal(result.blocked.length, 1, `${op} ${type}`);
        assert.equal(result.blocked[0].kind, PROTECTED_KINDS[type]);
      }
    }
  });

  it("creates, updates, reads and refreshes of protected kinds pass", () => {
    for (const op of ["create", "update", "same", "read", "refresh", "import"]) {
      assert.equal(guardPreview(doc([{ op, urn: urn("hcloud:index/volume:Volume", "v") }]), []).blocked.length, 0, op);
    }
  });

  it("a resource of another type that its state marks protected is guarded too", () => {
    const result = guardPreview(doc([{ op: "delete", urn: urn("tls:index/privateKey:PrivateKey", "host-key"), oldState: { type: "tls:index/privateKey:PrivateKey", protect: true } }]), []);
    assert.equal(result.blocked[0]?.kind, "protected resource");
  });

  it("notes a protected resource whose protect flag a change removes (Pulumi lists it as a \"same\" step)", () => {
    const result = guardPreview(doc([{ op: "same", urn: urn("hcloud:index/volume:Volume", "v"), oldState: { protect: true }, newState: { protect: false } }]), []);
    assert.equal(result.blocked.length, 0);
    assert.deepEqual(result.unprotected.map((s) => s.name), ["v"]);
  });

  it("a malformed or unknown document is refused, naming the field and what was found", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /the document is empty/],
      ["Error: no stack selected", /not JSON .*starts with the string "Error: no stack selected"/],
      ["[]", /the document: expected a JSON object .*found an array of 0/],
      ['{"version": 3, "deployment": {}}', /the document: expected a preview digest with steps or changeSummary; found an object with keys version, deployment/],
      ['{"steps": {"op": "replace"}}', /steps: expected a list of steps; found an object/],
      [JSON.stringify({ steps: [{ op: "obliterate", urn: SERVER_URN }] }), /steps\[0\]\.op: expected one of same, create, .*found the string "obliterate"/],
      [JSON.stringify({ steps: [{ op: "delete", urn: "saas-prod-app-server" }] }), /steps\[0\]\.urn: expected urn:pulumi:<stack>::<project>::<type>::<name>; found the string "saas-prod-app-server"/],
      [JSON.stringify({ steps: [{ op: "delete", urn: SERVER_URN, oldState: { protect: "yes" } }] }), /steps\[0\]\.oldState\.protect: expected true or false; found the string "yes"/],
      [JSON.stringify({ steps: [{ op: "update", urn: SERVER_URN, detailedDiff: { location: "update" } }] }), /steps\[0\]\.detailedDiff\["location"\]: expected \{kind, inputDiff\}; found the string "update"/],
      [JSON.stringify({ steps: [], changeSummary: { replace: 2 } }), /changeSummary\.replace: expected at most the 0 replace step\(s\) listed in steps; found number 2/],
      [JSON.stringify({ steps: [], changeSummary: { replace: "1" } }), /changeSummary\.replace: expected a count; found the string "1"/],
    ];
    for (const [content, message] of cases) {
      assert.throws(() => readPreview(content), (err: Error) => err instanceof PreviewFormatError && message.test(err.message), JSON.stringify(content));
    }
  });
});

describe("drift: npm run drift on recorded refresh previews", function () {
  this.timeout(240_000);

  it("lists the resources that changed or disappeared outside Pulumi, and fails", () => {
    const result = drift([fixture("refresh-drift.json")]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /2 resource\(s\) differ/);
    assert.match(result.stdout, /saas-prod-app-fw \(hcloud:index\/firewall:Firewall\) changed outside Pulumi: rules\[3\] \(add\)/);
    assert.match(result.stdout, /saas-prod-app-app-data-attach \(hcloud:index\/volumeAttachment:VolumeAttachment\) gone/);
    assert.doesNotMatch(result.stdout, /saas-prod-app-ipv4/);
  });

  it("passes when every refresh step is unchanged", () => {
    const result = drift([fixture("refresh-clean.json")]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /drift: none/);
  });

  it("fails closed on a document it cannot read", () => {
    const result = drift([documentFile("not json")]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /not a pulumi refresh --json document: not JSON/);
  });
});
