#!/usr/bin/env node
// Builds the release artifact: <out-dir>/saas-app-<id>.tar.gz, printed as the last stdout line.
//   node scripts/build.mjs [--out-dir DIR]    (default: dist/release)
//   node scripts/build.mjs --unbundled ...    the previous layout (tsc file by file + node_modules),
//                                             kept only as the baseline of bench/startup.ts
//
// <id> = first 16 hex chars of sha256 over the build inputs (src/, migrations/, package.json,
// package-lock.json, tsconfig*.json and this script), so identical sources give an identical id.
// The tarball bytes are deterministic too: entries sorted by name, fixed mtime/owner/modes,
// `gzip -n` (no name or timestamp in the gzip header).
//
// Tarball root:
//   manifest.json        {"id", "name", "version", "node", "commands": {web, worker, migrate}}
//   bin/web bin/worker bin/migrate   sh wrappers: exec node on dist/<name>.js next to them (with
//                        the web process's memory settings: LAUNCH below)
//   dist/                one ES module bundle per entry point (esbuild) and dist/chunks/, the code
//                        they share or load on demand; every dependency is inside, no node_modules
//   migrations/          SQL migrations (node-pg-migrate) read by bin/migrate
//   package.json         name, version and "type": "module" (the bundles are ES modules)
//   THIRD_PARTY_LICENSES.txt   name, version and license text of every bundled package
//
// Why a bundle: Node spends most of a start resolving, reading and compiling thousands of small
// files of node_modules one at a time; a bundle is a few large files (app/README.md: Build).
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(path.join(root, "package-lock.json"), "utf8"));
const log = (msg) => process.stderr.write(`build: ${msg}\n`);

const ENTRIES = ["web", "worker", "migrate"];
const NODE_MAJOR = 20;

/**
 * Left out of the bundle, and not shipped: only what a bundled package asks for on a path the
 * app never takes. `typescript` (10 MB): cosmiconfig, graphile-worker's config-file loader,
 * requires it only to read a graphile.config.ts, which a release does not have; bundled, it
 * would be parsed at every worker and migrate start. (pg's optional `pg-native` addon needs no
 * entry: pg requires it inside a try, which esbuild leaves to run time by itself.)
 */
const EXTERNAL = ["typescript"];

/**
 * CommonJS packages bundled into an ES module still call require() for Node's built-ins
 * (esbuild keeps those calls as they are); an ES module has no `require`, so each output file
 * makes one from its own URL.
 */
const REQUIRE_SHIM = 'import { createRequire as __bundleCreateRequire } from "node:module";\n' +
  "const require = __bundleCreateRequire(import.meta.url);";

/**
 * The route schemas' validators and serializers are precompiled (src/api/schema-compilers.ts):
 * CAPTURE_SCRIPT prints their generated source, and the bundle gets a generated module in place of
 * PRECOMPILED_MODULE that imports each one as a module of its own (namespace PRECOMPILED_NS), so
 * esbuild bundles what they require (Ajv's small run-time helpers, ajv-formats' formats,
 * fast-json-stringify's serializer) and nothing else of Ajv or fast-json-stringify runs.
 */
const CAPTURE_SCRIPT = "scripts/capture-schemas.ts";
const PRECOMPILED_MODULE = "src/api/precompiled-schemas.ts";
const PRECOMPILED_NS = "precompiled-schema";

/**
 * Packages a release's processes never run, kept out of the bundle (each is replaced by a module
 * that throws if it is ever required): with every route schema precompiled, Fastify never asks
 * for its run-time compilers (Ajv, fast-json-stringify: ~0.6 MB web would parse at every start),
 * and light-my-request serves only app.inject(), which tests use.
 */
const LEFT_OUT = {
  "@fastify/ajv-compiler": "route validators are precompiled (src/api/schema-compilers.ts); Fastify asked for its run-time compiler, so buildApp ran without them",
  "@fastify/fast-json-stringify-compiler": "reply serializers are precompiled (src/api/schema-compilers.ts); Fastify asked for its run-time compiler, so buildApp ran without them",
  "light-my-request": "app.inject() is for tests, which run the sources",
};
const LEFT_OUT_NS = "left-out";

/**
 * Modules the bundle must not take in, with why. TypeBox's all-in-one namespaces: `Type` (every
 * type builder) and `Value` (every value function) each bring all they hold, ~170 KiB together
 * that every process parses and runs at start, where `import * as Type from "@sinclair/typebox"`
 * and single functions (`Errors` from "@sinclair/typebox/errors") bring only what the code calls.
 */
const REFUSED_INPUTS = [
  { pattern: /^node_modules\/@sinclair\/typebox\/build\/[^/]+\/type\/type\//, fix: 'import * as Type from "@sinclair/typebox", not { Type }' },
  { pattern: /^node_modules\/@sinclair\/typebox\/build\/[^/]+\/value\/value\//, fix: 'import the function from "@sinclair/typebox/<its module>", not { Value }' },
];

/** The one source file that may locate files from import.meta.url (it finds the package root). */
const PACKAGE_ROOT_MODULE = "src/core/release.ts";

function listFiles(dir) {
  return readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath ?? e.path, e.name)));
}

function computeId() {
  const inputs = [
    ...listFiles("src"),
    ...listFiles("migrations"),
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.build.json",
    "scripts/build.mjs",
    "scripts/capture-schemas.ts",
  ]
    .map((f) => f.split(path.sep).join("/"))
    .sort();
  const h = createHash("sha256");
  for (const f of inputs) {
    const content = createHash("sha256").update(readFileSync(path.join(root, f))).digest("hex");
    h.update(`${f}\0${content}\n`);
  }
  return h.digest("hex").slice(0, 16);
}

/**
 * How each entry point is started: the web process's memory settings (app/README.md: Memory).
 * - glibc.malloc.mmap_threshold fixed at its default (128 KiB): a fixed value turns off glibc's
 *   dynamic threshold, which after the first password hash (scrypt, 16 MiB in one malloc on a
 *   libuv thread) serves every later one from that thread's arena and keeps it resident: up to
 *   4 threads x 16 MiB of RSS never given back. Fixed, each hash's block is mmapped and unmapped.
 * - --max-semi-space-size: V8's young generation capped at 3 x this (MB) instead of growing to
 *   3 x 16 MB under load; request garbage dies young either way.
 */
const LAUNCH = {
  web: { glibcTunables: ["glibc.malloc.mmap_threshold=131072"], nodeFlags: ["--max-semi-space-size=2"] },
  worker: { glibcTunables: [], nodeFlags: [] },
  migrate: { glibcTunables: [], nodeFlags: [] },
};

const wrapper = (entry) => {
  const { glibcTunables, nodeFlags } = LAUNCH[entry];
  // Appended to any the environment already sets; ignored by a libc other than glibc.
  const tunables = glibcTunables.length
    ? `# Memory settings: app/README.md, Memory.\nGLIBC_TUNABLES="\${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}${glibcTunables.join(":")}"\nexport GLIBC_TUNABLES\n`
    : "";
  return `#!/bin/sh
# ${pkg.name} ${entry}: run the compiled entrypoint that sits next to this script.
# Configuration comes from the environment (see README: env vars). NODE overrides the binary.
here=$(dirname "$(readlink -f "$0")")
${tunables}exec "\${NODE:-node}" ${nodeFlags.map((f) => `${f} `).join("")}"$here/../dist/${entry}.js" "$@"
`;
};

/** "node_modules/a/node_modules/@b/c/lib/x.js" -> "node_modules/a/node_modules/@b/c" (package-lock's key). */
function packageDirOf(input) {
  const m = /^(?:.*\/)?node_modules\/(?:@[^/]+\/)?[^/]+/.exec(input);
  return m ? m[0] : undefined;
}

/**
 * What the bundle took in must come from src/ or from app/node_modules as package-lock.json
 * installs it for production: not a devDependency, not a package Node's resolution found in a
 * folder above app/ (the build machine's, never installed on a server by `npm ci`). Also, app
 * code may not locate files relative to import.meta.url (see PACKAGE_ROOT_MODULE).
 * Returns the bundled package directories, sorted.
 */
function checkBundleInputs(metafile) {
  const problems = [];
  const packages = new Set();
  const inOutput = new Set(Object.values(metafile.outputs).flatMap((o) => Object.entries(o.inputs).filter(([, i]) => i.bytesInOutput > 0).map(([input]) => input)));
  for (const input of Object.keys(metafile.inputs)) {
    if (input.startsWith(`${PRECOMPILED_NS}:`) || input.startsWith(`${LEFT_OUT_NS}:`)) continue;
    if (input.startsWith("src/")) {
      if (input !== PACKAGE_ROOT_MODULE && /import\.meta\.url|__dirname|__filename/.test(readFileSync(path.join(root, input), "utf8"))) {
        problems.push(`${input} uses import.meta.url/__dirname: in the bundle that is dist/, not the source's folder; resolve files from packageRoot (${PACKAGE_ROOT_MODULE})`);
      }
      continue;
    }
    // Among the inputs, also files esbuild read but tree-shook away: only code in the output counts.
    const refused = inOutput.has(input) && REFUSED_INPUTS.find(({ pattern }) => pattern.test(input));
    const dir = packageDirOf(input);
    const importer = Object.entries(metafile.inputs).find(([, i]) => i.imports.some((x) => x.path === input))?.[0] ?? "?";
    if (refused) {
      problems.push(`${input} (imported by ${importer}) is refused (REFUSED_INPUTS): ${refused.fix}`);
    } else if (!dir || !input.startsWith("node_modules/")) {
      problems.push(`${input} (imported by ${importer}) is outside src/ and app/node_modules: declare the package in app/package.json`);
    } else if (!lock.packages[dir]) {
      problems.push(`${dir} (imported by ${importer}) is not in package-lock.json: run npm install`);
    } else if (lock.packages[dir].dev) {
      problems.push(`${dir} (imported by ${importer}) is a devDependency: move it to "dependencies" or stop importing it from src/`);
    } else {
      packages.add(dir);
    }
  }
  if (problems.length) throw new Error(`the bundle's inputs are wrong:\n  ${problems.join("\n  ")}`);
  return [...packages].sort();
}

/** Name, version, declared license and license file of every bundled package. */
function thirdPartyLicenses(packageDirs) {
  const sections = packageDirs.map((dir) => {
    const meta = JSON.parse(readFileSync(path.join(root, dir, "package.json"), "utf8"));
    const licenseFile = readdirSync(path.join(root, dir)).filter((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f)).sort()[0];
    const text = licenseFile ? readFileSync(path.join(root, dir, licenseFile), "utf8").trim() : "(no license file in the package)";
    return `${meta.name} ${meta.version} — ${meta.license ?? "license not declared"}\n\n${text}\n`;
  });
  return `Packages bundled into dist/ (${packageDirs.length}):\n\n${sections.join(`\n${"-".repeat(72)}\n\n`)}`;
}

/** Options every esbuild run here shares: how the app and its packages are bundled for Node. */
const BUNDLE_OPTIONS = {
  absWorkingDir: root,
  bundle: true,
  format: "esm",
  platform: "node",
  target: `node${NODE_MAJOR}`,
  tsconfig: path.join(root, "tsconfig.build.json"),
  // Paths stay app/node_modules/... whatever the folder links to, so inputs are checkable
  // and the bundle's "// node_modules/<pkg>/..." comments name the package.
  preserveSymlinks: true,
  external: EXTERNAL,
  banner: { js: REQUIRE_SHIM },
  legalComments: "none",
  logLevel: "warning",
};

/** Runs CAPTURE_SCRIPT (bundled into the stage, then removed): every route schema's generated source. */
async function captureSchemaSources(stage) {
  const script = path.join(stage, "capture-schemas.mjs");
  await esbuild.build({ ...BUNDLE_OPTIONS, entryPoints: [CAPTURE_SCRIPT], outfile: script });
  try {
    const sources = JSON.parse(execFileSync(process.execPath, [script], { cwd: stage, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }));
    log(`precompiled ${Object.keys(sources.validators).length} validators and ${Object.keys(sources.serializers).length} serializers`);
    return sources;
  } finally {
    rmSync(script);
  }
}

/**
 * fast-json-stringify names a serializer's inline validators after a counter it shares across
 * schemas (`__fjs_root_<n>`), so routes with the same reply schema get sources that differ only
 * in <n>. The name is private to its module (the validators it names are the module's own), so a
 * source with one such name gets `__fjs_root_0`, and equal serializers become one module (four
 * copies of one 20 KiB serializer were in web's bundle).
 */
function withoutSchemaCounter(code) {
  const names = new Set(code.match(/__fjs_root_\d+/g) ?? []);
  return names.size === 1 ? code.replace(/__fjs_root_\d+/g, "__fjs_root_0") : code;
}

/**
 * esbuild plugin: PRECOMPILED_MODULE becomes the captured sources, one module per distinct
 * source (many routes share one, e.g. every `:orgId` params schema), each key naming its module.
 */
function precompiledSchemasPlugin(captured) {
  const sources = Object.fromEntries(
    Object.entries(captured).map(([name, byKey]) => [name, Object.fromEntries(Object.entries(byKey).map(([key, code]) => [key, withoutSchemaCounter(code)]))]),
  );
  const modules = [...new Set(Object.values(sources).flatMap((byKey) => Object.values(byKey)))].sort();
  const moduleOf = new Map(modules.map((code, i) => [code, i]));
  const table = (byKey) => Object.keys(byKey).sort().map((key) => `    ${JSON.stringify(key)}: m${moduleOf.get(byKey[key])},`);
  const index = [
    ...modules.map((_, i) => `import m${i} from "${PRECOMPILED_NS}:${i}";`),
    "export const precompiledSchemas = {",
    ...Object.entries(sources).map(([name, byKey]) => `  ${name}: {\n${table(byKey).join("\n")}\n  },`),
    "};",
  ].join("\n");
  return {
    name: "precompiled-schemas",
    setup(build) {
      build.onLoad({ filter: /[\\/]src[\\/]api[\\/]precompiled-schemas\.ts$/ }, () => ({ contents: index, loader: "js", resolveDir: root }));
      build.onResolve({ filter: new RegExp(`^${PRECOMPILED_NS}:`) }, (args) => ({ path: args.path.slice(PRECOMPILED_NS.length + 1), namespace: PRECOMPILED_NS }));
      // Each source is a CommonJS module (module.exports = the function); requires resolve from app/.
      build.onLoad({ filter: /.*/, namespace: PRECOMPILED_NS }, (args) => ({ contents: modules[Number(args.path)], loader: "js", resolveDir: root }));
    },
  };
}

/** esbuild plugin: each LEFT_OUT package becomes a module that throws why it is not in the release. */
const leftOutPlugin = {
  name: "left-out",
  setup(build) {
    const names = Object.keys(LEFT_OUT).map((n) => n.replace(/[/.-]/g, "\\$&"));
    build.onResolve({ filter: new RegExp(`^(${names.join("|")})$`) }, (args) => ({ path: args.path, namespace: LEFT_OUT_NS }));
    build.onLoad({ filter: /.*/, namespace: LEFT_OUT_NS }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not in the release bundle: ${LEFT_OUT[args.path]}`)});`,
      loader: "js",
    }));
  },
};

/**
 * Changes to a bundled package's source, each exact text replaced by another. The build fails if
 * a text is not there exactly once, or if `counts` (how often each string occurs in the file as
 * it is now) differ: the package changed, so look again whether the change is still needed and
 * still right.
 * - pg picks its socket at import by asking whether it runs on Cloudflare Workers: with no
 *   `navigator` (Node 20) it constructs a fetch `Response`, which makes Node load its whole fetch
 *   implementation (undici, http2 with it) at every start: 15 % of web's start in a CPU profile,
 *   for a question whose answer is always no here (the bundle targets Node only, BUNDLE_OPTIONS).
 * - Fastify loads node:https and node:http2 at import for the `https` and `http2` options, which
 *   the app never sets (TLS ends at nginx): ~5 ms of every start. Loaded when used instead.
 */
const SOURCE_PATCHES = [
  {
    file: "node_modules/pg/lib/stream.js",
    replace: [["const { getStream, getSecureStream } = getStreamFuncs()", "const { getStream, getSecureStream } = getNodejsStreamFuncs()"]],
    counts: {},
  },
  {
    file: "node_modules/fastify/lib/server.js",
    replace: [
      ["const https = require('node:https')\n", "const https = { createServer: (...args) => require('node:https').createServer(...args) }\n"],
      [
        "const http2 = require('node:http2')\n",
        "const http2 = {\n  createServer: (...args) => require('node:http2').createServer(...args),\n  createSecureServer: (...args) => require('node:http2').createSecureServer(...args)\n}\n",
      ],
    ],
    // Every use of the two modules is one of those functions (two of the "http2." are JSDoc types).
    counts: { "https.": 1, "http2.": 4 },
  },
];

/** Applies one SOURCE_PATCHES entry to `source`, or throws why it cannot. */
function applyPatch(source, { file, replace, counts }) {
  for (const [text, expected] of Object.entries(counts)) {
    const found = source.split(text).length - 1;
    if (found !== expected) throw new Error(`${file}: ${JSON.stringify(text)} occurs ${found} times, the patch expects ${expected}`);
  }
  for (const [from, to] of replace) {
    if (source.split(from).length !== 2) throw new Error(`${file}: the text to patch is not there exactly once: ${from}`);
    source = source.replace(from, () => to);
  }
  return source;
}

/** esbuild plugin: applies SOURCE_PATCHES; a patched file that is not bundled at all fails the build too. */
const sourcePatchesPlugin = {
  name: "source-patches",
  setup(build) {
    build.onEnd((result) => {
      if (result.errors.length) return;
      const inputs = Object.keys(result.metafile?.inputs ?? {});
      const missing = SOURCE_PATCHES.filter(({ file }) => !inputs.includes(file)).map(({ file }) => file);
      if (missing.length) throw new Error(`patched files not in the bundle (moved?): ${missing.join(", ")}`);
    });
    for (const patch of SOURCE_PATCHES) {
      const absolute = path.join(root, patch.file);
      build.onLoad({ filter: new RegExp(`${absolute.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&")}$`) }, () => ({
        contents: applyPatch(readFileSync(absolute, "utf8"), patch),
        loader: "js",
      }));
    }
  },
};

/**
 * Rewrites an output file so it is ASCII only. esbuild escapes non-ASCII characters in strings,
 * regular expressions and identifiers (its default charset) but copies comments as they are, and
 * a single character beyond Latin-1 (an em dash in a package's comment) makes V8 hold the whole
 * file as a two-byte string: twice the memory for the source it keeps for the process's life,
 * and slower to decode and to parse at every start. What is left is in comments, where an escape
 * reads as well as the character (and in a string it would mean the same character).
 */
function escapeNonAscii(file) {
  const code = readFileSync(file, "utf8");
  const ascii = code.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (ascii !== code) writeFileSync(file, ascii);
}

async function bundle(stage) {
  const sources = await captureSchemaSources(stage);
  log(`bundling ${ENTRIES.join(", ")} (esbuild ${esbuild.version})`);
  const result = await esbuild.build({
    ...BUNDLE_OPTIONS,
    entryPoints: Object.fromEntries(ENTRIES.map((e) => [e, `src/${e}.ts`])),
    outdir: path.join(stage, "dist"),
    chunkNames: "chunks/[name]-[hash]",
    splitting: true,
    // No source maps: they would ship every source line again (and stack traces keep function
    // names and bundle line numbers: identifiers are not minified).
    sourcemap: false,
    metafile: true,
    plugins: [precompiledSchemasPlugin(sources), leftOutPlugin, sourcePatchesPlugin],
  });
  const packages = checkBundleInputs(result.metafile);
  for (const output of Object.keys(result.metafile.outputs)) if (output.endsWith(".js")) escapeNonAscii(path.resolve(root, output));
  writeFileSync(path.join(stage, "THIRD_PARTY_LICENSES.txt"), thirdPartyLicenses(packages));
  writeFileSync(
    path.join(stage, "package.json"),
    `${JSON.stringify({ name: pkg.name, version: pkg.version, private: true, type: "module" }, null, 2)}\n`,
  );
  const sizes = Object.entries(result.metafile.outputs).map(([f, o]) => `${path.basename(f)} ${(o.bytes / 1024).toFixed(0)} KiB`);
  log(`bundled ${packages.length} packages: ${sizes.join(", ")}`);
}

/** The previous layout, file by file: tsc output and `npm ci --omit=dev` (network or warm npm cache). */
function compileUnbundled(stage) {
  log("compiling TypeScript (unbundled baseline layout)");
  execFileSync(path.join(root, "node_modules", ".bin", "tsc"), ["-p", path.join(root, "tsconfig.build.json"), "--outDir", path.join(stage, "dist")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  cpSync(path.join(root, "package.json"), path.join(stage, "package.json"));
  cpSync(path.join(root, "package-lock.json"), path.join(stage, "package-lock.json"));
  log("installing production dependencies (npm ci --omit=dev)");
  execFileSync("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], {
    cwd: stage,
    stdio: ["ignore", "ignore", "inherit"],
  });
}

const { values: opts } = parseArgs({ options: { "out-dir": { type: "string" }, unbundled: { type: "boolean", default: false } } });
const outDir = path.resolve(opts["out-dir"] ?? path.join(root, "dist", "release"));
const id = computeId();
const out = path.join(outDir, `${pkg.name}-${id}.tar.gz`);
log(`release id ${id}`);

mkdirSync(outDir, { recursive: true });
// A stage of its own per build, so builds into different out-dirs can run at the same time.
const stage = mkdtempSync(path.join(outDir, ".stage-"));
try {
  if (opts.unbundled) compileUnbundled(stage);
  else await bundle(stage);
  cpSync(path.join(root, "migrations"), path.join(stage, "migrations"), { recursive: true });

  mkdirSync(path.join(stage, "bin"));
  for (const entry of ENTRIES) {
    const file = path.join(stage, "bin", entry);
    writeFileSync(file, wrapper(entry));
    chmodSync(file, 0o755);
    if (!existsSync(path.join(stage, "dist", `${entry}.js`))) throw new Error(`dist/${entry}.js was not built`);
  }
  const manifest = {
    id,
    name: pkg.name,
    version: pkg.version,
    node: `>=${NODE_MAJOR}`,
    commands: Object.fromEntries(ENTRIES.map((e) => [e, `bin/${e}`])),
  };
  writeFileSync(path.join(stage, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);

  log("packing");
  execFileSync(
    "sh",
    [
      "-c",
      `tar --sort=name --format=gnu --mtime='2000-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner ` +
        `--mode='u+rwX,go+rX,go-w' -C "$1" -cf - . | gzip -n -9 > "$2.tmp"`,
      "sh",
      stage,
      out,
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  renameSync(`${out}.tmp`, out);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
process.stdout.write(`${out}\n`);
