/**
 * @rms/cache: Effect-based caching — an exact LRU, a TTL cache with a scoped sweeper, singleflight and cache
 * metrics, each module re-exported here as a namespace.
 *
 * @since 0.1.0
 */

/** The contract every tier implements, its errors, and `Cache.Tag` for declaring typed cache services. */
export * as Cache from "./Cache.js"

/** Effect `Metric`s for caches and the `stats` snapshot. */
export * as CacheMetrics from "./CacheMetrics.js"

/** A bounded, exact-LRU in-memory tier. */
export * as LruCache from "./LruCache.js"

/** One shared execution per key among concurrent callers. */
export * as SingleFlight from "./SingleFlight.js"

/** An in-memory tier whose entries expire, swept by a scoped fiber. */
export * as TtlCache from "./TtlCache.js"
