/**
 * Reads the document `pulumi preview --json` (and `pulumi refresh --preview-only --json`) prints:
 * Pulumi's PreviewDigest (pulumi/pulumi pkg/display/json.go, written by ShowPreviewDigest in
 * pkg/backend/display/json.go):
 *
 *   { config?, steps?: PreviewStep[], diagnostics?, duration?, changeSummary?: {op: count}, maybeCorrupt? }
 *   PreviewStep = { op, urn, provider?, oldState?, newState?, diffReasons?, replaceReasons?, detailedDiff }
 *
 * oldState/newState are apitype.ResourceV3 (urn, custom, type, inputs, outputs, parent, protect, ...),
 * with every secret value replaced by the string "[secret]". A step has no type of its own: it is
 * the state's, or the last type of the URN's type chain. Steps that change nothing ("same") are
 * left out unless `--show-sames`, and the create/delete halves of a replacement unless
 * `--show-replacement-steps` (the logical "replace" step is always there). In a refresh, a step
 * stays "refresh" when the resource is unchanged and becomes "update" or "delete" when it drifted.
 *
 * Anything that is not that shape is refused with the field and what was found: a guard that
 * cannot read its input must not pass.
 */

/** Every step operation Pulumi's engine has (pkg/resource/deploy/step.go). */
export const STEP_OPS = [
  "same", "create", "update", "delete", "replace", "create-replacement", "delete-replaced", "read", "read-replacement",
  "refresh", "discard", "discard-replaced", "remove-pending-replace", "import", "import-replacement", "diff", "extend-parameterize",
] as const;
export type StepOp = (typeof STEP_OPS)[number];

/** The part of a resource state (apitype.ResourceV3) the guard reads. */
export interface StepState {
  type?: string;
  protect: boolean;
}

export interface PreviewStep {
  op: StepOp;
  urn: string;
  /** The resource type: the state's, else the URN's. */
  type: string;
  /** The resource's name (the URN's last part). */
  name: string;
  oldState?: StepState;
  newState?: StepState;
  /** Inputs whose change forces the replacement. */
  replaceReasons: string[];
  /** Inputs that differ. */
  diffReasons: string[];
  /** Property path → kind of change (add, update, delete, and their -replace forms). */
  detailedDiff: Record<string, string>;
}

export interface PreviewDiagnostic {
  urn?: string;
  message: string;
  severity: string;
}

export interface PreviewDocument {
  steps: PreviewStep[];
  changeSummary: Partial<Record<StepOp, number>>;
  diagnostics: PreviewDiagnostic[];
}

/** The document is not a preview digest; the message names the field, what was expected and what was found. */
export class PreviewFormatError extends Error {}

const URN_PREFIX = "urn:pulumi:";

/** A URN's type (last of its type chain) and name: urn:pulumi:<stack>::<project>::<parent$...$type>::<name>. */
export function parseUrn(urn: string): { stack: string; project: string; type: string; name: string } | undefined {
  if (!urn.startsWith(URN_PREFIX)) return undefined;
  const parts = urn.slice(URN_PREFIX.length).split("::");
  if (parts.length < 4) return undefined;
  const [stack, project, typeChain, ...nameParts] = parts;
  const type = typeChain.split("$").pop()!;
  const name = nameParts.join("::");
  if (!stack || !project || !type || !name) return undefined;
  return { stack, project, type, name };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value)}`;
  return `${typeof value} ${String(value)}`;
}

function fail(field: string, expected: string, found: unknown): never {
  throw new PreviewFormatError(`${field}: expected ${expected}; found ${describe(found)}`);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(field, "a list of property names", value);
  return value.map((item, i) => (typeof item === "string" ? item : fail(`${field}[${i}]`, "a property name", item)));
}

function readState(value: unknown, field: string): StepState | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) fail(field, "a resource state object", value);
  if (value.type !== undefined && typeof value.type !== "string") fail(`${field}.type`, "a type token", value.type);
  if (value.protect !== undefined && typeof value.protect !== "boolean") fail(`${field}.protect`, "true or false", value.protect);
  return { type: value.type as string | undefined, protect: value.protect === true };
}

function readStep(value: unknown, field: string): PreviewStep {
  if (!isObject(value)) fail(field, "a step object", value);
  const { op, urn } = value;
  if (typeof op !== "string" || !(STEP_OPS as readonly string[]).includes(op)) fail(`${field}.op`, `one of ${STEP_OPS.join(", ")}`, op);
  if (typeof urn !== "string") fail(`${field}.urn`, "a URN", urn);
  const parsed = parseUrn(urn);
  if (!parsed) fail(`${field}.urn`, "urn:pulumi:<stack>::<project>::<type>::<name>", urn);
  const oldState = readState(value.oldState, `${field}.oldState`);
  const newState = readState(value.newState, `${field}.newState`);
  const detailedDiff: Record<string, string> = {};
  if (value.detailedDiff !== undefined && value.detailedDiff !== null) {
    if (!isObject(value.detailedDiff)) fail(`${field}.detailedDiff`, "an object of property diffs", value.detailedDiff);
    for (const [path, diff] of Object.entries(value.detailedDiff)) {
      if (!isObject(diff) || typeof diff.kind !== "string") fail(`${field}.detailedDiff[${JSON.stringify(path)}]`, "{kind, inputDiff}", diff);
      detailedDiff[path] = diff.kind;
    }
  }
  return {
    op: op as StepOp,
    urn,
    type: newState?.type ?? oldState?.type ?? parsed.type,
    name: parsed.name,
    oldState,
    newState,
    replaceReasons: stringList(value.replaceReasons, `${field}.replaceReasons`),
    diffReasons: stringList(value.diffReasons, `${field}.diffReasons`),
    detailedDiff,
  };
}

/** Parses and checks a preview document; throws PreviewFormatError naming the first field that is wrong. */
export function readPreview(text: string): PreviewDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const trimmed = text.trim();
    throw new PreviewFormatError(
      trimmed === "" ? "the document is empty (did `pulumi preview --json` fail before printing?)" : `not JSON (${(err as Error).message}); it starts with ${describe(trimmed)}`,
    );
  }
  if (!isObject(value)) fail("the document", "a JSON object (Pulumi's preview digest)", value);
  if (value.steps === undefined && value.changeSummary === undefined) {
    throw new PreviewFormatError(`the document: expected a preview digest with steps or changeSummary; found an object with keys ${Object.keys(value).join(", ") || "(none)"}`);
  }
  if (value.steps !== undefined && !Array.isArray(value.steps)) fail("steps", "a list of steps", value.steps);
  const steps = ((value.steps ?? []) as unknown[]).map((step, i) => readStep(step, `steps[${i}]`));

  const changeSummary: Partial<Record<StepOp, number>> = {};
  if (value.changeSummary !== undefined) {
    if (!isObject(value.changeSummary)) fail("changeSummary", "an object of counts by operation", value.changeSummary);
    for (const [op, count] of Object.entries(value.changeSummary)) {
      if (!(STEP_OPS as readonly string[]).includes(op)) fail(`changeSummary.${op}`, `an operation (${STEP_OPS.join(", ")})`, op);
      if (typeof count !== "number" || !Number.isInteger(count) || count < 0) fail(`changeSummary.${op}`, "a count", count);
      changeSummary[op as StepOp] = count;
    }
  }
  // The summary counts every logical step; a document listing fewer has lost some (cut short, or edited).
  for (const op of ["replace", "delete"] as const) {
    const listed = steps.filter((step) => step.op === op).length;
    const counted = changeSummary[op] ?? 0;
    if (counted > listed) fail(`changeSummary.${op}`, `at most the ${listed} ${op} step(s) listed in steps`, counted);
  }

  const diagnostics: PreviewDiagnostic[] = [];
  if (value.diagnostics !== undefined) {
    if (!Array.isArray(value.diagnostics)) fail("diagnostics", "a list", value.diagnostics);
    value.diagnostics.forEach((d, i) => {
      if (!isObject(d)) fail(`diagnostics[${i}]`, "a diagnostic object", d);
      diagnostics.push({ urn: typeof d.urn === "string" ? d.urn : undefined, message: String(d.message ?? ""), severity: String(d.severity ?? "") });
    });
  }
  return { steps, changeSummary, diagnostics };
}
