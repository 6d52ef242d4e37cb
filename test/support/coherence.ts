/**
 * The two-instance coherence suite, over any Redis: two instances — separate L1s, connections and buses — over one
 * Postgres schema and one Redis namespace: writes on one reach the other through the invalidation bus, no load
 * writes back a value that a write replaced, and concurrent writes leave nothing older anywhere. The same suite
 * runs for tasks (`TaskRepository`) and for a second entity with its own store (`Note` through `CachedStore`):
 * nothing of it is specific to tasks. `Coherence.test.ts` runs it on the shared Redis server,
 * `CoherenceCluster.test.ts` on a private Redis Cluster.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import { type Cache, CacheError } from "../../src/Cache.js"
import * as CachedStore from "../../src/CachedStore.js"
import * as InvalidationBus from "../../src/InvalidationBus.js"
import * as LruCache from "../../src/LruCache.js"
import * as RedisCache from "../../src/RedisCache.js"
import * as RedisClient from "../../src/RedisClient.js"
import { Task, TaskId, TaskInput } from "../../src/Task.js"
import * as TaskRepository from "../../src/TaskRepository.js"
import * as TaskStore from "../../src/TaskStore.js"
import { view } from "./entities.js"
import { classifyNoteWrite, decodeNoteId, Note, type NoteInput, noteStore } from "./notes.js"
import { tcpProxy } from "./outage.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./postgres.js"
import { uniqueNamespace } from "./redis.js"
import { waitFor } from "./wait.js"

/** What the suite reads and deletes behind the library's back: a raw connection (single node or cluster). */
export interface RawRedis {
  get(key: string): Promise<string | null>
  del(key: string): Promise<number>
  hget(key: string, field: string): Promise<string | null>
  /** Every key matching the glob `pattern` (a full `SCAN`), on every master of a cluster. */
  keysMatching(pattern: string): Promise<ReadonlyArray<string>>
}

/** Every key of one node matching the glob `pattern`: a full `SCAN`. */
export const scanNode = async (node: Redis, pattern: string): Promise<ReadonlyArray<string>> => {
  const found: Array<string> = []
  let cursor = "0"
  do {
    const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    found.push(...keys)
    cursor = next
  } while (cursor !== "0")
  return found
}

/** The Redis the two instances share. */
export interface Backend {
  /** How the suite names it: `one Redis`, `one Redis Cluster`… */
  readonly name: string
  /** The settings of each instance's `RedisClient` (read when a test starts: a cluster's seeds come late). */
  readonly connection: () => RedisClient.Options
  /** A raw connection, outside the library, for the test's scope. */
  readonly raw: Effect.Effect<RawRedis, never, Scope.Scope>
  /** The Redis key that holds `key` of `namespace` now, as the Redis tier lays it out on this backend. */
  readonly storedKey: (raw: RawRedis, namespace: string, key: string) => Effect.Effect<string>
  /** Removes every key of `namespace` when the layer closes. */
  readonly cleanNamespaceOnClose: (namespace: string) => Layer.Layer<never>
  /**
   * The single server that instance A may reach through a TCP proxy, which the stall case freezes. Without it
   * (a cluster, whose nodes announce their own addresses) the stall case is not part of the suite.
   */
  readonly proxyTarget?: { readonly host: string; readonly port: number }
}

/** What the tests see of an entity. */
export interface Seen {
  readonly version: number
  readonly title: string
}

/** What an instance's L1 was told to drop, and when (performance.now()). */
export type Drop = { readonly key: string | "all"; readonly at: number }

/** One instance, whatever the entity. */
export interface Instance {
  save(id: string, title: string): Effect.Effect<Seen, unknown>
  /** `None` when the entity does not exist (its own not-found error). */
  get(id: string): Effect.Effect<Option.Option<Seen>, unknown>
  delete(id: string): Effect.Effect<void, unknown>
  l1(id: string): Effect.Effect<Option.Option<Seen>>
  readonly bus: Effect.Effect<InvalidationBus.Stats>
  readonly breakers: Effect.Effect<ReadonlyArray<string>>
  readonly drops: Array<Drop>
  readonly loadsStarted: Array<ReadonlyArray<string>>
  /** Store writes that have returned. */
  readonly writesDone: () => number
  /** Holds the loads: each runs its query, then waits before handing its (possibly old) rows back. */
  readonly hold: Effect.Effect<void>
  readonly release: Effect.Effect<void>
  /** This instance's connection to Redis: its writes can be held on their way there. */
  readonly l2: {
    readonly holdWrites: Effect.Effect<unknown>
    readonly holdNextWrite: Effect.Effect<Deferred.Deferred<void>>
    readonly releaseWrites: Effect.Effect<unknown>
  }
}

interface Where {
  readonly schema: string
  readonly namespace: string
  /** Where this instance's Redis connections go. */
  readonly connection: RedisClient.Options
}

/** Each entity's way to build an instance. */
export interface Kit {
  readonly entity: string
  readonly instance: (where: Where) => Effect.Effect<Instance, unknown, Scope.Scope>
}

/** An L1 that records its drops, a gate on loads, a view of the real Redis tier, a bus of its own. */
const instanceParts = <K extends string, V extends { readonly version: number }>(
  where: Where,
  l2Schema: Schema.Schema<V, any>,
  decodeKey: (raw: string) => Option.Option<K>
) =>
  Effect.gen(function*() {
    const drops: Array<Drop> = []
    const loadsStarted: Array<ReadonlyArray<string>> = []
    let gate: Deferred.Deferred<void> | undefined
    const lru = yield* LruCache.make<K, V>({ capacity: 1000, timeToLive: "5 minutes", name: "coherence-l1" })
    const l1: Cache<K, V> = {
      ...lru,
      invalidate: (key) => Effect.tap(lru.invalidate(key), () => void drops.push({ key, at: performance.now() })),
      invalidateAll: Effect.tap(lru.invalidateAll, () => void drops.push({ key: "all", at: performance.now() }))
    }
    const client = yield* RedisClient.make({ ...where.connection, commandTimeout: "300 millis", heartbeatInterval: "300 millis" })
    const withClient = Effect.provideService(RedisClient.RedisClient, client)
    const redis = yield* RedisCache.make<K, V, unknown>({
      namespace: where.namespace,
      schema: l2Schema,
      timeToLive: "10 minutes",
      version: (value) => value.version,
      name: "coherence-l2",
      encodeKey: (key: K) => key
    }).pipe(withClient)
    const l2 = view(redis, Effect.void, () => new CacheError({ cache: "coherence-l2", operation: "view", cause: "down" }))
    const bus = yield* InvalidationBus.make<K>({ namespace: where.namespace, decodeKey, publishTimeout: "300 millis" }).pipe(withClient)
    let writesDone = 0
    /** Wraps a store write so that the tests know it has returned. */
    const counted = <A, E>(write: Effect.Effect<A, E>) => Effect.tap(write, () => void writesDone++)
    /** Wraps a store read so that it can be held after its query. */
    const holdable = <A, E>(ids: ReadonlyArray<string>, read: Effect.Effect<A, E>) =>
      Effect.tap(read, () => {
        loadsStarted.push(ids)
        return gate === undefined ? Effect.void : Deferred.await(gate)
      })
    return {
      tiers: { l1, l2: l2.tier, bus },
      holdable,
      counted,
      shared: {
        writesDone: () => writesDone,
        l2,
        drops,
        loadsStarted,
        hold: Effect.map(Deferred.make<void>(), (d) => void (gate = d)),
        release: Effect.suspend(() => {
          const held = gate
          gate = undefined
          return held === undefined ? Effect.void : Deferred.succeed(held, undefined)
        })
      }
    }
  })


const seen = (value: Seen): Seen => ({ version: value.version, title: value.title })

/** Tasks through `TaskRepository`. */
export const tasks: Kit = {
  entity: "tasks (TaskRepository)",
  instance: (where) =>
    Effect.gen(function*() {
      const parts = yield* instanceParts(where, Task, Schema.decodeUnknownOption(TaskId))
      const real = yield* TaskStore.make({ schema: where.schema }).pipe(Effect.provide(yield* Layer.build(sqlLayer)))
      const store: TaskStore.Service = {
        ...real,
        getMany: (ids) => parts.holdable(ids, real.getMany(ids)),
        save: (input) => parts.counted(real.save(input))
      }
      const repo = yield* TaskRepository.make({ l2Timeout: "500 millis", l2BreakerFailures: 3, l2BreakerCooldown: "5 seconds" }).pipe(
        Effect.provideService(TaskStore.TaskStore, store),
        Effect.provideService(TaskRepository.TaskL1, parts.tiers.l1),
        Effect.provideService(TaskRepository.TaskL2, parts.tiers.l2),
        Effect.provideService(TaskRepository.TaskInvalidations, parts.tiers.bus)
      )
      const id = (s: string) => TaskId.make(s)
      return {
        save: (s, title) => Effect.map(repo.save(new TaskInput({ id: id(s), title, status: "todo" })), seen),
        get: (s) => repo.get(id(s)).pipe(Effect.map((t) => Option.some(seen(t))), Effect.catchTag("TaskNotFound", () => Effect.succeedNone)),
        delete: (s) => repo.delete(id(s)),
        l1: (s) => Effect.map(parts.tiers.l1.getOption(id(s)), Option.map(seen)),
        bus: parts.tiers.bus.stats,
        breakers: Effect.map(repo.l2Breaker, (state) => ["closed", state]),
        ...parts.shared
      } satisfies Instance
    })
}

/** Notes through `CachedStore`, over a store of their own. */
export const notes: Kit = {
  entity: "notes (CachedStore, a store of their own)",
  instance: (where) =>
    Effect.gen(function*() {
      const parts = yield* instanceParts(where, Note, decodeNoteId)
      const real = yield* noteStore(where.schema).pipe(Effect.provide(yield* Layer.build(sqlLayer)))
      const cached = yield* CachedStore.make({
        name: "notes",
        store: { ...real, getMany: (ids) => parts.holdable(ids, real.getMany(ids)), save: (input) => parts.counted(real.save(input)) },
        keyOf: (input: NoteInput) => input.id,
        tiers: [parts.tiers.l1, { cache: parts.tiers.l2, timeout: "500 millis", breaker: { failures: 3, cooldown: "5 seconds" } }],
        invalidations: parts.tiers.bus,
        classify: classifyNoteWrite
      })
      const noteSeen = (note: Note): Seen => ({ version: note.version, title: note.text })
      return {
        save: (id, title) => Effect.map(cached.save({ id, text: title }), noteSeen),
        get: (id) => cached.get(id).pipe(Effect.map((n) => Option.some(noteSeen(n))), Effect.catchTag("CacheMiss", () => Effect.succeedNone)),
        delete: (id) => cached.delete(id),
        l1: (id) => Effect.map(parts.tiers.l1.getOption(id), Option.map(noteSeen)),
        bus: parts.tiers.bus.stats,
        breakers: cached.breakers,
        ...parts.shared
      } satisfies Instance
    })
}

const version = (read: Option.Option<Seen>) => Option.map(read, (s) => s.version)

/**
 * Two instances of `kit` on `backend` in a fresh schema and namespace, both closed (and the data removed) with
 * the scope; `connectionOfA` sends A's Redis connections elsewhere (through a proxy).
 */
export const twoInstances = (kit: Kit, backend: Backend, connectionOfA?: RedisClient.Options) =>
  Effect.gen(function*() {
    const schema = uniqueSchema("coherence")
    const namespace = uniqueNamespace("coherence")
    yield* Layer.build(Layer.merge(dropSchemaOnClose(schema).pipe(Layer.provide(sqlLayer)), backend.cleanNamespaceOnClose(namespace)))
    const a = yield* kit.instance({ schema, namespace, connection: connectionOfA ?? backend.connection() })
    const b = yield* kit.instance({ schema, namespace, connection: backend.connection() })
    return { a, b, namespace }
  })

/** The suite, for tasks and for notes, on `backend`. */
export const coherenceSuites = (backend: Backend): void => {
  describe.each([tasks, notes])(`two instances over ${backend.name} and one Postgres: $entity`, (kit) => {
    it.scopedLive("a save on A is read on B once the invalidation has arrived", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoInstances(kit, backend)
        const first = yield* a.save("shared", "first")
        yield* waitFor(() => b.drops.some((d) => d.key === "shared"), 2_000) // the save's invalidation reached B
        expect(version(yield* b.get("shared"))).toStrictEqual(Option.some(first.version))
        expect(Option.isSome(yield* b.l1("shared"))).toBe(true) // B now serves it from its L1

        const second = yield* a.save("shared", "second")
        yield* waitFor(() => b.drops.filter((d) => d.key === "shared").length === 2, 2_000)
        expect(yield* b.get("shared")).toStrictEqual(Option.some({ version: second.version, title: "second" }))

        yield* a.delete("shared")
        yield* waitFor(() => b.drops.filter((d) => d.key === "shared").length === 3, 2_000)
        expect(yield* b.get("shared")).toStrictEqual(Option.none())
      }))

    it.scopedLive("a load on A that began before B's save writes back nothing older: not in Redis, not in A's L1", () =>
      Effect.gen(function*() {
        const { a, b, namespace } = yield* twoInstances(kit, backend)
        yield* b.save("raced", "old")
        yield* waitFor(() => a.drops.some((d) => d.key === "raced"), 2_000) // that save's own invalidation, first
        const raw = yield* backend.raw
        const stored = yield* backend.storedKey(raw, namespace, "raced")
        yield* Effect.promise(() => raw.del(stored)) // cold for A: L1 and L2 empty

        yield* a.hold
        const reading = yield* Effect.fork(a.get("raced"))
        yield* waitFor(() => a.loadsStarted.length === 1) // A's load has read "old" and is held
        const dropsBefore = a.drops.length
        const saved = yield* b.save("raced", "new")
        yield* waitFor(() => a.drops.slice(dropsBefore).some((d) => d.key === "raced"), 2_000) // B's save reached A
        yield* a.release

        expect(Option.map(yield* Fiber.join(reading), (s) => s.title)).toStrictEqual(Option.some("old")) // began before the save
        const held = yield* Effect.promise(() => raw.get(stored))
        expect(held?.startsWith(`${saved.version}:`)).toBe(true) // the write-back of "old" was refused
        expect(Option.map(yield* a.l1("raced"), (s) => s.title)).not.toStrictEqual(Option.some("old"))
        expect(Option.map(yield* a.get("raced"), (s) => s.title)).toStrictEqual(Option.some("new"))
      }))

    it.scopedLive("a load on A that began before B's delete cannot revive the entity in Redis or A's L1", () =>
      Effect.gen(function*() {
        const { a, b, namespace } = yield* twoInstances(kit, backend)
        yield* b.save("doomed", "alive")
        yield* waitFor(() => a.drops.some((d) => d.key === "doomed"), 2_000)
        const raw = yield* backend.raw
        const stored = yield* backend.storedKey(raw, namespace, "doomed")
        yield* Effect.promise(() => raw.del(stored))

        yield* a.hold
        const reading = yield* Effect.fork(a.get("doomed"))
        yield* waitFor(() => a.loadsStarted.length === 1)
        const dropsBefore = a.drops.length
        yield* b.delete("doomed")
        yield* waitFor(() => a.drops.slice(dropsBefore).some((d) => d.key === "doomed"), 2_000) // B's delete reached A
        yield* a.release

        expect(Option.map(yield* Fiber.join(reading), (s) => s.title)).toStrictEqual(Option.some("alive"))
        expect(yield* Effect.promise(() => raw.get(stored))).toBe("-:") // tombstone
        expect(yield* a.l1("doomed")).toStrictEqual(Option.none())
        expect(yield* a.get("doomed")).toStrictEqual(Option.none())
        expect(yield* b.get("doomed")).toStrictEqual(Option.none())
      }))

    it.scopedLive("B's invalidation, received while A's own save is writing Redis, overtakes A's L1 update", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoInstances(kit, backend)
        yield* a.save("crossed", "seed")
        yield* waitFor(() => b.drops.some((d) => d.key === "crossed"), 2_000)
        yield* a.l2.holdWrites // A's Redis write will be slow
        const writes = a.writesDone()
        const saving = yield* Effect.fork(a.save("crossed", "by A")) // the store has it; Redis not yet
        yield* waitFor(() => a.writesDone() > writes) // A is past its store write
        const dropsBefore = a.drops.length
        const bySaved = yield* b.save("crossed", "by B") // newer: store, Redis, then the bus
        yield* waitFor(() => a.drops.slice(dropsBefore).some((d) => d.key === "crossed"), 2_000) // B's message reached A
        yield* a.l2.releaseWrites
        const aSaved = yield* Fiber.join(saving)
        expect(aSaved.version).toBeLessThan(bySaved.version)
        expect(version(yield* a.l1("crossed"))).not.toStrictEqual(Option.some(aSaved.version))
        expect(version(yield* a.get("crossed"))).toStrictEqual(Option.some(bySaved.version))
      }))

    it.scopedLive("two concurrent saves on A whose Redis writes end out of order leave nothing older in A's L1", () =>
      Effect.gen(function*() {
        const { a } = yield* twoInstances(kit, backend)
        yield* a.save("ordered", "seed")
        const slow = yield* a.l2.holdNextWrite // the first save's Redis write waits; the second one's goes through
        const writes = a.writesDone()
        const first = yield* Effect.fork(a.save("ordered", "first"))
        yield* waitFor(() => a.writesDone() > writes) // past its store write
        const second = yield* a.save("ordered", "second") // newer, and done first
        yield* Deferred.succeed(slow, undefined)
        const firstSaved = yield* Fiber.join(first)
        expect(firstSaved.version).toBeLessThan(second.version)
        expect(version(yield* a.l1("ordered"))).not.toStrictEqual(Option.some(firstSaved.version))
        expect(version(yield* a.get("ordered"))).toStrictEqual(Option.some(second.version))
      }))

    // Only where A can be cut off alone: a cluster client learns every node's address from the nodes, so a proxy
    // in front of a seed cannot stall A without B (the cluster's own failure is test/ClusterFailover.test.ts's).
    if (backend.proxyTarget !== undefined) it.scopedLive(
      "A's Redis stalls and its breaker opens: a save made meanwhile is not read older from Redis on B",
      () =>
        Effect.gen(function*() {
          const proxy = yield* tcpProxy(backend.proxyTarget!)
          const { a, b } = yield* twoInstances(kit, backend, { ...backend.connection(), url: `redis://127.0.0.1:${proxy.port}` })
          yield* a.save("stalled", "one")
          yield* waitFor(() => b.drops.some((d) => d.key === "stalled"), 2_000)
          expect(Option.map(yield* b.get("stalled"), (s) => s.title)).toStrictEqual(Option.some("one")) // in B's L1

          yield* proxy.freeze // A's Redis answers nothing
          for (let i = 0; i < 3; i++) yield* a.get(`other-${i}`) // three L2 timeouts open A's breaker
          expect((yield* a.breakers)[1]).toBe("open")
          yield* proxy.thaw // Redis answers again, but A's breaker stays open for its cooldown
          yield* waitFor(() => Effect.map(a.bus, (stats) => stats.pending === 0), 5_000)
          const dropsBefore = b.drops.length
          const two = yield* a.save("stalled", "two") // L2 skipped (breaker open), the bus works
          yield* waitFor(() => b.drops.slice(dropsBefore).some((d) => d.key === "stalled"), 3_000)
          expect(Option.map(yield* b.get("stalled"), (s) => s.version)).toStrictEqual(Option.some(two.version))
        }),
      30_000
    )

    it.scopedLive("under concurrent reads and writes on both, no read is older than a write whose invalidation it follows", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoInstances(kit, backend)
        const keys = Array.from({ length: 8 }, (_, i) => `hot-${i}`)
        type Write = { readonly by: "a" | "b"; readonly key: string; readonly version: number; readonly ackedAt: number }
        type Read = { readonly on: "a" | "b"; readonly key: string; readonly version: number; readonly startedAt: number }
        const writes: Array<Write> = []
        const reads: Array<Read> = []
        for (const key of keys) {
          const t = yield* a.save(key, "seed")
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
                const t = yield* instances[on].save(key, `by ${on} #${i}`)
                writes.push({ by: on, key, version: t.version, ackedAt: performance.now() })
              } else {
                const startedAt = performance.now()
                const t = yield* instances[on].get(key)
                if (Option.isSome(t)) reads.push({ on, key, version: t.value.version, startedAt })
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
}
