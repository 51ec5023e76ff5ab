/**
 * nginx's rate limit on the auth routes in front of the real app (two instances) on real
 * PostgreSQL: a login flood from one address is refused at nginx, so the app's scrypt never runs
 * for it, while a person at another address still signs in. The cost of the flood to everyone
 * else (/health latency) is measured in bench/authFlood.ts, not asserted here.
 */
import assert from "node:assert/strict";
import { type FakeServer, type Nginx, markVerified, sleep } from "./harness";
import { agentFrom, floodFrom, requestFrom } from "./flood";
import { startSite, useLiveRelease } from "./live";
import { AUTH_RETRY_AFTER_SECONDS, RATE_LIMITED_BODY } from "../../provisioning/nginx";

const FLOOD_FROM = "127.0.0.2";
const PERSON_AT = "127.0.0.3";
const OTHER_PERSON_AT = "127.0.0.4";
const FLOOD_REQUESTS = 300;

describe("@real nginx rate limit: a login flood from one address through the real app", function () {
  this.timeout(180_000);
  const live = useLiveRelease("rate-limit");
  let nginx: Nginx;
  let server: FakeServer;
  const account = { email: "person@example.test", password: "a long enough password" };

  before(async () => {
    ({ nginx, server } = await startSite(live, "rl", 2, { workerUnits: [] }));
    const run = await server.run([live.artifacts.A]);
    assert.equal(run.code, 0, run.stdout + run.stderr + server.logs());
    await sleep(2500); // nginx marked the ports failed while nothing listened (fail_timeout=2s)
    const reg = await requestFrom(agentFrom(PERSON_AT), `${nginx.url}/auth/register`, { ...account, name: "Person" });
    assert.equal(reg.status, 202, reg.body);
    markVerified(live.databaseUrl, account.email);
  });

  after(() => {
    server?.stopAll();
    nginx?.stop();
  });

  let byStatus: Record<number, number>;

  it(`refuses at least 95 % of ${FLOOD_REQUESTS} logins from one address with 429`, async () => {
    byStatus = await floodFrom(agentFrom(FLOOD_FROM), `${nginx.url}/auth/login`, { email: account.email, password: "wrong guess" }, FLOOD_REQUESTS, 10);
    const refused = byStatus[429] ?? 0;
    assert.ok(refused / FLOOD_REQUESTS >= 0.95, `429 for ${refused} of ${FLOOD_REQUESTS}; answers by status: ${JSON.stringify(byStatus)}`);
    // What got through reached the app and was a wrong password, nothing else.
    assert.deepEqual(Object.keys(byStatus).sort(), ["401", "429"], JSON.stringify(byStatus));
  });

  it("answers the refused address JSON with Retry-After, on every auth route", async () => {
    const agent = agentFrom(FLOOD_FROM);
    const refused = await requestFrom(agent, `${nginx.url}/auth/register`, { email: "x@example.test", password: "a long enough password", name: "X" });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers["retry-after"], String(AUTH_RETRY_AFTER_SECONDS));
    assert.equal(refused.headers["content-type"], "application/json");
    assert.equal(refused.body, RATE_LIMITED_BODY);
    // The rest of the site still answers that address.
    assert.equal((await requestFrom(agent, `${nginx.url}/health`)).status, 200);
  });

  it("lets a person at another address sign in during and after the flood", async () => {
    const flood = floodFrom(agentFrom(FLOOD_FROM), `${nginx.url}/auth/login`, { email: account.email, password: "wrong guess" }, 200, 10);
    const during = await requestFrom(agentFrom(OTHER_PERSON_AT), `${nginx.url}/auth/login`, account);
    await flood;
    assert.equal(during.status, 200, during.body);
    assert.match(JSON.parse(during.body).token, /^sess_/);
    const after = await requestFrom(agentFrom(PERSON_AT), `${nginx.url}/auth/login`, account);
    assert.equal(after.status, 200, after.body);
  });
});
