// Types for the rate-limiter-flexible classes the app imports from their own files (the
// package's index loads every store it supports); the classes are the package's own.
declare module "rate-limiter-flexible/lib/RateLimiterPostgres.js" {
  import type { RateLimiterPostgres } from "rate-limiter-flexible";
  const RateLimiterPostgresClass: typeof RateLimiterPostgres;
  export default RateLimiterPostgresClass;
}
declare module "rate-limiter-flexible/lib/RateLimiterRes.js" {
  import type { RateLimiterRes } from "rate-limiter-flexible";
  const RateLimiterResClass: typeof RateLimiterRes;
  export default RateLimiterResClass;
}
declare module "rate-limiter-flexible/lib/RateLimiterValkey.js" {
  import type { RateLimiterValkey } from "rate-limiter-flexible";
  const RateLimiterValkeyClass: typeof RateLimiterValkey;
  export default RateLimiterValkeyClass;
}
declare module "rate-limiter-flexible/lib/RateLimiterMemory.js" {
  import type { RateLimiterMemory } from "rate-limiter-flexible";
  const RateLimiterMemoryClass: typeof RateLimiterMemory;
  export default RateLimiterMemoryClass;
}
