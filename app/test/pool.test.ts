// Web's pool (db/pool.ts: WEB_POOL, warmPool) against the test PostgreSQL: the connections it opens
// at start and keeps through a quiet spell, and a request that waits out a slow connect (a TCP
// relay in front of PostgreSQL that holds each new connection back) instead of failing.
import assert from "node:assert/strict";
import net from "node:net";
import type pg from "pg";
import { createPool, WEB_POOL, warmPool } from "../src/db/pool.js";
import { captureLogger, databaseUrl } from "./helpers/app.js";
import { freePort } from "./helpers/proc.js";
import { waitFor } from "./helpers/wait.js";

/** A relay to the test PostgreSQL that connects each client only after `delayMs`: a slow connect. */
async function slowRelay(delayMs: number): Promise<{ url: string; close: () => Promise<void> }> {
  const target = new URL(databaseUrl());
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.pause();
    setTimeout(() => {
      const upstream = net.connect(Number(target.port), target.hostname, () => {
        client.pipe(upstream).pipe(client);
        client.resume();
      });
      sockets.add(upstream);
      const end = () => { client.destroy(); upstream.destroy(); };
      upstream.on("error", end).on("close", end);
      client.on("error", end).on("close", end);
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const relayed = new URL(target.href);
  relayed.port = String((server.address() as net.AddressInfo).port);
  return {
    url: relayed.href,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/** The backends PostgreSQL has for one application name. */
async function backends(pool: pg.Pool, applicationName: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [applicationName]);
  return Number(rows[0]!.n);
}

describe("web's pool", () => {
  let pool: pg.Pool | undefined;
  let observer: pg.Pool | undefined;
  let relay: Awaited<ReturnType<typeof slowRelay>> | undefined;
  afterEach(async () => {
    await pool?.end();
    await observer?.end();
    await relay?.close();
    pool = observer = relay = undefined;
  });

  it("warmPool opens the first connection alone, then the kept ones; the first query finds one open", async () => {
    const { log, logs } = captureLogger();
    pool = createPool(databaseUrl(), log, { ...WEB_POOL, applicationName: "pool-test-warm" });
    const p = pool;
    await warmPool(pool, log);
    assert.equal(pool.totalCount, WEB_POOL.min, "the kept connections, not the pool's max");
    assert.equal(pool.idleCount, WEB_POOL.min);
    await pool.query("SELECT 1");
    assert.equal(p.totalCount, WEB_POOL.min, "the first query used an open connection");
    observer = createPool(databaseUrl(), log, { max: 1 });
    assert.equal(await backends(observer, "pool-test-warm"), WEB_POOL.min);
    assert.deepEqual(logs.filter((l) => l.level === "warn"), []);
  });

  it("keeps its kept connections through a quiet spell and closes the ones above them", async () => {
    const { log } = captureLogger();
    pool = createPool(databaseUrl(), log, { ...WEB_POOL, idleTimeoutMillis: 200, applicationName: "pool-test-kept" });
    const p = pool;
    // A burst wider than the kept ones: four queries at once open four connections.
    await Promise.all(Array.from({ length: 4 }, () => p.query("SELECT pg_sleep(0.1)")));
    assert.equal(pool.totalCount, 4);
    await waitFor("the pool back to its kept connections", () => p.totalCount === WEB_POOL.min);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(pool.totalCount, WEB_POOL.min, "a kept connection was closed after idling");
  });

  it("a query waits out a connect slower than 3 s instead of failing", async function () {
    this.timeout(20_000);
    const { log } = captureLogger();
    relay = await slowRelay(4000);
    pool = createPool(relay.url, log, { ...WEB_POOL, applicationName: "pool-test-slow-connect" });
    const t = Date.now();
    const { rows } = await pool.query<{ one: number }>("SELECT 1 AS one");
    assert.equal(rows[0]!.one, 1);
    assert.ok(Date.now() - t >= 4000, `the connect took ${Date.now() - t} ms, not the relay's 4 s`);
  });

  it("a database that cannot be reached: warmPool only logs, keeps nothing, and never rejects", async () => {
    const { log, logs } = captureLogger();
    const closedPort = await freePort();
    pool = createPool(`postgres://nobody@127.0.0.1:${closedPort}/none`, log, WEB_POOL);
    await warmPool(pool, log);
    const warning = await waitFor("the warning", () => logs.find((l) => l.message === "could not open a database connection at start"));
    assert.equal(warning.level, "warn");
    assert.match(String(warning.err), /ECONNREFUSED/);
    assert.equal(pool.totalCount, 0);
  });
});
