import assert from "node:assert/strict";
import * as digitalocean from "@pulumi/digitalocean";
import { parseStackConfig } from "../../config/config";
import { MANAGED_DATABASE_SIZES } from "../../config/providers";
import { minimalRaw, separatedRaw } from "../support/fixtures";
import { configProblems } from "../support/configProblems";


const separated = (provider: "hetzner" | "digitalocean", extra: Record<string, string>) => ({ ...minimalRaw(provider), ...separatedRaw(provider), ...extra });

describe("stack config: databaseMode managed", () => {
  it("is DigitalOcean's: on Hetzner it is refused, naming the key and what to use instead", () => {
    assert.deepEqual(configProblems(separated("hetzner", { databaseMode: "managed" })), [
      'saas-vps:databaseMode: "managed" is DigitalOcean Managed PostgreSQL; Hetzner has no managed PostgreSQL, so use databaseMode server (its own server) there',
    ]);
  });

  it("takes the default node size, or the one given", () => {
    assert.deepEqual(parseStackConfig(separated("digitalocean", { databaseMode: "managed" })).database, { mode: "managed", size: "db-s-1vcpu-2gb" });
    assert.deepEqual(parseStackConfig(separated("digitalocean", { databaseMode: "managed", managedDatabaseSize: "db-s-2vcpu-4gb" })).database, { mode: "managed", size: "db-s-2vcpu-4gb" });
  });

  it("refuses managedDatabaseSize without databaseMode managed", () => {
    assert.deepEqual(configProblems(separated("digitalocean", { managedDatabaseSize: "db-s-2vcpu-4gb" })), [
      "saas-vps:managedDatabaseSize: is only for saas-vps:databaseMode managed; databaseMode is server",
    ]);
    assert.deepEqual(configProblems(separated("digitalocean", { databaseMode: "server", managedDatabaseSize: "db-s-2vcpu-4gb" })), [
      "saas-vps:managedDatabaseSize: is only for saas-vps:databaseMode managed; databaseMode is server",
    ]);
  });

  it("refuses a size DigitalOcean does not offer (a droplet size, a made-up one), listing those it does", () => {
    for (const size of ["s-2vcpu-4gb", "db-s-3vcpu-6gb"]) {
      assert.deepEqual(configProblems(separated("digitalocean", { databaseMode: "managed", managedDatabaseSize: size })), [
        `saas-vps:managedDatabaseSize: "${size}" is not a DigitalOcean Managed PostgreSQL size; use one of ${MANAGED_DATABASE_SIZES.join(", ")}`,
      ]);
    }
  });

  it("accepts exactly the node sizes the provider SDK lists", () => {
    assert.deepEqual([...MANAGED_DATABASE_SIZES].sort(), Object.values(digitalocean.DatabaseSlug).sort());
  });

  it("is refused at stage mvp (no private network to reach it over)", () => {
    const problems = configProblems({ ...minimalRaw("digitalocean"), databaseMode: "managed" });
    assert.equal(problems.length, 1);
    assert.match(problems[0], /^saas-vps:databaseMode: /);
  });
});
