/**
 * Per-tier latency (`cache_tier_duration_ms`), breaker state (`cache_breaker_open`), bus lag
 * (`cache_bus_lag_ms`) and the cache spans, under `TestClock`: a tier that takes 5 ms records 5 ms.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import type * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import type * as Cache from "../src/Cache.js"
import * as CachedStore from "../src/CachedStore.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as CacheTracing from "../src/CacheTracing.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import { nearestSampling } from "../src/internal/guardedTier.js"

const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2)}`

/** An in-memory tier whose batch calls take `delay` ms of the (test) clock, and fail while `down`. */
const slowTier = (inner: Cache.Cache<string, number>, delay: number) => {
  const state = { down: false }
  const slow = <A>(effect: Effect.Effect<A, unknown>) =>
    Effect.zipRight(
      Effect.sleep(delay),
      Effect.suspend(() => (state.down ? Effect.fail("down") : effect))
    )
  const tier: Cache.Cache<string, number, unknown> = {
    ...inner,
    name: "slow",
    getOption: (key) => slow(inner.getOption(key)),
    getMany: (keys) => slow(inner.getMany(keys)),
    setMany: (entries, options) => slow(inner.setMany(entries, options)),
    set: (key, value, options) => slow(inner.set(key, value, options)),
    invalidate: (key) => slow(inner.invalidate(key))
  }
  return { tier, state }
}

const histogram = (cache: string, tier: string, operation: CacheMetrics.TierOperation, outcome: CacheMetrics.TierOutcome) =>
  Metric.value(CacheMetrics.tierDuration({ cache, tier }, operation, outcome))

/** Runs `effect` while the test clock moves on 1 ms at a time, until it is done (bounded). */
const settled = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let i = 0; i < 1_000 && (yield* Fiber.poll(fiber))._tag === "None"; i++) yield* TestClock.adjust("1 millis")
    return yield* Fiber.join(fiber)
  })

/** Two tiers: an in-memory L1 and an L2 taking 5 ms; a loader taking 20 ms that answers `key.length`. */
const twoTiers = (options: { readonly metrics?: boolean; readonly breaker?: boolean } = {}) =>
  Effect.gen(function*() {
    const name = unique("tiered")
    const l1 = yield* LruCache.make<string, number>({ capacity: 100, name: `${name}/l1`, metrics: options.metrics ?? true })
    const inner = yield* LruCache.make<string, number>({ capacity: 100, name: `${name}/l2` })
    const l2 = { ...slowTier(inner, 5), inner }
    const cache = yield* MultiLevelCache.make<string, number, never, never>({
      name,
      tiers: [l1, options.breaker === true ? { cache: l2.tier, breaker: { failures: 2, cooldown: "1 second" } } : l2.tier],
      load: (keys) => Effect.as(Effect.sleep("20 millis"), new Map(keys.map((key) => [key, key.length]))),
      ...(options.metrics === false ? { metrics: false } : {})
    })
    return { name, cache, l2 }
  })

describe("cache_tier_duration_ms", () => {
  it.scoped("a miss records the L2 read (miss), the load and the L2 back-fill, each with its duration", () =>
    Effect.gen(function*() {
      const { cache, name } = yield* twoTiers()
      expect(yield* settled(cache.get("abc"))).toBe(3)
      const l2Miss = yield* histogram(name, "l2", "read", "miss")
      expect(l2Miss.count).toBe(1)
      expect(l2Miss.sum).toBe(5)
      const load = yield* histogram(name, "loader", "load", "ok")
      expect(load.count).toBe(1)
      expect(load.sum).toBe(20)
      const backfill = yield* histogram(name, "l2", "write", "ok")
      expect(backfill.count).toBe(1)
      expect(backfill.sum).toBe(5)
    }))

  it.scoped("a key only L2 holds is an L2 read hit, and no load", () =>
    Effect.gen(function*() {
      const { cache, l2, name } = yield* twoTiers()
      yield* l2.inner.set("only-in-l2", 7)
      expect(yield* settled(cache.get("only-in-l2"))).toBe(7)
      const hit = yield* histogram(name, "l2", "read", "hit")
      expect([hit.count, hit.sum]).toStrictEqual([1, 5])
      expect((yield* histogram(name, "loader", "load", "ok")).count).toBe(0)
    }))

  it.scoped("an L2 read that fails is recorded as an error, and its breaker state as cache_breaker_open", () =>
    Effect.gen(function*() {
      const { cache, l2, name } = yield* twoTiers({ breaker: true })
      const breaker = CacheMetrics.breakerGauge({ cache: name, tier: "l2" })
      expect((yield* Metric.value(breaker)).value).toBe(0)
      l2.state.down = true
      // The read fails, then the back-fill of the loaded value: two failures open the breaker.
      yield* settled(cache.get("a"))
      const readError = yield* histogram(name, "l2", "read", "error")
      expect([readError.count, readError.sum]).toStrictEqual([1, 5])
      expect((yield* histogram(name, "l2", "write", "error")).count).toBe(1)
      expect((yield* Metric.value(breaker)).value).toBe(1)
      // Refused while open: a skip, not a call, so not timed.
      yield* settled(cache.get("c"))
      expect((yield* histogram(name, "l2", "read", "error")).count).toBe(1)
      expect((yield* histogram(name, "l2", "write", "error")).count).toBe(1)
      expect((yield* Metric.value(breaker)).value).toBe(1)
      l2.state.down = false
      yield* TestClock.adjust("1 second")
      yield* settled(cache.get("d"))
      expect((yield* Metric.value(breaker)).value).toBe(0)
      expect((yield* histogram(name, "l2", "read", "miss")).count).toBe(1)
    }))

  it.scoped("a load that fails is recorded as a load error", () =>
    Effect.gen(function*() {
      const name = unique("failing")
      const cache = yield* MultiLevelCache.make<string, number, string, never>({
        name,
        tiers: [yield* LruCache.make<string, number>({ capacity: 10 })],
        load: () => Effect.zipRight(Effect.sleep("7 millis"), Effect.fail("no source"))
      })
      expect(Exit.isFailure(yield* Effect.exit(settled(cache.get("a"))))).toBe(true)
      const failed = yield* histogram(name, "loader", "load", "error")
      expect([failed.count, failed.sum]).toStrictEqual([1, 7])
      expect((yield* histogram(name, "loader", "load", "ok")).count).toBe(0)
    }))

  it.scoped("the nearest tier times one read in nearestSampling (256), on the fast path too, hits and misses apart", () =>
    Effect.gen(function*() {
      const { cache, name } = yield* twoTiers()
      yield* settled(cache.set("k", 1))
      for (let i = 0; i < nearestSampling * 10; i++) expect(yield* cache.get("k")).toBe(1)
      const hits = yield* histogram(name, "l1", "read", "hit")
      expect(hits.count).toBe(10)
      // Every L2 call is timed, one write (the set above) so far.
      expect((yield* histogram(name, "l2", "write", "ok")).count).toBe(1)
    }))

  it.scoped("labels are the cache, the tier's position, the operation and the outcome: never a key", () =>
    Effect.gen(function*() {
      const { cache, name } = yield* twoTiers()
      yield* settled(cache.getMany(["secret-key-1", "secret-key-2"]))
      const pairs = (yield* Metric.snapshot).filter((pair) =>
        pair.metricKey.tags.some((tag) => tag.key === "cache" && tag.value === name)
      )
      const durations = pairs.filter((pair) => pair.metricKey.name === CacheMetrics.metricNames.tierDuration)
      expect(durations.length).toBeGreaterThan(0)
      for (const pair of pairs) {
        for (const tag of pair.metricKey.tags) expect(tag.value).not.toContain("secret")
      }
      for (const pair of durations) {
        expect(pair.metricKey.tags.map((tag) => tag.key).sort()).toStrictEqual(["cache", "operation", "outcome", "tier"])
      }
      const tiers = new Set(durations.map((pair) => pair.metricKey.tags.find((tag) => tag.key === "tier")!.value))
      expect([...tiers].sort()).toStrictEqual(["l1", "l2", "loader"])
    }))

  it.scoped("metrics: false records no durations", () =>
    Effect.gen(function*() {
      const { cache, name } = yield* twoTiers({ metrics: false })
      yield* settled(cache.get("abc"))
      expect((yield* histogram(name, "l2", "read", "miss")).count).toBe(0)
      expect((yield* histogram(name, "loader", "load", "ok")).count).toBe(0)
    }))
})

describe("cache_bus_lag_ms", () => {
  it.scoped("a message's lag is the receiver's clock less the publisher's, as carried in the message", () =>
    Effect.gen(function*() {
      const namespace = unique("lag")
      const hub = yield* InvalidationBus.makeMemoryHub<string>({ namespace, delay: "30 millis" })
      const a = yield* hub.connect
      const b = yield* hub.connect
      const heard: Array<ReadonlyArray<string>> = []
      yield* b.listen({ onInvalidate: (keys) => Effect.sync(() => void heard.push(keys)), onGap: Effect.void })
      yield* a.publish(["k"])
      yield* TestClock.adjust("30 millis")
      yield* Effect.yieldNow()
      expect(heard).toStrictEqual([["k"]])
      const lag = (yield* Metric.value(CacheMetrics.busLag(namespace))) as MetricState.MetricState.Histogram
      expect([lag.count, lag.sum]).toStrictEqual([1, 30])
    }))
})

describe("cache spans", () => {
  const traced = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const spans: Array<{ readonly name: string; readonly attributes: Map<string, unknown> }> = []
      const native = yield* Effect.tracer
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          const span = native.span(name, parent, context, links, startTime, kind, options)
          return {
            ...span,
            attribute: (key: string, value: unknown) => span.attribute(key, value),
            end: (endTime, exit) => {
              spans.push({ name, attributes: new Map(span.attributes) })
              span.end(endTime, exit)
            }
          } as Tracer.Span
        },
        context: (f) => f()
      })
      const result = yield* Effect.withTracer(effect, tracer)
      return { result, spans }
    })

  it.scoped("loads, writes and L2 calls open spans with the cache's name and no key; an L1 hit opens none", () =>
    Effect.gen(function*() {
      const { cache, name } = yield* twoTiers()
      const { spans } = yield* traced(settled(Effect.zipRight(cache.get("alpha"), cache.set("beta", 2))))
      const names = spans.map((span) => span.name)
      expect(names).toContain("cache.load")
      expect(names).toContain("cache.tier.read")
      expect(names).toContain("cache.tier.write")
      expect(names).toContain("cache.write")
      for (const span of spans) {
        expect(span.attributes.get("cache.name")).toBe(name)
        expect(span.attributes.has("cache.keys")).toBe(false)
      }
      const load = spans.find((span) => span.name === "cache.load")!
      expect(load.attributes.get("cache.batch_size")).toBe(1)
      expect(spans.find((span) => span.name === "cache.tier.read")!.attributes.get("cache.tier")).toBe("l2")
      const hits = yield* traced(Effect.forEach(Array.from({ length: 100 }), () => cache.get("alpha")))
      expect(hits.spans).toStrictEqual([])
    }))

  it.scoped("with CacheTracing.withKeys, the spans carry the keys", () =>
    Effect.gen(function*() {
      const { cache } = yield* twoTiers()
      const { spans } = yield* traced(CacheTracing.withKeys(settled(cache.getMany(["k1", "k2"]))))
      const load = spans.find((span) => span.name === "cache.load")!
      expect(load.attributes.get("cache.keys")).toBe(JSON.stringify(["k1", "k2"]))
    }))

  it.scoped("a CachedStore's save and delete are cache.write spans, the store's own call inside", () =>
    Effect.gen(function*() {
      const rows = new Map<string, number>()
      const store = yield* CachedStore.make<string, number, readonly [string, number], never, never, never, never>({
        name: unique("store"),
        tiers: [yield* LruCache.make<string, number>({ capacity: 10 })],
        keyOf: ([key]) => key,
        store: {
          getMany: (keys) => Effect.sync(() => new Map(keys.flatMap((key) => (rows.has(key) ? [[key, rows.get(key)!] as const] : [])))),
          save: ([key, value]) => Effect.sync(() => (rows.set(key, value), value)),
          remove: (key) => Effect.sync(() => void rows.delete(key))
        }
      })
      const { spans } = yield* traced(Effect.zipRight(store.save(["a", 1]), store.delete("a")))
      expect(spans.filter((span) => span.name === "cache.write").map((span) => span.attributes.get("cache.operation")))
        .toStrictEqual(["save", "delete"])
      expect(Option.isNone(yield* store.getOption("a"))).toBe(true)
    }))
})
