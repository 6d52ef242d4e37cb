/**
 * A whole program on one of the repository's ready layers, for the resource-hygiene test: it builds the layer,
 * does some work, lets the layer's scope close, prints a marker and what still keeps Node's event loop busy,
 * and then simply returns. It never calls `process.exit`: once the scope is closed, nothing should be left to
 * keep the process alive.
 *
 * Run from the repository's root: `node --import tsx test/support/hygiene-program.ts <clients|embedded>`.
 *   clients  — `TaskRepository.layer`: Postgres at DATABASE_URL, Redis at REDIS_URL (L2 and invalidation bus),
 *              schema TASK_STORE_SCHEMA and namespace TASK_CACHE_NAMESPACE from the environment.
 *   embedded — `TaskRepository.layerEmbedded`: PGlite and an in-memory L2.
 *
 * Output lines: `HYGIENE-SCOPE-CLOSED <epoch ms>`, then `HYGIENE-ACTIVE <json>` right away and again, from
 * unref'd timers (which do not keep the process alive), 300 and 700 ms later.
 */
import * as Effect from "effect/Effect"
import { TaskId, TaskInput } from "../../src/Task.js"
import * as TaskRepository from "../../src/TaskRepository.js"

const mode = process.argv[2]
if (mode !== "clients" && mode !== "embedded") {
  throw new Error(`usage: hygiene-program.ts <clients|embedded>, got ${mode}`)
}

const layer = mode === "clients" ? TaskRepository.layer : TaskRepository.layerEmbedded

const program = Effect.gen(function*() {
  const repo = yield* TaskRepository.TaskRepository
  const ids = Array.from({ length: 20 }, (_, i) => TaskId.make(`hygiene-${i}`))
  yield* Effect.forEach(ids, (id) => repo.save(new TaskInput({ id, title: `task ${id}`, status: "todo" })), {
    concurrency: 4
  })
  yield* Effect.forEach(ids, (id) => repo.get(id), { concurrency: 8 })
  yield* repo.save(new TaskInput({ id: ids[0]!, title: "updated", status: "done" }))
  const many = yield* repo.getMany(ids)
  if (many.size !== ids.length) return yield* Effect.dieMessage(`getMany found ${many.size} of ${ids.length}`)
  yield* Effect.forEach(ids.slice(10), (id) => repo.delete(id), { concurrency: 4 })
  const gone = yield* Effect.flip(repo.get(ids[15]!))
  if (gone._tag !== "TaskNotFound") return yield* Effect.dieMessage(`expected TaskNotFound, got ${gone._tag}`)
  // Long enough for the background work (the bus's retry loop ticks every second) to have run.
  yield* Effect.sleep("1100 millis")
})

const activeResources = () => JSON.stringify(process.getActiveResourcesInfo())

Effect.runPromise(program.pipe(Effect.provide(layer))).then(
  () => {
    console.log(`HYGIENE-SCOPE-CLOSED ${Date.now()}`)
    console.log(`HYGIENE-ACTIVE ${activeResources()}`)
    setTimeout(() => console.log(`HYGIENE-ACTIVE+300ms ${activeResources()}`), 300).unref()
    setTimeout(() => console.log(`HYGIENE-ACTIVE+700ms ${activeResources()}`), 700).unref()
  },
  (error: unknown) => {
    console.error(`HYGIENE-FAILED ${error instanceof Error ? error.stack : String(error)}`)
    process.exitCode = 1
  }
)
