/**
 * `npm start`: a tour of the foundation on embedded defaults (nothing to install or configure).
 */
import { Clock, Console, Effect } from "effect"
import { CacheMetrics, LruCache, SingleFlight } from "../src/index.js"

const zipfKeys = (n: number, count: number): Array<number> => {
  const weights = Array.from({ length: n }, (_, i) => 1 / (i + 1))
  const total = weights.reduce((a, b) => a + b, 0)
  let seed = 1
  return Array.from({ length: count }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    let u = (seed / 2 ** 32) * total
    let i = 0
    while (u > weights[i]!) u -= weights[i++]!
    return i
  })
}

const program = Effect.gen(function*() {
  yield* Console.log("@rms/cache demo: a Zipf read workload through an LRU with singleflight loads\n")
  const metrics = CacheMetrics.make({ cache: "demo", tier: "loader" })
  const cache = yield* LruCache.make<number, string>({ capacity: 1_000, timeToLive: "1 minute", name: "demo" })
  const flight = yield* SingleFlight.make<number, string>({ metrics })
  let storeReads = 0
  const load = (id: number) =>
    Effect.sync(() => ++storeReads).pipe(Effect.zipRight(Effect.sleep("1 millis")), Effect.as(`item ${id}`))
  const read = (id: number) =>
    cache.get(id).pipe(
      Effect.catchTag("CacheMiss", () => flight.run(id, load(id).pipe(Effect.tap((v) => cache.set(id, v)))))
    )

  const keys = zipfKeys(10_000, 50_000)
  const start = yield* Clock.currentTimeMillis
  yield* Effect.forEach(keys, read, { concurrency: 64, discard: true })
  const elapsed = (yield* Clock.currentTimeMillis) - start
  const l1 = yield* CacheMetrics.stats({ cache: "demo", tier: "lru" })
  const loads = yield* metrics.stats
  yield* Console.log(`requests      ${keys.length}`)
  yield* Console.log(`L1 hit ratio  ${(l1.hitRatio * 100).toFixed(1)} %  (${l1.hits} hits, ${l1.evictions} evictions)`)
  yield* Console.log(`store reads   ${storeReads}  (${loads.sharedLoads} callers joined a load in flight)`)
  yield* Console.log(`elapsed       ${elapsed} ms`)
})

program.pipe(Effect.scoped, Effect.runPromise)
