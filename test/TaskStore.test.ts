import { describe, expect, it, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { Task, TaskId, TaskInput, TaskNotFound } from "../src/Task.js"
import * as TaskStore from "../src/TaskStore.js"
import {
  countingStatements,
  databaseUrl,
  dropSchemaOnClose,
  sqlLayer,
  storeLayer,
  uniqueSchema
} from "./support/postgres.js"

const id = (s: string) => TaskId.make(s)
const input = (s: string, title = `task ${s}`) => new TaskInput({ id: id(s), title, status: "todo" })

const store = storeLayer("taskstore")

layer(store.layer, { timeout: "30 seconds" })("TaskStore (real Postgres)", (it) => {
  it.effect("save inserts at version 1 and a second save updates and bumps the version", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      yield* TestClock.setTime(Date.parse("2026-01-02T03:04:05.678Z"))
      const created = yield* tasks.save(input("a"))
      expect(created.version).toBe(1)
      expect(DateTime.formatIso(created.createdAt)).toBe("2026-01-02T03:04:05.678Z")
      expect(created.assignee).toBeUndefined()

      yield* TestClock.adjust("1 minute")
      const updated = yield* tasks.save(new TaskInput({ id: id("a"), title: "renamed", status: "done", assignee: "ada" }))
      expect(updated).toMatchObject({ title: "renamed", status: "done", assignee: "ada", version: 2 })
      expect(DateTime.formatIso(updated.createdAt)).toBe("2026-01-02T03:04:05.678Z")
      expect(DateTime.formatIso(updated.updatedAt)).toBe("2026-01-02T03:05:05.678Z")
      expect(yield* tasks.get(id("a"))).toStrictEqual(updated)
    }))

  it.effect("get of a missing id fails with TaskNotFound; delete removes and then fails", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      expect(yield* Effect.flip(tasks.get(id("missing")))).toStrictEqual(new TaskNotFound({ id: id("missing") }))
      yield* tasks.save(input("doomed"))
      yield* tasks.delete(id("doomed"))
      expect(yield* Effect.exit(tasks.get(id("doomed")))).toStrictEqual(
        Exit.fail(new TaskNotFound({ id: id("doomed") }))
      )
      expect((yield* Effect.flip(tasks.delete(id("doomed"))))._tag).toBe("TaskNotFound")
    }))

  it.effect("a task deleted and saved again continues its versions: they only ever grow", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const first = yield* tasks.save(input("phoenix"))
      yield* tasks.save(input("phoenix", "renamed"))
      yield* tasks.delete(id("phoenix"))
      expect((yield* Effect.flip(tasks.get(id("phoenix"))))._tag).toBe("TaskNotFound")
      expect((yield* tasks.getMany([id("phoenix")])).size).toBe(0)
      const again = yield* tasks.save(input("phoenix", "reborn"))
      expect(again.version).toBe(4) // 1, 2, deleted at 3, saved again at 4
      expect(again.title).toBe("reborn")
      expect(DateTime.greaterThanOrEqualTo(again.createdAt, first.createdAt)).toBe(true)
    }))

  it.effect("getMany reads any number of ids in one statement", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const ids = Array.from({ length: 500 }, (_, i) => id(`many-${i}`))
      yield* Effect.forEach(ids.slice(0, 300), (i) => tasks.save(input(i)), { concurrency: 4, discard: true })
      const { result, statements } = yield* countingStatements(tasks.getMany([...ids, id("nope")]))
      expect(statements).toBe(1)
      expect(result.size).toBe(300)
      expect(result.get(id("many-7"))?.title).toBe("task many-7")
      expect((yield* tasks.getMany([])).size).toBe(0)
    }))

  it.effect("ids with spaces, colons, quotes and unicode round-trip exactly", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const odd = ["with space", "a:b:c", "it's \"quoted\"", "ünï©ødé 🔑", "%25", "x".repeat(200)]
      for (const s of odd) yield* tasks.save(input(s))
      const found = yield* tasks.getMany(odd.map(id))
      expect([...found.keys()].sort()).toStrictEqual([...odd].sort())
    }))

  it.effect("a Task round-trips through Postgres with its DateTimes exact", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const saved = yield* tasks.save(new TaskInput({ id: id("exact"), title: "t", status: "in_progress", assignee: "x" }))
      const read = yield* tasks.get(id("exact"))
      expect(read).toStrictEqual(saved)
      expect(read).toBeInstanceOf(Task)
      expect(Schema.encodeSync(Task)(read)).toStrictEqual(Schema.encodeSync(Task)(saved))
    }))

  it.effect("a row that does not decode is a StoreError, not a defect", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const sql = yield* SqlClient.SqlClient
      yield* tasks.save(input("corrupt"))
      // Plant a title that breaks the model (surrounding spaces) behind the store's back.
      yield* sql`UPDATE ${sql(`${store.schema}.tasks`)} SET title = '  bad  ' WHERE id = 'corrupt'`
      const error = yield* Effect.flip(tasks.get(id("corrupt")))
      expect(error._tag).toBe("StoreError")
    }))

  it.effect("counts its statements in the task_store_queries metric", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const before = yield* TaskStore.queryCount
      yield* tasks.save(input("counted"))
      yield* tasks.get(id("counted"))
      yield* tasks.getMany([id("counted")])
      expect((yield* TaskStore.queryCount) - before).toBe(3)
    }))
})

describe("TaskStore with Postgres unreachable", () => {
  // Live clock: the connect timeout is real time inside the pg driver.
  it.live("fails with StoreError within the connect timeout", () =>
    Effect.gen(function*() {
      // Port 1 on loopback: nothing listens, the connection is refused at once.
      const unreachable = TaskStore.layerPg({
        url: Redacted.make("postgres://root@127.0.0.1:1/test"),
        connectTimeout: "2 seconds"
      })
      const started = Date.now()
      const exit = yield* Effect.exit(Effect.scoped(TaskStore.make()).pipe(Effect.provide(unreachable)))
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "StoreError").toBe(true)
      expect(Date.now() - started).toBeLessThan(10_000)
    }), { timeout: 20_000 })
})

/** A connection straight to Postgres, beside the store's own pool. */
class Direct extends Context.Tag("test/TaskStore/Direct")<Direct, SqlClient.SqlClient>() {}

const boundsSchema = uniqueSchema("taskstore_bounds")

// The store on a pool of one connection, with short bounds: the test can take that connection away from it.
const bounded = Layer.mergeAll(
  TaskStore.layer({ schema: boundsSchema, acquireTimeout: "300 millis", queryTimeout: "500 millis" }).pipe(
    Layer.provideMerge(TaskStore.layerPg({ url: Redacted.make(databaseUrl), maxConnections: 1 }))
  ),
  Layer.merge(Layer.effect(Direct, SqlClient.SqlClient), dropSchemaOnClose(boundsSchema)).pipe(Layer.provide(sqlLayer))
)

/** The stored row, read straight from Postgres. */
const storedRow = (key: string) =>
  Effect.flatMap(Direct, (sql) =>
    sql<{ title: string; version: number }>`
      SELECT title, version FROM ${sql(`${boundsSchema}.tasks`)} WHERE id = ${key}`).pipe(
    Effect.map((rows) => rows[0])
  )

layer(bounded, { timeout: "30 seconds", excludeTestServices: true })("TaskStore: acquire and query timeouts", (it) => {
  it.effect("no connection within acquireTimeout: refused (not unknownOutcome), not sent, not applied", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const sql = yield* SqlClient.SqlClient
      yield* tasks.save(input("held", "before"))
      const sent = yield* TaskStore.queryCount

      // Someone else holds the pool's one connection while the save waits for it.
      const failure = yield* Effect.scoped(
        Effect.gen(function*() {
          yield* sql.reserve
          const started = performance.now()
          const error = yield* Effect.flip(tasks.save(input("held", "during")))
          return { error, ms: performance.now() - started }
        })
      )
      console.log(`[bounds] refused after ${failure.ms.toFixed(0)} ms: ${failure.error.message}`)
      expect(failure.error).toMatchObject({ _tag: "StoreError", operation: "save" })
      expect(failure.error.unknownOutcome).toBeUndefined()
      expect(failure.ms).toBeGreaterThanOrEqual(250)
      expect(failure.ms).toBeLessThan(3_000)
      expect((yield* TaskStore.queryCount) - sent, "the statement was not sent").toBe(0)
      // The connection is back, and the refused save was not applied.
      expect(yield* tasks.get(id("held"))).toMatchObject({ title: "before", version: 1 })
      expect(yield* storedRow("held")).toStrictEqual({ title: "before", version: 1 })
    }))

  it.effect("sent but unanswered within queryTimeout: unknownOutcome, and Postgres may apply it later", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const direct = yield* Direct
      yield* tasks.save(input("locked", "before"))

      // Another transaction holds the row's lock, so the save is sent and then waits inside Postgres.
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(direct.withTransaction(
        Effect.gen(function*() {
          yield* direct`SELECT id FROM ${direct(`${boundsSchema}.tasks`)} WHERE id = 'locked' FOR UPDATE`
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(unlock)
        })
      ))
      yield* Deferred.await(locked)
      const error = yield* Effect.flip(tasks.save(input("locked", "during")))
      expect(error).toMatchObject({ _tag: "StoreError", operation: "save", unknownOutcome: true })
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)

      // The statement was still waiting for the lock, and Postgres applies it: "unknown" was the truth.
      const applied = yield* storedRow("locked").pipe(
        Effect.filterOrFail((row) => row?.version === 2),
        Effect.retry({ times: 50, schedule: Schedule.spaced("100 millis") })
      )
      expect(applied).toStrictEqual({ title: "during", version: 2 })
      // Its connection went back to the pool once it had been answered.
      expect((yield* tasks.save(input("locked", "after"))).version).toBe(3)
    }))
})

// PGlite, started in this process: live clock, so that the acquire timeout is real time.
layer(Layer.provideMerge(TaskStore.layer(), TaskStore.layerEmbeddedSql), {
  timeout: "60 seconds",
  excludeTestServices: true
})("TaskStore.layerEmbeddedSql (PGlite)", (it) => {
  it.effect("saves, reads and deletes through its one connection", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      const saved = yield* tasks.save(input("embedded"))
      expect(yield* tasks.get(id("embedded"))).toStrictEqual(saved)
      expect((yield* tasks.save(input("embedded", "again"))).version).toBe(2)
      yield* tasks.delete(id("embedded"))
      expect((yield* Effect.flip(tasks.get(id("embedded"))))._tag).toBe("TaskNotFound")
    }))

  it.effect("a burst of concurrent saves queues for the one connection within its longer acquire timeout", () =>
    Effect.gen(function*() {
      const tasks = yield* TaskStore.TaskStore
      expect(Duration.toSeconds(yield* TaskStore.AcquireTimeout)).toBe(10)
      const started = performance.now()
      const exits = yield* Effect.forEach(
        Array.from({ length: 1_500 }, (_, i) => input(`embedded-burst-${i}`)),
        (task) => Effect.exit(tasks.save(task)),
        { concurrency: "unbounded" }
      )
      const failed = exits.filter(Exit.isFailure)
      console.log(
        `[embedded] 1,500 concurrent saves through one connection: ${exits.length - failed.length} saved in ` +
          `${(performance.now() - started).toFixed(0)} ms, ${failed.length} failed`
      )
      expect(failed.map(String)).toStrictEqual([])
    }))
})
