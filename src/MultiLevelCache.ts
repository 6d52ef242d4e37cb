/**
 * Tiers in order (L1 → L2 → …) over a batch loader: a miss asks the next tier, then the loader, and what is
 * found is back-filled into the tiers above. Loads are batched and shared; a failing tier is skipped
 * (fail-open), counted, and guarded by a circuit breaker.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Cache } from "./Cache.js"
import type * as CacheMetrics from "./CacheMetrics.js"
import * as MultiLevel from "./internal/multiLevel.js"
import { writeSpan } from "./internal/spans.js"

/**
 * A tier, how long a call to it may take, and when to stop calling it. Whether it is versioned is the tier's
 * own say (`Cache.versioned`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Tier<K, V> {
  /** The tier itself. */
  readonly cache: Cache<K, V, unknown>
  /**
   * The longest one call may take; past it the call is abandoned and the tier skipped for that call, as if
   * it had failed. Default: no bound (right for in-memory tiers, which answer synchronously).
   */
  readonly timeout?: Duration.DurationInput
  /**
   * A circuit breaker: after `failures` consecutive failed calls (default 5) the tier is not called at all for
   * `cooldown` (default 5 seconds); then one call probes it, and its success closes the breaker. Default: none.
   */
  readonly breaker?: { readonly failures?: number; readonly cooldown?: Duration.DurationInput }
}

/**
 * Options of a multi-level cache.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K, V, E, R> {
  /** The name its own metrics (loads, fall-throughs) are tagged with, under the tier `"multilevel"`. */
  readonly name: string
  /** The tiers, nearest first. Each is a `Cache` or a `Tier` with a timeout and a breaker. */
  readonly tiers: ReadonlyArray<Cache<K, V, unknown> | Tier<K, V>>
  /** Loads the keys no tier has, in one call; keys it does not return do not exist. */
  readonly load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, V>, E, R>
  /** The most keys one load asks for. Default: 2048. */
  readonly maxBatchSize?: number
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * A multi-level cache is itself a `Cache`: `get` answers from the nearest tier that has the key, else from the
 * loader (failing with `CacheMiss` only when the loader has nothing either, and with `E` when it fails).
 * Writes and invalidations go to every tier, farthest first; `size` is the nearest tier's.
 *
 * A tier call that fails, times out or meets an open breaker never fails the caller: reads fall through to the
 * next tier or the loader, writes to that tier are skipped, and each is counted (`cache_errors`,
 * `cache_skips`). A write that did not reach a tier makes its key dirty there: a miss on reads from that tier,
 * and repaired once the tier answers again (its current value loaded and stored there, or the key invalidated
 * if the loader no longer has it), so a tier that comes back never serves what was replaced while it was away.
 *
 * Loads and writes are kept in order: a load that began before a write or invalidation of its key does not
 * back-fill what it read, and of two concurrent `set`s of one key the one that came second wins in the nearest
 * tier (the first drops the key there if it finishes last). Farther tiers shared by several writers should be
 * versioned (`RedisCache`'s `version`), so that the newest value wins there whatever the order of arrival. To
 * keep a store and the tiers in step under concurrent writers and across instances, use `CachedStore`, which
 * registers each write before the store sees it.
 *
 * Its own metrics (tier `"multilevel"`) cover what the nearest tier did not answer: a key found in a farther
 * tier is a hit, a key sent to the loader a miss. The nearest tier's hits are in that tier's own metrics.
 *
 * @since 0.1.0
 * @category models
 */
export interface MultiLevelCache<K, V, E> extends Cache<K, V, E> {
  /** The metrics of this cache's own work: loads, their duration, shared loads, fall-throughs and skips. */
  readonly metrics: CacheMetrics.CacheMetrics
  /** The state of each tier's breaker, nearest first (`"closed"` for tiers without one). */
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
}

/**
 * Builds a multi-level cache; its loads run in fibers of the current scope. Fails with
 * `IllegalArgumentException` for no tiers, or a timeout or cooldown that is not a positive duration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, E, R>(
  options: Options<K, V, E, R>
): Effect.Effect<MultiLevelCache<K, V, E>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.map(MultiLevel.make(options), (core) => {
    const { protocol } = core
    /** Each write is registered for its own duration: a later write of its keys overtakes it. */
    const registered = <A>(keys: ReadonlyArray<K>, f: (write: MultiLevel.Pending<K> | undefined) => Effect.Effect<A>) =>
      keys.length === 1
        ? Effect.acquireUseRelease(Effect.sync(() => protocol.begin(keys[0]!)), f, (write) => Effect.sync(() => protocol.end(write)))
        : f(undefined)
    return {
      name: core.name,
      metrics: core.metrics,
      get: core.get,
      getOption: core.getOption,
      getMany: core.getMany,
      set: (key, value, options) =>
        writeSpan(registered([key], (write) => core.store([[key, value]], options, write)), core.name, "set", [key]),
      setMany: (entries, options) =>
        Effect.suspend(() => {
          const list = Array.from(entries)
          const keys = list.map(([key]) => key)
          return writeSpan(registered(keys, (write) => core.store(list, options, write)), core.name, "setMany", keys)
        }),
      invalidate: (key) => writeSpan(core.drop([key]), core.name, "invalidate", [key]),
      invalidateAll: writeSpan(core.drop("all"), core.name, "invalidateAll", "all"),
      breakers: core.breakers,
      size: core.size
    }
  })
