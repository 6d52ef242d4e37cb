/**
 * Write-through: the store is written first, then the cache; a failed store write leaves the cache alone.
 * The "store" here is a Map standing in for a database, so the example runs anywhere.
 *
 *   npx tsx examples/write-through.ts
 */
import { Console, Data, Effect } from "effect"
import { LruCache, MultiLevelCache, WriteThrough } from "../src/index.js"

interface Note {
  readonly key: string
  readonly text: string
}

class Rejected extends Data.TaggedError("Rejected")<{ readonly reason: string }> {}

const program = Effect.gen(function*() {
  const database = new Map<string, Note>([["greeting", { key: "greeting", text: "hello" }]])
  const cache = yield* MultiLevelCache.make({
    name: "example-write-through",
    tiers: [yield* LruCache.make<string, Note>({ capacity: 100 })],
    load: (keys) => Effect.succeed(new Map(keys.flatMap((k) => (database.has(k) ? [[k, database.get(k)!] as const] : []))))
  })
  const notes = WriteThrough.make({
    cache,
    save: (note: Note) =>
      note.text.length === 0
        ? Effect.fail(new Rejected({ reason: "empty notes are not allowed" }))
        : Effect.sync(() => (database.set(note.key, note), note)),
    remove: (key: string) => Effect.sync(() => void database.delete(key)),
    keyOfInput: (note: Note) => note.key
  })

  yield* Console.log(`read:   "${(yield* cache.get("greeting")).text}" (loaded from the database, now cached)`)
  yield* notes.save({ key: "greeting", text: "bonjour" })
  yield* Console.log(`saved:  "${(yield* cache.get("greeting")).text}" (the store first, then the cache)`)
  const failed = yield* Effect.flip(notes.save({ key: "greeting", text: "" }))
  yield* Console.log(`failed: ${failed.reason}; the cache still says "${(yield* cache.get("greeting")).text}"`)
  yield* notes.delete("greeting")
  const gone = yield* cache.getOption("greeting")
  yield* Console.log(`delete: the cache ${gone._tag === "None" ? "no longer has it" : "still has it!"}`)
})

program.pipe(Effect.scoped, Effect.runPromise)
