import { expect, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { Task, TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import * as LruCache from "../src/LruCache.js"
import { countingStatements, dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { cleanNamespaceOnClose, monitor, rawRedis, redisUrl, uniqueNamespace } from "./support/redis.js"

const schema = uniqueSchema("repository")
const namespace = uniqueNamespace("repository")

/** The repository on the real servers, with its parts exposed so the tests can look behind it. */
const parts = Layer.mergeAll(
  TaskStore.layer({ schema }),
  LruCache.layer(TaskRepository.TaskL1, { capacity: 10_000, timeToLive: "5 minutes", name: "repo-test-l1" }),
  RedisCache.layer(TaskRepository.TaskL2, { namespace, schema: Task, timeToLive: "10 minutes", name: "repo-test-l2" })
)
const repository = Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make()).pipe(Layer.provideMerge(parts))
const live = Layer.mergeAll(repository, dropSchemaOnClose(schema), cleanNamespaceOnClose(namespace)).pipe(
  Layer.provideMerge(Layer.merge(sqlLayer, RedisClient.layer({ url: redisUrl })))
)

const id = (s: string) => TaskId.make(s)
const input = (s: string, title = `task ${s}`) => new TaskInput({ id: id(s), title, status: "todo" })
const l2Key = (s: string) => RedisCache.redisKey(namespace, s)

/** Seeds tasks straight into the store (not the cache), as if written by someone else long ago. */
const seed = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(TaskStore.TaskStore, (store) =>
    Effect.forEach(ids, (i) => store.save(input(i)), { concurrency: 8 }))

layer(live, { timeout: "60 seconds" })("TaskRepository (real Postgres and Redis)", (it) => {
  it.effect("reads come from the store once, then from L1; without L1 from L2", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      yield* seed(["rt-1"])
      const first = yield* countingStatements(repo.get(id("rt-1")))
      expect(first.statements).toBe(1)
      expect(first.result.title).toBe("task rt-1")
      const second = yield* countingStatements(repo.get(id("rt-1")))
      expect(second.statements).toBe(0)
      yield* l1.invalidate(id("rt-1"))
      const fromL2 = yield* countingStatements(repo.get(id("rt-1")))
      expect(fromL2.statements).toBe(0)
      expect(fromL2.result).toStrictEqual(first.result)
      expect(Option.isSome(yield* l1.getOption(id("rt-1")))).toBe(true) // back-filled
    }))

  it.scoped("save writes through to both tiers, with the configured PTTL in Redis", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const saved = yield* repo.save(input("wt-1", "first"))
      const updated = yield* repo.save(input("wt-1", "second"))
      expect(updated.version).toBe(saved.version + 1)
      expect(yield* l1.get(id("wt-1"))).toStrictEqual(updated)
      const raw = yield* rawRedis()
      const stored = yield* Effect.promise(() => raw.get(l2Key("wt-1")))
      expect(JSON.parse(stored!).title).toBe("second")
      const pttl = yield* Effect.promise(() => raw.pttl(l2Key("wt-1")))
      expect(pttl).toBeGreaterThan(590_000)
      expect(pttl).toBeLessThanOrEqual(600_000)
    }))

  it.effect("delete removes from the store and every tier", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const l2 = yield* TaskRepository.TaskL2
      yield* repo.save(input("del-1"))
      yield* repo.delete(id("del-1"))
      expect((yield* Effect.flip(repo.get(id("del-1"))))._tag).toBe("TaskNotFound")
      expect(yield* l1.getOption(id("del-1"))).toStrictEqual(Option.none())
      expect(yield* l2.getOption(id("del-1"))).toStrictEqual(Option.none())
      expect((yield* Effect.flip(repo.delete(id("del-1"))))._tag).toBe("TaskNotFound")
    }))

  it.scoped("1,000 concurrent gets of one id missing from the cache: one SQL query and one Redis read", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      yield* seed(["hot"])
      const watch = yield* monitor(RedisCache.escapeKeyPart(namespace))
      const { result, statements } = yield* countingStatements(
        Effect.forEach(Array.from({ length: 1000 }), () => repo.get(id("hot")), { concurrency: "unbounded" })
      )
      expect(new Set(result.map((t) => t.id))).toStrictEqual(new Set(["hot"]))
      expect(statements).toBe(1)
      yield* watch.settle
      // One key: a GET rather than an MGET of one.
      expect(watch.commands().filter((c) => c[0] === "mget" || c[0] === "get")).toHaveLength(1)
    }))

  it.scoped("1,000 concurrent gets of distinct cold ids: one MGET and one SQL query", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const ids = Array.from({ length: 1000 }, (_, i) => `cold-${i}`)
      yield* seed(ids)
      const watch = yield* monitor(RedisCache.escapeKeyPart(namespace))
      const { result, statements } = yield* countingStatements(
        Effect.forEach(ids, (i) => repo.get(id(i)), { concurrency: "unbounded" })
      )
      expect(result.map((t) => t.id)).toStrictEqual(ids)
      expect(statements).toBe(1)
      yield* watch.settle
      const commands = watch.commands()
      expect(commands.filter((c) => c[0] === "mget")).toHaveLength(1)
      expect(commands.filter((c) => c[0] === "mget")[0]!.length).toBe(1001)
    }))

  it.scoped("getMany of 500 ids, a third in L1 and a third only in L2: one MGET for the rest, one SQL query", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const l2 = yield* TaskRepository.TaskL2
      const ids = Array.from({ length: 500 }, (_, i) => id(`gm-${i}`))
      const tasks = yield* seed(ids)
      yield* l1.setMany(tasks.slice(0, 167).map((t) => [t.id, t]))
      yield* l2.setMany(tasks.slice(167, 334).map((t) => [t.id, t]))
      const watch = yield* monitor(RedisCache.escapeKeyPart(namespace))
      const { result, statements } = yield* countingStatements(repo.getMany(ids))
      expect(result.size).toBe(500)
      expect(statements).toBe(1)
      yield* watch.settle
      const mgets = watch.commands().filter((c) => c[0] === "mget")
      expect(mgets).toHaveLength(1)
      expect(mgets[0]!.length - 1).toBe(333) // only the ids L1 did not have
    }))

  it.effect("a failed store write leaves every tier as it was", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const l2 = yield* TaskRepository.TaskL2
      const sql = yield* SqlClient.SqlClient
      const saved = yield* repo.save(input("guarded", "allowed"))
      // A real Postgres refusal: a constraint added behind the repository's back.
      yield* sql`ALTER TABLE ${sql(`${schema}.tasks`)} ADD CONSTRAINT no_forbidden CHECK (title <> 'forbidden')`
      const error = yield* Effect.flip(repo.save(input("guarded", "forbidden")))
      yield* sql`ALTER TABLE ${sql(`${schema}.tasks`)} DROP CONSTRAINT no_forbidden`
      expect(error._tag).toBe("StoreError")
      expect(yield* l1.get(id("guarded"))).toStrictEqual(saved)
      expect(yield* l2.get(id("guarded"))).toStrictEqual(saved)
      expect(yield* repo.get(id("guarded"))).toStrictEqual(saved)
    }))
})

layer(
  Layer.mergeAll(
    TaskRepository.layerFromClients,
    dropSchemaOnClose(`${schema}_cfg`),
    cleanNamespaceOnClose(`${namespace}-cfg`)
  ).pipe(
    Layer.provide(Layer.merge(sqlLayer, RedisClient.layer({ url: redisUrl }))),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(
      new Map([
        ["TASK_STORE_SCHEMA", `${schema}_cfg`],
        ["TASK_CACHE_NAMESPACE", `${namespace}-cfg`],
        ["TASK_CACHE_L2_TTL", "2 minutes"]
      ])
    )))
  ),
  { timeout: "30 seconds" }
)("TaskRepository.layerFromClients (configured)", (it) => {
  it.scoped("reads its schema, namespace and TTLs from Config", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      yield* repo.save(input("configured"))
      const raw = yield* rawRedis()
      const key = RedisCache.redisKey(`${namespace}-cfg`, "configured")
      const pttl = yield* Effect.promise(() => raw.pttl(key))
      expect(pttl).toBeGreaterThan(110_000)
      expect(pttl).toBeLessThanOrEqual(120_000)
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql`SELECT id FROM ${sql(`${schema}_cfg.tasks`)}`
      expect(rows).toStrictEqual([{ id: "configured" }])
    }).pipe(Effect.provide(sqlLayer)))
})

layer(TaskRepository.layerEmbedded, { timeout: "60 seconds" })("TaskRepository.layerEmbedded (PGlite, in-memory L2)", (it) => {
  it.effect("saves, reads back through the tiers, and deletes with nothing installed", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const saved = yield* repo.save(input("embedded", "runs anywhere"))
      expect(yield* repo.get(id("embedded"))).toStrictEqual(saved)
      const again = yield* repo.save(input("embedded", "still"))
      expect(again.version).toBe(2)
      const many = yield* repo.getMany([id("embedded"), id("absent")])
      expect([...many.keys()]).toStrictEqual(["embedded"])
      yield* repo.delete(id("embedded"))
      expect((yield* Effect.flip(repo.get(id("embedded"))))._tag).toBe("TaskNotFound")
    }))
})
