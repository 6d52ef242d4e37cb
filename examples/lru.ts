/**
 * An LRU cache as a typed service: declare a tag, provide a layer, handle a miss as a typed error.
 *
 *   npx tsx examples/lru.ts
 */
import { Console, Effect } from "effect"
import { Cache, CacheMetrics, LruCache } from "../src/index.js"

/** The cache this program needs: user names by numeric id. */
class UserNames extends Cache.Tag("example/UserNames")<UserNames, number, string>() {}

const program = Effect.gen(function*() {
  const names = yield* UserNames
  yield* names.setMany([[1, "Ada"], [2, "Grace"], [3, "Barbara"]])
  yield* names.get(1) // 1 is now the most recently used
  yield* names.set(4, "Edsger") // the cache holds 3: the least recently used entry (2) is evicted

  for (const id of [1, 2, 3, 4]) {
    const name = yield* names.get(id).pipe(Effect.catchTag("CacheMiss", (miss) => Effect.succeed(`<miss ${miss.key}>`)))
    yield* Console.log(`user ${id}: ${name}`)
  }
  const stats = yield* CacheMetrics.stats({ cache: names.name, tier: "lru" })
  yield* Console.log(`hits ${stats.hits}, misses ${stats.misses}, evictions ${stats.evictions}`)
})

program.pipe(Effect.provide(LruCache.layer(UserNames, { capacity: 3 })), Effect.runPromise)
