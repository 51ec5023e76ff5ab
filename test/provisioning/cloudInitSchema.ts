/**
 * Validates cloud-config user-data against the JSON schema of the cloud-init our servers run
 * (Debian 13's 25.1.x), not the host's older one. The schema is pinned in the repository
 * (test/support/cloud-init/, with the Debian package version it came from), so tests never
 * download anything; test/support/cloud-init-schema.sh refreshes it from trixie's cloud-init
 * package. This module applies it the way cloud-init does:
 * https://cloudinit.readthedocs.io/en/latest/reference/base_config_reference.html
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv-draft-04";
import { parseDocument } from "yaml";

const PINNED_DIR = join(__dirname, "..", "support", "cloud-init");
export const PINNED_SCHEMA = join(PINNED_DIR, "schema-cloud-config-v1.json");
export const PINNED_VERSION = join(PINNED_DIR, "VERSION");

/**
 * Keywords cloud-init adds for its docs and deprecation warnings ("label" even goes into its
 * meta-schema). They are annotations: declared here so Ajv's strict mode still rejects any
 * other unknown keyword instead of silently ignoring a constraint a newer schema brings.
 * "prefixItems" is a 2020-12 keyword that cloud-init's Draft 4 validator ignores too.
 */
const ANNOTATIONS = ["label", "hidden", "deprecated", "deprecated_version", "deprecated_description",
  "changed", "changed_version", "changed_description", "new_version", "prefixItems"];

interface CloudInitSchema {
  version: string;
  validate: ValidateFunction;
  /** Every key cloud-init knows at the top: the schema's own properties plus each module's. */
  topLevelKeys: Set<string>;
  /** Top-level keys a module marks deprecated, with cloud-init's advice. */
  deprecated: Map<string, string>;
}

type Schema = { properties?: Record<string, Schema>; allOf?: { $ref?: string }[]; $defs?: Record<string, Schema> } & Record<string, unknown>;

let loaded: CloudInitSchema | undefined;

/** Reads and compiles the pinned schema (once per process). */
export function loadCloudInitSchema(): CloudInitSchema {
  if (loaded) return loaded;
  const path = PINNED_SCHEMA;
  const schema = JSON.parse(readFileSync(path, "utf8")) as Schema;

  // Formats are off: cloud-init checks them only when optional Python libraries are present,
  // and never for the keys we render. Ajv applies keywords beside "$ref", and so does
  // cloud-init 25 (its custom jsonschema 4.x validator does not ignore them as Draft 4 says).
  // Strict mode only logs: the schema has harmless quirks it would reject (an "additionalItems"
  // that Draft 4 ignores). An unknown keyword, though, may be a constraint we would skip.
  const warnings: string[] = [];
  const ajv = new Ajv({ allErrors: true, strict: "log", validateFormats: false,
    logger: { log: () => {}, warn: (msg: string) => warnings.push(msg), error: (msg: string) => warnings.push(msg) } });
  ajv.addVocabulary(ANNOTATIONS);
  const validate = ajv.compile(schema);
  const unknown = warnings.filter((w) => w.includes("unknown keyword"));
  if (unknown.length > 0) throw new Error(`cloud-init's schema (${path}) uses keywords Ajv does not know:\n${unknown.join("\n")}`);

  const topLevelKeys = new Set(Object.keys(schema.properties ?? {}));
  const deprecated = new Map<string, string>();
  for (const { $ref } of schema.allOf ?? []) {
    const module = $ref?.startsWith("#/$defs/") ? schema.$defs?.[$ref.slice("#/$defs/".length)] : undefined;
    for (const [key, sub] of Object.entries(module?.properties ?? {})) {
      topLevelKeys.add(key);
      if (sub.deprecated === true) {
        deprecated.set(key, `deprecated since cloud-init ${sub.deprecated_version}. ${sub.deprecated_description ?? ""}`.trim());
      }
    }
  }
  loaded = { version: readFileSync(PINNED_VERSION, "utf8").trim(), validate, topLevelKeys, deprecated };
  return loaded;
}

/**
 * Every problem cloud-init 25 would have with this user-data, each naming the path to the key
 * as cloud-init does (`write_files.0.defer`); empty if it is valid. Beyond the schema it
 * reports unknown and deprecated top-level keys (cloud-init ignores the former, warns on the
 * latter; an older schema let misspelled top-level keys through).
 */
export function validateCloudConfig(userDataYaml: string): string[] {
  const { validate, topLevelKeys, deprecated } = loadCloudInitSchema();
  if (!userDataYaml.startsWith("#cloud-config\n")) {
    return ['user-data must start with a "#cloud-config" line or cloud-init does not read it as cloud-config'];
  }
  // cloud-init reads user-data with PyYAML, which speaks YAML 1.1: `yes` and `on` are booleans,
  // `0644` is an octal number. Parse the same way so the schema sees what cloud-init sees.
  const doc = parseDocument(userDataYaml, { version: "1.1" });
  if (doc.errors.length > 0) return doc.errors.map((e) => `YAML: ${e.message}`);
  const data: unknown = doc.toJS();
  if (data === null || typeof data !== "object" || Array.isArray(data)) return ["user-data must be a YAML mapping"];

  const problems: string[] = [];
  for (const key of Object.keys(data)) {
    if (!topLevelKeys.has(key)) problems.push(`${key}: unknown top-level key; cloud-init ignores it`);
    const advice = deprecated.get(key);
    if (advice) problems.push(`${key}: ${advice}`);
  }
  if (!validate(data)) {
    for (const err of validate.errors ?? []) {
      // The top level's "additionalProperties: false" is reported above with a clearer message.
      if (err.instancePath === "" && err.keyword === "additionalProperties") continue;
      problems.push(describe(err));
    }
  }
  return [...new Set(problems)];
}

/** One Ajv error as `path.to.key: what is wrong`, with the offending key or allowed values. */
function describe(err: ErrorObject): string {
  const path = err.instancePath.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~")).join(".") || "(top level)";
  const params = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case "additionalProperties":
      return `${path}: unknown key "${params.additionalProperty}"`;
    case "enum":
      return `${path}: ${err.message}: ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return `${path}: ${err.message}`;
  }
}
