/**
 * `LoadingCache` over an in-memory source and tiers (one or two instances on an in-process bus, sharing a
 * versioned or a plain L2), under `TestClock` and a fixed or seeded `Random`: each freshness option alone and
 * combined; every refresh and stale answer raced against a save, a delete, an invalidation and another
 * instance's message (loads held on `Deferred` gates); the fail-safe throttle over an hour; a hot key across
 * expiries with and without early refresh; negative entries against random operation sequences; interruption;
 * and SWR and negative caching shared through a real Redis.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import type * as Cache from "../src/Cache.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import { view } from "./support/entities.js"
import { Item, makeSource, type Source, SourceDown } from "./support/loadingSource.js"
import { cleanNamespaceOnClose, rawRedis, uniqueNamespace, withRedis } from "./support/redis.js"
import { waitFor } from "./support/wait.js"
import { settle, until } from "./support/turns.js"

type Entry = LoadingCache.Entry<Item>
type Tier = Cache.Cache<string, Entry, unknown>
type Freshness = LoadingCache.FreshnessOptions<string, Item>

const unique = (label: string) => `lc-${label}-${Math.random().toString(36).slice(2, 8)}`



/** Whether a forked fiber has finished. */
const isDone = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) => Effect.map(fiber.poll, Option.isSome)

/**
 * Runs `read` in a fiber and lets the scheduler turn, without moving the clock: `done` says whether it
 * finished (it did not wait on a load that takes time).
 */
const readNow = <A, E>(read: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(read)
    yield* settle
    return { fiber, done: yield* isDone(fiber) }
  })

const l1Of = (name: string) => LruCache.make<string, Entry>({ capacity: 100, name: `${name}-l1` })
const versionedL2 = (name: string) =>
  LruCache.make<string, Entry>({
    capacity: 1000,
    name: `${name}-l2`,
    version: LoadingCache.entryVersion((item: Item) => item.version)
  })
const plainL2 = (name: string) => LruCache.make<string, Entry>({ capacity: 1000, name: `${name}-l2` })

/** What a tier holds for `key`: the value's version, `"absent"` for a negative entry, or `None`. */
const holds = (tier: Tier, key: string) =>
  Effect.map(
    Effect.orDie(tier.getOption(key)),
    Option.map((entry): number | "absent" => (entry.absent === true ? "absent" : entry.value!.version))
  )

/** The entry a tier holds for `key` (its stamps). */
const entryIn = (tier: Tier, key: string) => Effect.map(Effect.orDie(tier.getOption(key)), Option.getOrUndefined)

const versionOf = (read: Option.Option<Item>) => Option.map(read, (item) => item.version)

/** One instance: its own L1, the shared L2 if any, its end of the bus if any. */
const instance = (options: {
  readonly name: string
  readonly source: Source
  readonly freshness: Freshness
  readonly l2?: Tier
  readonly hub?: InvalidationBus.MemoryHub<string>
  readonly lookup?: boolean
}) =>
  Effect.gen(function*() {
    const l1 = yield* l1Of(options.name)
    const bus = options.hub === undefined ? undefined : yield* options.hub.connect
    const tiers: ReadonlyArray<Tier> = options.l2 === undefined ? [l1] : [l1, options.l2]
    const common = {
      ...options.freshness,
      name: options.name,
      tiers,
      ...(bus === undefined ? {} : { invalidations: bus })
    }
    const cache = yield* (options.lookup === true
      ? LoadingCache.make<string, Item, SourceDown>({ ...common, lookup: options.source.lookup })
      : LoadingCache.make<string, Item, SourceDown>({ ...common, load: options.source.load }))
    return { cache, l1, bus }
  })

type Instance = Effect.Effect.Success<ReturnType<typeof instance>>

const v = (version: number, text: string): Item => ({ version, text })

describe("LoadingCache options", () => {
  it.scoped("timeToLive: fresh for its time-to-live, then gone from every tier and loaded again", () =>
    Effect.gen(function*() {
      const name = unique("ttl")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "10 seconds" } })
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(yield* entryIn(l1, "a")).toStrictEqual({ value: v(1, "one"), freshUntil: 10_000, staleUntil: 10_000, loadMillis: 0 })
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(1))

      yield* TestClock.adjust("9999 millis")
      source.write("a", "two")
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(1)

      yield* TestClock.adjust("1 millis")
      expect(yield* holds(l1, "a")).toStrictEqual(Option.none()) // the tiers expired it at freshUntil (no grace)
      expect(yield* holds(l2, "a")).toStrictEqual(Option.none())
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(source.calls()).toBe(2)
      expect((yield* cache.freshness).staleServed).toBe(0)
    }))

  it.scoped("timeToLiveOf: each value's own time-to-live, for loads and sets; zero answers without caching", () =>
    Effect.gen(function*() {
      const name = unique("adaptive")
      const source = yield* makeSource([["s", "short"], ["l", "long"], ["z", "volatile"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({
        name,
        source,
        l2,
        freshness: {
          timeToLive: "10 seconds",
          timeToLiveOf: (item) => (item.text === "short" ? "1 second" : item.text === "volatile" ? Duration.zero : undefined)
        }
      })
      expect(yield* cache.getMany(["s", "l", "z"])).toStrictEqual(
        new Map([["s", v(1, "short")], ["l", v(1, "long")], ["z", v(1, "volatile")]])
      )
      expect((yield* entryIn(l1, "s"))?.freshUntil).toBe(1_000)
      expect((yield* entryIn(l1, "l"))?.freshUntil).toBe(10_000)
      // Answered, never stored: every read of it loads.
      expect(yield* holds(l1, "z")).toStrictEqual(Option.none())
      expect(yield* holds(l2, "z")).toStrictEqual(Option.none())
      expect(yield* cache.get("z")).toStrictEqual(v(1, "volatile"))
      expect(yield* cache.get("z")).toStrictEqual(v(1, "volatile"))
      expect(source.loads).toStrictEqual([["s", "l", "z"], ["z"], ["z"]])

      yield* TestClock.adjust("1 second")
      expect(yield* cache.get("s")).toStrictEqual(v(1, "short")) // reloaded
      expect(yield* cache.get("l")).toStrictEqual(v(1, "long")) // still fresh
      expect(source.loads.slice(3)).toStrictEqual([["s"]])

      // A set stamps by the value too: a volatile value is not stored at all (and drops what was there).
      yield* cache.set("l", v(2, "volatile"))
      expect(yield* holds(l1, "l")).toStrictEqual(Option.none())
      expect(yield* holds(l2, "l")).toStrictEqual(Option.none())
      yield* cache.set("s", v(2, "short"))
      expect((yield* entryIn(l1, "s"))?.freshUntil).toBe(2_000)
      // A write's own time-to-live wins.
      yield* cache.set("s", v(3, "short"), { timeToLive: "5 seconds" })
      expect((yield* entryIn(l1, "s"))?.freshUntil).toBe(6_000)
    }))

  it.scoped("negative caching is off by default: a missing key is loaded on every read and stored nowhere", () =>
    Effect.gen(function*() {
      const name = unique("no-negative")
      const source = yield* makeSource()
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "10 seconds" } })
      for (let i = 0; i < 3; i++) expect((yield* Effect.flip(cache.get("ghost")))._tag).toBe("CacheMiss")
      expect(source.calls()).toBe(3)
      expect(yield* holds(l1, "ghost")).toStrictEqual(Option.none())
      expect(yield* holds(l2, "ghost")).toStrictEqual(Option.none())
      expect((yield* cache.freshness).negativeHits).toBe(0)
    }))

  it.scoped("notFoundTimeToLive: one load for repeated reads of a missing key, counted as negative hits, until it expires", () =>
    Effect.gen(function*() {
      const name = unique("negative")
      const source = yield* makeSource()
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "1 minute", notFoundTimeToLive: "5 seconds" } })
      expect((yield* Effect.flip(cache.get("ghost")))._tag).toBe("CacheMiss")
      expect(yield* cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(yield* cache.getMany(["ghost"])).toStrictEqual(new Map())
      expect(source.calls()).toBe(1)
      expect(yield* holds(l1, "ghost")).toStrictEqual(Option.some("absent"))
      expect(yield* holds(l2, "ghost")).toStrictEqual(Option.some("absent"))
      expect((yield* entryIn(l1, "ghost"))?.staleUntil).toBe(5_000) // never stale: gone when not fresh
      expect((yield* cache.freshness).negativeHits).toBe(2)

      source.write("ghost", "here now") // behind the cache's back: hidden until the negative entry expires
      yield* TestClock.adjust("4999 millis")
      expect(yield* cache.getOption("ghost")).toStrictEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      expect(yield* cache.getOption("ghost")).toStrictEqual(Option.some(v(1, "here now")))
      expect(source.calls()).toBe(2)
    }))

  it.scoped("a negative entry is shared through L2: an instance with its own L1 over the same L2 does not load", () =>
    Effect.gen(function*() {
      const name = unique("negative-shared")
      const source = yield* makeSource()
      const l2 = yield* versionedL2(name)
      const freshness: Freshness = { timeToLive: "1 minute", notFoundTimeToLive: "5 seconds" }
      const a = yield* instance({ name: `${name}-a`, source, l2, freshness })
      const b = yield* instance({ name: `${name}-b`, source, l2, freshness })
      expect(yield* a.cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(yield* b.cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(yield* b.cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(source.calls()).toBe(1)
      expect(yield* holds(b.l1, "ghost")).toStrictEqual(Option.some("absent")) // back-filled from L2
      expect((yield* b.cache.freshness).negativeHits).toBe(2)
    }))

  describe("a negative entry is dropped", () => {
    const setup = Effect.gen(function*() {
      const name = unique("negative-dropped")
      const source = yield* makeSource()
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const l2 = yield* versionedL2(name)
      const freshness: Freshness = { timeToLive: "1 minute", notFoundTimeToLive: "1 minute" }
      const a = yield* instance({ name: `${name}-a`, source, l2, hub, freshness })
      const b = yield* instance({ name: `${name}-b`, source, l2, hub, freshness })
      expect(yield* a.cache.getOption("k")).toStrictEqual(Option.none())
      expect(yield* b.cache.getOption("k")).toStrictEqual(Option.none())
      expect(yield* holds(a.l1, "k")).toStrictEqual(Option.some("absent"))
      expect(yield* holds(b.l1, "k")).toStrictEqual(Option.some("absent"))
      return { source, a, b, l2 }
    })
    const expectEverywhere = (t: Effect.Effect.Success<typeof setup>, item: Item) =>
      Effect.gen(function*() {
        yield* settle
        expect(yield* t.a.cache.getOption("k")).toStrictEqual(Option.some(item))
        expect(yield* t.b.cache.getOption("k")).toStrictEqual(Option.some(item))
        for (const tier of [t.a.l1, t.b.l1]) expect(yield* holds(tier, "k")).toStrictEqual(Option.some(item.version))
        // L2 has the value, or (after an invalidate) a tombstone refusing back-fills for a while: never "absent".
        expect(yield* holds(t.l2, "k")).not.toStrictEqual(Option.some("absent"))
      })

    it.scoped("by a set (and the other instance hears of it)", () =>
      Effect.gen(function*() {
        const t = yield* setup
        const item = t.source.write("k", "saved")
        yield* t.a.cache.set("k", item)
        yield* expectEverywhere(t, item)
        expect(yield* holds(t.l2, "k")).toStrictEqual(Option.some(item.version))
        expect(t.source.calls()).toBe(1) // the set's value, from L2 on B: no load
      }))

    it.scoped("by an invalidate", () =>
      Effect.gen(function*() {
        const t = yield* setup
        const item = t.source.write("k", "inserted")
        yield* t.a.cache.invalidate("k")
        expect(yield* holds(t.l2, "k")).toStrictEqual(Option.none())
        yield* expectEverywhere(t, item)
      }))

    it.scoped("by another instance's message", () =>
      Effect.gen(function*() {
        const t = yield* setup
        const item = t.source.write("k", "saved on B")
        yield* t.b.cache.set("k", item)
        yield* expectEverywhere(t, item)
        expect(yield* holds(t.l2, "k")).toStrictEqual(Option.some(item.version))
      }))
  })

  it.scoped("stale-while-revalidate: stale answered at once, one background refresh for all readers, its result replaces it", () =>
    Effect.gen(function*() {
      const name = unique("swr")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({
        name,
        source,
        l2,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", staleWhileRevalidate: true }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      source.setLatency("100 millis")
      // 50 concurrent readers of the stale entry: every one answered without the clock moving.
      const readers = yield* Effect.forEach(Array.from({ length: 50 }), () => Effect.fork(cache.get("a")))
      yield* settle
      for (const reader of readers) expect(yield* isDone(reader)).toBe(true)
      for (const reader of readers) expect(yield* Fiber.join(reader)).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(2) // the first load and one refresh
      expect(yield* cache.freshness).toMatchObject({ staleServed: 50, refreshesStarted: 1, refreshesCompleted: 0 })

      yield* TestClock.adjust("100 millis")
      yield* settle
      expect(yield* entryIn(l1, "a")).toStrictEqual({ value: v(2, "two"), freshUntil: 21_100, staleUntil: 81_100, loadMillis: 100 })
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(source.calls()).toBe(2)
      expect(yield* cache.freshness).toMatchObject({ staleServed: 50, refreshesStarted: 1, refreshesCompleted: 1 })
    }))

  it.scoped("stale-while-revalidate answers at once from a stale L2 entry when the instance's L1 does not hold the key", () =>
    Effect.gen(function*() {
      const name = unique("swr-l2")
      const source = yield* makeSource([["a", "one"], ["b", "bee"]])
      const l2 = yield* plainL2(name)
      const freshness: Freshness = { timeToLive: "10 seconds", grace: "1 minute", staleWhileRevalidate: true }
      const a = yield* instance({ name: `${name}-a`, source, l2, freshness })
      yield* a.cache.getMany(["a", "b"])
      const b = yield* instance({ name: `${name}-b`, source, l2, freshness }) // a cold L1 (a new instance)
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      source.write("b", "two")
      source.setLatency("100 millis")
      const one = yield* readNow(b.cache.get("a"))
      const many = yield* readNow(b.cache.getMany(["b"]))
      expect([one.done, many.done]).toStrictEqual([true, true])
      expect(yield* Fiber.join(one.fiber)).toStrictEqual(v(1, "one"))
      expect(yield* Fiber.join(many.fiber)).toStrictEqual(new Map([["b", v(1, "bee")]]))
      expect(yield* b.cache.freshness).toMatchObject({ staleServed: 2, refreshesStarted: 2 })
      yield* TestClock.adjust("100 millis")
      yield* settle
      expect(yield* b.cache.getMany(["a", "b"])).toStrictEqual(new Map([["a", v(2, "two")], ["b", v(2, "two")]]))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
      expect(source.calls()).toBe(3) // the first load, and one refresh per key
    }))

  it.scoped("without stale-while-revalidate a stale read waits for the load (grace only serves fail-safe)", () =>
    Effect.gen(function*() {
      const name = unique("no-swr")
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({ name, source, freshness: { timeToLive: "10 seconds", grace: "1 minute" } })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      source.setLatency("100 millis")
      const read = yield* readNow(cache.get("a"))
      expect(read.done).toBe(false)
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(read.fiber)).toStrictEqual(v(2, "two"))
      expect((yield* cache.freshness).staleServed).toBe(0)
    }))

  it.effect("staleWhileRevalidate without grace, a duration that is not positive and a bad beta are refused", () =>
    Effect.gen(function*() {
      const source = yield* makeSource()
      const attempt = (freshness: Freshness) =>
        Effect.flip(Effect.scoped(instance({ name: unique("bad"), source, freshness })))
      expect((yield* attempt({ timeToLive: "1 second", staleWhileRevalidate: true }))._tag).toBe("IllegalArgumentException")
      expect((yield* attempt({ timeToLive: "1 second", grace: Duration.zero }))._tag).toBe("IllegalArgumentException")
      expect((yield* attempt({ timeToLive: "1 second", softTimeout: -1 }))._tag).toBe("IllegalArgumentException")
      expect((yield* attempt({ timeToLive: "1 second", earlyRefresh: { beta: 0 } }))._tag).toBe("IllegalArgumentException")
      expect((yield* attempt({ timeToLive: "1 second", earlyRefresh: { beta: NaN } }))._tag).toBe("IllegalArgumentException")
    }))

  it.scoped("fail-safe: a failing load answers with the stale value and counts an activation; without one the typed error stands", () =>
    Effect.gen(function*() {
      const name = unique("fail-safe")
      const source = yield* makeSource([["a", "one"], ["b", "bee"]])
      const { cache } = yield* instance({ name, source, freshness: { timeToLive: "10 seconds", grace: "1 minute" } })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.setFailing(true)
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(yield* cache.freshness).toMatchObject({ failSafeActivations: 1, staleServed: 1 })
      // Never cached: nothing stale to answer with.
      expect(yield* Effect.flip(cache.get("b"))).toBeInstanceOf(SourceDown)
      // Past its grace the entry is gone: the error stands there too.
      yield* TestClock.adjust("1 minute")
      expect(yield* Effect.flip(cache.get("a"))).toBeInstanceOf(SourceDown)
      expect((yield* cache.freshness).failSafeActivations).toBe(1)
    }))

  it.scoped("fail-safe at the very instant an entry turns stale counts its answer as stale served", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({
        name: unique("fail-safe-edge"),
        source,
        freshness: { timeToLive: "10 seconds", grace: "1 minute" }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("10 seconds") // now = freshUntil: stale
      source.setFailing(true)
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(yield* cache.freshness).toMatchObject({ failSafeActivations: 1, staleServed: 1 })
    }))

  it.scoped("failSafe: false keeps the error even with a stale value at hand", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({
        name: unique("no-fail-safe"),
        source,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", failSafe: false }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.setFailing(true)
      expect(yield* Effect.flip(cache.get("a"))).toBeInstanceOf(SourceDown)
      expect((yield* cache.freshness).failSafeActivations).toBe(0)
    }))

  it.scoped("softTimeout: past it a caller holding a stale value gets it; the load goes on and fills the tiers", () =>
    Effect.gen(function*() {
      const name = unique("soft")
      const source = yield* makeSource([["a", "one"], ["c", "cold"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({
        name,
        source,
        l2,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", softTimeout: "100 millis" }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      source.setLatency("1 second")
      const reader = yield* Effect.fork(cache.get("a"))
      yield* TestClock.adjust("99 millis")
      expect(yield* isDone(reader)).toBe(false)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(reader)).toStrictEqual(v(1, "one"))
      expect(yield* cache.freshness).toMatchObject({ softTimeouts: 1, staleServed: 1 })
      expect(yield* holds(l1, "a")).toStrictEqual(Option.some(1))

      yield* TestClock.adjust("900 millis")
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.some(2))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(source.calls()).toBe(2)

      // A cold key has nothing stale to answer with: its caller waits for the load.
      const cold = yield* Effect.fork(cache.get("c"))
      yield* TestClock.adjust("100 millis")
      expect(yield* isDone(cold)).toBe(false)
      yield* TestClock.adjust("900 millis")
      expect(yield* Fiber.join(cold)).toStrictEqual(v(1, "cold"))
      expect((yield* cache.freshness).softTimeouts).toBe(1)
    }))

  for (const staleWhileRevalidate of [false, true]) {
    const variant = staleWhileRevalidate ? " with stale-while-revalidate" : ""
    it.scoped(`softTimeout${variant}: while the late load runs, stale reads do not call a slow source again`, () =>
      Effect.gen(function*() {
        const name = unique("soft-slow")
        const source = yield* makeSource([["a", "one"]])
        const l2 = yield* plainL2(name)
        const freshness: Freshness = { timeToLive: "10 seconds", grace: "1 minute", softTimeout: "100 millis", staleWhileRevalidate }
        const a = yield* instance({ name: `${name}-a`, source, l2, freshness })
        // An instance with an empty L1 reads the stale entry from L2.
        const b = yield* instance({ name: `${name}-b`, source, l2, freshness })
        yield* a.cache.get("a")
        yield* TestClock.adjust("11 seconds")
        source.write("a", "two")
        source.setLatency("10 seconds") // slow, not failing
        for (let i = 0; i < 25; i++) {
          const reader = yield* Effect.fork(Effect.all([a.cache.get("a"), b.cache.get("a")], { concurrency: 2 }))
          yield* TestClock.adjust("200 millis")
          expect(yield* Fiber.join(reader)).toStrictEqual([v(1, "one"), v(1, "one")])
        }
        expect(source.calls()).toBe(3) // the first load, and one still running per instance
        yield* TestClock.adjust("5 seconds") // they end, and fill the tiers
        yield* settle
        expect(yield* a.cache.get("a")).toStrictEqual(v(2, "two"))
        expect(yield* b.cache.get("a")).toStrictEqual(v(2, "two"))
        expect(source.calls()).toBe(3)
      }))
  }

  it.scoped("hardTimeout: past it the caller fails with LoadTimeout; the load goes on and fills the tiers", () =>
    Effect.gen(function*() {
      const name = unique("hard")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "10 seconds", hardTimeout: "100 millis" } })
      source.setLatency("1 second")
      const reader = yield* Effect.fork(Effect.flip(cache.get("a")))
      yield* TestClock.adjust("100 millis")
      const error = yield* Fiber.join(reader)
      expect(error).toBeInstanceOf(LoadingCache.LoadTimeout)
      expect(error._tag).toBe("LoadTimeout")
      if (error._tag === "LoadTimeout") {
        expect(error.cache).toBe(name)
        expect(Duration.toMillis(error.after)).toBe(100)
        expect(error.message).toBe(`cache "${name}": load took longer than 100ms`)
      }
      expect((yield* cache.freshness).hardTimeouts).toBe(1)
      expect(yield* holds(l1, "a")).toStrictEqual(Option.none())

      yield* TestClock.adjust("900 millis")
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.some(1))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(1))
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(1)
    }))

  it.scoped("hardTimeout with fail-safe: a stale value answers instead of LoadTimeout, and the source is throttled", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({
        name: unique("hard-fail-safe"),
        source,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", hardTimeout: "100 millis" }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.setLatency("1 hour")
      const reader = yield* Effect.fork(cache.get("a"))
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(reader)).toStrictEqual(v(1, "one"))
      expect(yield* cache.freshness).toMatchObject({ hardTimeouts: 1, failSafeActivations: 1, staleServed: 1 })
      // Throttled: the next reads answer stale without calling the source.
      for (let i = 0; i < 5; i++) expect((yield* readNow(cache.get("a"))).done).toBe(true)
      expect(source.calls()).toBe(2)
    }))

  it.scoped("earlyRefresh: a read refreshes in the background exactly when now − δ·β·ln(rand) ≥ freshUntil (XFetch)", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"], ["b", "bee"]])
      // rand is always 0.5: −δ·ln(0.5) = 69.3 ms for δ = 100 ms, twice that for β = 2.
      const build = (beta: number) =>
        instance({
          name: unique(`early-${beta}`),
          source,
          freshness: { timeToLive: "10 seconds", earlyRefresh: beta === 1 ? true : { beta } }
        }).pipe(Effect.withRandom(Random.fixed([0.5])))
      const one = yield* build(1)
      const two = yield* build(2)
      source.setLatency("100 millis")
      const loading = yield* Effect.fork(Effect.all([one.cache.get("a"), two.cache.get("b")], { concurrency: 2 }))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(loading)
      expect((yield* entryIn(one.l1, "a"))?.loadMillis).toBe(100)
      expect((yield* entryIn(one.l1, "a"))?.freshUntil).toBe(10_100)
      source.write("a", "two")
      source.write("b", "two")

      yield* TestClock.adjust(Duration.millis(10_000 - 139)) // now = freshUntil − 139
      expect((yield* readNow(two.cache.get("b"))).done).toBe(true)
      expect((yield* two.cache.freshness).refreshesStarted).toBe(0)
      yield* TestClock.adjust("1 millis") // − 138: within 2·69.3
      expect((yield* readNow(two.cache.get("b"))).done).toBe(true)
      expect((yield* two.cache.freshness).refreshesStarted).toBe(1)

      yield* TestClock.adjust(Duration.millis(138 - 70)) // − 70: β = 1 not yet
      expect((yield* readNow(one.cache.get("a"))).done).toBe(true)
      expect((yield* one.cache.freshness).refreshesStarted).toBe(0)
      yield* TestClock.adjust("1 millis") // − 69
      const early = yield* readNow(one.cache.get("a"))
      expect(early.done).toBe(true) // answered with the fresh value at once
      expect(yield* Fiber.join(early.fiber)).toStrictEqual(v(1, "one"))
      expect((yield* one.cache.freshness).refreshesStarted).toBe(1)

      yield* TestClock.adjust("100 millis") // both refreshes done
      yield* settle
      expect(yield* one.cache.get("a")).toStrictEqual(v(2, "two"))
      expect(yield* two.cache.get("b")).toStrictEqual(v(2, "two"))
      expect(source.loads).toStrictEqual([["a"], ["b"], ["b"], ["a"]])
      expect((yield* one.cache.freshness).refreshesCompleted).toBe(1)
    }))

  it.scoped("jitter: each loaded key gets a random extra time-to-live from the cache's Random", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"], ["b", "bee"]])
      const { cache, l1 } = yield* instance({
        name: unique("jitter"),
        source,
        freshness: { timeToLive: "10 seconds", jitter: "4 seconds" }
      }).pipe(Effect.withRandom(Random.fixed([0.25, 0.75])))
      yield* cache.getMany(["a", "b"]) // one load: one draw per key, in order
      expect((yield* entryIn(l1, "a"))?.freshUntil).toBe(11_000)
      expect((yield* entryIn(l1, "b"))?.freshUntil).toBe(13_000)
      yield* TestClock.adjust("11 seconds")
      yield* cache.getMany(["a", "b"])
      expect(source.loads).toStrictEqual([["a", "b"], ["a"]])
      // Without jitter every key of a load expires together.
      const plain = yield* instance({ name: unique("no-jitter"), source, freshness: { timeToLive: "10 seconds" } })
      yield* plain.cache.getMany(["a", "b"])
      expect((yield* entryIn(plain.l1, "a"))?.freshUntil).toBe((yield* entryIn(plain.l1, "b"))?.freshUntil)
    }))

  it.scoped("lookup: a one-key source, looked up concurrently for a batch; what it does not have is a miss (or negative)", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"], ["b", "bee"]])
      const { cache } = yield* instance({
        name: unique("lookup"),
        source,
        lookup: true,
        freshness: { timeToLive: "10 seconds", notFoundTimeToLive: "5 seconds" }
      })
      yield* source.hold
      const many = yield* Effect.fork(cache.getMany(["a", "b", "c"]))
      yield* until(() => source.calls() === 3, "three lookups running at once")
      expect(source.running()).toBe(3)
      yield* source.release
      expect(yield* Fiber.join(many)).toStrictEqual(new Map([["a", v(1, "one")], ["b", v(1, "bee")]]))
      expect(source.loads).toStrictEqual([["a"], ["b"], ["c"]])
      expect((yield* Effect.flip(cache.get("c")))._tag).toBe("CacheMiss") // negative: no lookup
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(3)
      expect((yield* cache.freshness).negativeHits).toBe(1)
    }))

  it.scoped("cachedFunction: one evaluation per key for concurrent calls, kept for its time-to-live; failures are not kept", () =>
    Effect.gen(function*() {
      let calls = 0
      let failing = false
      const square = (n: number) =>
        Effect.gen(function*() {
          calls++
          yield* Effect.sleep("10 millis")
          if (failing) return yield* new SourceDown()
          return n * n
        })
      const cached = yield* LoadingCache.cachedFunction(square, { name: unique("function"), timeToLive: "1 minute" })
      const running = yield* Effect.fork(Effect.all(Array.from({ length: 20 }, () => cached(7)), { concurrency: "unbounded" }))
      yield* TestClock.adjust("10 millis")
      expect(new Set(yield* Fiber.join(running))).toStrictEqual(new Set([49]))
      expect(calls).toBe(1)
      expect((yield* readNow(cached(7))).done).toBe(true)
      expect(calls).toBe(1)

      yield* TestClock.adjust("1 minute")
      failing = true
      const failed = yield* Effect.fork(Effect.flip(cached(7)))
      yield* TestClock.adjust("10 millis")
      expect(yield* Fiber.join(failed)).toBeInstanceOf(SourceDown)
      failing = false
      const again = yield* Effect.fork(cached(7))
      yield* TestClock.adjust("10 millis")
      expect(yield* Fiber.join(again)).toBe(49)
      expect(calls).toBe(3)
    }))

  it.scoped("cachedFunction with tiers of your choice", () =>
    Effect.gen(function*() {
      const name = unique("function-tiers")
      const l1 = yield* LruCache.make<number, LoadingCache.Entry<string>>({ capacity: 10 })
      let calls = 0
      const f = yield* LoadingCache.cachedFunction((n: number) => Effect.sync(() => `#${n}:${++calls}`), {
        name,
        tiers: [l1],
        timeToLive: "1 minute"
      })
      expect(yield* f(1)).toBe("#1:1")
      expect(yield* f(1)).toBe("#1:1")
      expect(Option.map(yield* l1.getOption(1), (entry) => entry.value)).toStrictEqual(Option.some("#1:1"))
    }))

  it.scoped("refresh: reloads from the source in the background, past a fresh L2 copy, while readers keep the old value", () =>
    Effect.gen(function*() {
      const name = unique("refresh")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "1 minute" } })
      yield* cache.get("a")
      source.write("a", "two")
      source.setLatency("100 millis")
      expect((yield* readNow(cache.refresh("a"))).done).toBe(true)
      yield* cache.refresh("a") // one at a time
      const reading = yield* readNow(cache.get("a"))
      expect(reading.done).toBe(true)
      expect(yield* Fiber.join(reading.fiber)).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(2)
      yield* TestClock.adjust("100 millis")
      yield* settle
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
      expect(yield* cache.freshness).toMatchObject({ refreshesStarted: 1, refreshesCompleted: 1 })

      // A key the tiers do not hold is loaded too; a key the source no longer has is dropped everywhere.
      source.setLatency(undefined)
      source.remove("a")
      yield* cache.refresh("a")
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.none())
      expect(yield* holds(l2, "a")).toStrictEqual(Option.none())
      source.write("b", "bee")
      yield* cache.refresh("b")
      yield* settle
      expect(yield* holds(l1, "b")).toStrictEqual(Option.some(1))
    }))

  it.scoped("combined: stale-while-revalidate whose refresh fails keeps serving stale under fail-safe, source throttled", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({
        name: unique("swr-fail-safe"),
        source,
        freshness: { timeToLive: "10 seconds", grace: "10 minutes", staleWhileRevalidate: true, failSafeThrottle: "1 minute" }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.setFailing(true)
      for (let i = 0; i < 10; i++) {
        expect((yield* readNow(cache.get("a"))).done).toBe(true)
        yield* settle
        yield* TestClock.adjust("1 second")
      }
      expect(source.calls()).toBe(2) // one refresh, then the throttle
      // The refresh failed: fail-safe answered for it, it is not a completed refresh.
      expect(yield* cache.freshness).toMatchObject({
        failSafeActivations: 1,
        refreshesStarted: 1,
        refreshesCompleted: 0,
        staleServed: 10
      })
      yield* TestClock.adjust("1 minute")
      source.setFailing(false)
      source.write("a", "two")
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one")) // stale, and a refresh now
      yield* settle
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(source.calls()).toBe(3)
      expect((yield* cache.freshness).refreshesCompleted).toBe(1)
    }))

  it.scoped("combined: every option at once on two tiers keeps each one's behaviour", () =>
    Effect.gen(function*() {
      const name = unique("all")
      const source = yield* makeSource([["a", "one"], ["slow", "slow"]])
      const l2 = yield* versionedL2(name)
      const { cache, l1 } = yield* instance({
        name,
        source,
        l2,
        freshness: {
          timeToLive: "10 seconds",
          timeToLiveOf: (item) => (item.text === "brief" ? "2 seconds" : undefined),
          grace: "1 minute",
          staleWhileRevalidate: true,
          failSafeThrottle: "20 seconds",
          softTimeout: "50 millis",
          hardTimeout: "200 millis",
          notFoundTimeToLive: "5 seconds",
          earlyRefresh: true,
          jitter: "1 second"
        }
      }).pipe(Effect.withRandom(Random.fixed([0.5])))
      source.setLatency("20 millis")
      // Negative: one load for two reads.
      const ghost = yield* Effect.fork(Effect.all([cache.getOption("ghost"), cache.getOption("ghost")]))
      yield* TestClock.adjust("20 millis")
      expect(yield* Fiber.join(ghost)).toStrictEqual([Option.none(), Option.none()])
      // A cold load within the soft timeout (nothing stale: it would wait up to the hard one).
      const first = yield* Effect.fork(cache.get("a"))
      yield* TestClock.adjust("20 millis")
      expect(yield* Fiber.join(first)).toStrictEqual(v(1, "one"))
      const stamped = (yield* entryIn(l1, "a"))!
      expect(stamped.freshUntil).toBe(40 + 10_000 + 500) // jitter: 0.5 of a second
      expect(stamped.loadMillis).toBe(20)
      // Early refresh: −20·ln(0.5) = 13.9 ms before expiry.
      source.write("a", "brief")
      yield* TestClock.setTime(stamped.freshUntil - 14)
      expect((yield* readNow(cache.get("a"))).done).toBe(true)
      expect((yield* cache.freshness).refreshesStarted).toBe(0)
      yield* TestClock.adjust("1 millis")
      expect((yield* readNow(cache.get("a"))).done).toBe(true)
      yield* TestClock.adjust("20 millis")
      yield* settle
      const refreshed = (yield* entryIn(l1, "a"))!
      expect(refreshed.value).toStrictEqual(v(2, "brief"))
      expect(refreshed.freshUntil).toBe(stamped.freshUntil + 7 + 2_000 + 500) // its own time-to-live
      // Stale: answered at once while the refresh runs; it fails, fail-safe throttles the source.
      yield* TestClock.setTime(refreshed.freshUntil + 1)
      source.setFailing(true)
      expect((yield* readNow(cache.get("a"))).done).toBe(true)
      yield* TestClock.adjust("20 millis")
      yield* settle
      expect(yield* cache.freshness).toMatchObject({ failSafeActivations: 1, refreshesStarted: 2 })
      const calls = source.calls()
      for (let i = 0; i < 5; i++) expect(yield* Fiber.join((yield* readNow(cache.get("a"))).fiber)).toStrictEqual(v(2, "brief"))
      expect(source.calls()).toBe(calls)
      source.setFailing(false)
      source.setLatency("1 hour")
      // A cold key past the hard timeout: LoadTimeout.
      const slow = yield* Effect.fork(Effect.flip(cache.get("slow")))
      yield* TestClock.adjust("200 millis")
      expect((yield* Fiber.join(slow))._tag).toBe("LoadTimeout")
      expect((yield* cache.freshness).negativeHits).toBe(1)
      expect(yield* holds(l2, "ghost")).toStrictEqual(Option.none()) // 5 s gone by
    }))
})

/**
 * Races: each path that refreshes, loads late or answers stale, started on instance A with its load held on
 * a gate after it read the older row (v1), against each change of the key; then the load goes on. Two
 * instances on one bus share an L2, versioned (`entryVersion`) or plain.
 */
describe("LoadingCache races: no older value survives anywhere", () => {
  const world = (label: string, freshness: Freshness, l2Kind: "versioned" | "plain", delay?: Duration.DurationInput) =>
    Effect.gen(function*() {
      const name = unique(label)
      const source = yield* makeSource([["k", "one"]])
      const hub = yield* InvalidationBus.makeMemoryHub<string>(delay === undefined ? {} : { delay })
      const shared = l2Kind === "versioned" ? yield* versionedL2(name) : yield* plainL2(name)
      const a = yield* instance({ name: `${name}-a`, source, l2: shared, hub, freshness })
      const b = yield* instance({ name: `${name}-b`, source, l2: shared, hub, freshness })
      return { source, shared, a, b }
    }).pipe(Effect.withRandom(Random.fixed([0.5])))
  type World = Effect.Effect.Success<ReturnType<typeof world>>

  /** v1 read on both instances: in A's L1, B's L1 and L2. */
  const prime = (w: World) =>
    Effect.gen(function*() {
      expect(versionOf(yield* w.a.cache.getOption("k"))).toStrictEqual(Option.some(1))
      expect(versionOf(yield* w.b.cache.getOption("k"))).toStrictEqual(Option.some(1))
    })

  type Outcome = Either.Either<Option.Option<Item>, unknown>
  const read = (i: Instance) => Effect.either(i.cache.getOption("k"))

  interface Path {
    readonly name: string
    readonly freshness: Freshness
    readonly prime?: (w: World) => Effect.Effect<void, unknown>
    /** Starts the path on A; when it returns, A's load has read v1 and is held. The fiber of its reader. */
    readonly start: (w: World) => Effect.Effect<Fiber.RuntimeFiber<Outcome>>
    /** What that reader answers. */
    readonly answers: "v1" | "LoadTimeout"
    /** Whether it is a background refresh (counted as discarded when overtaken). */
    readonly refresh: boolean
  }

  /** Starts A's reader and waits until its load (the second call of the source) is running. */
  const heldRead = (w: World) =>
    Effect.gen(function*() {
      yield* w.source.hold
      const reader = yield* Effect.fork(read(w.a))
      yield* until(() => w.source.calls() === 2, "A's load started")
      return reader
    })

  const paths: ReadonlyArray<Path> = [
    {
      name: "stale-while-revalidate refresh",
      freshness: { timeToLive: "10 seconds", grace: "1 minute", staleWhileRevalidate: true },
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("11 seconds")
          const reader = yield* heldRead(w)
          expect(yield* isDone(reader)).toBe(true) // answered stale at once
          return reader
        }),
      answers: "v1",
      refresh: true
    },
    {
      name: "stale-while-revalidate refresh that fails (fail-safe)",
      freshness: { timeToLive: "10 seconds", grace: "1 minute", staleWhileRevalidate: true },
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("11 seconds")
          w.source.setFailing(true)
          const reader = yield* heldRead(w)
          expect(yield* isDone(reader)).toBe(true)
          return reader
        }),
      answers: "v1",
      refresh: true
    },
    {
      name: "early refresh",
      freshness: { timeToLive: "10 seconds", earlyRefresh: true },
      prime: (w) =>
        Effect.gen(function*() {
          w.source.setLatency("100 millis") // δ = 100 ms
          const first = yield* Effect.fork(w.a.cache.getOption("k"))
          yield* TestClock.adjust("100 millis")
          expect(versionOf(yield* Fiber.join(first))).toStrictEqual(Option.some(1))
          w.source.setLatency(undefined)
          expect(versionOf(yield* w.b.cache.getOption("k"))).toStrictEqual(Option.some(1))
        }),
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust(Duration.millis(10_000 - 1)) // 1 ms before expiry: −δ·ln(0.5) = 69 ms ≥ 1 ms
          const reader = yield* heldRead(w)
          expect(yield* isDone(reader)).toBe(true) // answered fresh at once
          expect((yield* w.a.cache.freshness).refreshesStarted).toBe(1)
          return reader
        }),
      answers: "v1",
      refresh: true
    },
    {
      name: "soft timeout's late load",
      freshness: { timeToLive: "10 seconds", grace: "1 minute", softTimeout: "100 millis" },
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("11 seconds")
          const reader = yield* heldRead(w)
          yield* TestClock.adjust("100 millis")
          expect(yield* isDone(reader)).toBe(true)
          expect((yield* w.a.cache.freshness).softTimeouts).toBe(1)
          return reader
        }),
      answers: "v1",
      refresh: false
    },
    {
      name: "hard timeout's late load",
      freshness: { timeToLive: "10 seconds", hardTimeout: "100 millis" },
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("11 seconds")
          const reader = yield* heldRead(w)
          yield* TestClock.adjust("100 millis")
          expect(yield* isDone(reader)).toBe(true)
          expect((yield* w.a.cache.freshness).hardTimeouts).toBe(1)
          return reader
        }),
      answers: "LoadTimeout",
      refresh: false
    },
    {
      name: "fail-safe stale answer",
      freshness: { timeToLive: "10 seconds", grace: "1 minute" },
      start: (w) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("11 seconds")
          w.source.setFailing(true) // the held load fails when it goes on
          return yield* heldRead(w)
        }),
      answers: "v1",
      refresh: false
    }
  ]

  interface Change {
    readonly name: string
    readonly run: (w: World) => Effect.Effect<void, unknown>
    /** The key is gone afterwards. */
    readonly deletes: boolean
    /** The message reaches A only after A's load has gone on (a bus with a delay). */
    readonly late?: boolean
  }
  const changes: ReadonlyArray<Change> = [
    {
      name: "a save on A",
      run: (w) => Effect.suspend(() => w.a.cache.set("k", w.source.write("k", "two"))),
      deletes: false
    },
    {
      name: "a delete on A",
      run: (w) => Effect.suspend(() => (w.source.remove("k"), w.a.cache.invalidate("k"))),
      deletes: true
    },
    {
      name: "an invalidation on A",
      run: (w) => Effect.suspend(() => (w.source.write("k", "two"), w.a.cache.invalidate("k"))),
      deletes: false
    },
    {
      name: "a save on B (bus message)",
      run: (w) => Effect.suspend(() => w.b.cache.set("k", w.source.write("k", "two"))),
      deletes: false
    },
    {
      name: "a delete on B (bus message)",
      run: (w) => Effect.suspend(() => (w.source.remove("k"), w.b.cache.invalidate("k"))),
      deletes: true
    }
  ]
  const lateChanges: ReadonlyArray<Change> = [
    { ...changes[3]!, name: "a save on B whose message arrives after A's load went on", late: true },
    { ...changes[4]!, name: "a delete on B whose message arrives after A's load went on", late: true }
  ]

  const race = (path: Path, change: Change, l2Kind: "versioned" | "plain") =>
    Effect.gen(function*() {
      const w = yield* world(path.name, path.freshness, l2Kind, change.late === true ? "1 second" : undefined)
      yield* (path.prime ?? prime)(w)
      const reader = yield* path.start(w)

      yield* change.run(w)
      yield* settle // the message reaches A (unless late)
      // A read that begins after the change (its own load, if any, held too, then past the timeouts).
      const later = change.late === true ? undefined : yield* Effect.fork(read(w.a))
      if (later !== undefined) {
        yield* settle
        yield* TestClock.adjust("100 millis")
      }
      yield* w.source.release
      yield* until(() => w.source.running() === 0, "every load ended")
      yield* settle
      if (change.late === true) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }

      const answer = yield* Fiber.join(reader)
      if (path.answers === "v1") expect(Either.map(answer, versionOf)).toStrictEqual(Either.right(Option.some(1)))
      else expect(Either.getLeft(answer).pipe(Option.map((e) => (e as { _tag: string })._tag))).toStrictEqual(Option.some("LoadTimeout"))
      if (later !== undefined) {
        const laterAnswer = yield* Fiber.join(later)
        expect(Either.map(laterAnswer, versionOf), "a read that began after the change").not.toStrictEqual(Either.right(Option.some(1)))
      }

      w.source.setFailing(false)
      for (const [tier, where] of [[w.a.l1, "A's L1"], [w.b.l1, "B's L1"], [w.shared, "L2"]] as const) {
        expect(yield* holds(tier, "k"), where).not.toStrictEqual(Option.some(1))
      }
      const expected = change.deletes ? Option.none() : Option.some(2)
      expect(Either.map(yield* read(w.a), versionOf), "read on A").toStrictEqual(Either.right(expected))
      expect(Either.map(yield* read(w.b), versionOf), "read on B").toStrictEqual(Either.right(expected))
      if (path.refresh && change.late !== true) {
        expect((yield* w.a.cache.freshness).refreshesDiscarded).toBe(1)
      }
    })

  for (const l2Kind of ["versioned", "plain"] as const) {
    describe(`${l2Kind} L2`, () => {
      for (const path of paths) {
        for (const change of l2Kind === "versioned" ? [...changes, ...lateChanges] : changes) {
          it.scoped(`${path.name} vs ${change.name}`, () => race(path, change, l2Kind))
        }
      }
    })
  }
})

describe("LoadingCache interruption", () => {
  it.scoped("a caller interrupted while waiting on a load does not break later reads", () =>
    Effect.gen(function*() {
      const name = unique("interrupted")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "10 seconds" } })
      yield* source.hold
      const alone = yield* Effect.fork(cache.get("a"))
      yield* until(() => source.calls() === 1)
      yield* Fiber.interrupt(alone) // its only caller gone: the load is let go of
      yield* source.release
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.none())
      expect(yield* cache.get("a")).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(2)

      // Of two callers sharing a load, the one interrupted does not take it from the other.
      yield* TestClock.adjust("10 seconds")
      source.write("a", "two")
      yield* source.hold
      const first = yield* Effect.fork(cache.get("a"))
      const second = yield* Effect.fork(cache.get("a"))
      yield* until(() => source.calls() === 3)
      yield* settle
      yield* Fiber.interrupt(first)
      yield* source.release
      expect(yield* Fiber.join(second)).toStrictEqual(v(2, "two"))
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
    }))

  it.scoped("a caller interrupted while its load runs under a soft and a hard timeout leaves nothing behind", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      const { cache } = yield* instance({
        name: unique("interrupted-bounded"),
        source,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", softTimeout: "100 millis", hardTimeout: "1 second" }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      yield* source.hold
      const reader = yield* Effect.fork(cache.get("a"))
      yield* until(() => source.calls() === 2)
      yield* TestClock.adjust("50 millis")
      yield* Fiber.interrupt(reader)
      yield* until(() => source.running() === 0, "the load interrupted with its only caller")
      yield* source.release
      // Later reads load again and are not answered by anything the interrupted one held.
      expect(yield* cache.get("a")).toStrictEqual(v(2, "two"))
      expect((yield* cache.freshness).softTimeouts).toBe(0)
    }))

  it.scoped("a background refresh survives the interruption of the reader that started it", () =>
    Effect.gen(function*() {
      const name = unique("refresh-survives")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({
        name,
        source,
        l2,
        freshness: { timeToLive: "10 seconds", grace: "1 minute", staleWhileRevalidate: true }
      })
      yield* cache.get("a")
      yield* TestClock.adjust("11 seconds")
      source.write("a", "two")
      yield* source.hold
      // The reader starts the refresh, then is interrupted (it goes on with something that never ends).
      const reader = yield* Effect.fork(Effect.zipRight(cache.get("a"), Effect.never))
      yield* until(() => source.calls() === 2, "the refresh is loading")
      yield* Fiber.interrupt(reader)
      yield* source.release
      yield* until(() => source.running() === 0)
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.some(2))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(2))
      expect((yield* cache.freshness).refreshesCompleted).toBe(1)
    }))

  it.scoped("a refresh sharing the load of a reader that is interrupted still completes", () =>
    Effect.gen(function*() {
      const name = unique("refresh-shares")
      const source = yield* makeSource([["a", "one"]])
      const l2 = yield* plainL2(name)
      const { cache, l1 } = yield* instance({ name, source, l2, freshness: { timeToLive: "10 seconds" } })
      yield* source.hold
      const reader = yield* Effect.fork(cache.get("a")) // leads the load
      yield* until(() => source.calls() === 1)
      yield* cache.refresh("a") // joins it
      yield* settle
      yield* Fiber.interrupt(reader)
      yield* source.release
      yield* until(() => source.running() === 0)
      yield* settle
      expect(yield* holds(l1, "a")).toStrictEqual(Option.some(1))
      expect(yield* holds(l2, "a")).toStrictEqual(Option.some(1))
      expect((yield* cache.freshness).refreshesCompleted).toBe(1)
    }))

  it.effect("closing the cache's scope while a load that passed its timeout still runs does not wait for that load", () =>
    Effect.gen(function*() {
      const source = yield* makeSource([["a", "one"]])
      source.setLatency("1 hour") // a source that hangs
      const used = Effect.gen(function*() {
        const { cache } = yield* instance({
          name: unique("close"),
          source,
          freshness: { timeToLive: "10 seconds", hardTimeout: "100 millis" }
        })
        const reader = yield* Effect.fork(Effect.flip(cache.get("a")))
        yield* TestClock.adjust("100 millis")
        expect((yield* Fiber.join(reader))._tag).toBe("LoadTimeout")
        expect(source.running()).toBe(1) // the load goes on
      })
      // A daemon, awaited for at most 2 s of real time: were the close to hang, the test fails instead of hanging.
      const closing = yield* Effect.forkDaemon(Effect.scoped(used))
      const closed = yield* Fiber.await(closing).pipe(Effect.timeoutOption("2 seconds"), TestServices.provideLive)
      expect(Option.map(closed, Exit.isSuccess), "the scope closed").toStrictEqual(Option.some(true))
      expect(source.running()).toBe(0) // and the load was interrupted with it
    }))
})

// The two long simulations run side by side: each `TestClock.adjust` waits a few real milliseconds for the
// fibers to suspend, and those waits overlap.
describe.concurrent("LoadingCache under sustained load (TestClock)", () => {
  for (const staleWhileRevalidate of [false, true]) {
    const variant = staleWhileRevalidate ? " (stale-while-revalidate)" : ""
    it.scoped(`a source failing for an hour under fail-safe is called at most once per throttle period${variant}`, () =>
      Effect.gen(function*() {
        const source = yield* makeSource([["k", "one"]])
        const { cache } = yield* instance({
          name: unique("outage"),
          source,
          freshness: { timeToLive: "1 minute", grace: "2 hours", staleWhileRevalidate } // failSafeThrottle: 30 s
        })
        yield* cache.get("k")
        yield* TestClock.adjust("1 minute") // stale from now on
        source.setFailing(true)
        const step = staleWhileRevalidate ? 3 : 2 // seconds between reads
        for (let t = 0; t < 3600; t += step) {
          const read = yield* readNow(cache.get("k"))
          expect(read.done).toBe(true)
          expect(yield* Fiber.join(read.fiber)).toStrictEqual(v(1, "one"))
          yield* TestClock.adjust(Duration.seconds(step))
        }
        const calls = source.calls() - 1
        // One call at the start of each 30 s throttle period: 120 in the hour.
        expect(calls).toBeLessThanOrEqual(121)
        expect(calls).toBeGreaterThanOrEqual(119)
        const stats = yield* cache.freshness
        expect(stats.failSafeActivations).toBe(calls)
        expect(stats.staleServed).toBe(Math.ceil(3600 / step))
        // The source comes back: the next period's call succeeds and the value is fresh again.
        source.setFailing(false)
        source.write("k", "two")
        yield* TestClock.adjust("30 seconds")
        const back = yield* cache.get("k")
        yield* settle
        expect([back, yield* cache.get("k")]).toContainEqual(v(2, "two"))
      }), 60_000)
  }

  /**
   * A hot key read once per millisecond of `TestClock` (1,000 reads a second) from `from` to `to`, in one cache
   * per seed of its `Random` (independent runs on one clock: every `TestClock.adjust` costs real time, the runs
   * share it). Each read runs in a fiber and must finish before the clock moves on, or it counts as having
   * waited on a load. The source takes 20 ms; the time-to-live is 1 s.
   */
  const hotKey = (earlyRefresh: boolean, seeds: ReadonlyArray<string>, from: number, to: number) =>
    Effect.gen(function*() {
      const runs = yield* Effect.forEach(seeds, (seed) =>
        Effect.gen(function*() {
          const source = yield* makeSource([["hot", "v"]])
          source.setLatency("20 millis")
          const { cache, l1 } = yield* instance({
            name: unique(`hot-${earlyRefresh}`),
            source,
            freshness: { timeToLive: "1 second", earlyRefresh }
          }).pipe(Effect.withRandom(Random.make(seed)))
          return { source, cache, l1, waiting: [] as Array<Fiber.RuntimeFiber<Item, unknown>> }
        }))
      const cold = yield* Effect.fork(Effect.forEach(runs, (run) => run.cache.get("hot"), { concurrency: "unbounded" }))
      yield* TestClock.adjust("20 millis") // the first loads: now 20, fresh until 1020
      yield* Fiber.join(cold)
      yield* TestClock.setTime(from)
      const loadsBefore = runs.map((run) => run.source.calls())
      for (let now = from; now < to; now++) {
        const reads = yield* Effect.forEach(runs, (run) => Effect.fork(run.cache.get("hot")))
        yield* settle
        for (const [i, read] of reads.entries()) if (!(yield* isDone(read))) runs[i]!.waiting.push(read)
        yield* TestClock.adjust("1 millis")
      }
      yield* TestClock.adjust("20 millis")
      return yield* Effect.forEach(runs, (run, i) =>
        Effect.gen(function*() {
          for (const fiber of run.waiting) yield* Fiber.join(fiber)
          return { loads: run.source.calls() - loadsBefore[i]!, waited: run.waiting.length, entry: yield* entryIn(run.l1, "hot") }
        }))
    })

  it.scoped("a hot key read 1,000 times a second across expiries with early refresh: ≤ 1.05 loads per window, no reader waits", () =>
    Effect.gen(function*() {
      const from = 20
      const to = 2_050
      // Three runs (three seeds) of two expiries each: six time-to-live boundaries.
      const runs = yield* hotKey(true, ["one", "two", "three"], from, to)
      const windows = (to - from) / 1_000
      for (const [i, { entry, loads, waited }] of runs.entries()) {
        expect(waited, `run ${i}: readers that waited`).toBe(0)
        expect(loads, `run ${i}: loads`).toBeGreaterThanOrEqual(2) // refreshed before each expiry
        expect(loads / windows, `run ${i}: loads per window`).toBeLessThanOrEqual(1.05)
        expect(entry!.freshUntil).toBeGreaterThan(to) // and still fresh at the end
      }
    }), 60_000)

  it.scoped("the same hot key without early refresh: readers wait on the load at expiry", () =>
    Effect.gen(function*() {
      // Around the first expiry (1020) only: that is where it happens.
      const { loads, waited } = (yield* hotKey(false, ["one"], 990, 1_060))[0]!
      expect(loads).toBe(1) // one load, shared by every waiting reader
      expect(waited).toBeGreaterThanOrEqual(19) // every read during the 20 ms load
    }), 60_000)

  // ---------------------------------------------------------------------------------------------------------
  // Negative entries never outlive a save: random operation sequences on two instances against the source as
  // the reference model (every change goes through a cache, but for rows inserted behind its back).

  const keys = ["x", "y", "z"]
  type Op =
    | { readonly op: "get" | "getMany" | "save" | "delete" | "invalidate"; readonly on: number; readonly key: number }
    | { readonly op: "insert"; readonly key: number }
    | { readonly op: "advance"; readonly millis: number }
  const onKey = (op: "get" | "getMany" | "save" | "delete" | "invalidate", lastKey = 2) =>
    fc.record({ op: fc.constant(op), on: fc.integer({ min: 0, max: 1 }), key: fc.integer({ min: 0, max: lastKey }) })
  // Two keys, so that a key's negative entry, a row inserted behind it, time passing and a read often meet.
  const operation: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: onKey("get", 1) },
    { weight: 1, arbitrary: onKey("getMany", 1) },
    { weight: 2, arbitrary: onKey("save", 1) },
    { weight: 2, arbitrary: onKey("delete", 1) },
    { weight: 1, arbitrary: onKey("invalidate", 1) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant("insert" as const), key: fc.integer({ min: 0, max: 1 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), millis: fc.constantFrom(500, 2_000, 6_000, 12_000) }) }
  )
  const modelFreshness: Freshness = {
    timeToLive: "10 seconds",
    grace: "30 seconds",
    staleWhileRevalidate: true,
    notFoundTimeToLive: "5 seconds"
  }
  const twoOverOne = (label: string, l2Kind: "versioned" | "plain", tierDelay: Effect.Effect<void>, delivery: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const name = unique(label)
      const source = yield* makeSource()
      const hub = yield* InvalidationBus.makeMemoryHub<string>({ delay: Effect.as(delivery, Duration.zero) })
      const shared = l2Kind === "versioned" ? yield* versionedL2(name) : yield* plainL2(name)
      const instances = [
        yield* instance({ name: `${name}-a`, source, l2: view(shared, tierDelay).tier, hub, freshness: modelFreshness }),
        yield* instance({ name: `${name}-b`, source, l2: view(shared, tierDelay).tier, hub, freshness: modelFreshness })
      ]
      return { source, shared, instances }
    })

  for (const l2Kind of ["versioned", "plain"] as const) {
    it.effect.prop(
      `negative entries never outlive a save, and a row inserted behind the cache shows within notFoundTimeToLive (${l2Kind} L2)`,
      [fc.array(operation, { minLength: 1, maxLength: 40 })],
      ([ops]) =>
        Effect.gen(function*() {
          const { instances, source } = yield* twoOverOne("model", l2Kind, Effect.void, Effect.void)
          /** When each key's row was inserted behind the cache (and nothing told the cache since). */
          const insertedAt = new Map<string, number>()
          let counter = 0
          const check = (key: string, read: Option.Option<Item>, now: number, what: string) => {
            const at = insertedAt.get(key)
            // Only a negative entry loaded before that insert may hide its row, for notFoundTimeToLive at most.
            if (Option.isNone(read) && at !== undefined && now < at + 5_000) return
            expect(read, what).toStrictEqual(Option.fromNullable(source.rows.get(key)))
          }
          for (const [i, step] of ops.entries()) {
            const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
            if (step.op === "advance") {
              yield* TestClock.adjust(Duration.millis(step.millis))
            } else if (step.op === "insert") {
              const key = keys[step.key]!
              if (!source.rows.has(key)) {
                source.write(key, `inserted ${++counter}`)
                insertedAt.set(key, now)
              }
            } else {
              const key = keys[step.key]!
              const { cache } = instances[step.on]!
              const what = `step ${i}: ${step.op} ${key} on ${step.on}`
              if (step.op === "get") check(key, yield* cache.getOption(key), now, what)
              else if (step.op === "getMany") {
                const found = yield* cache.getMany(keys)
                for (const k of keys) check(k, Option.fromNullable(found.get(k)), now, `${what} (${k})`)
              } else {
                insertedAt.delete(key)
                if (step.op === "save") yield* cache.set(key, source.write(key, `saved ${++counter}`))
                else if (step.op === "delete") {
                  source.remove(key)
                  yield* cache.invalidate(key)
                } else yield* cache.invalidate(key)
              }
            }
            yield* settle // messages delivered, background refreshes done
          }
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 150 } }
    )
  }

  /** Up to 20 scheduler turns. */
  const yields = (n: number) => Effect.forEach(Array.from({ length: n }), () => Effect.yieldNow(), { discard: true })
  const randomYields = Effect.flatMap(Random.nextIntBetween(0, 21), yields)

  it.effect.prop(
    "concurrent operations whose loads, tier calls and messages complete in random order: afterwards no tier holds anything older, negative or not",
    [
      fc.array(
        fc.tuple(
          fc.oneof(
            { weight: 4, arbitrary: onKey("get") },
            { weight: 1, arbitrary: onKey("getMany") },
            { weight: 3, arbitrary: onKey("save") },
            { weight: 1, arbitrary: onKey("delete") },
            { weight: 2, arbitrary: onKey("invalidate") }
          ),
          fc.integer({ min: 0, max: 60 })
        ),
        { minLength: 1, maxLength: 40 }
      ),
      fc.integer()
    ],
    ([ops, seed]) =>
      Effect.gen(function*() {
        const { instances, shared, source } = yield* twoOverOne("concurrent", "versioned", randomYields, randomYields)
        source.setJitter(randomYields) // a load hands back what it read after a random number of turns
        // Start with one key cached negative on A, one with a value on B, one not cached.
        source.write("y", "seed")
        yield* instances[0]!.cache.getOption("x")
        yield* instances[1]!.cache.getOption("y")
        let counter = 0
        const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
        for (const [step, offset] of ops) {
          const key = keys[step.key]!
          const { cache } = instances[step.on]!
          const run: Effect.Effect<unknown, unknown> = step.op === "get"
            ? cache.getOption(key)
            : step.op === "getMany"
            ? cache.getMany(keys)
            : step.op === "save"
            // The source write and the start of the set in one step: saves of one key reach the cache in order.
            ? Effect.suspend(() => cache.set(key, source.write(key, `saved ${++counter}`)))
            : step.op === "delete"
            ? Effect.suspend(() => (source.remove(key), cache.invalidate(key)))
            : cache.invalidate(key)
          fibers.push(yield* Effect.fork(Effect.zipRight(yields(offset), run)))
        }
        for (let turn = 0; turn < 2_000 && !(yield* Effect.map(Effect.forEach(fibers, isDone), (all) => all.every(Boolean))); turn++) {
          yield* Effect.yieldNow()
        }
        yield* until(() => source.running() === 0, "every load ended")
        yield* settle
        yield* settle
        for (const key of keys) {
          const row = source.rows.get(key)
          const current = Option.some(row === undefined ? "absent" : row.version)
          for (const [tier, where] of [[instances[0]!.l1, "A's L1"], [instances[1]!.l1, "B's L1"], [shared, "L2"]] as const) {
            const held = yield* holds(tier, key)
            if (Option.isSome(held)) expect(held, `${where} holds ${key}`).toStrictEqual(current)
          }
          for (const [i, { cache }] of instances.entries()) {
            const reading = yield* Effect.fork(cache.getOption(key))
            yield* until(() => reading.unsafePoll() !== null, "the read ended")
            expect(versionOf(yield* Fiber.join(reading)), `instance ${i} reads ${key}`)
              .toStrictEqual(Option.map(Option.fromNullable(row), (r) => r.version))
          }
        }
      }).pipe(Effect.scoped, Effect.withRandom(Random.make(seed))),
    { fastCheck: { numRuns: 300 } }
  )
})

describe("LoadingCache over a real Redis L2", () => {
  /** Polls `condition` on real time, for up to 2 s (Redis answers on real time; the `TestClock` does not move). */
  const realWait = (condition: () => boolean | Effect.Effect<boolean, unknown>) =>
    waitFor(condition, 2_000).pipe(TestServices.provideLive)
  /** Waits for `fiber` up to 2 s of real time. */
  const within2s = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
    Fiber.join(fiber).pipe(Effect.timeoutOption("2 seconds"), TestServices.provideLive)

  it.scoped("negative entries and stale-while-revalidate are shared through Redis between two instances", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("loading-cache")
      yield* Layer.build(cleanNamespaceOnClose(namespace))
      const redis = yield* RedisCache.make<string, Entry, LoadingCache.EntryEncoded<Item>>({
        namespace,
        schema: LoadingCache.entrySchema(Item),
        version: LoadingCache.entryVersion((item: Item) => item.version),
        name: `${namespace}-redis`
      })
      const raw = yield* rawRedis()
      const stored = (key: string) => Effect.promise(() => raw.get(RedisCache.redisKey(namespace, key)))
      const source = yield* makeSource([["k", "one"]])
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const freshness: Freshness = {
        timeToLive: "10 seconds",
        grace: "1 minute",
        staleWhileRevalidate: true,
        notFoundTimeToLive: "5 seconds"
      }
      const a = yield* instance({ name: `${namespace}-a`, source, l2: redis, hub, freshness })
      const b = yield* instance({ name: `${namespace}-b`, source, l2: redis, hub, freshness })

      // Negative caching: A's load finds nothing, and says so in Redis; B reads that, without a load.
      expect(yield* a.cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(yield* stored("ghost")).toContain(`"absent":true`)
      expect(yield* b.cache.getOption("ghost")).toStrictEqual(Option.none())
      expect(source.calls()).toBe(1)
      expect(yield* holds(b.l1, "ghost")).toStrictEqual(Option.some("absent"))
      expect((yield* b.cache.freshness).negativeHits).toBe(1)
      // …until a save: through Redis and the bus, B's negative entry is gone.
      const ghost = source.write("ghost", "now here")
      yield* a.cache.set("ghost", ghost)
      yield* settle
      expect(yield* b.cache.getOption("ghost")).toStrictEqual(Option.some(ghost))
      expect(source.calls()).toBe(1)

      // Stale-while-revalidate: the entry A loaded is stale in Redis; B, whose L1 never held it, answers with it
      // at once (the clock does not move, the source takes 100 ms) and refreshes it in the background.
      expect(yield* a.cache.get("k")).toStrictEqual(v(1, "one"))
      expect(source.calls()).toBe(2)
      yield* TestClock.adjust("11 seconds")
      source.write("k", "two")
      source.setLatency("100 millis")
      const onB = yield* within2s(yield* Effect.fork(b.cache.get("k")))
      expect(onB).toStrictEqual(Option.some(v(1, "one")))
      yield* realWait(() => source.calls() === 3) // B's refresh is loading
      yield* TestClock.adjust("100 millis")
      yield* realWait(() => Effect.map(stored("k"), (value) => value?.includes(`"version":2`) === true)) // its result, in Redis
      // A's L1 still has the stale entry: answered at once, and A's refresh takes B's result from Redis.
      expect(yield* within2s(yield* Effect.fork(a.cache.get("k")))).toStrictEqual(Option.some(v(1, "one")))
      yield* realWait(() => Effect.map(holds(a.l1, "k"), (held) => Option.getOrUndefined(held) === 2))
      expect(yield* a.cache.get("k")).toStrictEqual(v(2, "two"))
      expect(source.calls()).toBe(3) // one refresh for both instances
      expect(yield* a.cache.freshness).toMatchObject({ staleServed: 1, refreshesStarted: 1, refreshesCompleted: 1 })
      expect(yield* b.cache.freshness).toMatchObject({ staleServed: 1, refreshesStarted: 1, refreshesCompleted: 1 })
    }).pipe(withRedis))
})
