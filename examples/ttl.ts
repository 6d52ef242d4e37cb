/**
 * A TTL cache whose sweeper removes expired entries in the background, for as long as its layer lives.
 * The sweep is driven by Effect's Clock: here the real one, with a 200 ms time-to-live.
 *
 *   npx tsx examples/ttl.ts
 */
import { Console, Effect } from "effect"
import { Cache, TtlCache } from "../src/index.js"

class Sessions extends Cache.Tag("example/Sessions")<Sessions, string, { readonly user: string }>() {}

const program = Effect.gen(function*() {
  const sessions = yield* Sessions
  yield* sessions.set("s-1", { user: "ada" })
  yield* sessions.set("s-2", { user: "grace" }, { timeToLive: "1 minute" })
  yield* Console.log(`right away: ${yield* sessions.size} sessions`)

  yield* Effect.sleep("350 millis") // past the time-to-live and a sweep (every 100 ms)
  yield* Console.log(`after 350 ms: ${yield* sessions.size} session left, s-1 is ${
    (yield* sessions.getOption("s-1"))._tag === "None" ? "gone" : "still there"
  }`)
})

// When the program ends, the layer's scope closes and the sweeper fiber is interrupted: the process exits.
program.pipe(Effect.provide(TtlCache.layer(Sessions, { timeToLive: "200 millis" })), Effect.runPromise)
