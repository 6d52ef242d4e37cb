import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Cache from "../src/Cache.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as LruCache from "../src/LruCache.js"
import { ModelLru } from "./support/models.js"

const key = fc.integer({ min: 0, max: 15 })
/** A write's own time-to-live in milliseconds: none (tier default), 0 (dead on arrival), some, or infinite. */
const ttl = fc.option(fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constant(Infinity)), { nil: undefined })

type Op =
  | { readonly op: "get" | "getOption" | "invalidate"; readonly key: number }
  | { readonly op: "getMany"; readonly keys: ReadonlyArray<number> }
  | { readonly op: "set"; readonly key: number; readonly value: number; readonly ttl: number | undefined }
  | {
    readonly op: "setMany"
    readonly entries: ReadonlyArray<readonly [number, number]>
    readonly ttl: number | undefined
  }
  | { readonly op: "invalidateAll" }
  | { readonly op: "advance"; readonly millis: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constantFrom("get" as const, "getOption" as const), key }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("set" as const), key, value: fc.integer(), ttl }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("invalidate" as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("getMany" as const), keys: fc.array(key, { maxLength: 5 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("setMany" as const),
      entries: fc.array(fc.tuple(key, fc.integer()), { maxLength: 5 }),
      ttl
    })
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("invalidateAll" as const) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 25 }) }) }
)

const options = (ttl: number | undefined) => (ttl === undefined ? undefined : { timeToLive: Duration.millis(ttl) })

describe("LruCache", () => {
  it.effect.prop(
    "matches a reference LRU with expiry over random operations and clock steps",
    [fc.integer({ min: 1, max: 8 }), fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }), fc.array(op, {
      maxLength: 120
    })],
    ([capacity, defaultTtl, ops]) =>
      Effect.gen(function*() {
        const cache = yield* LruCache.make<number, number>({
          capacity,
          ...(defaultTtl === undefined ? {} : { timeToLive: Duration.millis(defaultTtl) }),
          name: "lru-model"
        })
        const model = new ModelLru<number, number>(capacity)
        let now = 0
        const modelSet = (k: number, v: number, own: number | undefined) => {
          const life = own ?? defaultTtl ?? Infinity
          if (life <= 0) model.delete(k)
          else model.set(k, v, now + life)
        }
        for (const step of ops) {
          switch (step.op) {
            case "get": {
              const exit = yield* Effect.exit(cache.get(step.key))
              const expected = model.get(step.key, now)
              if (expected === undefined) {
                expect(exit).toStrictEqual(Exit.fail(new Cache.CacheMiss({ key: step.key, cache: "lru-model" })))
              } else {
                expect(exit).toStrictEqual(Exit.succeed(expected))
              }
              break
            }
            case "getOption":
              expect(yield* cache.getOption(step.key)).toStrictEqual(Option.fromNullable(model.get(step.key, now)))
              break
            case "getMany": {
              const expected = new Map<number, number>()
              for (const k of step.keys) {
                const v = model.get(k, now)
                if (v !== undefined) expected.set(k, v)
              }
              expect(yield* cache.getMany(step.keys)).toStrictEqual(expected)
              break
            }
            case "set":
              yield* cache.set(step.key, step.value, options(step.ttl))
              modelSet(step.key, step.value, step.ttl)
              break
            case "setMany":
              yield* cache.setMany(step.entries, options(step.ttl))
              for (const [k, v] of step.entries) modelSet(k, v, step.ttl)
              break
            case "invalidate":
              yield* cache.invalidate(step.key)
              model.delete(step.key)
              break
            case "invalidateAll":
              yield* cache.invalidateAll
              model.entries.clear()
              break
            case "advance":
              yield* TestClock.adjust(Duration.millis(step.millis))
              now += step.millis
              break
          }
          // Expired entries are dropped lazily, so the model keeps them too until a read or eviction.
          expect(yield* cache.size).toBe(model.entries.size)
        }
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("never returns an entry once its time-to-live has passed", () =>
    Effect.gen(function*() {
      const cache = yield* LruCache.make<string, string>({ capacity: 10, timeToLive: "1 minute" })
      yield* cache.set("a", "A")
      yield* cache.set("b", "B", { timeToLive: "10 seconds" })
      yield* cache.set("c", "C", { timeToLive: Duration.infinity })
      yield* TestClock.adjust("9999 millis")
      expect(yield* cache.getMany(["a", "b", "c"])).toStrictEqual(new Map([["a", "A"], ["b", "B"], ["c", "C"]]))
      yield* TestClock.adjust("1 milli")
      expect(yield* cache.getOption("b")).toStrictEqual(Option.none())
      yield* TestClock.adjust("50 seconds")
      expect(yield* cache.getOption("a")).toStrictEqual(Option.none())
      yield* TestClock.adjust("365 days")
      expect(yield* cache.get("c")).toBe("C")
    }))

  it.effect("fails a miss with a CacheMiss carrying the key, recoverable with catchTag", () =>
    Effect.gen(function*() {
      const cache = yield* LruCache.make<number, string>({ capacity: 2, name: "misses" })
      const error = yield* Effect.flip(cache.get(42))
      expect(error._tag).toBe("CacheMiss")
      expect(error.key).toBe(42)
      expect(error.message).toBe(`no entry for key 42 in cache "misses"`)
      const recovered = yield* cache.get(42).pipe(Effect.catchTag("CacheMiss", (miss) => Effect.succeed(`no ${miss.key}`)))
      expect(recovered).toBe("no 42")
    }))

  it.effect("rejects bad options with a typed IllegalArgumentException", () =>
    Effect.gen(function*() {
      for (const capacity of [0, -5, 2.5, NaN, 2 ** 30 + 1]) {
        const error = yield* Effect.flip(LruCache.make({ capacity }))
        expect(Cause.isIllegalArgumentException(error)).toBe(true)
        expect(error.message).toContain("capacity must be an integer")
      }
      const error = yield* Effect.flip(LruCache.make({ capacity: 1, timeToLive: 0 }))
      expect(error.message).toContain("timeToLive must be a positive duration")
    }))

  it.effect("records hits, misses, evictions and expirations in its metrics", () =>
    Effect.gen(function*() {
      const name = `lru-metrics-${Math.random()}`
      const cache = yield* LruCache.make<number, number>({ capacity: 2, name, timeToLive: "1 second" })
      yield* cache.set(1, 1)
      yield* cache.set(2, 2)
      yield* cache.set(3, 3) // evicts 1
      yield* cache.getOption(1) // miss
      yield* cache.get(2) // hit
      yield* TestClock.adjust("1 second")
      yield* Effect.either(cache.get(3)) // expired: a miss and an expiration
      yield* cache.invalidate(2)
      const stats = yield* CacheMetrics.stats({ cache: name, tier: "lru" })
      expect(stats).toMatchObject({
        hits: 1,
        misses: 2,
        sets: 3,
        evictions: 1,
        expirations: 1,
        invalidations: 1,
        size: 0
      })
      expect(stats.hitRatio).toBeCloseTo(1 / 3)
    }))

  it.effect("records nothing with metrics: false", () =>
    Effect.gen(function*() {
      const name = `lru-quiet-${Math.random()}`
      const cache = yield* LruCache.make<number, number>({ capacity: 2, name, metrics: false })
      yield* cache.set(1, 1)
      yield* cache.get(1)
      const stats = yield* CacheMetrics.stats({ cache: name, tier: "lru" })
      expect(stats.hits + stats.sets).toBe(0)
    }))
})
