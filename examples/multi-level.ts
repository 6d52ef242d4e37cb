/**
 * A multi-level cache: L1 (small, in memory) → L2 (larger, here in memory too; Redis in production) → a loader.
 * Misses are batched: 1,000 concurrent reads of distinct cold keys make one loader call.
 *
 *   npx tsx examples/multi-level.ts
 */
import { Console, Effect } from "effect"
import { CacheMetrics, LruCache, MultiLevelCache } from "../src/index.js"

const program = Effect.gen(function*() {
  const loaderCalls: Array<number> = []
  const l1 = yield* LruCache.make<number, string>({ capacity: 100, name: "example-l1" })
  const l2 = yield* LruCache.make<number, string>({ capacity: 10_000, name: "example-l2" })
  const cache = yield* MultiLevelCache.make({
    name: "example-users",
    tiers: [l1, l2],
    // One call for a whole batch of keys: one `WHERE id = ANY($1)` in a real store.
    load: (ids: ReadonlyArray<number>) =>
      Effect.sync(() => {
        loaderCalls.push(ids.length)
        return new Map(ids.map((id) => [id, `user ${id}`]))
      })
  })

  const ids = Array.from({ length: 1000 }, (_, i) => i)
  yield* Effect.forEach(ids, (id) => cache.get(id), { concurrency: "unbounded" })
  yield* Console.log(`1,000 concurrent cold reads → ${loaderCalls.length} loader call for ${loaderCalls[0]} keys`)

  yield* Effect.forEach(ids, (id) => cache.get(id), { concurrency: "unbounded" })
  const l1Stats = yield* CacheMetrics.stats({ cache: "example-l1", tier: "lru" })
  const l2Stats = yield* CacheMetrics.stats({ cache: "example-l2", tier: "lru" })
  yield* Console.log(
    `the same 1,000 again → L1 answered ${l1Stats.hits}, L2 ${l2Stats.hits} (L1 holds only 100), loader calls: ${loaderCalls.length}`
  )
})

program.pipe(Effect.scoped, Effect.runPromise)
