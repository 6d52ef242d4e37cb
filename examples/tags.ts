/**
 * Tags: products cached on two instances (one process here, an in-process bus and a shared L2 in memory; Redis
 * in production), each tagged with its category. Renaming a category changes what every product of it shows;
 * one `invalidateTag` on instance A makes all of them misses on both instances, and the other category's stay
 * cached.
 *
 *   npx tsx examples/tags.ts
 */
import { Console, Effect } from "effect"
import { CachedStore, InvalidationBus, type LoadingCache, LruCache } from "../src/index.js"

interface Product {
  readonly id: string
  readonly name: string
  readonly category: string
  /** What the page shows: the product with its category's current name. */
  readonly label: string
}

const program = Effect.gen(function*() {
  const categories = new Map([["c1", "Shoes"], ["c2", "Hats"]])
  const rows = new Map([["p1", { name: "Runner", category: "c1" }], ["p2", { name: "Walker", category: "c1" }], [
    "p3",
    { name: "Beret", category: "c2" }
  ]])
  let reads = 0
  const store: CachedStore.Store<string, Product, Product, never, never, never> = {
    getMany: (ids) =>
      Effect.sync(() => {
        reads += ids.length
        const found = new Map<string, Product>()
        for (const id of ids) {
          const row = rows.get(id)
          if (row !== undefined) found.set(id, { id, ...row, label: `${row.name} (${categories.get(row.category)})` })
        }
        return found
      }),
    save: (product) => Effect.sync(() => (rows.set(product.id, product), product)),
    remove: (id) => Effect.sync(() => void rows.delete(id))
  }

  const hub = yield* InvalidationBus.makeMemoryHub<string>()
  const l2 = yield* LruCache.make<string, LoadingCache.Entry<Product>>({ capacity: 10_000, name: "example-products-l2" })
  const instance = (name: string) =>
    Effect.gen(function*() {
      return yield* CachedStore.make({
        name,
        store,
        keyOf: (product) => product.id,
        tiers: [yield* LruCache.make<string, LoadingCache.Entry<Product>>({ capacity: 1_000, name: `${name}-l1` }), l2],
        invalidations: yield* hub.connect,
        freshness: { timeToLive: "1 hour", tags: (product) => [`category:${product.category}`] }
      })
    })
  const a = yield* instance("example-products-a")
  const b = yield* instance("example-products-b")
  const labels = (cache: typeof a) =>
    Effect.map(cache.getMany(["p1", "p2", "p3"]), (found) => ["p1", "p2", "p3"].map((id) => found.get(id)?.label).join(", "))

  yield* Console.log(`A: ${yield* labels(a)}`)
  yield* Console.log(`B: ${yield* labels(b)} (from the shared L2), store reads so far: ${reads}`)

  categories.set("c1", "Footwear")
  yield* a.invalidateTag("category:c1")
  yield* Effect.sleep("10 millis") // the bus's delivery to B
  reads = 0
  yield* Console.log(`after renaming c1, A: ${yield* labels(a)}`)
  yield* Console.log(`after renaming c1, B: ${yield* labels(b)}, store reads: ${reads} (p1 and p2 only)`)
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
