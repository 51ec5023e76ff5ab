/** The data the benchmarks read: one tenant with 20 projects, as app/bench/bench.ts sets up. */

export interface BenchTenant {
  /** Headers of the owner's authenticated requests. */
  auth: Record<string, string>;
  orgId: string;
  /** The authenticated list route: GET of the tenant's 20 projects (about 9 KB of JSON). */
  listPath: string;
}

export async function seedTenant(baseUrl: string, projects = 20): Promise<BenchTenant> {
  const reg = await fetch(`${baseUrl}/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "bench@example.test", password: "long enough pw", name: "bench" }),
  });
  if (reg.status !== 201 && reg.status !== 200) throw new Error(`register: ${reg.status} ${await reg.text()}`);
  const { token, organization } = (await reg.json()) as { token: string; organization: { id: string } };
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
