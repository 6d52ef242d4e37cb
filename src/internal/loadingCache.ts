/**
 * `LoadingCache` put together: its options validated into freshness settings, the freshness layer over the
 * multi-level core, the source (`load`, or `lookup` per key), writes and invalidations told to the bus and
 * the bus's messages applied to the nearest tier.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as CacheMetrics from "../CacheMetrics.js"
import type * as LoadingCache from "../LoadingCache.js"
import * as LruCache from "../LruCache.js"
import * as BusLink from "./busLink.js"
import * as Freshness from "./freshness.js"
import { validateTimeToLive } from "./options.js"
import { writeSpan } from "./spans.js"
import { LocalLedger } from "./tags.js"

/** A duration option in milliseconds, or `undefined` when not given; fails unless positive. */
const optionalMillis = (input: Duration.DurationInput | undefined, cache: string, option: string) =>
  input === undefined ? Effect.succeed(undefined) : validateTimeToLive(input, cache, option)

/** The freshness options, validated. */
export const settingsOf = <K, A>(
  options: LoadingCache.FreshnessOptions<K, A>,
  cache: string
): Effect.Effect<Freshness.Settings<K, A>, Cause.IllegalArgumentException> =>
  Effect.gen(function*() {
    const timeToLive = yield* validateTimeToLive(options.timeToLive, cache, "timeToLive")
    const grace = (yield* optionalMillis(options.grace, cache, "grace")) ?? 0
    const early = options.earlyRefresh
    const beta = early === undefined || early === false ? undefined : early === true ? 1 : early.beta ?? 1
    if (beta !== undefined && !(Number.isFinite(beta) && beta > 0)) {
      return yield* new Cause.IllegalArgumentException(`cache "${cache}": earlyRefresh.beta must be a positive number, got ${beta}`)
    }
    if (options.staleWhileRevalidate === true && grace === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${cache}": staleWhileRevalidate needs a grace period`)
    }
    return {
      timeToLive,
      timeToLiveOf: options.timeToLiveOf,
      grace,
      staleWhileRevalidate: options.staleWhileRevalidate === true,
      failSafe: options.failSafe ?? grace > 0,
      failSafeThrottle: yield* validateTimeToLive(options.failSafeThrottle ?? "30 seconds", cache, "failSafeThrottle"),
      softTimeout: yield* optionalMillis(options.softTimeout, cache, "softTimeout"),
      hardTimeout: yield* optionalMillis(options.hardTimeout, cache, "hardTimeout"),
      notFoundTimeToLive: yield* optionalMillis(options.notFoundTimeToLive, cache, "notFoundTimeToLive"),
      earlyRefresh: beta,
      jitter: (yield* optionalMillis(options.jitter, cache, "jitter")) ?? 0,
      tags: options.tags
    }
  })

/** A one-key lookup as a batch load: the keys of a batch looked up concurrently (no fiber for a batch of one). */
const fromLookup = <K, A, E, R>(lookup: (key: K) => Effect.Effect<Option.Option<A>, E, R>) =>
  (keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, A>, E, R> => {
    const collect = (found: ReadonlyArray<readonly [K, Option.Option<A>]>) => {
      const values = new Map<K, A>()
      for (const [key, value] of found) if (Option.isSome(value)) values.set(key, value.value)
      return values
    }
    if (keys.length === 1) return Effect.map(lookup(keys[0]!), (value) => collect([[keys[0]!, value]]))
    return Effect.map(
      Effect.forEach(keys, (key) => Effect.map(lookup(key), (value) => [key, value] as const), { concurrency: "unbounded" }),
      collect
    )
  }

/** Builds a loading cache (see `LoadingCache.make`). */
export const make = <K, A, E = never, R = never>(
  options: LoadingCache.Options<K, A, E, R>
): Effect.Effect<LoadingCache.LoadingCache<K, A, E>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    const { name } = options
    const settings = yield* settingsOf(options, name)
    const freshness = CacheMetrics.freshness({ cache: name, tier: "multilevel" }, options.metrics !== false)
    const bus = options.invalidations
    const core = yield* Freshness.make<K, A, E, R>({
      name,
      tiers: options.tiers,
      load: options.load ?? fromLookup(options.lookup!),
      settings,
      freshness,
      ledger: bus ?? new LocalLedger(),
      onRepaired: (keys) => (bus === undefined ? Effect.void : bus.publish(keys)),
      ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics })
    })
    const { announce, invalidate, invalidateAll, invalidateTag } = yield* BusLink.link(core, bus)
    return {
      name,
      get: core.get,
      getOption: core.getOption,
      getMany: core.getMany,
      // Registered for its own duration, as `MultiLevelCache.set`: a later write of the key overtakes it.
      set: (key, value, setOptions) =>
        writeSpan(
          Effect.acquireUseRelease(
            Effect.sync(() => core.protocol.begin(key)),
            (write) => Effect.zipRight(core.store([[key, value]], setOptions, write), announce(key)),
            (write) => Effect.sync(() => core.protocol.end(write))
          ),
          name,
          "set",
          [key]
        ),
      invalidate,
      invalidateAll,
      invalidateTag,
      refresh: core.refresh,
      metrics: core.metrics,
      freshness: freshness.stats,
      breakers: core.breakers
    }
  })

/** Memoises `f` by key (see `LoadingCache.cachedFunction`). */
export const cachedFunction = <K, A, E, R>(
  f: (key: K) => Effect.Effect<A, E, R>,
  options: LoadingCache.FunctionOptions<K, A>
): Effect.Effect<(key: K) => Effect.Effect<A, E | LoadingCache.LoadTimeout>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    const name = options.name ?? "function"
    const tiers = options.tiers ??
      [yield* LruCache.make<K, LoadingCache.Entry<A>>({ capacity: options.capacity ?? 10_000, name: `${name}/memory` })]
    const cache = yield* make<K, A, E, R>({
      ...options,
      name,
      tiers,
      lookup: (key) => Effect.map(f(key), Option.some)
    })
    // `f` always answers, so a miss cannot happen; the function's error type keeps only `f`'s own.
    return (key: K) => Effect.catchTag(cache.get(key), "CacheMiss", () => Effect.dieMessage(`cache "${name}": no value for a key f answered`))
  })
