/**
 * Bad input from callers and from Redis: random strings as ids, random values under our keys. Each gets a
 * typed error or a miss — never a defect, never a lost or corrupted task.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { Task, TaskBody, TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { cleanNamespaceOnClose, rawRedis, redisUrl, uniqueNamespace } from "./support/redis.js"

const schema = uniqueSchema("badinput")
const namespace = uniqueNamespace("badinput")
const repository = Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make()).pipe(
  Layer.provideMerge(Layer.mergeAll(
    TaskStore.layer({ schema }),
    LruCache.layer(TaskRepository.TaskL1, { capacity: 100, name: "badinput-l1" }),
    RedisCache.layer(TaskRepository.TaskL2, { namespace, schema: Task, version: (t) => t.version, name: "badinput-l2" })
  )),
  Layer.provideMerge(Layer.mergeAll(sqlLayer, RedisClient.layer({ url: redisUrl }))),
  Layer.merge(Layer.mergeAll(dropSchemaOnClose(schema).pipe(Layer.provide(sqlLayer)), cleanNamespaceOnClose(namespace)))
)

/** Any string: ASCII, full Unicode (lone surrogates included), control characters, long ones. */
const anyString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(" ", ":", "%", "\u0000", "\n", "é", "🔑", "*", "?", "[", "\\"), maxLength: 30 }),
  // Lone surrogates: UTF-8 cannot carry them, Postgres would store U+FFFD instead.
  fc.string({ unit: fc.constantFrom("a", "\ud800", "\udfff", "\ud83d\udd11"), maxLength: 6 }),
  fc.string({ minLength: 190, maxLength: 260 }),
  fc.constant("x".repeat(10_000))
)

layer(repository, { timeout: "60 seconds" })("bad input (real Postgres and Redis)", (it) => {
  it.effect.prop(
    "a random string as an id is a typed ParseError or a working id: saved, read back exactly, deleted",
    [anyString],
    ([raw]) =>
      Effect.gen(function*() {
        const repo = yield* TaskRepository.TaskRepository
        const decoded = Schema.decodeUnknownEither(TaskId)(raw)
        if (Either.isLeft(decoded)) {
          expect(decoded.left._tag).toBe("ParseError")
          return
        }
        const id = decoded.right
        expect((yield* Effect.flip(repo.get(id)))._tag).toBe("TaskNotFound")
        const saved = yield* repo.save(new TaskInput({ id, title: "random id", status: "todo" }))
        expect(saved.id).toBe(raw)
        expect(yield* repo.get(id)).toStrictEqual(saved)
        const l1 = yield* TaskRepository.TaskL1
        yield* l1.invalidate(id) // the next read goes to Redis
        expect(yield* repo.get(id)).toStrictEqual(saved)
        expect([...(yield* repo.getMany([id])).keys()]).toStrictEqual([raw])
        yield* repo.delete(id)
        expect((yield* Effect.flip(repo.get(id)))._tag).toBe("TaskNotFound")
      }),
    { fastCheck: { numRuns: 80 } }
  )

  it.effect.prop(
    "random bytes planted in Redis under a task's key are a miss: the task still comes from Postgres, intact",
    [fc.uint8Array({ maxLength: 400 })],
    ([bytes]) =>
      Effect.gen(function*() {
        const repo = yield* TaskRepository.TaskRepository
        const l1 = yield* TaskRepository.TaskL1
        const id = TaskId.make(`planted-${Math.random().toString(36).slice(2)}`)
        const saved = yield* repo.save(new TaskInput({ id, title: "intact", status: "done" }))
        yield* l1.invalidate(id)
        const raw = yield* rawRedis()
        yield* Effect.promise(() => raw.set(RedisCache.redisKey(namespace, id), Buffer.from(bytes)))
        const exit = yield* Effect.exit(repo.get(id))
        expect(exit).toStrictEqual(Exit.succeed(saved))
        yield* repo.delete(id)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect.prop(
    "a random JSON value as a request body is a typed ParseError or a valid TaskBody",
    [fc.jsonValue()],
    ([json]) =>
      Effect.sync(() => {
        const decoded = Schema.decodeUnknownEither(TaskBody, { errors: "all" })(json)
        if (Either.isLeft(decoded)) expect(decoded.left._tag).toBe("ParseError")
        else expect(["todo", "in_progress", "done"]).toContain(decoded.right.status)
      }),
    { fastCheck: { numRuns: 300 } }
  )
})
