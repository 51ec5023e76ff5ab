// GET /orgs/:orgId/events: the organization's audit log, for its owners. Platform admins read
// every organization's at GET /admin/events (admin module).
import type { FastifyInstance } from "fastify";
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../api/context.js";
import { OrgParams } from "../api/schemas.js";
import { makeAuthenticate } from "../auth/authenticate.js";
import { makeRequireRole, tenantOf } from "../tenants/guard.js";
import { listEvents } from "./events.repository.js";

export const EventsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
    /** The last id of the previous page. */
    before: Type.Optional(Type.String({ pattern: "^[1-9][0-9]{0,17}$" })),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

const EventOut = Type.Object({
  id: Type.String(),
  orgId: Type.Union([Type.String(), Type.Null()]),
  actorUserId: Type.Union([Type.String(), Type.Null()]),
  kind: Type.String(),
  requestId: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
  occurredAt: Type.String({ format: "date-time" }),
});
export const EventsOut = { 200: Type.Object({ events: Type.Array(EventOut), nextBefore: Type.Union([Type.String(), Type.Null()]) }) };

/**
 * One page, and the cursor for the next (null on the last page). Read from the replica while it
 * keeps up (DATABASE_READ_MAX_LAG_SECONDS): an audit log a few seconds behind is still the log.
 */
export async function eventsPage(ctx: AppContext, query: EventsQuery, orgId?: string) {
  const events = await listEvents(ctx.reads?.db() ?? ctx.pool, { orgId, limit: query.limit, before: query.before });
  return { events, nextBefore: events.length === query.limit ? events[events.length - 1]!.id : null };
}

export async function eventsRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.addHook("preHandler", makeAuthenticate(ctx));
  const requireRole = makeRequireRole(ctx);

  app.get<{ Params: OrgParams; Querystring: EventsQuery }>(
    "/orgs/:orgId/events",
    { schema: { params: OrgParams, querystring: EventsQuery, response: EventsOut }, preHandler: requireRole("owner") },
    async (request) => eventsPage(ctx, request.query, tenantOf(request).orgId),
  );
}
