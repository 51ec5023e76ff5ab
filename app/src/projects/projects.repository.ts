// Table `projects`: the example tenant-scoped resource. Every function takes orgId and filters
// by it; there is deliberately no "find project by id" without an org.
import type { Db } from "../db/pool.js";

export interface Project {
  id: string;
  orgId: string;
  name: string;
  description: string;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, org_id AS "orgId", name, description, created_by AS "createdBy", created_at AS "createdAt", updated_at AS "updatedAt"`;

export async function insertProject(db: Db, orgId: string, createdBy: string, name: string, description: string): Promise<Project> {
  const { rows } = await db.query<Project>(
    `INSERT INTO projects (org_id, created_by, name, description) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
    [orgId, createdBy, name, description],
  );
  return rows[0]!;
}

/** Newest first; keyset pagination with `before` = the last id seen. */
export async function listProjects(db: Db, orgId: string, limit: number, before?: string): Promise<Project[]> {
  const { rows } = before
    ? await db.query<Project>(
        `SELECT ${COLUMNS} FROM projects
          WHERE org_id = $1 AND (created_at, id) < (SELECT created_at, id FROM projects WHERE org_id = $1 AND id = $3)
          ORDER BY created_at DESC, id DESC LIMIT $2`,
        [orgId, limit, before],
      )
    : await db.query<Project>(`SELECT ${COLUMNS} FROM projects WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, [orgId, limit]);
  return rows;
}

export async function findProject(db: Db, orgId: string, id: string): Promise<Project | undefined> {
  const { rows } = await db.query<Project>(`SELECT ${COLUMNS} FROM projects WHERE org_id = $1 AND id = $2`, [orgId, id]);
  return rows[0];
}

export async function updateProject(
  db: Db,
  orgId: string,
  id: string,
  patch: { name?: string; description?: string },
): Promise<Project | undefined> {
  const { rows } = await db.query<Project>(
    `UPDATE projects SET name = coalesce($3, name), description = coalesce($4, description), updated_at = now()
      WHERE org_id = $1 AND id = $2 RETURNING ${COLUMNS}`,
    [orgId, id, patch.name ?? null, patch.description ?? null],
  );
  return rows[0];
}

export async function deleteProject(db: Db, orgId: string, id: string): Promise<boolean> {
  const { rowCount } = await db.query(`DELETE FROM projects WHERE org_id = $1 AND id = $2`, [orgId, id]);
  return rowCount === 1;
}
