// Tables `organizations` and `memberships`. Every read takes the org id AND the acting user's
// id (or is only reachable behind the membership guard), never an org id alone from the client.
import type { Db } from "../db/pool.js";
import type { Role } from "../auth/roles.js";

export interface Organization {
  id: string;
  name: string;
  createdAt: Date;
}
export interface OrganizationWithRole extends Organization {
  role: Role;
}
export interface Member {
  userId: string;
  email: string;
  name: string;
  role: Role;
  joinedAt: Date;
}

export async function insertOrganization(db: Db, name: string, ownerId: string): Promise<Organization> {
  const { rows } = await db.query<Organization>(
    `INSERT INTO organizations (name) VALUES ($1) RETURNING id, name, created_at AS "createdAt"`,
    [name],
  );
  const org = rows[0]!;
  await db.query(`INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')`, [org.id, ownerId]);
  return org;
}

export async function listOrganizationsOfUser(db: Db, userId: string): Promise<OrganizationWithRole[]> {
  const { rows } = await db.query<OrganizationWithRole>(
    `SELECT o.id, o.name, o.created_at AS "createdAt", m.role
       FROM memberships m JOIN organizations o ON o.id = m.org_id
      WHERE m.user_id = $1 ORDER BY o.created_at, o.id`,
    [userId],
  );
  return rows;
}

export async function findOrganization(db: Db, orgId: string): Promise<Organization | undefined> {
  const { rows } = await db.query<Organization>(`SELECT id, name, created_at AS "createdAt" FROM organizations WHERE id = $1`, [orgId]);
  return rows[0];
}

export async function renameOrganization(db: Db, orgId: string, name: string): Promise<Organization | undefined> {
  const { rows } = await db.query<Organization>(
    `UPDATE organizations SET name = $2 WHERE id = $1 RETURNING id, name, created_at AS "createdAt"`,
    [orgId, name],
  );
  return rows[0];
}

export async function findRole(db: Db, orgId: string, userId: string): Promise<Role | undefined> {
  const { rows } = await db.query<{ role: Role }>(`SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2`, [orgId, userId]);
  return rows[0]?.role;
}

export async function listMembers(db: Db, orgId: string): Promise<Member[]> {
  const { rows } = await db.query<Member>(
    `SELECT u.id AS "userId", u.email, u.name, m.role, m.created_at AS "joinedAt"
       FROM memberships m JOIN users u ON u.id = m.user_id
      WHERE m.org_id = $1 ORDER BY m.created_at, u.id`,
    [orgId],
  );
  return rows;
}

/** Inserts a membership; returns false if the user already is a member. */
export async function addMember(db: Db, orgId: string, userId: string, role: Role): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    [orgId, userId, role],
  );
  return rowCount === 1;
}

/** Locks the org's memberships so "is this the last owner?" checks cannot race. */
export async function lockMemberships(db: Db, orgId: string): Promise<Array<{ userId: string; role: Role }>> {
  const { rows } = await db.query<{ userId: string; role: Role }>(
    `SELECT user_id AS "userId", role FROM memberships WHERE org_id = $1 FOR UPDATE`,
    [orgId],
  );
  return rows;
}

export async function setMemberRole(db: Db, orgId: string, userId: string, role: Role): Promise<boolean> {
  const { rowCount } = await db.query(`UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2`, [orgId, userId, role]);
  return rowCount === 1;
}

export async function removeMember(db: Db, orgId: string, userId: string): Promise<boolean> {
  const { rowCount } = await db.query(`DELETE FROM memberships WHERE org_id = $1 AND user_id = $2`, [orgId, userId]);
  return rowCount === 1;
}
