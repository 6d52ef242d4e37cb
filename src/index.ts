/**
 * @rms/cache: Effect-based caching — an exact LRU, a TTL cache with a scoped sweeper, singleflight, metrics, a
 * Redis tier (single node or cluster), multi-level caching, `CachedStore` for any entity, and `LoadingCache` with
 * freshness (negative caching, stale-while-revalidate, fail-safe, load timeouts, early refresh). Each module is re-exported here as a
 * namespace; importing this entry loads effect and ioredis only.
 *
 * The task domain (over Postgres through @effect/sql) has its own entries, so that its optional peers are
 * loaded only by those who use it: `@rms/cache/Task`, `@rms/cache/TaskStore`, `@rms/cache/TaskRepository`.
 *
 * @since 0.1.0
 */

/** The contract every tier implements, its errors, and `Cache.Tag` for declaring typed cache services. */
export * as Cache from "./Cache.js"

/** Any entity's store behind tiers, with write-through and the write protocol that keeps them in step. */
export * as CachedStore from "./CachedStore.js"

/** Effect `Metric`s for caches and the `stats` snapshot. */
export * as CacheMetrics from "./CacheMetrics.js"

/** Keys (never values) published on Redis pub/sub so that other instances drop them from their L1. */
export * as InvalidationBus from "./InvalidationBus.js"

/** Tiers over a source with freshness: negative caching, stale-while-revalidate, fail-safe, timeouts, early refresh. */
export * as LoadingCache from "./LoadingCache.js"

/** A bounded, exact-LRU in-memory tier. */
export * as LruCache from "./LruCache.js"

/** Tiers in order over a batch loader, with back-fill and fail-open tiers. */
export * as MultiLevelCache from "./MultiLevelCache.js"

/** Effect's metric registry, the caches' metrics included, in the Prometheus text format. */
export * as Prometheus from "./Prometheus.js"

/** A Redis tier with Schema-encoded values. */
export * as RedisCache from "./RedisCache.js"

/** A scoped ioredis connection from `Config`. */
export * as RedisClient from "./RedisClient.js"

/** One shared execution per key among concurrent callers, and its batching form. */
export * as SingleFlight from "./SingleFlight.js"

/** An in-memory tier whose entries expire, swept by a scoped fiber. */
export * as TtlCache from "./TtlCache.js"

/** Store-first writes and deletes that keep a cache in step. */
export * as WriteThrough from "./WriteThrough.js"
