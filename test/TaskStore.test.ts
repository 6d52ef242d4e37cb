import { describe, expect, it, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { Task, TaskId, TaskInput, TaskNotFound } from "../src/Task.js"
import * as TaskStore from "../src/TaskStore.js"
import { countingStatements, storeLayer } from "./support/postgres.js"

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
