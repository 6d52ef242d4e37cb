/**
 * @rms/cache: Effect-based caching — an exact LRU, a TTL cache with a scoped sweeper, singleflight, metrics, a
 * Redis tier, multi-level caching with write-through, and a task repository composing them over Postgres.
 * Each module is re-exported here as a namespace.
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

/** A bounded, exact-LRU in-memory tier. */
export * as LruCache from "./LruCache.js"

/** Tiers in order over a batch loader, with back-fill and fail-open tiers. */
export * as MultiLevelCache from "./MultiLevelCache.js"

/** A Redis tier with Schema-encoded values. */
export * as RedisCache from "./RedisCache.js"

/** A scoped ioredis connection from `Config`. */
export * as RedisClient from "./RedisClient.js"

/** One shared execution per key among concurrent callers, and its batching form. */
export * as SingleFlight from "./SingleFlight.js"

/** The task domain: `TaskId`, `Task`, `TaskInput`, `TaskNotFound`, `StoreError`. */
export * as Task from "./Task.js"

/** The composed task service over the store and the tiers. */
export * as TaskRepository from "./TaskRepository.js"

/** Tasks in Postgres through @effect/sql. */
export * as TaskStore from "./TaskStore.js"

/** An in-memory tier whose entries expire, swept by a scoped fiber. */
export * as TtlCache from "./TtlCache.js"

/** Store-first writes and deletes that keep a cache in step. */
export * as WriteThrough from "./WriteThrough.js"
