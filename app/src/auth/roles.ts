// Roles within an organization, ordered by power.
export const ROLES = ["member", "admin", "owner"] as const;
export type Role = (typeof ROLES)[number];

export function hasRole(actual: Role, atLeast: Role): boolean {
  return ROLES.indexOf(actual) >= ROLES.indexOf(atLeast);
}
