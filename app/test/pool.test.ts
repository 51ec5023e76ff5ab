// The pool's start-up connection (db/pool.ts: openFirstConnection), against the test PostgreSQL.
import assert from "node:assert/strict";
import type pg from "pg";
import { createPool, openFirstConnection } from "../src/db/pool.js";
import { captureLogger, databaseUrl } from "./helpers/app.js";
import { freePort } from "./helpers/proc.js";
import { waitFor } from "./helpers/wait.js";

describe("openFirstConnection", () => {
  let pool: pg.Pool | undefined;
  afterEach(async () => {
    await pool?.end();
    pool = undefined;
  });

  it("opens one connection and leaves it idle in the pool, where the first query finds it", async () => {
    const { log, logs } = captureLogger();
    pool = createPool(databaseUrl(), log, { max: 3, applicationName: "pool-test-first-connection" });
    openFirstConnection(pool, log);
    const p = pool;
    await waitFor("an idle connection", () => p.idleCount === 1);
    assert.equal(pool.totalCount, 1, "one connection, not the pool's max");
    const { rows } = await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    assert.equal(pool.totalCount, 1, "the first query used the open connection");
    const { rows: seen } = await pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pool-test-first-connection' AND pid = $1",
      [rows[0]!.pid],
    );
    assert.equal(seen[0]!.n, "1");
    assert.deepEqual(logs.filter((l) => l.level === "warn"), []);
  });

  it("only logs when the database cannot be reached: no unhandled rejection, no connection kept", async () => {
    const { log, logs } = captureLogger();
    const closedPort = await freePort();
    pool = createPool(`postgres://nobody@127.0.0.1:${closedPort}/none`, log, { connectionTimeoutMillis: 2000 });
    openFirstConnection(pool, log);
    const warning = await waitFor("the warning", () => logs.find((l) => l.message === "could not open a database connection at start"));
    assert.equal(warning.level, "warn");
    assert.match(String(warning.err), /ECONNREFUSED/);
    assert.equal(pool.totalCount, 0);
  });
});
