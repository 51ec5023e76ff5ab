/**
 * A running mvp stack moving to stage separated (config `mvpDatabase`; README "Moving from mvp to
 * separated"). Its one server becomes the separated app server: same name, so the same server,
 * fixed IP, keys, firewall and data volume. The data moves by backup and `backup restore-app`,
 * between two `pulumi up`s, and the plan says where the app's database is meanwhile:
 *
 * - `live`: the app still runs on the old server exactly as in mvp (web, worker, PostgreSQL and
 *   its backups); the db server is built with an empty database whose backups wait (standby, so
 *   no snapshot of it lands among the live ones); no worker server yet, since a worker pointed at
 *   the empty database would start its job queue there and make the restore refuse it.
 * - `kept`: the app runs on the db server and the worker server; the app server serves web only
 *   and keeps its volume and old cluster, unused (no logins, no backup timers, no workers), so
 *   going back is `live` again. Removing the key retires them (README).
 */
import type { MvpDatabaseState } from "../config/stages";
import type { StackConfig } from "../config/config";
import { mvpServer, withDatabaseClients, type ServerPlan, type StackPlan } from "./plan";

export function planMoveFromMvp(plan: StackPlan, config: StackConfig, state: MvpDatabaseState): StackPlan {
  if (plan.database.kind !== "server") throw new Error("mvpDatabase with a managed database (the config parser refuses it)");
  const dbServer = plan.database.server;
  const planned = plan.servers.find((s) => s.name === "app");
  if (!planned) throw new Error("stage separated without an app server");
  const old = mvpServer(config);
  if (state === "kept") {
    // Web only, but the volume stays declared and attached: dropping it would ask Pulumi to delete a protected resource.
    const app: ServerPlan = { ...planned, volume: old.volume, mvpDatabase: state };
    return { ...plan, servers: plan.servers.map((s) => (s.name === "app" ? app : s)) };
  }
  const app: ServerPlan = { ...old, privateIp: planned.privateIp, mvpDatabase: state };
  const servers = plan.servers.filter((s) => s.name !== "worker").map((s) => (s.name === "app" ? app : s));
  // Only servers that exist may reach the db server's PostgreSQL.
  const clients = servers.filter((s) => s.name !== dbServer && s.roles.some((r) => r === "web" || r === "worker")).map((s) => s.name);
  const withClients = servers.map((s) => (s.name === dbServer ? withDatabaseClients(s, clients) : s));
  return { ...plan, servers: withClients, database: { kind: "server", server: app.name } };
}
