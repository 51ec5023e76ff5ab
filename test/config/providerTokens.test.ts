/**
 * The providers' API tokens live in their own namespaces (`hcloud:token`, `digitalocean:token`),
 * outside our key table: the program reads them from Pulumi's config and refuses one stored in
 * plain text, as it refuses our own credentials.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../config/config";
import { minimalRaw } from "../support/fixtures";
import { runProgram } from "../support/mockProgram";

describe("provider tokens in plain text", function () {
  this.timeout(60_000);

  for (const [provider, key] of [["hetzner", "hcloud:token"], ["digitalocean", "digitalocean:token"]] as const) {
    it(`refuses ${key} stored in plain text, saying how to set it, before any resource is declared`, async () => {
      const raw = { ...minimalRaw(provider), [key]: "plain-text-token" };
      await assert.rejects(runProgram(raw, ["backupSecretAccessKey"]), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.deepEqual(err.problems, [`${key}: is the provider's API token and is stored in plain text; set it with: pulumi config set --secret ${key} <token>`]);
        return true;
      });
    });

    it(`accepts ${key} set with --secret`, async () => {
      const run = await runProgram({ ...minimalRaw(provider), [key]: "secret-token" }, ["backupSecretAccessKey", key]);
      assert.ok(run.mocks.resources.length > 0);
    });
  }

  it("names the other provider's token too (prod: Hetzner servers, backups in Spaces)", async () => {
    const raw = { ...minimalRaw("hetzner"), "hcloud:token": "x", "digitalocean:token": "y" };
    await assert.rejects(runProgram(raw, ["backupSecretAccessKey", "hcloud:token"]), /^ConfigError: digitalocean:token: is the provider's API token and is stored in plain text/);
  });
});
