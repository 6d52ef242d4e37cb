/**
 * Tiers in order (L1 → L2 → …) over a batch loader: a miss asks the next tier, then the loader, and what is
 * found is back-filled into the tiers above. Loads are batched and shared through `SingleFlight.makeBatched`;
 * a failing tier is skipped (fail-open), counted, and guarded by a circuit breaker.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Cache, SetOptions } from "./Cache.js"
import { CacheMiss } from "./Cache.js"
import * as CacheMetrics from "./CacheMetrics.js"
import { GuardedTier, makeBreaker } from "./internal/guardedTier.js"
import * as SingleFlight from "./SingleFlight.js"

/**
 * A tier, how long a call to it may take, and when to stop calling it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tier<K, V> {
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
 * Writes and invalidations go to every tier, nearest first; `size` is the nearest tier's.
 *
 * A tier call that fails, times out or meets an open breaker never fails the caller: reads fall through to the
 * next tier or the loader, writes to that tier are skipped, and each is counted (`cache_errors`,
 * `cache_skips`). A write that did not reach a tier makes its key dirty there: a miss on reads from that tier,
 * and repaired once the tier answers again (its current value loaded and stored there, or the key invalidated
 * if the loader no longer has it), so a tier that comes back never serves what was replaced while it was away.
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
  /**
   * Drops `keys` from the nearest tier only, and detaches them from loads in flight: for a write made
   * elsewhere (another instance), whose farther tiers it has already updated.
   */
  invalidateNearest(keys: Iterable<K>): Effect.Effect<void>
  /** Empties the nearest tier and detaches every load in flight (another instance's writes may have been missed). */
  readonly invalidateNearestAll: Effect.Effect<void>
  /** The state of each tier's breaker, nearest first (`"closed"` for tiers without one). */
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
}

const isTier = <K, V>(tier: Cache<K, V, unknown> | Tier<K, V>): tier is Tier<K, V> => "cache" in tier

const isCacheMiss = (error: unknown): error is CacheMiss => error instanceof CacheMiss

/**
 * Builds a multi-level cache; its loads run in fibers of the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, E, R>(
  options: Options<K, V, E, R>
): Effect.Effect<MultiLevelCache<K, V, E>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    if (options.tiers.length === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${options.name}": at least one tier is needed`)
    }
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    const labels = { cache: options.name, tier: "multilevel" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const context = yield* Effect.context<R>()
    /**
     * Puts the store's current values of `keys` into `cache`, and invalidates there those the store no longer
     * has: how a tier that missed writes is brought back in step (a versioned tier keeps whatever is newer).
     */
    const repair = (cache: Cache<K, V, unknown>) => (keys: ReadonlyArray<K>) =>
      Effect.gen(function*() {
        const current = yield* Effect.provide(options.load(keys), context)
        if (current.size > 0) yield* cache.setMany(current)
        for (const key of keys) if (!current.has(key)) yield* cache.invalidate(key)
      })
    const tiers: ReadonlyArray<GuardedTier<K, V>> = options.tiers.map((tier) => {
      const { breaker, cache, timeout } = isTier(tier) ? tier : { cache: tier, timeout: undefined, breaker: undefined }
      return new GuardedTier(
        cache,
        timeout === undefined ? undefined : Duration.decode(timeout),
        makeBreaker(breaker),
        clock,
        metrics,
        scope,
        repair(cache)
      )
    })
    const nearest = tiers[0]!

    /** Stores `entries` in every tier above `below` (nearest first), skipping keys a write has superseded. */
    const backfill = (below: number, entries: ReadonlyArray<readonly [K, V]>, isCurrent: (key: K) => boolean) =>
      Effect.forEach(
        tiers.slice(0, below),
        (tier) =>
          Effect.suspend(() => {
            const current = entries.filter(([key]) => isCurrent(key))
            return current.length === 0
              ? Effect.void
              : tier.backfill(current.map(([key]) => key), tier.cache.setMany(current))
          }),
        { discard: true }
      )

    /** Answers a batch of keys that missed the nearest tier: the next tiers in turn, then the loader. */
    const resolve = (keys: ReadonlyArray<K>, isCurrent: (key: K) => boolean) =>
      Effect.gen(function*() {
        const found = new Map<K, V>()
        let missing = keys
        for (let level = 1; level < tiers.length && missing.length > 0; level++) {
          const tier = tiers[level]!
          const hits = yield* tier.readMany(missing)
          if (hits.size === 0) continue
          for (const [key, value] of hits) found.set(key, value)
          missing = missing.filter((key) => !hits.has(key))
          yield* backfill(level, [...hits], isCurrent)
        }
        metrics.unsafeHit(keys.length - missing.length)
        if (missing.length === 0) return found
        metrics.unsafeMiss(missing.length)
        const loaded = yield* options.load(missing)
        for (const [key, value] of loaded) found.set(key, value)
        yield* backfill(tiers.length, [...loaded], isCurrent)
        return found
      })

    const flight = yield* SingleFlight.makeBatched<K, V, E, R>({
      resolve,
      metrics,
      ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize })
    })

    const getOption = (key: K): Effect.Effect<Option.Option<V>, E> =>
      Effect.flatMap(
        nearest.read(nearest.cache.getOption(key), Option.none()),
        (hit) => (Option.isSome(hit) ? Effect.succeed(hit) : flight.get(key))
      )

    /** A miss of the nearest tier, answered by the batch: the value, or `CacheMiss` when nobody has it. */
    const getFar = (key: K): Effect.Effect<V, CacheMiss | E> =>
      Effect.flatMap(
        flight.get(key),
        Option.match({ onNone: () => Effect.fail(new CacheMiss({ key, cache: options.name })), onSome: Effect.succeed })
      )

    /**
     * The fast path, for a nearest tier without timeout or breaker (an in-memory L1): its own `get` under one
     * error handler, so a hit costs that tier's hit and nothing else; any failure of it sends the key on.
     */
    const plainNearest = nearest.timeout === undefined && nearest.breaker === undefined
    const get = (key: K): Effect.Effect<V, CacheMiss | E> =>
      plainNearest
        ? Effect.catchAll(nearest.cache.get(key), (error) => {
          if (!isCacheMiss(error)) metrics.unsafeError()
          return getFar(key)
        })
        : Effect.flatMap(
          getOption(key),
          Option.match({
            onNone: () => Effect.fail(new CacheMiss({ key, cache: options.name })),
            onSome: Effect.succeed
          })
        )

    /** Applies a write to every tier, nearest first, after detaching the keys from loads in flight. */
    const everyTier = (
      keys: ReadonlyArray<K> | "all",
      detach: Effect.Effect<void>,
      write: (cache: Cache<K, V, unknown>) => Effect.Effect<void, unknown>
    ) => Effect.zipRight(detach, Effect.forEach(tiers, (tier) => tier.write(keys, write(tier.cache)), { discard: true }))

    return {
      name: options.name,
      metrics,
      get,
      getOption,
      getMany: (keys) =>
        Effect.gen(function*() {
          const asked = Array.from(keys)
          const near = yield* nearest.readMany(asked)
          const missing = asked.filter((key) => !near.has(key))
          if (missing.length === 0) return near
          const far = yield* flight.getMany(missing)
          const found = new Map(near)
          for (const [key, value] of far) found.set(key, value)
          return found
        }),
      set: (key, value, setOptions?: SetOptions) =>
        everyTier([key], flight.invalidate(key), (cache) => cache.set(key, value, setOptions)),
      setMany: (entries, setOptions?: SetOptions) => {
        const list = Array.from(entries)
        const keys = list.map(([key]) => key)
        return everyTier(
          keys,
          Effect.forEach(keys, flight.invalidate, { discard: true }),
          (cache) => cache.setMany(list, setOptions)
        )
      },
      invalidate: (key) => everyTier([key], flight.invalidate(key), (cache) => cache.invalidate(key)),
      invalidateAll: everyTier("all", flight.invalidateAll, (cache) => cache.invalidateAll),
      invalidateNearest: (keys) =>
        Effect.suspend(() => {
          const list = Array.from(keys)
          return Effect.zipRight(
            Effect.forEach(list, flight.invalidate, { discard: true }),
            Effect.forEach(list, (key) => nearest.write([key], nearest.cache.invalidate(key)), { discard: true })
          )
        }),
      invalidateNearestAll: Effect.zipRight(flight.invalidateAll, nearest.write("all", nearest.cache.invalidateAll)),
      breakers: Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        return tiers.map((tier) => tier.breaker?.state(now) ?? "closed")
      }),
      size: nearest.read(nearest.cache.size, 0)
    }
  })
