/**
 * The one shellcheck test: every shell script we keep in the repository, the shipped copy of
 * every asset (full-line comments stripped, as the server gets it), every script in every
 * rendered case, and every day-2 push command. Scripts are found by their shebang, never by
 * name, so a new script is checked without editing this file.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { loadScript } from "../../provisioning/scripts";
import { renderAllCases, type RenderCase } from "../support/renderCases";
import { isScript, run, tempDir } from "../support/tools";

const ROOT = join(__dirname, "..", "..");
const ASSETS = join(ROOT, "provisioning", "assets");
/**
 * Where the repository's own shell scripts live. test/golden is left out: its scripts are
 * rendered output, checked below as the render cases they are copies of.
 */
const REPOSITORY_ROOTS = ["provisioning/assets", "test", ".ci", "cli", "app/scripts"];
const SKIPPED_FOLDERS = new Set(["node_modules", "app/node_modules", "test/golden"]);

/** One script to check; `origin` says where it comes from in a failure message. */
interface Script {
  origin: string;
  content: string;
}

/** Forced dialect: push commands run under `sh -c` and have no shebang; scripts say theirs. */
type Dialect = "sh" | undefined;

/** Files below `root` (repository-relative) whose first line is a shell shebang. */
function repositoryScripts(root: string): Script[] {
  const found: Script[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(join(ROOT, dir)).sort()) {
      const path = `${dir}/${name}`;
      if (SKIPPED_FOLDERS.has(path) || SKIPPED_FOLDERS.has(name)) continue;
      if (statSync(join(ROOT, path)).isDirectory()) walk(path);
      else {
        const content = readFileSync(join(ROOT, path), "utf8");
        if (isScript(content)) found.push({ origin: path, content });
      }
    }
  };
  walk(root);
  return found;
}

/** The server's copy of every asset script: what loadScript ships inside the user-data. */
function shippedScripts(): Script[] {
  return repositoryScripts("provisioning/assets").map(({ origin }) => {
    const asset = relative(ASSETS, join(ROOT, origin));
    return { origin: `shipped ${origin}`, content: loadScript(asset) };
  });
}

function renderedScripts(cases: RenderCase[]): Script[] {
  return cases.flatMap((c) => [...c.files].filter(([, content]) => isScript(content)).map(([path, content]) => ({ origin: `${c.name} ${path}`, content })));
}

/**
 * Each day-2 push command, and the script it hands to `sudo sh -c`: inside its single quotes
 * that script is one string to shellcheck, so it is checked on its own as well.
 */
function pushCommands(cases: RenderCase[]): Script[] {
  return cases.flatMap((c) =>
    [...c.pushCommands].flatMap(([path, command]) => {
      return [
        { origin: `${c.name} push of ${path}`, content: command },
        { origin: `${c.name} push of ${path} (its sudo sh -c script)`, content: sudoScript(command) },
      ];
    }),
  );
}

/** The argument a command passes to `sudo sh -c`, unquoted by bash itself (sudo and cloud-init stubbed as functions). */
function sudoScript(command: string): string {
  const known = sudoScripts.get(command);
  if (known !== undefined) return known;
  const stubs = 'cloud-init() { :; }\nsudo() { [ "$1 $2" = "sh -c" ] || exit 90; printf %s "$3"; }\n';
  const result = run("bash", ["-c", stubs + command]);
  assert.equal(result.status, 0, `cannot read the sudo sh -c script of:\n${command}\n${result.stderr}`);
  sudoScripts.set(command, result.stdout);
  return result.stdout;
}
/** Most files push the same command in every case: unquote each command once. */
const sudoScripts = new Map<string, string>();

/**
 * Runs shellcheck (every severity, style included) once over the `scripts` not yet checked in
 * this dialect, and returns the findings for all of them, each line prefixed with every origin
 * of the bytes it is about; [] when clean. The rendered scripts are mostly the shipped copies
 * byte for byte, so each distinct content is analysed once per run.
 */
function shellcheck(scripts: Script[], shell: Dialect = undefined): string[] {
  const key = (content: string) => `${shell ?? ""}\0${content}`;
  const unchecked = [...new Set(scripts.map((s) => s.content))].filter((content) => !findingsByContent.has(key(content)));
  if (unchecked.length > 0) {
    const dir = tempDir("shellcheck");
    const files = unchecked.map((content, i) => {
      const file = join(dir, String(i));
      writeFileSync(file, content);
      return file;
    });
    const args = ["--format=gcc", "--severity=style", ...(shell ? [`--shell=${shell}`] : []), ...files];
    const result = run("shellcheck", args);
    const lines = result.stdout.split("\n").filter((line) => line.trim() !== "");
    if (result.status !== 0 && lines.length === 0) throw new Error(`shellcheck failed without findings (status ${result.status}): ${result.stderr}`);
    files.forEach((file, i) => {
      const own = lines.filter((line) => line.startsWith(`${file}:`)).map((line) => line.slice(file.length + 1));
      findingsByContent.set(key(unchecked[i]), own);
    });
  }
  const origins = new Map<string, string[]>();
  for (const s of scripts) origins.set(s.content, [...(origins.get(s.content) ?? []), s.origin]);
  return [...origins].flatMap(([content, from]) => findingsByContent.get(key(content))!.map((finding) => `${from.join(", ")}: ${finding}`));
}
/** shellcheck's findings (without the file name) by dialect and content, for this run. */
const findingsByContent = new Map<string, string[]>();

describe("shellcheck: every script in the repository, shipped and rendered, and every push command", function () {
  this.timeout(120_000);
  let cases: RenderCase[];

  before(async () => {
    cases = await renderAllCases();
  });

  it("finds the known scripts by their shebang (a new one is checked without a test edit)", () => {
    const assets = ["backup/backup.sh", "release/release", "server/bootstrap", "server/10-data-volume", "server/90-enable-units", "server/tls-issue"].map((a) => `provisioning/assets/${a}`);
    const repository = REPOSITORY_ROOTS.flatMap(repositoryScripts).map((s) => s.origin);
    for (const known of [...assets, ".ci/run", ".ci/test-summary.sh", "test/release/fixtures/service-shim.sh", "test/support/cloud-init-schema.sh", "cli/setup.sh", "cli/pg-scratch.sh", "cli/vm/build-image.sh", "app/scripts/smoke-release.sh"]) {
      assert.ok(repository.includes(known), `${known} was not found as a script`);
    }
    const shipped = shippedScripts().map((s) => s.origin);
    for (const asset of assets) assert.ok(shipped.includes(`shipped ${asset}`), `no shipped copy of ${asset}`);
    const rendered = renderedScripts(cases).map((s) => s.origin);
    assert.ok(cases.length >= 4, `only ${cases.length} render cases`);
    for (const c of cases) {
      // Every server has bootstrap; the database's scripts come with db.env, the release with app.env.
      const expected = [
        "/usr/local/lib/saas-vps/bootstrap",
        ...(c.files.has("/etc/saas-vps/db.env") ? ["/usr/local/lib/saas-vps/bootstrap.d/10-data-volume", "/usr/local/sbin/backup"] : []),
        ...(c.files.has("/etc/saas-vps/app.env") ? ["/usr/local/sbin/release"] : []),
      ];
      for (const path of expected) assert.ok(rendered.includes(`${c.name} ${path}`), `${c.name}: ${path} is not a rendered script`);
    }
    assert.ok(rendered.some((r) => r.endsWith(" /usr/local/lib/saas-vps/bootstrap.d/15-private-network")), "no case of a split stage renders 15-private-network");
    assert.ok(rendered.some((r) => r.endsWith(" /usr/local/lib/saas-vps/tls-issue")), "no case with a domain renders tls-issue");
  });

  it("passes every repository script (the commented copies)", () => {
    assert.deepEqual(shellcheck(REPOSITORY_ROOTS.flatMap(repositoryScripts)), []);
  });

  it("passes the shipped copy of every asset (full-line comments stripped)", () => {
    assert.deepEqual(shellcheck(shippedScripts()), []);
  });

  it("passes every script the server gets, in every render case", () => {
    assert.deepEqual(shellcheck(renderedScripts(cases)), []);
  });

  it("passes every day-2 push command and the script it runs as root (both sh)", () => {
    assert.deepEqual(shellcheck(pushCommands(cases), "sh"), []);
  });

  it("reports a finding with every origin of the bad file (the check can fail)", () => {
    const bad = "#!/usr/bin/env bash\necho $1\n";
    const findings = shellcheck([{ origin: "case-a /x", content: bad }, { origin: "case-b /x", content: bad }]);
    assert.equal(findings.length, 1, findings.join("\n"));
    assert.match(findings[0], /^case-a \/x, case-b \/x: 2:6: .*\[SC2086\]$/);
  });
});
