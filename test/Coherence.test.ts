/**
 * Two instances of the repository — separate L1s — over one Postgres schema and one Redis namespace: writes on
 * one reach the other through the invalidation bus, and no load writes back a value that a write replaced.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Cache from "../src/Cache.js"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { type Task, TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { cleanNamespaceOnClose, rawRedis, redisUrl, uniqueNamespace } from "./support/redis.js"

const id = (s: string) => TaskId.make(s)
const input = (s: string, title: string) => new TaskInput({ id: id(s), title, status: "todo" })

/** What an instance's L1 was told to drop, and when (performance.now()). */
type Drop = { readonly key: TaskId | "all"; readonly at: number }

/** One instance: its own L1 (recording its drops), the shared L2 and bus, and a store whose loads can be held. */
const instance = (schema: string, namespace: string) =>
  Effect.gen(function*() {
    const drops: Array<Drop> = []
    let gate: Deferred.Deferred<void> | undefined
    const loadsStarted: Array<ReadonlyArray<TaskId>> = []
    const settings: TaskRepository.Settings = {
      l1Capacity: 1000,
      l1TimeToLive: Duration.minutes(5),
      l2TimeToLive: Duration.minutes(10),
      l2Timeout: Duration.millis(500),
      l2BreakerFailures: 5,
      l2BreakerCooldown: Duration.seconds(5),
      l2TombstoneTimeToLive: Duration.seconds(30),
      maxValueBytes: 1_048_576,
      namespace,
      schema
    }
    const l1 = Layer.effect(
      TaskRepository.TaskL1,
      Effect.map(LruCache.make<TaskId, Task>({ capacity: settings.l1Capacity, name: `coherence-l1` }), (lru) =>
        ({
          ...lru,
          invalidate: (key) => Effect.tap(lru.invalidate(key), () => void drops.push({ key, at: performance.now() })),
          invalidateAll: Effect.tap(lru.invalidateAll, () => void drops.push({ key: "all", at: performance.now() }))
        }) satisfies Cache.Cache<TaskId, Task>)
    )
    const store = Layer.effect(
      TaskStore.TaskStore,
      Effect.map(TaskStore.make({ schema }), (real) => ({
        ...real,
        // The real query runs; a held load then waits before handing its (possibly old) rows back.
        getMany: (ids) =>
          real.getMany(ids).pipe(
            Effect.tap(() => {
              loadsStarted.push(ids)
              return gate === undefined ? Effect.void : Deferred.await(gate)
            })
          )
      }))
    )
    const layer = Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make({ l2Timeout: settings.l2Timeout })).pipe(
      Layer.provideMerge(Layer.mergeAll(l1, TaskRepository.l2Redis(settings), store)),
      Layer.provide(Layer.merge(sqlLayer, RedisClient.layer({ url: redisUrl })))
    )
    const context = yield* Layer.build(layer)
    return {
      get: <A, E>(f: (repo: TaskRepository.Service) => Effect.Effect<A, E>) =>
        Effect.flatMap(TaskRepository.TaskRepository, f).pipe(Effect.provide(context)),
      l1: (key: TaskId) => Effect.flatMap(TaskRepository.TaskL1, (c) => c.getOption(key)).pipe(Effect.provide(context)),
      bus: Effect.flatMap(TaskRepository.TaskInvalidations, (b) => b.stats).pipe(Effect.provide(context)),
      drops,
      loadsStarted,
      hold: Effect.map(Deferred.make<void>(), (d) => (gate = d)),
      release: Effect.suspend(() => {
        const held = gate
        gate = undefined
        return held === undefined ? Effect.void : Deferred.succeed(held, undefined)
      })
    }
  })

/** Two instances in a fresh schema and namespace, both closed (and the data removed) with the scope. */
const twoInstances = Effect.gen(function*() {
  const schema = uniqueSchema("coherence")
  const namespace = uniqueNamespace("coherence")
  yield* Layer.build(Layer.merge(dropSchemaOnClose(schema).pipe(Layer.provide(sqlLayer)), cleanNamespaceOnClose(namespace)))
  const a = yield* instance(schema, namespace)
  const b = yield* instance(schema, namespace)
  return { a, b, schema, namespace }
})

/** Waits (a bounded time, on the real clock) until `condition` holds. */
const waitFor = (condition: () => boolean | Effect.Effect<boolean>, millis = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    for (;;) {
      const result = condition()
      if (typeof result === "boolean" ? result : yield* result) return
      if (Date.now() > deadline) throw new Error(`not reached within ${millis} ms`)
      yield* Effect.sleep("5 millis")
    }
  })

describe("two instances over the same Redis and Postgres", () => {
  it.scopedLive("a save on A is read on B once the invalidation has arrived", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoInstances
      const first = yield* a.get((r) => r.save(input("shared", "first")))
      yield* waitFor(() => b.drops.some((d) => d.key === "shared"), 2_000) // the save's invalidation reached B
      expect((yield* b.get((r) => r.get(id("shared")))).version).toBe(first.version)
      expect(Option.isSome(yield* b.l1(id("shared")))).toBe(true) // B now serves it from its L1

      const second = yield* a.get((r) => r.save(input("shared", "second")))
      yield* waitFor(() => b.drops.filter((d) => d.key === "shared").length === 2, 2_000)
      const read = yield* b.get((r) => r.get(id("shared")))
      expect(read.version).toBe(second.version)
      expect(read.title).toBe("second")

      yield* a.get((r) => r.delete(id("shared")))
      yield* waitFor(() => b.drops.filter((d) => d.key === "shared").length === 3, 2_000)
      expect((yield* Effect.flip(b.get((r) => r.get(id("shared")))))._tag).toBe("TaskNotFound")
    }))

  it.scopedLive("a load on A that began before B's save writes back nothing older: not in Redis, not in A's L1", () =>
    Effect.gen(function*() {
      const { a, b, namespace } = yield* twoInstances
      yield* b.get((r) => r.save(input("raced", "old")))
      yield* waitFor(() => a.drops.some((d) => d.key === "raced"), 2_000) // that save's own invalidation, first
      const raw = yield* rawRedis()
      yield* Effect.promise(() => raw.del(RedisCache.redisKey(namespace, "raced"))) // cold for A: L1 and L2 empty

      yield* a.hold
      const reading = yield* Effect.fork(a.get((r) => r.get(id("raced"))))
      yield* waitFor(() => a.loadsStarted.length === 1) // A's load has read "old" and is held
      const dropsBefore = a.drops.length
      const saved = yield* b.get((r) => r.save(input("raced", "new")))
      yield* waitFor(() => a.drops.slice(dropsBefore).some((d) => d.key === "raced"), 2_000) // B's save reached A
      yield* a.release

      expect((yield* Fiber.join(reading)).title).toBe("old") // that read began before the save
      const stored = yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, "raced")))
      expect(stored?.startsWith(`${saved.version}:`)).toBe(true) // the write-back of "old" was refused
      expect(Option.map(yield* a.l1(id("raced")), (t) => t.title)).not.toStrictEqual(Option.some("old"))
      expect((yield* a.get((r) => r.get(id("raced")))).title).toBe("new")
    }))

  it.scopedLive("a load on A that began before B's delete cannot revive the task in Redis or A's L1", () =>
    Effect.gen(function*() {
      const { a, b, namespace } = yield* twoInstances
      yield* b.get((r) => r.save(input("doomed", "alive")))
      yield* waitFor(() => a.drops.some((d) => d.key === "doomed"), 2_000)
      const raw = yield* rawRedis()
      yield* Effect.promise(() => raw.del(RedisCache.redisKey(namespace, "doomed")))

      yield* a.hold
      const reading = yield* Effect.fork(a.get((r) => r.get(id("doomed"))))
      yield* waitFor(() => a.loadsStarted.length === 1)
      const dropsBefore = a.drops.length
      yield* b.get((r) => r.delete(id("doomed")))
      yield* waitFor(() => a.drops.slice(dropsBefore).some((d) => d.key === "doomed"), 2_000) // B's delete reached A
      yield* a.release

      expect((yield* Fiber.join(reading)).title).toBe("alive")
      expect(yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, "doomed")))).toBe("-:") // tombstone
      expect(yield* a.l1(id("doomed"))).toStrictEqual(Option.none())
      expect((yield* Effect.flip(a.get((r) => r.get(id("doomed")))))._tag).toBe("TaskNotFound")
      expect((yield* Effect.flip(b.get((r) => r.get(id("doomed")))))._tag).toBe("TaskNotFound")
    }))

  it.scopedLive("under concurrent reads and writes on both, no read is older than a write whose invalidation it follows", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoInstances
      const keys = Array.from({ length: 8 }, (_, i) => `hot-${i}`)
      type Write = { readonly by: "a" | "b"; readonly key: string; readonly version: number; readonly ackedAt: number }
      type Read = { readonly on: "a" | "b"; readonly key: string; readonly version: number; readonly startedAt: number }
      const writes: Array<Write> = []
      const reads: Array<Read> = []
      for (const key of keys) {
        const t = yield* a.get((r) => r.save(input(key, "seed")))
        writes.push({ by: "a", key, version: t.version, ackedAt: performance.now() })
      }
      const instances = { a, b }
      let seed = 17
      const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32
      const worker = (on: "a" | "b") =>
        Effect.gen(function*() {
          for (let i = 0; i < 150; i++) {
            const key = keys[Math.floor(random() * keys.length)]!
            if (random() < 0.25) {
              const t = yield* instances[on].get((r) => r.save(input(key, `by ${on} #${i}`)))
              writes.push({ by: on, key, version: t.version, ackedAt: performance.now() })
            } else {
              const startedAt = performance.now()
              const t = yield* instances[on].get((r) => r.get(id(key)))
              reads.push({ on, key, version: t.version, startedAt })
            }
          }
        })
      yield* Effect.all([worker("a"), worker("a"), worker("b"), worker("b")], { concurrency: "unbounded" })

      let checked = 0
      for (const read of reads) {
        const drops = instances[read.on].drops
        // Writes this read must see: its own instance's, acknowledged before it started; the other instance's,
        // acknowledged before an invalidation of that key reached this instance, itself before the read started.
        const mustSee = writes.filter((w) =>
          w.key === read.key && w.ackedAt <= read.startedAt &&
          (w.by === read.on ||
            drops.some((d) => (d.key === read.key || d.key === "all") && d.at >= w.ackedAt && d.at <= read.startedAt))
        )
        const newest = Math.max(0, ...mustSee.map((w) => w.version))
        expect(read.version, `${read.on} read ${read.key}`).toBeGreaterThanOrEqual(newest)
        if (mustSee.some((w) => w.by !== read.on)) checked++
      }
      expect(reads.length).toBeGreaterThan(300)
      expect(checked).toBeGreaterThan(50) // the rule was exercised across instances, not only locally
      expect((yield* a.bus).received + (yield* b.bus).received).toBeGreaterThan(0)
    }), { timeout: 60_000 })
})
