#!/usr/bin/env node
// Builds the release artifact: dist/release/saas-app-<id>.tar.gz, printed as the last stdout line.
//
// <id> = first 16 hex chars of sha256 over the build inputs (src/, migrations/, package.json,
// package-lock.json, tsconfig*.json and this script), so identical sources give an identical id.
// The tarball bytes are deterministic too: entries sorted by name, fixed mtime/owner/modes,
// `gzip -n` (no name or timestamp in the gzip header).
//
// Tarball root:
//   manifest.json        {"id", "name", "version", "node", "commands": {web, worker, migrate}}
//   bin/web bin/worker bin/migrate   sh wrappers: exec node on dist/<name>.js next to them
//   dist/                compiled JavaScript (ES modules)
//   migrations/          SQL migrations (node-pg-migrate) read by bin/migrate
//   node_modules/        production dependencies only (pure JS: no native addons, no build tools)
//   package.json package-lock.json
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const log = (msg) => process.stderr.write(`build: ${msg}\n`);

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

const wrapper = (entry) => `#!/bin/sh
# ${pkg.name} ${entry}: run the compiled entrypoint that sits next to this script.
# Configuration comes from the environment (see README: env vars). NODE overrides the binary.
here=$(dirname "$(readlink -f "$0")")
exec "\${NODE:-node}" "$here/../dist/${entry}.js" "$@"
`;

const id = computeId();
const stage = path.join(root, "dist", "stage");
const outDir = path.join(root, "dist", "release");
const out = path.join(outDir, `${pkg.name}-${id}.tar.gz`);
log(`release id ${id}`);

rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

log("compiling TypeScript");
execFileSync(path.join(root, "node_modules", ".bin", "tsc"), ["-p", path.join(root, "tsconfig.build.json"), "--outDir", path.join(stage, "dist")], {
  stdio: ["ignore", "inherit", "inherit"],
});

cpSync(path.join(root, "migrations"), path.join(stage, "migrations"), { recursive: true });
cpSync(path.join(root, "package.json"), path.join(stage, "package.json"));
cpSync(path.join(root, "package-lock.json"), path.join(stage, "package-lock.json"));

log("installing production dependencies (npm ci --omit=dev)");
execFileSync("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], {
  cwd: stage,
  stdio: ["ignore", "ignore", "inherit"],
});

mkdirSync(path.join(stage, "bin"));
for (const entry of ["web", "worker", "migrate"]) {
  const file = path.join(stage, "bin", entry);
  writeFileSync(file, wrapper(entry));
  chmodSync(file, 0o755);
}
const manifest = {
  id,
  name: pkg.name,
  version: pkg.version,
  node: ">=20",
  commands: { web: "bin/web", worker: "bin/worker", migrate: "bin/migrate" },
};
writeFileSync(path.join(stage, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);

log("packing");
mkdirSync(outDir, { recursive: true });
execFileSync(
  "sh",
  [
    "-c",
    `tar --sort=name --format=gnu --mtime='2000-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner ` +
      `--mode='u+rwX,go+rX,go-w' -C "$1" -cf - . | gzip -n -9 > "$2.tmp" && mv "$2.tmp" "$2"`,
    "sh",
    stage,
    out,
  ],
  { stdio: ["ignore", "inherit", "inherit"] },
);
rmSync(stage, { recursive: true, force: true });
process.stdout.write(`${out}\n`);
