/**
 * A bounded in-memory tier with exact least-recently-used eviction and an optional time-to-live.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Cache } from "./Cache.js"
import * as CacheMetrics from "./CacheMetrics.js"
import * as MemoryTier from "./internal/memoryTier.js"
import { validateCapacity, validateTimeToLive } from "./internal/options.js"

/**
 * Options of an `LruCache`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<V = unknown> {
  /** The most entries held; a write beyond it evicts the least recently used entry (see `eviction`). */
  readonly capacity: number
  /**
   * How a full tier chooses what to keep. `"lru"` (the default): exact least-recently-used. `"tinyLfu"`:
   * Caffeine's W-TinyLFU — new entries pass through a small LRU window, and enter the main region only if a
   * frequency sketch says they are asked for more often than the entry they would push out; the window's size
   * adapts to the workload (hill climbing). It keeps popular entries through scans and loops that flush an LRU
   * (hit ratios on the literature's traces in BENCHMARKS.md), at a cost per hit (the sketch's counters).
   */
  readonly eviction?: "lru" | "tinyLfu"
  /** How long an entry lives after it was written, unless the write gives its own. Default: forever. */
  readonly timeToLive?: Duration.DurationInput
  /**
   * The version of a value (a counter that grows with every change). With it the tier is versioned, as a
   * `RedisCache` with `version` is: a write older than what the key holds is refused, and `invalidate` leaves a
   * tombstone that refuses every write for `tombstoneTimeToLive` (tombstones take a slot, like entries). An
   * in-memory stand-in for a shared versioned tier, for tests of several instances without Redis.
   * Default: none.
   */
  readonly version?: (value: V) => number
  /** How long a tombstone refuses writes in a versioned tier. Default: 30 seconds. */
  readonly tombstoneTimeToLive?: Duration.DurationInput
  /** The name the metrics are tagged with. Default: `"lru"` for `make`, the tag's key for `layer`. */
  readonly name?: string
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * Builds an LRU tier. Expiry reads the `Clock` in the context where the cache is built, so `TestClock` drives
 * it in tests. Expired entries are dropped when read or when eviction reaches them; there is no sweeper (use
 * `TtlCache` for a tier that removes expired entries in the background).
 *
 * Fails with `IllegalArgumentException` for a capacity that is not a positive integer or a time-to-live that
 * is not a positive duration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V>(options: Options<V>): Effect.Effect<Cache<K, V>, Cause.IllegalArgumentException> =>
  Effect.gen(function*() {
    const name = options.name ?? "lru"
    const capacity = yield* validateCapacity(options.capacity, name)
    const defaultTimeToLive = yield* validateTimeToLive(options.timeToLive, name)
    const versioning = options.version === undefined ? undefined : {
      version: options.version,
      tombstoneMillis: yield* validateTimeToLive(options.tombstoneTimeToLive ?? "30 seconds", name, "tombstoneTimeToLive")
    }
    const clock = yield* Effect.clock
    const labels = { cache: name, tier: "lru" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const tier = MemoryTier.make<K, V>({
      name,
      capacity,
      recency: true,
      eviction: options.eviction ?? "lru",
      defaultTimeToLive,
      clock,
      metrics,
      ...(versioning === undefined ? {} : { versioning })
    })
    return tier.cache
  })

/**
 * A layer providing an LRU tier under `tag`, named after the tag's key unless `options.name` says otherwise.
 *
 * ```ts
 * class TaskL1 extends Cache.Tag("app/TaskL1")<TaskL1, TaskId, Task>() {}
 * const TaskL1Live = LruCache.layer(TaskL1, { capacity: 10_000, timeToLive: "5 minutes" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, K, V, E>(
  tag: Context.Tag<I, Cache<K, V, E>>,
  options: Options<V>
): Layer.Layer<I, Cause.IllegalArgumentException> =>
  Layer.effect(tag, make<K, V>({ ...options, name: options.name ?? tag.key }))
