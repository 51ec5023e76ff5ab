/**
 * Rewrites Pulumi.yaml's config block and the README's key table from config/keys.ts.
 * Run after changing the table: npx tsx config/writeKeyDocs.ts
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { README_BEGIN, README_END, renderReadmeTable, replaceBetween, withPulumiConfig } from "./keyDocs";

const root = join(__dirname, "..");
const pulumiYaml = join(root, "Pulumi.yaml");
const readme = join(root, "README.md");
writeFileSync(pulumiYaml, withPulumiConfig(readFileSync(pulumiYaml, "utf8")));
writeFileSync(readme, replaceBetween(readFileSync(readme, "utf8"), README_BEGIN, README_END, renderReadmeTable(), "README.md"));
console.log("wrote Pulumi.yaml (config block) and README.md (Stack config table)");
