// Table `invitations`: an admin invites an email address into the org with a role; the invitee
// accepts with the token (sent by email) while signed in with that address.
import type { Db } from "../db/pool.js";
import type { Role } from "../auth/roles.js";

export const INVITATION_TTL_DAYS = 7;

export interface Invitation {
  id: string;
  orgId: string;
  email: string;
  role: Exclude<Role, "owner">;
  createdAt: Date;
  expiresAt: Date;
  acceptedAt: Date | null;
}

const COLUMNS = `id, org_id AS "orgId", email, role, created_at AS "createdAt", expires_at AS "expiresAt", accepted_at AS "acceptedAt"`;

export async function insertInvitation(
  db: Db,
  orgId: string,
  email: string,
  role: Invitation["role"],
  tokenHash: Buffer,
  invitedBy: string,
): Promise<Invitation> {
  const { rows } = await db.query<Invitation>(
    `INSERT INTO invitations (org_id, email, role, token_hash, invited_by, expires_at)
     VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6)) RETURNING ${COLUMNS}`,
    [orgId, email, role, tokenHash, invitedBy, INVITATION_TTL_DAYS],
  );
  return rows[0]!;
}

/**
 * Gives a pending invitation the hash of the token about to be mailed (the worker, at send
 * time); returns what the mail needs, or undefined when it is no longer pending.
 */
export async function setInvitationToken(
  db: Db,
  id: string,
  tokenHash: Buffer,
): Promise<{ email: string; orgName: string; role: Invitation["role"] } | undefined> {
  const { rows } = await db.query<{ email: string; orgName: string; role: Invitation["role"] }>(
    `UPDATE invitations i SET token_hash = $2 FROM organizations o
      WHERE i.id = $1 AND o.id = i.org_id AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()
      RETURNING i.email, o.name AS "orgName", i.role`,
    [id, tokenHash],
  );
  return rows[0];
}

export async function listPendingInvitations(db: Db, orgId: string): Promise<Invitation[]> {
  const { rows } = await db.query<Invitation>(
    `SELECT ${COLUMNS} FROM invitations
      WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
      ORDER BY created_at DESC`,
    [orgId],
  );
  return rows;
}

/** Locks a usable invitation for acceptance inside a transaction. */
export async function lockUsableInvitation(db: Db, tokenHash: Buffer): Promise<Invitation | undefined> {
  const { rows } = await db.query<Invitation>(
    `SELECT ${COLUMNS} FROM invitations
      WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
      FOR UPDATE`,
    [tokenHash],
  );
  return rows[0];
}

export async function markAccepted(db: Db, id: string): Promise<void> {
  await db.query(`UPDATE invitations SET accepted_at = now() WHERE id = $1`, [id]);
}

export async function revokeInvitation(db: Db, orgId: string, id: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE invitations SET revoked_at = now() WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL`,
    [orgId, id],
  );
  return rowCount === 1;
}
