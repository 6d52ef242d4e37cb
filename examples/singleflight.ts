/**
 * Singleflight: 100 concurrent requests for one key cause one load; the others wait for it and share the result.
 *
 *   npx tsx examples/singleflight.ts
 */
import { Console, Effect } from "effect"
import { CacheMetrics, SingleFlight } from "../src/index.js"

const program = Effect.gen(function*() {
  let loads = 0
  const metrics = CacheMetrics.make({ cache: "example-profiles", tier: "loader" })
  const flight = yield* SingleFlight.make<string, string>({ metrics })
  const slowLoad = (id: string) =>
    Effect.sync(() => ++loads).pipe(Effect.zipRight(Effect.sleep("50 millis")), Effect.as(`profile of ${id}`))

  const results = yield* Effect.forEach(
    Array.from({ length: 100 }),
    () => flight.run("user-42", slowLoad("user-42")),
    { concurrency: "unbounded" }
  )
  const stats = yield* metrics.stats
  yield* Console.log(`${results.length} callers got "${results[0]}"; loads run: ${loads}; joined: ${stats.sharedLoads}`)
})

program.pipe(Effect.scoped, Effect.runPromise)
