import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"

describe("smoke", () => {
  it.scoped("fresh, stale-while-revalidate, negative", () =>
    Effect.gen(function*() {
      const rows = new Map([["a", 1]])
      let loads = 0
      const l1 = yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 10 })
      const l2 = yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 10 })
      const cache = yield* LoadingCache.make({
        name: "smoke",
        tiers: [l1, l2],
        load: (keys) => Effect.sync(() => { loads++; return new Map(keys.flatMap((k) => rows.has(k) ? [[k, rows.get(k)!] as const] : [])) }),
        timeToLive: "10 seconds",
        grace: "1 minute",
        staleWhileRevalidate: true,
        notFoundTimeToLive: "5 seconds"
      })
      expect(yield* cache.get("a")).toBe(1)
      expect(yield* cache.get("a")).toBe(1)
      expect(loads).toBe(1)
      expect(Option.isNone(yield* cache.getOption("b"))).toBe(true)
      expect(Option.isNone(yield* cache.getOption("b"))).toBe(true)
      expect(loads).toBe(2)
      rows.set("a", 2)
      yield* TestClock.adjust("11 seconds")
      expect(yield* cache.get("a")).toBe(1) // stale, refresh started
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      expect(loads).toBe(3)
      expect(yield* cache.get("a")).toBe(2)
      const stats = yield* cache.freshness
      expect(stats.staleServed).toBe(1)
      expect(stats.refreshesStarted).toBe(1)
      expect(stats.refreshesCompleted).toBe(1)
      expect(stats.negativeHits).toBe(1)
    }))
})
