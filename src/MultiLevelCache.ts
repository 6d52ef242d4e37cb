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
import { validateTimeToLive } from "./internal/options.js"
import * as SingleFlight from "./SingleFlight.js"

/**
 * A tier, how long a call to it may take, and when to stop calling it.
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
  /**
   * Whether the tier keeps the newest value whatever the order writes reach it (a `RedisCache` with a
   * `version`). A write overtaken by another write of its key then still stores its value there (the tier
   * refuses it if it is older); in a tier that is not versioned it invalidates the key instead. Default: false.
   */
  readonly versioned?: boolean
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
  /**
   * Called with keys whose values were brought back in step in a farther tier after it missed their writes
   * (see `MultiLevelCache`): other instances may have read the older values there meanwhile.
   */
  readonly onRepaired?: (keys: ReadonlyArray<K>) => Effect.Effect<void>
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * A write of one key in progress, from before the store write until the cache is updated.
 *
 * @since 0.1.0
 * @category models
 */
export interface PendingWrite<K> {
  readonly key: K
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
 * Loads and writes are kept in order: a write or invalidation of a key detaches it from the loads in flight
 * (they will not back-fill what they read) before and after the farther tiers are updated, and a write made
 * through `beginWrite`/`completeWrite` that was overtaken by another write or invalidation of its key does not
 * put its value into the nearest tier. Farther tiers shared by several writers should be versioned
 * (`RedisCache`'s `version`), so that the newest value wins there whatever the order of arrival.
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
   * Drops `keys` from the nearest tier only, and detaches them from loads and writes in flight: for a write
   * made elsewhere (another instance), whose farther tiers it has already updated.
   */
  invalidateNearest(keys: Iterable<K>): Effect.Effect<void>
  /** Empties the nearest tier and detaches every load and write in flight (changes made elsewhere were missed). */
  readonly invalidateNearestAll: Effect.Effect<void>
  /** Starts a write of `key` whose value the store is about to decide. */
  beginWrite(key: K): Effect.Effect<PendingWrite<K>>
  /**
   * Ends a write begun with `beginWrite`: `Some(value)` stores what the store now holds, `None` invalidates
   * the key (a delete, or a write whose outcome is unknown). If another write or invalidation of the key came
   * meanwhile, the value goes to the farther tiers only and the nearest tier drops the key.
   */
  completeWrite(write: PendingWrite<K>, value: Option.Option<V>): Effect.Effect<void>
  /** Ends a write begun with `beginWrite` that the store did not apply: nothing changes. */
  cancelWrite(write: PendingWrite<K>): Effect.Effect<void>
  /** The state of each tier's breaker, nearest first (`"closed"` for tiers without one). */
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
}

const isTier = <K, V>(tier: Cache<K, V, unknown> | Tier<K, V>): tier is Tier<K, V> => "cache" in tier

const isCacheMiss = (error: unknown): error is CacheMiss => error instanceof CacheMiss

/** Mutable by design: set when a write or invalidation of the key overtakes this write or watch. */
class Watch<K> {
  overtaken = false
  constructor(readonly key: K) {}
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
  Effect.gen(function*() {
    const name = options.name
    if (options.tiers.length === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": at least one tier is needed`)
    }
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    const context = yield* Effect.context<R>()
    const labels = { cache: name, tier: "multilevel" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const onRepaired = options.onRepaired ?? (() => Effect.void)

    /** Orders writes, back-fills and repairs for the tiers' dirty marks (see `GuardedTier`). */
    let tick = 0
    const nextTick = () => ++tick

    /** The writes and repairs in progress, by key: a write or invalidation of the key overtakes them all. */
    const watches = new Map<K, Set<Watch<K>>>()
    /** The watch behind each pending write handed out by `beginWrite`. */
    const pendingWrites = new WeakMap<PendingWrite<K>, Watch<K>>()
    const watch = (key: K): Watch<K> => {
      const w = new Watch(key)
      const set = watches.get(key)
      if (set === undefined) watches.set(key, new Set([w]))
      else set.add(w)
      return w
    }
    const unwatch = (w: Watch<K>): void => {
      const set = watches.get(w.key)
      if (set === undefined) return
      set.delete(w)
      if (set.size === 0) watches.delete(w.key)
    }

    /** Puts the store's current values of `keys` into a tier that missed their writes (see `GuardedTier`). */
    const refresh = (keys: ReadonlyArray<K>) =>
      Effect.suspend(() => {
        const started = keys.map(watch)
        const byKey = new Map(started.map((w) => [w.key, w]))
        return Effect.provide(options.load(keys), context).pipe(
          Effect.onError(() => Effect.sync(() => started.forEach(unwatch))),
          Effect.map((current) => ({
            current,
            isCurrent: (key: K) => byKey.get(key)?.overtaken !== true,
            done: () => started.forEach(unwatch)
          }))
        )
      })

    const tiers: Array<GuardedTier<K, V>> = []
    const versioned = new Set<GuardedTier<K, V>>()
    for (const tier of options.tiers) {
      const { breaker, cache, timeout } = isTier(tier) ? tier : { cache: tier, timeout: undefined, breaker: undefined }
      const timeoutMillis = timeout === undefined ? undefined : yield* validateTimeToLive(timeout, name, "timeout")
      const cooldownMillis = yield* validateTimeToLive(breaker?.cooldown ?? "5 seconds", name, "breaker cooldown")
      tiers.push(
        new GuardedTier(
          cache,
          timeoutMillis === undefined ? undefined : Duration.millis(timeoutMillis),
          makeBreaker(breaker, cooldownMillis),
          clock,
          metrics,
          scope,
          refresh,
          onRepaired,
          nextTick
        )
      )
      if (isTier(tier) && tier.versioned === true) versioned.add(tiers[tiers.length - 1]!)
    }
    const nearest = tiers[0]!
    const farther = tiers.slice(1).reverse() // farthest first: see `everyTier`

    /** Stores `entries` in every tier above `below` (nearest first), skipping keys a write has superseded. */
    const backfill = (below: number, entries: ReadonlyArray<readonly [K, V]>, isCurrent: (key: K) => boolean) =>
      Effect.forEach(
        tiers.slice(0, below),
        (tier) =>
          Effect.suspend(() => {
            // Checked and ticked in one step: these entries are newer than every write detached before the tick.
            const current = entries.filter(([key]) => isCurrent(key))
            const asOf = nextTick()
            return current.length === 0
              ? Effect.void
              : tier.backfill(current.map(([key]) => key), tier.cache.setMany(current), asOf)
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

    /** A key leaves the loads and overtakes the writes in flight: what they hold may be older than what comes. */
    const detach = (keys: ReadonlyArray<K> | "all") =>
      Effect.suspend(() => {
        if (keys === "all") {
          for (const set of watches.values()) for (const w of set) w.overtaken = true
          return flight.invalidateAll
        }
        for (const key of keys) {
          const set = watches.get(key)
          if (set !== undefined) for (const w of set) w.overtaken = true
        }
        return Effect.forEach(keys, flight.invalidate, { discard: true })
      })

    /**
     * Applies a change to the farther tiers (farthest first), then to the nearest, detaching the keys before
     * and again in between: a load that began before the farther tiers were updated may have read the old
     * value there, and must not put it into the nearest tier afterwards.
     */
    const everyTier = (
      keys: ReadonlyArray<K> | "all",
      far: (tier: GuardedTier<K, V>) => Effect.Effect<void, unknown>,
      near: (cache: Cache<K, V, unknown>) => Effect.Effect<void, unknown>,
      overtaken = false
    ) =>
      Effect.suspend(() => {
        // The write is as of its first detach (the store has applied it by then); an overtaken one has no tick.
        const asOf = overtaken ? undefined : nextTick()
        return Effect.zipRight(
          detach(keys),
          Effect.forEach(farther, (tier) => tier.write(keys, far(tier), asOf), { discard: true })
        ).pipe(
          Effect.zipRight(detach(keys)),
          Effect.zipRight(nearest.write(keys, near(nearest.cache), asOf))
        )
      })

    const fromNearest = (key: K): boolean => !nearest.isDirty || !nearest.isDirtyKey(key)

    const getOption = (key: K): Effect.Effect<Option.Option<V>, E> =>
      Effect.flatMap(
        nearest.read(nearest.cache.getOption(key), Option.none()),
        (hit) => (Option.isSome(hit) && fromNearest(key) ? Effect.succeed(hit) : flight.get(key))
      )

    const miss = (key: K) => Effect.fail(new CacheMiss({ key, cache: name }))
    const value = (key: K) => (found: Option.Option<V>) => Option.isSome(found) ? Effect.succeed(found.value) : miss(key)

    /**
     * The fast path, for a nearest tier without timeout or breaker (an in-memory L1): its own `get` under one
     * error handler, so a hit costs that tier's hit and nothing else; any failure of it sends the key on.
     */
    const plainNearest = nearest.timeout === undefined && nearest.breaker === undefined
    const get = (key: K): Effect.Effect<V, CacheMiss | E> =>
      plainNearest && fromNearest(key)
        ? Effect.catchAll(nearest.cache.get(key), (error) => {
          if (!isCacheMiss(error)) metrics.unsafeError()
          return Effect.flatMap(flight.get(key), value(key))
        })
        : Effect.flatMap(getOption(key), value(key))

    const set = (key: K, value: V, setOptions?: SetOptions) =>
      everyTier([key], (tier) => tier.cache.set(key, value, setOptions), (cache) => cache.set(key, value, setOptions))
    const invalidate = (key: K) =>
      everyTier([key], (tier) => tier.cache.invalidate(key), (cache) => cache.invalidate(key))

    return {
      name,
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
          const all = new Map(near)
          for (const [key, value] of far) all.set(key, value)
          return all
        }),
      set,
      setMany: (entries, setOptions?: SetOptions) => {
        const list = Array.from(entries)
        return everyTier(
          list.map(([key]) => key),
          (tier) => tier.cache.setMany(list, setOptions),
          (cache) => cache.setMany(list, setOptions)
        )
      },
      invalidate,
      invalidateAll: everyTier("all", (tier) => tier.cache.invalidateAll, (cache) => cache.invalidateAll),
      invalidateNearest: (keys) =>
        Effect.suspend(() => {
          const list = Array.from(keys)
          return Effect.zipRight(
            detach(list),
            Effect.forEach(list, (key) => nearest.write([key], nearest.cache.invalidate(key), nextTick()), {
              discard: true
            })
          )
        }),
      invalidateNearestAll: Effect.zipRight(
        detach("all"),
        Effect.suspend(() => nearest.write("all", nearest.cache.invalidateAll, nextTick()))
      ),
      beginWrite: (key) =>
        Effect.sync(() => {
          const w = watch(key)
          const handle: PendingWrite<K> = { key }
          pendingWrites.set(handle, w)
          return handle
        }),
      completeWrite: (write, stored) =>
        Effect.suspend(() => {
          const w = pendingWrites.get(write)
          if (w !== undefined) unwatch(w)
          const key = write.key
          if (Option.isNone(stored)) return invalidate(key)
          if (w !== undefined && !w.overtaken) return set(key, stored.value)
          // Overtaken: a versioned tier decides by version, another must not keep this value, nor the nearest.
          return everyTier(
            [key],
            (tier) => (versioned.has(tier) ? tier.cache.set(key, stored.value) : tier.cache.invalidate(key)),
            (cache) => cache.invalidate(key),
            true
          )
        }),
      cancelWrite: (write) =>
        Effect.sync(() => {
          const w = pendingWrites.get(write)
          if (w !== undefined) unwatch(w)
        }),
      breakers: Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        return tiers.map((tier) => tier.breaker?.state(now) ?? "closed")
      }),
      size: nearest.read(nearest.cache.size, 0)
    }
  })

