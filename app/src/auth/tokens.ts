// Opaque random tokens (sessions, invitations). The client holds the token; the database holds
// only HMAC-SHA256(SECRET_KEY, token), so a leaked table or backup cannot be replayed.
import { createHmac, randomBytes } from "node:crypto";

export function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

export function hashToken(secretKey: string, token: string): Buffer {
  return createHmac("sha256", secretKey).update(token).digest();
}
