/** The data the benchmarks read: one tenant with 20 projects, as app/bench/bench.ts sets up. */

export interface BenchTenant {
  /** Headers of the owner's authenticated requests. */
  auth: Record<string, string>;
  orgId: string;
  /** The authenticated list route: GET of the tenant's 20 projects (about 9 KB of JSON). */
  listPath: string;
}

const EMAIL = "bench@example.test";
const PASSWORD = "long enough pw";

/** Runs SQL in the app's database with rights to confirm an address; returns psql's tuples-only output. */
export type RunSql = (sql: string) => string;

/**
 * Signs up through the app, confirms the address with SQL (the token is only in the welcome
 * mail; an unverified owner may not create projects), logs in, adds the projects.
 */
export async function seedTenant(baseUrl: string, runSql: RunSql, projects = 20): Promise<BenchTenant> {
  const json = { "content-type": "application/json" };
  const reg = await fetch(`${baseUrl}/auth/register`, { method: "POST", headers: json, body: JSON.stringify({ email: EMAIL, password: PASSWORD, name: "bench" }) });
  if (reg.status !== 202) throw new Error(`register: ${reg.status} ${await reg.text()}`);
  runSql(`UPDATE users SET email_verified_at = now() WHERE email = '${EMAIL}'`);
  const orgId = runSql(`SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = '${EMAIL}'`).trim();
  if (!orgId) throw new Error(`register: no organization for ${EMAIL}`);
  const login = await fetch(`${baseUrl}/auth/login`, { method: "POST", headers: json, body: JSON.stringify({ email: EMAIL, password: PASSWORD }) });
  if (login.status !== 200) throw new Error(`login: ${login.status} ${await login.text()}`);
  const { token } = (await login.json()) as { token: string };
  const organization = { id: orgId };
  const auth = { Authorization: `Bearer ${token}` };
  for (let i = 0; i < projects; i++) {
    const r = await fetch(`${baseUrl}/orgs/${organization.id}/projects`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ name: `project ${i}`, description: "x".repeat(200) }),
    });
    if (r.status !== 201 && r.status !== 200) throw new Error(`create project: ${r.status} ${await r.text()}`);
  }
  return { auth, orgId: organization.id, listPath: `/orgs/${organization.id}/projects` };
}
