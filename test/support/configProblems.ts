import assert from "node:assert/strict";
import { ConfigError, parseStackConfig } from "../../config/config";

/** The problems parseStackConfig reports for a config it must refuse; fails the test if it accepts it. */
export function configProblems(raw: Record<string, string>, secretKeys?: Set<string>): string[] {
  try {
    parseStackConfig(raw, secretKeys ? { secretKeys } : {});
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
  assert.fail("expected the config to be rejected");
}
