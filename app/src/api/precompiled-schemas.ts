// The routes' precompiled validators and serializers. In a checkout there are none (Fastify
// compiles them at start); scripts/build.mjs puts a generated module in this file's place in the
// release bundle (see schema-compilers.ts).
import type { PrecompiledSchemas } from "./schema-compilers.js";

export const precompiledSchemas: PrecompiledSchemas | undefined = undefined;
