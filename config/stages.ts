/** Growth stages of a stack. */
export const STAGES = ["mvp", "separated", "scaled"] as const;
export type Stage = (typeof STAGES)[number];
/** Stages whose servers talk over the stack's private network. */
export const SPLIT_STAGES: readonly Stage[] = ["separated", "scaled"];
/**
 * A stack moving from mvp to separated: where the app's data is while the old mvp server (the
 * separated app server) still has its own PostgreSQL. `live`: the app still runs on it, the new db
 * server waits; `kept`: the app runs on the db server, the old cluster is kept but unused until
 * it is retired (the key removed). README "Moving from mvp to separated".
 */
export const MVP_DATABASE_STATES = ["live", "kept"] as const;
export type MvpDatabaseState = (typeof MVP_DATABASE_STATES)[number];
