/**
 * How the app reaches PostgreSQL, whichever stage and wherever it runs (the same server, the db
 * server over the private network, or a managed cluster), and the least-privilege logins it
 * uses: the schema's owner runs migrations only; the web processes and the worker each have a
 * login of their own with the data rights they need and no right to change the schema.
 */

/** Where PostgreSQL answers the app. */
export interface DatabaseEndpoint {
  /** 127.0.0.1 on the all-in-one server; a private address or host on a network. */
  host: string;
  port: number;
  /** The app's database. */
  database: string;
  /** TLS required (sslmode=require): on for every connection that leaves the server. */
  tls: boolean;
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
