/**
 * How the app reaches PostgreSQL, whichever stage and wherever it runs (the same server, the db
 * server over the private network, or a managed cluster), and the least-privilege logins it
 * uses: the schema's owner runs migrations only; the web processes and the worker each have a
 * login of their own with the data rights they need and no right to change the schema.
 */
import type { ServerPlan } from "./plan";

/** Where PostgreSQL answers the app. */
export interface DatabaseEndpoint {
  /** 127.0.0.1 on the all-in-one server; a private address or host on a network. */
  host: string;
  port: number;
  /** The app's database. */
  database: string;
  /** TLS required (sslmode=require): on for every connection that leaves the server. */
  tls: boolean;
  /**
   * The CA the server's certificate must chain to (a managed cluster's): with it, TLS is verified
   * (verify-ca) rather than only required.
   */
  caFile?: string;
}

/** The app's logins, by what uses them. */
export const DATABASE_LOGINS = ["owner", "web", "worker"] as const;
export type DatabaseLogin = (typeof DATABASE_LOGINS)[number];

/** Role names in PostgreSQL; the owner keeps the name the all-in-one server always used. */
export const DATABASE_ROLE_NAMES: Readonly<Record<DatabaseLogin, string>> = { owner: "app", web: "app_web", worker: "app_worker" };

export interface DatabaseCredential {
  user: string;
  password: string;
}

export type DatabaseCredentials = Readonly<Record<DatabaseLogin, DatabaseCredential>>;

/** What decides a server's logins: its roles, and whether its releases migrate. */
export type LoginHolder = Pick<ServerPlan, "roles" | "migrates">;

/**
 * The logins a server's processes use, from its roles: the web processes and the worker each
 * their own, and the schema's owner only where the release runs migrations (runsMigrations).
 */
export function loginsFor(server: LoginHolder): DatabaseLogin[] {
  const uses: Record<DatabaseLogin, boolean> = { owner: runsMigrations(server), web: server.roles.includes("web"), worker: server.roles.includes("worker") };
  return DATABASE_LOGINS.filter((login) => uses[login]);
}

/**
 * The one server that runs a release's migrations: the one with the web role (the app server
 * in split stages, the only server in mvp), or in stage scaled the first app server only (the
 * plan says so with `migrates`). The worker server never holds the owner's login.
 */
export function runsMigrations(server: LoginHolder): boolean {
  return server.migrates ?? server.roles.includes("web");
}

/**
 * The app's DATABASE_URL for one login. Over a network the URL asks for TLS without verifying
 * the server (libpq's sslmode=require): node-postgres reads a bare sslmode=require as
 * verify-full since pg-connection-string 2.7, which a server's self-signed certificate fails;
 * uselibpqcompat=true gives it libpq's meaning (docs/ARCHITECTURE.md, decision 11, says why
 * encryption without verification is what the private network gets). With the server's CA (a
 * managed cluster's), the URL verifies it instead: verify-ca, for the reason
 * provisioning/managedDatabase.ts gives.
 */
export function databaseUrl(endpoint: DatabaseEndpoint, credential: DatabaseCredential): string {
  const base = `postgres://${encodeURIComponent(credential.user)}:${encodeURIComponent(credential.password)}@${endpoint.host}:${endpoint.port}/${encodeURIComponent(endpoint.database)}`;
  if (!endpoint.tls) return base;
  if (endpoint.caFile) return `${base}?sslmode=verify-ca&sslrootcert=${encodeURIComponent(endpoint.caFile)}&uselibpqcompat=true`;
  return `${base}?sslmode=require&uselibpqcompat=true`;
}
