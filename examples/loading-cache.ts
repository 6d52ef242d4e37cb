/**
 * A loading cache with freshness: a price source that is slow, then down, behind an L1 and an L2 (in memory
 * here; a `RedisCache` of `LoadingCache.entrySchema(...)` in production). Shows stale-while-revalidate, the
 * fail-safe answer while the source is down, negative caching, and the counters that report them.
 *
 *   npx tsx examples/loading-cache.ts
 */
import { Console, Data, Effect, Option } from "effect"
import { LoadingCache, LruCache } from "../src/index.js"

class PricingDown extends Data.TaggedError("PricingDown")<{}> {}

const program = Effect.gen(function*() {
  const prices = new Map([["sku-1", 100]])
  let down = false
  let calls = 0
  const find = (sku: string) =>
    Effect.suspend(() => {
      calls++
      return down ? Effect.fail(new PricingDown()) : Effect.succeed(Option.fromNullable(prices.get(sku)))
    }).pipe(Effect.delay("20 millis"))

  const cache = yield* LoadingCache.make({
    name: "example-prices",
    tiers: [
      yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 1_000, name: "example-prices-l1" }),
      yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 100_000, name: "example-prices-l2" })
    ],
    lookup: find,
    timeToLive: "200 millis",
    grace: "1 hour",
    staleWhileRevalidate: true,
    failSafeThrottle: "1 second",
    notFoundTimeToLive: "1 minute"
  })

  yield* Console.log(`sku-1: ${yield* cache.get("sku-1")} (loaded)`)
  prices.set("sku-1", 120)
  yield* Effect.sleep("250 millis")
  const started = Date.now()
  const stale = yield* cache.get("sku-1")
  yield* Console.log(`after its time-to-live: ${stale} at once (${Date.now() - started} ms), refreshed in the background`)
  yield* Effect.sleep("50 millis")
  yield* Console.log(`a moment later: ${yield* cache.get("sku-1")}`)

  const before404 = calls
  const missing = yield* Effect.forEach([1, 2, 3], () => cache.getOption("sku-404"))
  yield* Console.log(
    `sku-404 read 3 times: ${missing.every(Option.isNone) ? "absent" : "?"}, source calls: ${calls - before404} (negative entry)`
  )

  down = true
  yield* Effect.sleep("250 millis")
  yield* cache.refresh("sku-1") // force a reload from the source, which is down
  yield* Effect.sleep("50 millis")
  const before = calls
  const answers = yield* Effect.forEach(Array.from({ length: 5 }), () => cache.get("sku-1"))
  yield* Console.log(`source down: answers ${answers.join(", ")} (fail-safe), source calls meanwhile: ${calls - before}`)

  const stats = yield* cache.freshness
  yield* Console.log(
    `stale served ${stats.staleServed}, refreshes ${stats.refreshesStarted}, fail-safe ${stats.failSafeActivations}, negative hits ${stats.negativeHits}`
  )
})

program.pipe(Effect.scoped, Effect.runPromise)
