// Where the routes' validators (Ajv) and reply serializers (fast-json-stringify) come from.
// In a checkout (tests, `npm run dev:web`) Fastify compiles every route schema at start, as usual.
// A release ships them precompiled: scripts/build.mjs builds the app once with Fastify's
// standalone compilers in write mode (captureCompilers), which hand over each route schema's
// generated source; the build bundles those sources into precompiled-schemas.ts's place, and at
// run time precompiledCompilers returns them by route. Compiling was ~30 % of a web start
// (a third of it Ajv compiling its own draft-07 meta-schema); app/README.md, Build.
import type { ValidatorCompiler } from "@fastify/ajv-compiler";
import type { SerializerCompiler } from "@fastify/fast-json-stringify-compiler";
import type { FastifyServerOptions } from "fastify";

type SchemaController = NonNullable<FastifyServerOptions["schemaController"]>;
type Validator = ReturnType<ValidatorCompiler>;
type Serializer = ReturnType<SerializerCompiler>;

/** What Fastify asks a validator compiler for: one part (body, querystring, params, headers) of one route. */
export interface ValidatorRoute { method?: string; url?: string; httpPart?: string }
/** What Fastify asks a serializer compiler for: one status (and content type) of one route's replies. */
export interface SerializerRoute { method?: string; url?: string; httpStatus?: string; contentType?: string }

export const validatorKey = (r: ValidatorRoute): string => `${r.method} ${r.url} ${r.httpPart ?? ""}`;
export const serializerKey = (r: SerializerRoute): string => `${r.method} ${r.url} ${r.httpStatus ?? ""} ${r.contentType ?? ""}`;

/** Every route schema's compiled function, by validatorKey / serializerKey. */
export interface PrecompiledSchemas {
  validators: Record<string, Validator>;
  serializers: Record<string, Serializer>;
}

/** Generated source per key: what the build bundles as PrecompiledSchemas. */
export interface SchemaSources {
  validators: Record<string, string>;
  serializers: Record<string, string>;
}

function lookup<T>(table: Record<string, T>, key: string, what: string): T {
  const found = Object.hasOwn(table, key) ? table[key] : undefined;
  // A route the build did not see (registered only under some configuration) would otherwise
  // run unvalidated: refuse to start instead.
  if (!found) throw new Error(`no precompiled ${what} for ${key}: the build (scripts/build.mjs) registers every route once to precompile them; register this route unconditionally`);
  return found;
}

/**
 * Fastify's standalone read mode: each route's compiled function is looked up instead of
 * compiled. Written here rather than taken from @fastify/ajv-compiler/standalone and
 * @fastify/fast-json-stringify-compiler/standalone, whose modules load Ajv and
 * fast-json-stringify at import even in read mode (all their read mode does is this lookup).
 */
export function precompiledCompilers(compiled: PrecompiledSchemas): SchemaController {
  return {
    compilersFactory: {
      buildValidator: () => (route: ValidatorRoute) => lookup(compiled.validators, validatorKey(route), "validator"),
      buildSerializer: () => (route: SerializerRoute) => lookup(compiled.serializers, serializerKey(route), "serializer"),
    },
  };
}
