// Table `files`: metadata of uploaded files; the bytes live in FileStorage under storage_key.
import type { Db } from "../db/pool.js";

export interface FileRecord {
  id: string;
  orgId: string;
  projectId: string | null;
  filename: string;
  contentType: string;
  sizeBytes: number;
  uploadedBy: string | null;
  createdAt: Date;
}
export interface StoredFile extends FileRecord {
  storageKey: string;
}

const COLUMNS = `id, org_id AS "orgId", project_id AS "projectId", filename, content_type AS "contentType",
  size_bytes::float8 AS "sizeBytes", uploaded_by AS "uploadedBy", created_at AS "createdAt"`;

export async function insertFile(
  db: Db,
  f: { id: string; orgId: string; projectId: string | null; storageKey: string; filename: string; contentType: string; sizeBytes: number; uploadedBy: string },
): Promise<FileRecord> {
  const { rows } = await db.query<FileRecord>(
    `INSERT INTO files (id, org_id, project_id, storage_key, filename, content_type, size_bytes, uploaded_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
    [f.id, f.orgId, f.projectId, f.storageKey, f.filename, f.contentType, f.sizeBytes, f.uploadedBy],
  );
  return rows[0]!;
}

/**
 * Bytes the org's files take, with the org's upload-quota lock held until the transaction ends,
 * so two concurrent uploads cannot both squeeze under the quota.
 */
export async function lockOrgUsage(db: Db, orgId: string): Promise<number> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtextextended('upload-quota:' || $1::text, 0))`, [orgId]);
  return orgUsage(db, orgId);
}

export async function orgUsage(db: Db, orgId: string): Promise<number> {
  const { rows } = await db.query<{ used: number }>(`SELECT coalesce(sum(size_bytes), 0)::float8 AS used FROM files WHERE org_id = $1`, [orgId]);
  return rows[0]!.used;
}

export async function listFiles(db: Db, orgId: string, limit: number): Promise<FileRecord[]> {
  const { rows } = await db.query<FileRecord>(`SELECT ${COLUMNS} FROM files WHERE org_id = $1 ORDER BY created_at DESC, id LIMIT $2`, [orgId, limit]);
  return rows;
}

export async function findFile(db: Db, orgId: string, id: string): Promise<StoredFile | undefined> {
  const { rows } = await db.query<StoredFile>(
    `SELECT ${COLUMNS}, storage_key AS "storageKey" FROM files WHERE org_id = $1 AND id = $2`,
    [orgId, id],
  );
  return rows[0];
}

export async function deleteFile(db: Db, orgId: string, id: string): Promise<string | undefined> {
  const { rows } = await db.query<{ storageKey: string }>(
    `DELETE FROM files WHERE org_id = $1 AND id = $2 RETURNING storage_key AS "storageKey"`,
    [orgId, id],
  );
  return rows[0]?.storageKey;
}

export async function storageKeysOfProject(db: Db, orgId: string, projectId: string): Promise<string[]> {
  const { rows } = await db.query<{ storageKey: string }>(
    `SELECT storage_key AS "storageKey" FROM files WHERE org_id = $1 AND project_id = $2`,
    [orgId, projectId],
  );
  return rows.map((r) => r.storageKey);
}
