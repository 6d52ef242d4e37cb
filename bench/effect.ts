/**
 * `LruCache.get` on a hit, as an Effect inside a fiber, against effect's own `Cache.get` hit and against the floor
 * of any cache read in a fiber (`yield* Effect.succeed(map.get(key))` over a plain `Map`); and the cost of
 * metrics on that path (the same cache built with `metrics: false`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as EffectCache from "effect/Cache"
import type { Cache } from "../src/Cache.js"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as Scope from "effect/Scope"
import { type Case, measure, random, type Result, rounds } from "./harness.js"

const CAPACITY = 10_000
const OPS = 500_000

const keys = (() => {
  const next = random(11)
  return Array.from({ length: OPS }, () => Math.floor(next() * CAPACITY))
})()

/** One fiber reading every key in turn: the loop is the same for every case, only the `get` differs. */
const readAll = (get: (key: number) => Effect.Effect<number, unknown>) =>
  Effect.gen(function*() {
    let sum = 0
    for (let i = 0; i < OPS; i++) sum += yield* get(keys[i]!)
    return sum
  })

const filledLru = (metrics: boolean, timeToLive?: Duration.DurationInput): Cache<number, number> =>
  Effect.runSync(
    Effect.gen(function*() {
      const cache = yield* LruCache.make<number, number>({
        capacity: CAPACITY,
        name: "bench-lru",
        metrics,
        ...(timeToLive === undefined ? {} : { timeToLive })
      })
      yield* cache.setMany(Array.from({ length: CAPACITY }, (_, i) => [i, i] as const))
      return cache
    })
  )

const lruCase = (name: string, metrics: boolean, timeToLive?: Duration.DurationInput): Case => ({
  name,
  setup: () => filledLru(metrics, timeToLive),
  run: (cache: Cache<number, number>) => {
    Effect.runSync(readAll(cache.get))
    return OPS
  }
})

/**
 * A `LoadingCache` over an `LruCache` of entries, every key loaded (fresh for an hour): its L1 hit path. Tagged,
 * each entry carries one of 100 tags, a few of them invalidated before the keys were loaded: each hit checks its
 * tag against the positions known here (no round trip).
 */
const loadingCase = (tagged: boolean): Case => ({
  name: tagged ? "@rms/cache LoadingCache.get, tagged" : "@rms/cache LoadingCache.get",
  setup: () =>
    Effect.runSync(
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const tier = yield* LruCache.make<number, LoadingCache.Entry<number>>({ capacity: CAPACITY, name: "bench-loading-l1" })
        const cache = yield* LoadingCache.make({
          name: "bench-loading",
          tiers: [tier],
          load: (ids: ReadonlyArray<number>) => Effect.succeed(new Map(ids.map((id) => [id, id]))),
          timeToLive: "1 hour",
          ...(tagged ? { tags: (value: number) => [`t${value % 100}`] } : {})
        }).pipe(Scope.extend(scope))
        if (tagged) for (const tag of ["t1", "t2", "t3"]) yield* cache.invalidateTag(tag)
        yield* cache.getMany(Array.from({ length: CAPACITY }, (_, i) => i))
        return cache
      })
    ),
  run: (cache: LoadingCache.LoadingCache<number, number, never>) => {
    Effect.runSync(readAll((key) => cache.get(key)))
    return OPS
  }
})

/**
 * A `MultiLevelCache` (L1 and L2 both `LruCache`s) with every key in L1: its L1 hit path, metrics on (its own
 * counters, the L1's, and the per-tier durations sampled one read in 256) or off on all three.
 */
const multiLevelCase = (metrics: boolean): Case => ({
  name: `MultiLevelCache.get, metrics ${metrics ? "on" : "off"}`,
  setup: () =>
    Effect.runSync(
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const l1 = yield* LruCache.make<number, number>({ capacity: CAPACITY, name: "bench-ml-l1", metrics })
        const l2 = yield* LruCache.make<number, number>({ capacity: CAPACITY, name: "bench-ml-l2", metrics })
        const cache = yield* MultiLevelCache.make<number, number, never, never>({
          name: "bench-ml",
          tiers: [l1, l2],
          load: (ids) => Effect.succeed(new Map(ids.map((id) => [id, id]))),
          metrics
        }).pipe(Scope.extend(scope))
        yield* cache.getMany(Array.from({ length: CAPACITY }, (_, i) => i))
        return cache
      })
    ),
  run: (cache: MultiLevelCache.MultiLevelCache<number, number, never>) => {
    Effect.runSync(readAll((key) => cache.get(key)))
    return OPS
  }
})

const effectCacheCase: Case = {
  name: "effect Cache.get",
  setup: () =>
    Effect.runSync(
      Effect.gen(function*() {
        const cache = yield* EffectCache.make({
          capacity: CAPACITY,
          timeToLive: Duration.infinity,
          lookup: (key: number) => Effect.succeed(key)
        })
        for (let i = 0; i < CAPACITY; i++) yield* cache.get(i)
        return cache
      })
    ),
  run: (cache: EffectCache.Cache<number, number>) => {
    Effect.runSync(readAll((key) => cache.get(key)))
    return OPS
  }
}

/** The floor: the same loop over a plain `Map`, each value wrapped in `Effect.succeed` when the fiber asks for it. */
const floorCase: Case = {
  name: "yield* Effect.succeed(map.get(key))",
  setup: () => new Map(Array.from({ length: CAPACITY }, (_, i) => [i, i] as const)),
  run: (map: Map<number, number>) => {
    Effect.runSync(readAll((key) => Effect.succeed(map.get(key)!)))
    return OPS
  }
}

export const runEffectHit = async (): Promise<{
  readonly versusEffect: Array<Result>
  readonly versusFloor: Array<Result>
  readonly metrics: Array<Result>
}> => ({
  versusEffect: await measure([lruCase("@rms/cache LruCache.get", true), effectCacheCase]),
  // Every entry with a time-to-live: a hit reads the Clock too.
  versusFloor: await measure([
    lruCase("@rms/cache LruCache.get", true),
    lruCase("@rms/cache LruCache.get, timeToLive", true, "1 hour"),
    floorCase,
    loadingCase(false),
    loadingCase(true)
  ]),
  // A small difference on a noisy machine: three times the rounds.
  metrics: await measure([
    lruCase("metrics on", true),
    lruCase("metrics off", false),
    multiLevelCase(true),
    multiLevelCase(false)
  ], { rounds: rounds * 3 })
})
