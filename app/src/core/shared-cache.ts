// A small cache every app server shares, in Valkey: JSON values with a TTL under one key prefix.
// It only ever saves a database read: a Valkey error or timeout is a miss (the caller reads the
// database), never an error of the request. Without VALKEY_URL there is no cache at all
// (noCache): every read goes to the database, as on one server. A per-process cache would be
// wrong once there are several servers: a write on one could not reach the others' copies.
import type { Valkey } from "./valkey.js";

export interface SharedCache {
  /** The cached value, or undefined on a miss (absent, expired, unreadable or Valkey away). */
  get<T>(key: string): Promise<T | undefined>;
  /** Keeps `value` (anything JSON can hold, null included) for `ttlSeconds`; a failure is ignored. */
  set(key: string, value: unknown, ttlSeconds: number): Promise<void>;
  /** Forgets `key`: call it after the write that changes what it holds has committed. */
  delete(key: string): Promise<void>;
  /** The cached value, else `load()`'s, kept for `ttlSeconds`. */
  remember<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T>;
}

/** Every cache key starts with this: the counters of rate-limits.ts and the cache share one Valkey. */
export const CACHE_PREFIX = "cache:";

/** No Valkey: nothing is kept, every read goes to the database. */
export const noCache: SharedCache = {
  get: async () => undefined,
  set: async () => {},
  delete: async () => {},
  remember: (_key, _ttl, load) => load(),
};

export function valkeyCache(valkey: Valkey): SharedCache {
  const { client, status } = valkey;
  const failed = (err: unknown): undefined => {
    valkey.commandFailed((err as Error).message);
    return undefined;
  };
  const cache: SharedCache = {
    async get<T>(key: string): Promise<T | undefined> {
      // The client is away: a miss at once, no doomed command.
      if (client.status !== "ready") return undefined;
      const raw = await client.get(CACHE_PREFIX + key).catch(failed);
      if (raw === undefined) return undefined;
      status.up(); // Valkey answered: after a stall without a disconnect, this is how "back" is seen
      if (raw === null) return undefined;
      try {
        return JSON.parse(raw) as T;
      } catch {
        return undefined;
      }
    },
    async set(key, value, ttlSeconds) {
      if (client.status !== "ready") return;
      await client.set(CACHE_PREFIX + key, JSON.stringify(value), "EX", ttlSeconds).catch(failed);
    },
    async delete(key) {
      // A delete that cannot reach Valkey leaves the old value until its TTL: the bound callers accept.
      if (client.status !== "ready") return;
      await client.del(CACHE_PREFIX + key).catch(failed);
    },
    async remember<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T> {
      const hit = await cache.get<T>(key);
      if (hit !== undefined) return hit;
      const value = await load();
      await cache.set(key, value, ttlSeconds);
      return value;
    },
  };
  return cache;
}

export function sharedCache(valkey: Valkey | undefined): SharedCache {
  return valkey ? valkeyCache(valkey) : noCache;
}
