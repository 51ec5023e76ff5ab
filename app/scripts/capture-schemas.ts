// Build step (run by scripts/build.mjs, bundled like the release): builds the app once with
// Fastify's standalone compilers in write mode and prints, as JSON, the generated source of every
// route schema's validator and serializer by route (src/api/schema-compilers.ts). Nothing is
// connected to: the pool is never queried and the storage never written.
// Fastify's own compilers (dependencies of fastify), in their standalone write mode.
import { StandaloneValidator } from "@fastify/ajv-compiler";
import { StandaloneSerializer } from "@fastify/fast-json-stringify-compiler";
import { buildApp } from "../src/api/app.js";
import { parseConfig } from "../src/core/config.js";
import { createLogger } from "../src/core/logger.js";
import { createErrorReporter } from "../src/core/sentry.js";
import { createPool } from "../src/db/pool.js";
import { createStorage } from "../src/files/storage.js";
import { serializerKey, validatorKey, type SchemaSources, type SerializerRoute, type ValidatorRoute } from "../src/api/schema-compilers.js";

// Route registration reads the configuration (plans, limits) but registers every route whatever
// it says; these values only have to parse.
const config = parseConfig({
  DATABASE_URL: "postgres://build@127.0.0.1:1/none",
  SECRET_KEY: "build-time schema capture, never used to sign anything",
  APP_URL: "http://build.invalid",
});
const log = createLogger("silent", { service: "web", release: "schema-capture" });
const pool = createPool(config.databaseUrl, log);
const sources: SchemaSources = { validators: {}, serializers: {} };
const store = (table: Record<string, string>, key: string, code: string) => {
  if (Object.hasOwn(table, key) && table[key] !== code) throw new Error(`two different schemas for ${key}`);
  table[key] = code;
};

/**
 * A reply schema with anyOf/oneOf (a nullable field) needs an Ajv validator to pick the branch;
 * by default the standalone code rebuilds it at load (a new Ajv, its meta-schema compiled, per
 * serializer). Inlined, it is Ajv's generated function like the request validators.
 */
function withInlineValidators(factory: ReturnType<typeof StandaloneSerializer>): ReturnType<typeof StandaloneSerializer> {
  return (externalSchemas, serializerOpts) => factory(externalSchemas, { ...serializerOpts, inlineValidators: true });
}

const app = await buildApp(
  { config, pool, log, storage: createStorage(config), reporter: await createErrorReporter(undefined, "build", "web"), releaseId: "build" },
  {
    schemaController: {
      compilersFactory: {
        buildValidator: StandaloneValidator({ readMode: false, storeFunction: (route: ValidatorRoute, code: string) => store(sources.validators, validatorKey(route), code) }),
        buildSerializer: withInlineValidators(StandaloneSerializer({ readMode: false, storeFunction: (route: SerializerRoute, code: string) => store(sources.serializers, serializerKey(route), code) })),
      },
    },
  },
);
await app.ready();
await app.close();
await pool.end();
process.stdout.write(`${JSON.stringify(sources)}\n`);
