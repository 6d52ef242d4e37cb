import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as CacheMetrics from "../src/CacheMetrics.js"

const fresh = (tier = "lru") => ({ cache: `metrics-${Math.random().toString(36).slice(2)}`, tier })

describe("CacheMetrics", () => {
  it.effect("stats reflect exactly what was recorded, with the hit ratio", () =>
    Effect.gen(function*() {
      const labels = fresh()
      const metrics = CacheMetrics.make(labels)
      expect(yield* metrics.stats).toMatchObject({ hits: 0, misses: 0, hitRatio: 0 })
      metrics.unsafeHit()
      metrics.unsafeHit(2)
      metrics.unsafeMiss()
      metrics.unsafeSet(4)
      metrics.unsafeEviction()
      metrics.unsafeExpiration(2)
      metrics.unsafeInvalidation()
      metrics.unsafeLoad(3)
      metrics.unsafeLoadFailure(5)
      metrics.unsafeShared(6)
      metrics.unsafeDecodeFailure()
      metrics.unsafeError(7)
      metrics.unsafeSkip(8)
      metrics.unsafeSize(9)
      expect(yield* CacheMetrics.stats(labels)).toStrictEqual({
        hits: 3,
        misses: 1,
        hitRatio: 0.75,
        sets: 4,
        evictions: 1,
        expirations: 2,
        invalidations: 1,
        loads: 2,
        loadFailures: 1,
        sharedLoads: 6,
        decodeFailures: 1,
        errors: 7,
        skips: 8,
        size: 9
      })
    }))

  it.effect("writes the registry entries that the ordinary Metric API reads, tagged by cache and tier", () =>
    Effect.gen(function*() {
      const labels = fresh("redis")
      const metrics = CacheMetrics.make(labels)
      metrics.unsafeHit(5)
      metrics.unsafeLoad(1.5)
      const hits = Metric.counter("cache_hits").pipe(
        Metric.tagged("cache", labels.cache),
        Metric.tagged("tier", labels.tier)
      )
      expect((yield* Metric.value(hits)).count).toBe(5)
      const snapshot = yield* Metric.snapshot
      const duration = snapshot.find((pair) =>
        pair.metricKey.name === "cache_load_duration_ms" &&
        pair.metricKey.tags.some((t) => t.key === "cache" && t.value === labels.cache)
      )
      expect(duration?.metricKey.tags.map((t) => `${t.key}=${t.value}`)).toStrictEqual([
        `cache=${labels.cache}`,
        "tier=redis",
        "time_unit=milliseconds"
      ])
      // Registered at construction: an exporter lists the cache before its first event.
      expect(snapshot.filter((pair) => pair.metricKey.tags.some((t) => t.value === labels.cache)).length).toBe(14)
    }))

  it.effect("two recorders with the same labels add up; other labels stay apart", () =>
    Effect.gen(function*() {
      const labels = fresh()
      CacheMetrics.make(labels).unsafeMiss()
      CacheMetrics.make(labels).unsafeMiss()
      CacheMetrics.make({ ...labels, tier: "ttl" }).unsafeMiss()
      expect((yield* CacheMetrics.stats(labels)).misses).toBe(2)
    }))

  it.effect("hits and misses, kept aside on the hot path, reach every reader and add to updates made elsewhere", () =>
    Effect.gen(function*() {
      const labels = fresh()
      const metrics = CacheMetrics.make(labels)
      const counter = (name: string) =>
        Metric.counter(name).pipe(Metric.tagged("cache", labels.cache), Metric.tagged("tier", labels.tier))
      const fromSnapshot = (name: string) =>
        Metric.snapshot.pipe(Effect.map((pairs) =>
          pairs.find((pair) =>
            pair.metricKey.name === name && pair.metricKey.tags.some((t) => t.value === labels.cache)
          )?.metricState
        ))
      metrics.unsafeHit(3)
      metrics.unsafeMiss()
      // The registry's snapshot, what the Prometheus module and the OpenTelemetry exporter read.
      expect(yield* fromSnapshot("cache_hits")).toMatchObject({ count: 3 })
      expect(yield* fromSnapshot("cache_misses")).toMatchObject({ count: 1 })
      metrics.unsafeHit(2)
      // An update through the Metric API on the same series, between two of ours.
      yield* Metric.incrementBy(counter("cache_hits"), 10)
      CacheMetrics.make(labels).unsafeHit(4)
      expect((yield* Metric.value(counter("cache_hits"))).count).toBe(19)
      metrics.unsafeMiss(5)
      expect(yield* metrics.stats).toMatchObject({ hits: 19, misses: 6 })
      expect(yield* fromSnapshot("cache_misses")).toMatchObject({ count: 6 })
    }))

  it.effect("the disabled recorder records nothing", () =>
    Effect.gen(function*() {
      const labels = fresh()
      const metrics = CacheMetrics.disabled(labels)
      metrics.unsafeHit()
      metrics.unsafeSize(3)
      expect(metrics.enabled).toBe(false)
      expect(yield* metrics.stats).toMatchObject({ hits: 0, size: 0 })
      expect((yield* CacheMetrics.stats(labels)).hits).toBe(0)
    }))
})
