/**
 * Cache metrics are ordinary Effect Metrics: read them as a stats snapshot, or from the metric registry where
 * any exporter finds them.
 *
 *   npx tsx examples/metrics.ts
 */
import { Console, Effect, Metric } from "effect"
import { CacheMetrics, LruCache } from "../src/index.js"

const program = Effect.gen(function*() {
  const cache = yield* LruCache.make<number, number>({ capacity: 50, name: "squares" })
  for (let i = 0; i < 1000; i++) {
    // Two reads in three go to 20 hot keys; the third sweeps 50 more, more than the cache holds (50).
    const n = i % 3 === 0 ? i % 150 : i % 20
    const hit = yield* cache.getOption(n)
    if (hit._tag === "None") yield* cache.set(n, n * n)
  }
  const stats = yield* CacheMetrics.stats({ cache: "squares", tier: "lru" })
  yield* Console.log(
    `hits ${stats.hits}, misses ${stats.misses}, hit ratio ${(stats.hitRatio * 100).toFixed(1)} %, ` +
      `evictions ${stats.evictions}, size ${stats.size}`
  )

  const snapshot = yield* Metric.snapshot
  for (const pair of snapshot) {
    if (!pair.metricKey.tags.some((tag) => tag.key === "cache" && tag.value === "squares")) continue
    const state = pair.metricState as { count?: number; value?: number }
    const value = state.count ?? state.value
    if (value !== undefined) yield* Console.log(`${pair.metricKey.name}{cache="squares",tier="lru"} ${value}`)
  }
})

Effect.runPromise(program)
