/**
 * Cache your own entity, end to end: a `Product` schema, its own store over Postgres (@effect/sql), and one
 * `CachedStore` with an in-memory L1, a versioned Redis L2 and the invalidation bus. Two instances run in this
 * process, as two servers would: a write on one reaches the other.
 *
 *   npx tsx examples/cached-store.ts
 *
 * With `DATABASE_URL` and `REDIS_URL` set it runs on those servers; otherwise on an embedded Postgres (PGlite)
 * and the in-memory stand-ins of Redis that the library ships for tests (a versioned `LruCache` and an
 * in-process bus), so that it runs anywhere.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Context, Data, Effect, Layer, Option, Schema } from "effect"
import { Cache, CachedStore, InvalidationBus, LruCache, RedisCache, RedisClient } from "../src/index.js"
import * as TaskStore from "../src/TaskStore.js"

// ─── Yours: the entity and its store ─────────────────────────────────────────────────────────────────────

class Product extends Schema.Class<Product>("Product")({
  id: Schema.String,
  name: Schema.String,
  price: Schema.Number,
  version: Schema.Int // grows with every write, also across a delete: the store's contract
}) {}

interface ProductInput {
  readonly id: string
  readonly name: string
  readonly price: number
}

class ProductNotFound extends Data.TaggedError("ProductNotFound")<{ readonly id: string }> {}
class ProductStoreError extends Data.TaggedError("ProductStoreError")<{ readonly cause: unknown }> {}

type ProductStoreService = CachedStore.Store<string, Product, ProductInput, ProductStoreError, ProductStoreError, ProductStoreError | ProductNotFound>
class ProductStore extends Context.Tag("app/ProductStore")<ProductStore, ProductStoreService>() {}

const ProductStoreLive = Layer.effect(
  ProductStore,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS products (
      id text PRIMARY KEY, name text NOT NULL, price numeric NOT NULL, version integer NOT NULL,
      deleted boolean NOT NULL DEFAULT false)`
    const failed = (cause: unknown) => new ProductStoreError({ cause })
    const decode = Schema.decodeUnknown(Product)
    return {
      getMany: (ids) =>
        sql`SELECT id, name, price::float8 AS price, version FROM products WHERE id = ANY(${ids}) AND NOT deleted`.pipe(
          Effect.flatMap(Effect.forEach((row) => decode(row))),
          Effect.map((products) => new Map(products.map((p) => [p.id, p]))),
          Effect.mapError(failed)
        ),
      save: (input) =>
        sql`INSERT INTO products AS p (id, name, price, version) VALUES (${input.id}, ${input.name}, ${input.price}, 1)
            ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, version = p.version + 1,
            deleted = false RETURNING id, name, price::float8 AS price, version`.pipe(
          Effect.flatMap((rows) => decode(rows[0])),
          Effect.mapError(failed)
        ),
      remove: (id) =>
        sql`UPDATE products SET deleted = true, version = version + 1 WHERE id = ${id} AND NOT deleted RETURNING id`.pipe(
          Effect.mapError(failed),
          Effect.flatMap((rows) => (rows.length === 0 ? Effect.fail(new ProductNotFound({ id })) : Effect.void))
        )
    } satisfies ProductStoreService
  })
).pipe(Layer.orDie)

// ─── The recipe: a cached store of products (README, "Cache your own entity") ─────────────────────────────

class ProductL1 extends Cache.Tag("app/ProductL1")<ProductL1, string, Product>() {}
class ProductL2 extends Cache.Tag("app/ProductL2")<ProductL2, string, Product, Cache.CacheError>() {}
class ProductBus extends Context.Tag("app/ProductBus")<ProductBus, InvalidationBus.InvalidationBus<string>>() {}
class Products extends CachedStore.Tag("app/Products")<Products, ProductStoreService>() {}

const ProductsLive = CachedStore.layer(
  Products,
  Effect.gen(function*() {
    return {
      name: "products",
      store: yield* ProductStore,
      keyOf: (input: ProductInput) => input.id,
      tiers: [yield* ProductL1, { cache: yield* ProductL2, timeout: "250 millis", breaker: {} }],
      invalidations: yield* ProductBus,
      // A missing product is "absent"; any other failure may have been applied ("unknown"): the default.
      classify: (error) => (error._tag === "ProductNotFound" ? "absent" as const : "unknown" as const)
    }
  })
).pipe(Layer.provide(LruCache.layer(ProductL1, { capacity: 10_000, timeToLive: "5 minutes" })))

/** The shared tiers on Redis: a versioned L2 and the bus, over a connection from `REDIS_URL`. */
const RedisTiers = Layer.mergeAll(
  RedisCache.layer(ProductL2, { namespace: "example-products", schema: Product, timeToLive: "1 hour", version: (p) => p.version }),
  InvalidationBus.layer(ProductBus, { namespace: "example-products", decodeKey: Option.some })
).pipe(Layer.provide(RedisClient.layerConfig))

// ─── Running it: two instances of the service ────────────────────────────────────────────────────────────

const useServers = (process.env.DATABASE_URL ?? "") !== "" && (process.env.REDIS_URL ?? "") !== ""

const program = Effect.gen(function*() {
  // Without Redis: one versioned in-memory L2 and one in-process hub, shared by the two instances.
  const memoryL2 = yield* LruCache.make<string, Product>({ capacity: 10_000, version: (p) => p.version, name: "example-l2" })
  const hub = yield* InvalidationBus.makeMemoryHub<string>()
  const sharedTiers = useServers
    ? RedisTiers
    : Layer.merge(Layer.succeed(ProductL2, memoryL2), Layer.scoped(ProductBus, hub.connect))
  const sql = useServers ? TaskStore.layerPgConfig : TaskStore.layerEmbeddedSql
  const store = yield* Layer.build(ProductStoreLive.pipe(Layer.provide(sql), Layer.orDie))
  // Each `Layer.build` is one instance: its own L1, its own connections, its own end of the bus.
  const instance = Layer.build(ProductsLive.pipe(Layer.provide(sharedTiers), Layer.orDie)).pipe(
    Effect.flatMap((context) => Effect.provide(Products, context)),
    Effect.provide(store)
  )
  const a = yield* instance
  const b = yield* instance
  yield* Console.log(useServers ? "Postgres and Redis from DATABASE_URL and REDIS_URL" : "embedded Postgres, in-memory L2 and bus")

  const lamp = yield* a.save({ id: "lamp", name: "Desk lamp", price: 30 })
  yield* Console.log(`A saved ${lamp.name} at ${lamp.price} (version ${lamp.version})`)
  yield* Console.log(`B reads ${(yield* b.get("lamp")).price}`)
  yield* a.save({ id: "lamp", name: "Desk lamp", price: 25 })
  yield* Effect.sleep("50 millis") // the message reaches B in about a millisecond
  yield* Console.log(`after A's price cut, B reads ${(yield* b.get("lamp")).price}`)
  yield* b.delete("lamp")
  yield* Effect.sleep("50 millis")
  const gone = yield* a.get("lamp").pipe(
    Effect.as("still there"),
    Effect.catchTag("CacheMiss", () => Effect.succeed("not found"))
  )
  yield* Console.log(`after B's delete, A reads: ${gone}`)
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
