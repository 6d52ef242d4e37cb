import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Cache from "../src/Cache.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { notFound, syncReaderOf } from "../src/internal/syncRead.js"
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

  it.effect.prop(
    "answers a synchronous read exactly as get: values, recency, expiry and metrics",
    [fc.integer({ min: 1, max: 8 }), fc.boolean(), fc.array(op, { maxLength: 120 })],
    ([capacity, versioned, ops]) =>
      Effect.gen(function*() {
        // Two caches fed the same operations; one answers reads through `get`, the other through `read`.
        const make = (name: string) =>
          LruCache.make<number, number>({
            capacity,
            timeToLive: "30 millis",
            name,
            ...(versioned ? { version: (value: number) => value, tombstoneTimeToLive: "20 millis" } : {})
          })
        const names = [`lru-get-${Math.random()}`, `lru-read-${Math.random()}`] as const
        const viaGet = yield* make(names[0])
        const viaRead = yield* make(names[1])
        const read = syncReaderOf(viaRead)!
        expect(read).toBeTypeOf("function")
        for (const step of ops) {
          switch (step.op) {
            case "get":
            case "getOption": {
              const got = yield* Effect.either(viaGet.get(step.key))
              const answer = yield* Effect.sync(() => read(step.key))
              expect(answer).toBe(got._tag === "Right" ? got.right : notFound)
              break
            }
            case "advance":
              yield* TestClock.adjust(Duration.millis(step.millis))
              break
            case "set":
              yield* Effect.forEach([viaGet, viaRead], (cache) => cache.set(step.key, step.value, options(step.ttl)))
              break
            case "setMany":
              yield* Effect.forEach([viaGet, viaRead], (cache) => cache.setMany(step.entries, options(step.ttl)))
              break
            case "invalidate":
              yield* Effect.forEach([viaGet, viaRead], (cache) => cache.invalidate(step.key))
              break
            case "invalidateAll":
              yield* Effect.forEach([viaGet, viaRead], (cache) => cache.invalidateAll)
              break
            case "getMany":
              expect(yield* viaRead.getMany(step.keys)).toStrictEqual(yield* viaGet.getMany(step.keys))
              break
          }
          expect(yield* viaRead.size).toBe(yield* viaGet.size)
        }
        const [a, b] = yield* Effect.all(names.map((cache) => CacheMetrics.stats({ cache, tier: "lru" })))
        expect(b).toStrictEqual(a)
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("offers no synchronous read through a wrapper that replaces get", () =>
    Effect.gen(function*() {
      const cache = yield* LruCache.make<number, number>({ capacity: 4, metrics: false })
      yield* cache.set(1, 10)
      expect(syncReaderOf(cache)?.(1)).toBe(10)
      expect(syncReaderOf(cache)?.(2)).toBe(notFound)
      const traced: Cache.Cache<number, number> = { ...cache, get: (key) => Effect.withSpan(cache.get(key), "traced") }
      expect(syncReaderOf(traced)).toBeUndefined()
      // A spread that keeps the tier's own get keeps the read: nothing is bypassed.
      expect(syncReaderOf({ ...cache })).toBeTypeOf("function")
    }))

  it.effect("reads when the fiber runs get, whether yielded in a generator or composed", () =>
    Effect.gen(function*() {
      const name = `lru-lazy-${Math.random()}`
      const cache = yield* LruCache.make<string, number>({ capacity: 2, name })
      // Built before the write, run after it: the read happens when the fiber runs the effect.
      const early = cache.get("a")
      yield* cache.set("a", 1)
      expect(yield* early).toBe(1)
      expect(yield* Effect.map(early, (n) => n + 1)).toBe(2)
      expect(Effect.runSync(early)).toBe(1)
      // A miss fails with CacheMiss on both paths, recoverable by tag.
      const missing = cache.get("b")
      expect(yield* Effect.flip(missing)).toStrictEqual(new Cache.CacheMiss({ key: "b", cache: name }))
      expect(yield* missing.pipe(Effect.catchTag("CacheMiss", () => Effect.succeed(-1)))).toBe(-1)
      const inGenerator = yield* Effect.either(Effect.gen(function*() {
        return yield* missing
      }))
      expect(inGenerator).toStrictEqual(Either.left(new Cache.CacheMiss({ key: "b", cache: name })))
      // A hit in a generator marks the key most recently used, as any other read does.
      yield* cache.set("b", 2)
      yield* Effect.gen(function*() {
        yield* early
      })
      yield* cache.set("c", 3) // evicts "b", the least recent after the read of "a"
      expect(yield* cache.getMany(["a", "b", "c"])).toStrictEqual(new Map([["a", 1], ["c", 3]]))
      const stats = yield* CacheMetrics.stats({ cache: name, tier: "lru" })
      expect(stats).toMatchObject({ hits: 6, misses: 4, evictions: 1 })
    }))

  it.effect("at capacity 2^30, holds what it is given and empties on invalidateAll, over and over", () =>
    Effect.gen(function*() {
      const name = `lru-huge-${Math.random()}`
      const cache = yield* LruCache.make<number | string, number>({ capacity: 2 ** 30, timeToLive: "1 minute", name })
      for (let round = 0; round < 200; round++) {
        yield* cache.setMany(Array.from({ length: 10 }, (_, i) => [i % 2 === 0 ? i : `k${i}`, round] as const))
        expect(yield* cache.size).toBe(10)
        expect(yield* cache.get("k3")).toBe(round)
        yield* cache.invalidateAll
        expect(yield* cache.size).toBe(0)
        expect(yield* cache.getOption(0)).toStrictEqual(Option.none())
      }
      yield* cache.set(1, 1)
      yield* TestClock.adjust("1 minute")
      expect(yield* cache.getOption(1)).toStrictEqual(Option.none())
      const stats = yield* CacheMetrics.stats({ cache: name, tier: "lru" })
      expect(stats).toMatchObject({ invalidations: 2_000, expirations: 1, evictions: 0, size: 0 })
    }))

  it.effect.prop(
    "eviction tinyLfu: every read is the key's last write (unexpired) or a miss, and it never holds more than its capacity",
    [fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 150 })],
    ([capacity, ops]) =>
      Effect.gen(function*() {
        const cache = yield* LruCache.make<number, number>({ capacity, eviction: "tinyLfu", name: "tinylfu-model" })
        // What each key last held and until when; which keys the policy keeps is its own business.
        const last = new Map<number, { readonly value: number; readonly until: number }>()
        let now = 0
        const wrote = (k: number, v: number, own: number | undefined) => {
          if (own !== undefined && own <= 0) last.delete(k)
          else last.set(k, { value: v, until: now + (own ?? Infinity) })
        }
        const allowed = (k: number, found: number | undefined) => {
          const held = last.get(k)
          if (found === undefined) return true
          return held !== undefined && held.until > now && held.value === found
        }
        for (const step of ops) {
          switch (step.op) {
            case "get":
            case "getOption": {
              const found = Option.getOrUndefined(yield* cache.getOption(step.key))
              expect(allowed(step.key, found)).toBe(true)
              break
            }
            case "getMany": {
              const found = yield* cache.getMany(step.keys)
              for (const k of step.keys) expect(allowed(k, found.get(k))).toBe(true)
              break
            }
            case "set":
              yield* cache.set(step.key, step.value, options(step.ttl))
              wrote(step.key, step.value, step.ttl)
              // A write is kept at once (in the window), whatever the policy later decides.
              if (step.ttl === undefined || step.ttl > 0) expect(yield* cache.getOption(step.key)).toStrictEqual(Option.some(step.value))
              break
            case "setMany":
              yield* cache.setMany(step.entries, options(step.ttl))
              for (const [k, v] of step.entries) wrote(k, v, step.ttl)
              break
            case "invalidate":
              yield* cache.invalidate(step.key)
              last.delete(step.key)
              expect(yield* cache.getOption(step.key)).toStrictEqual(Option.none())
              break
            case "invalidateAll":
              yield* cache.invalidateAll
              last.clear()
              expect(yield* cache.size).toBe(0)
              break
            case "advance":
              yield* TestClock.adjust(Duration.millis(step.millis))
              now += step.millis
              break
          }
          expect(yield* cache.size).toBeLessThanOrEqual(capacity)
        }
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("eviction tinyLfu: keeps a hot set through a scan that flushes the LRU", () =>
    Effect.gen(function*() {
      const hot = Array.from({ length: 50 }, (_, i) => `hot-${i}`)
      const run = (eviction: "lru" | "tinyLfu") =>
        Effect.gen(function*() {
          const cache = yield* LruCache.make<string, number>({ capacity: 100, eviction, name: `scan-${eviction}` })
          for (let round = 0; round < 20; round++) {
            for (const key of hot) if (Option.isNone(yield* cache.getOption(key))) yield* cache.set(key, round)
          }
          // A scan of 500 keys read once each (a report, a batch job).
          for (let i = 0; i < 500; i++) if (Option.isNone(yield* cache.getOption(`scan-${i}`))) yield* cache.set(`scan-${i}`, i)
          return (yield* cache.getMany(hot)).size
        })
      expect(yield* run("lru")).toBe(0)
      expect(yield* run("tinyLfu")).toBeGreaterThanOrEqual(45)
    }))
})
