// JSON schemas shared by routes (TypeBox: one definition gives the runtime schema Fastify
// validates with and the static type handlers use).
import * as Type from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";

export const Uuid = Type.String({ format: "uuid" });
export const OrgParams = Type.Object({ orgId: Uuid });
export type OrgParams = Static<typeof OrgParams>;

export const Name = Type.String({ minLength: 1, maxLength: 200, pattern: "\\S" });
export const Email = Type.String({ format: "email", maxLength: 254 });

export const Pagination = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
    before: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);
export type Pagination = Static<typeof Pagination>;

/** Strict body: unknown properties are a 400, not silently dropped. */
export function Body<T extends Parameters<typeof Type.Object>[0]>(props: T) {
  return Type.Object(props, { additionalProperties: false });
}
