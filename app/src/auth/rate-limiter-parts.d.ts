// Types for the two rate-limiter-flexible classes the app imports from their own files (the
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
