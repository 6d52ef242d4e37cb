/**
 * An unbounded in-memory tier whose entries expire, with a sweeper fiber that removes them in the background.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Cache } from "./Cache.js"
import * as CacheMetrics from "./CacheMetrics.js"
import { maxCapacity } from "./internal/lruMap.js"
import * as MemoryTier from "./internal/memoryTier.js"
import { validateTimeToLive } from "./internal/options.js"

/**
 * Options of a `TtlCache`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long an entry lives after it was written, unless the write gives its own. Must be finite. */
  readonly timeToLive: Duration.DurationInput
  /** How often the sweeper removes expired entries. Default: half the time-to-live. */
  readonly sweepInterval?: Duration.DurationInput
  /** The name the metrics are tagged with. Default: `"ttl"` for `make`, the tag's key for `layer`. */
  readonly name?: string
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * Builds a TTL tier and forks its sweeper into the current scope; closing the scope interrupts the sweeper.
 *
 * An entry written at time `t` with time-to-live `d` is served while the `Clock` reads less than `t + d` and
 * never after; the sweeper removes it at its first run at or after `t + d`, so unread entries do not pile up.
 * Each sweep looks at every entry (O(size)). Time comes from the `Clock` where the cache is built, so
 * `TestClock.adjust` drives both expiry and the sweeper.
 *
 * Fails with `IllegalArgumentException` for a time-to-live or sweep interval that is not a positive, finite
 * duration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V>(
  options: Options
): Effect.Effect<Cache<K, V>, Cause.IllegalArgumentException, Scope.Scope> =>
  Effect.gen(function*() {
    const name = options.name ?? "ttl"
    const defaultTimeToLive = yield* validateTimeToLive(options.timeToLive, name)
    if (defaultTimeToLive === Infinity) {
      return yield* new Cause.IllegalArgumentException(
        `cache "${name}": timeToLive must be finite for a TtlCache (use LruCache for entries that never expire)`
      )
    }
    const sweepInterval = options.sweepInterval === undefined
      ? defaultTimeToLive / 2
      : yield* validateTimeToLive(options.sweepInterval, name, "sweepInterval")
    if (sweepInterval === Infinity) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": sweepInterval must be finite`)
    }
    const clock = yield* Effect.clock
    const labels = { cache: name, tier: "ttl" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    // Bounded only by the largest map capacity, 2^30 entries (a Map stops at 2^24); memory follows the entries.
    // Reads leave recency alone: nothing is ever evicted for room.
    const tier = MemoryTier.make<K, V>({ name, capacity: maxCapacity, recency: false, defaultTimeToLive, clock, metrics })

    yield* Effect.sleep(sweepInterval).pipe(
      Effect.andThen(Effect.sync(tier.sweep)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    return tier.cache
  })

/**
 * A layer providing a TTL tier under `tag`; its sweeper lives as long as the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, K, V, E>(
  tag: Context.Tag<I, Cache<K, V, E>>,
  options: Options
): Layer.Layer<I, Cause.IllegalArgumentException> =>
  Layer.scoped(tag, make<K, V>({ ...options, name: options.name ?? tag.key }))
