import { describe, expect, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { Task, TaskId } from "../src/Task.js"
import { conformance } from "./support/conformance.js"
import { versionedConformance } from "./support/versionedConformance.js"
import { monitor, privateRedis, rawRedis, uniqueNamespace, withRedis } from "./support/redis.js"

/** A Redis tier in a fresh namespace, emptied when the test's scope closes. */
const freshTier = <V, I>(label: string, schema: Schema.Schema<V, I>, extra: { readonly timeToLive?: number } = {}) =>
  Effect.gen(function*() {
    const namespace = uniqueNamespace(label)
    const cache = yield* RedisCache.make<string, V, I>({ namespace, schema, ...extra })
    yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
    return { cache, namespace }
  })

conformance("RedisCache", (name) =>
  RedisCache.make<string, string, string>({ namespace: uniqueNamespace(name), schema: Schema.String, name }).pipe(
    Effect.tap((cache) => Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))),
    withRedis
  ))

conformance("RedisCache, versioned", (name) =>
  RedisCache.make<string, string, string>({ namespace: uniqueNamespace(name), schema: Schema.String, name, version: () => 1 }).pipe(
    Effect.tap((cache) => Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))),
    withRedis
  ))

versionedConformance("RedisCache, versioned", (name) =>
  RedisCache.make<string, { readonly version: number; readonly text: string }, { readonly version: number; readonly text: string }>({
    namespace: uniqueNamespace(name),
    schema: Schema.Struct({ version: Schema.Number, text: Schema.String }),
    name,
    version: (value) => value.version,
    tombstoneTimeToLive: "1 minute"
  }).pipe(
    Effect.tap((cache) => Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))),
    withRedis
  ))

const task = new Task({
  id: TaskId.make("t-1"),
  title: "write the tests",
  status: "in_progress",
  assignee: "ada",
  createdAt: DateTime.unsafeMake("2026-03-04T05:06:07.891Z"),
  updatedAt: DateTime.unsafeMake("2026-03-05T05:06:07.891Z"),
  version: 3
})

describe("RedisCache (real Redis)", () => {
  it.scoped("a Task round-trips exactly, DateTimes included, stored as the schema's JSON", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* freshTier("task", Task)
      yield* cache.set("t-1", task)
      const read = yield* cache.get("t-1")
      expect(read).toStrictEqual(task)
      expect(read).toBeInstanceOf(Task)
      const raw = yield* rawRedis()
      const stored = yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, "t-1")))
      expect(JSON.parse(stored!)).toStrictEqual(Schema.encodeSync(Task)(task))
    }).pipe(withRedis))

  it.scoped("sets PTTL from the tier's time-to-live or the write's own; no TTL means none", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* freshTier("ttl", Schema.String, { timeToLive: 60_000 })
      const raw = yield* rawRedis()
      yield* cache.set("default", "x")
      yield* cache.setMany([["own", "y"]], { timeToLive: "5 seconds" })
      const pttl = (k: string) => Effect.promise(() => raw.pttl(RedisCache.redisKey(namespace, k)))
      const byDefault = yield* pttl("default")
      expect(byDefault).toBeGreaterThan(55_000)
      expect(byDefault).toBeLessThanOrEqual(60_000)
      const own = yield* pttl("own")
      expect(own).toBeGreaterThan(0)
      expect(own).toBeLessThanOrEqual(5_000)

      const { cache: forever, namespace: ns2 } = yield* freshTier("nottl", Schema.String)
      yield* forever.set("k", "v")
      expect(yield* Effect.promise(() => raw.pttl(RedisCache.redisKey(ns2, "k")))).toBe(-1)
    }).pipe(withRedis))

  it.scoped("a corrupt value planted with a raw client is a miss, is deleted and is counted", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* freshTier("corrupt", Task)
      const raw = yield* rawRedis()
      const plant = (k: string, v: string) => Effect.promise(() => raw.set(RedisCache.redisKey(namespace, k), v))
      yield* plant("not-json", "{oops")
      yield* plant("wrong-shape", JSON.stringify({ id: "t-1", title: 42 }))
      yield* plant("binary", "\u0000\u00ff\ufffd")
      yield* cache.set("good", task)

      expect(yield* cache.getOption("not-json")).toStrictEqual(Option.none())
      expect((yield* Effect.flip(cache.get("wrong-shape")))._tag).toBe("CacheMiss")
      const many = yield* cache.getMany(["binary", "good", "absent"])
      expect([...many.keys()]).toStrictEqual(["good"])

      for (const k of ["not-json", "wrong-shape", "binary"]) {
        expect(yield* Effect.promise(() => raw.exists(RedisCache.redisKey(namespace, k)))).toBe(0)
      }
      expect(yield* Effect.promise(() => raw.exists(RedisCache.redisKey(namespace, "good")))).toBe(1)
      const stats = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect(stats.decodeFailures).toBe(3)
      expect(stats.hits).toBe(1)
      expect(stats.misses).toBe(4)
    }).pipe(withRedis))

  it.scoped("getMany is one MGET and setMany one pipeline, whatever the number of keys", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* freshTier("batch", Schema.Number)
      const watch = yield* monitor(RedisCache.escapeKeyPart(namespace))
      yield* cache.setMany(Array.from({ length: 200 }, (_, i) => [`k${i}`, i] as const))
      const found = yield* cache.getMany(Array.from({ length: 300 }, (_, i) => `k${i}`))
      expect(found.size).toBe(200)
      yield* watch.settle
      const names = watch.commands().map((c) => c[0])
      expect(names.filter((n) => n === "mget")).toHaveLength(1)
      expect(names.filter((n) => n === "set")).toHaveLength(200)
      expect(names.filter((n) => n !== "mget" && n !== "set")).toStrictEqual([])
    }).pipe(withRedis))

  it.scoped("namespaces and keys never collide, colons and percent signs included", () =>
    Effect.gen(function*() {
      const base = uniqueNamespace("collide")
      const a = yield* RedisCache.make<string, string, string>({ namespace: base, schema: Schema.String })
      const b = yield* RedisCache.make<string, string, string>({ namespace: `${base}:a`, schema: Schema.String })
      yield* Effect.addFinalizer(() => Effect.ignore(Effect.zip(a.invalidateAll, b.invalidateAll)))
      yield* a.set("a:b", "from a")
      yield* b.set("b", "from b")
      yield* a.set("%3A", "escaped")
      yield* a.set(":", "colon")
      expect(yield* a.getMany(["a:b", "%3A", ":"])).toStrictEqual(
        new Map([["a:b", "from a"], ["%3A", "escaped"], [":", "colon"]])
      )
      expect(yield* b.get("b")).toBe("from b")
      expect(yield* a.size).toBe(3)
      yield* a.invalidateAll
      expect(yield* b.get("b")).toBe("from b")
    }).pipe(withRedis))

  it.scoped("number keys work by default; other keys through encodeKey", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("keys")
      const byNumber = yield* RedisCache.make<number, string, string>({ namespace, schema: Schema.String })
      yield* Effect.addFinalizer(() => Effect.ignore(byNumber.invalidateAll))
      yield* byNumber.set(42, "answer")
      expect(yield* byNumber.get(42)).toBe("answer")
      const byPair = yield* RedisCache.make<readonly [string, number], string, string>({
        namespace: `${namespace}-pairs`,
        schema: Schema.String,
        encodeKey: ([s, n]) => `${s}/${n}`
      })
      yield* Effect.addFinalizer(() => Effect.ignore(byPair.invalidateAll))
      yield* byPair.set(["x", 1], "pair")
      expect(yield* byPair.get(["x", 1])).toBe("pair")
    }).pipe(withRedis))
})

describe("RedisClient and RedisCache when Redis is not there", () => {
  it.live("the client layer fails with RedisConnectionError within the connect timeout", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const exit = yield* Layer.build(RedisClient.layer({ url: "redis://127.0.0.1:1", connectTimeout: "1 second" })).pipe(
        Effect.scoped,
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        expect(exit.cause.error._tag).toBe("RedisConnectionError")
        expect(exit.cause.error.message).toContain("127.0.0.1:1")
      }
      expect(Date.now() - started).toBeLessThan(3_000)
    }))

  it.scopedLive("operations fail with CacheError at once while the server is down, and work again when it returns", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      const client = yield* RedisClient.make({ url: server.url, commandTimeout: "500 millis" })
      const cache = yield* RedisCache.make<string, string, string>({ namespace: "outage", schema: Schema.String }).pipe(
        Effect.provideService(RedisClient.RedisClient, client)
      )
      yield* cache.set("k", "v")
      yield* server.stop
      const started = Date.now()
      const errors = yield* Effect.all([
        Effect.flip(cache.get("k")),
        Effect.flip(cache.getMany(["k"])),
        Effect.flip(cache.set("k", "w")),
        Effect.flip(cache.invalidate("k"))
      ])
      expect(errors.map((e) => e._tag)).toStrictEqual(["CacheError", "CacheError", "CacheError", "CacheError"])
      expect(Date.now() - started).toBeLessThan(2_000)

      yield* server.start
      // ioredis reconnects in the background (backoff capped at 2 s); the server starts empty.
      let answer: Option.Option<string> | undefined
      for (let i = 0; i < 100 && answer === undefined; i++) {
        answer = yield* cache.getOption("k").pipe(Effect.orElseSucceed(() => undefined))
        if (answer === undefined) yield* Effect.sleep("50 millis")
      }
      expect(answer).toStrictEqual(Option.none())
      yield* cache.set("k", "back")
      expect(yield* cache.get("k")).toBe("back")
    }), { timeout: 20_000 })
})

describe("RedisCache, versioned (real Redis)", () => {
  const versioned = (label: string, extra: { readonly tombstoneTimeToLive?: Duration.DurationInput } = {}) =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace(label)
      const cache = yield* RedisCache.make<string, Task, typeof Task.Encoded>({
        namespace,
        schema: Task,
        version: (t) => t.version,
        ...extra
      })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      return { cache, namespace }
    })
  const at = (version: number, title = `v${version}`) => new Task({ ...task, title, version })

  it.scoped("a write never replaces a higher version; an equal or higher one replaces it", () =>
    Effect.gen(function*() {
      const { cache } = yield* versioned("versions")
      yield* cache.set("t", at(3))
      yield* cache.set("t", at(2)) // a late write-back of an older value: refused
      expect((yield* cache.get("t")).version).toBe(3)
      yield* cache.setMany([["t", at(1)], ["u", at(1)]])
      expect((yield* cache.get("t")).version).toBe(3)
      expect((yield* cache.get("u")).version).toBe(1)
      yield* cache.set("t", at(3, "same version, rewritten"))
      expect((yield* cache.get("t")).title).toBe("same version, rewritten")
      yield* cache.set("t", at(4))
      expect((yield* cache.get("t")).version).toBe(4)
    }).pipe(withRedis))

  it.scoped("invalidate leaves a tombstone: a miss that refuses every write until it expires", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* versioned("tombstone", { tombstoneTimeToLive: "300 millis" as const })
      const raw = yield* rawRedis()
      yield* cache.set("t", at(5))
      yield* cache.invalidate("t")
      expect(yield* cache.getOption("t")).toStrictEqual(Option.none())
      expect(yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, "t")))).toBe("-:")
      yield* cache.set("t", at(6)) // even a newer version: the key was deleted, a write-back must not revive it
      expect(yield* cache.getOption("t")).toStrictEqual(Option.none())
      const pttl = yield* Effect.promise(() => raw.pttl(RedisCache.redisKey(namespace, "t")))
      expect(pttl).toBeGreaterThan(0)
      expect(pttl).toBeLessThanOrEqual(300)
      // Not corrupt: a tombstone is a plain miss, not counted and not deleted.
      expect((yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })).decodeFailures).toBe(0)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 350)))
      yield* cache.set("t", at(1))
      expect((yield* cache.get("t")).version).toBe(1)
    }).pipe(withRedis))

  it.scoped("a zero time-to-live drops only an older value, and leaves a floor that still refuses older write-backs", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* versioned("dead-on-arrival", { tombstoneTimeToLive: "10 seconds" as const })
      const raw = yield* rawRedis()
      const key = RedisCache.redisKey(namespace, "t")
      // A tombstone survives it (a plain DEL used to remove it, and then accepted the write-back it was refusing).
      yield* cache.set("t", at(5))
      yield* cache.invalidate("t")
      yield* cache.set("t", at(6), { timeToLive: 0 })
      expect(yield* Effect.promise(() => raw.get(key))).toBe("-:")
      yield* cache.set("t", at(5))
      expect(yield* cache.getOption("t")).toStrictEqual(Option.none())
      // A newer value survives it.
      yield* Effect.promise(() => raw.del(key))
      yield* cache.set("t", at(9))
      yield* cache.set("t", at(8), { timeToLive: 0 })
      expect((yield* cache.get("t")).version).toBe(9)
      // An older value is dropped, and what is older than the dead write stays refused.
      yield* cache.set("t", at(10), { timeToLive: "-1 millis" as Duration.DurationInput })
      expect(yield* cache.getOption("t")).toStrictEqual(Option.none())
      expect(yield* Effect.promise(() => raw.get(key))).toBe("-10:")
      const pttl = yield* Effect.promise(() => raw.pttl(key))
      expect(pttl).toBeGreaterThan(0)
      expect(pttl).toBeLessThanOrEqual(10_000)
      yield* cache.set("t", at(9))
      expect(yield* cache.getOption("t")).toStrictEqual(Option.none())
      expect((yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })).decodeFailures).toBe(0) // a plain miss
      yield* cache.set("t", at(11))
      expect((yield* cache.get("t")).version).toBe(11)
    }).pipe(withRedis))

  it.scoped("getMany counts each distinct key once: a key asked twice is one hit or one miss", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* versioned("duplicates")
      yield* cache.set("a", at(1))
      const before = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      const found = yield* cache.getMany(["a", "a", "missing", "missing"])
      expect([...found.keys()]).toStrictEqual(["a"])
      const after = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect(after.hits - before.hits).toBe(1)
      expect(after.misses - before.misses).toBe(1)
    }).pipe(withRedis))

  it.effect("says it is versioned, and a tier without `version` says it is not", () =>
    Effect.gen(function*() {
      const { cache } = yield* versioned("says-so")
      expect(cache.versioned).toBe(true)
      const plain = yield* RedisCache.make<string, string, string>({ namespace: uniqueNamespace("plain"), schema: Schema.String })
      expect(plain.versioned).toBe(false)
    }).pipe(withRedis, Effect.scoped))

  it.scoped("stored values carry their version in front of the schema's JSON; a value without one is corrupt", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* versioned("layout")
      const raw = yield* rawRedis()
      yield* cache.set("t", at(7))
      const stored = yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, "t")))
      expect(stored!.startsWith("7:{")).toBe(true)
      expect(JSON.parse(stored!.slice(2))).toStrictEqual(Schema.encodeSync(Task)(at(7)))
      // A plain JSON value (the layout of an unversioned tier) is foreign here.
      yield* Effect.promise(() => raw.set(RedisCache.redisKey(namespace, "plain"), stored!.slice(2)))
      expect(yield* cache.getOption("plain")).toStrictEqual(Option.none())
      expect(yield* Effect.promise(() => raw.exists(RedisCache.redisKey(namespace, "plain")))).toBe(0)
    }).pipe(withRedis))

  it.scoped("a value over maxValueBytes is not stored, its key loses its old value, and the write fails typed", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("oversized")
      const cache = yield* RedisCache.make<string, string, string>({ namespace, schema: Schema.String, maxValueBytes: 64 })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      const raw = yield* rawRedis()
      yield* cache.set("k", "small")
      const error = yield* Effect.flip(cache.set("k", "x".repeat(100)))
      expect(error._tag).toBe("CacheError")
      expect(error.message).toContain("exceeds maxValueBytes (64)")
      expect(yield* cache.getOption("k")).toStrictEqual(Option.none()) // not the old "small": nothing stale
      // A multi-byte value counts its bytes, not its characters.
      expect((yield* Effect.flip(cache.set("k", "é".repeat(40))))._tag).toBe("CacheError")
      // An oversized value found in Redis is a miss, deleted.
      yield* Effect.promise(() => raw.set(RedisCache.redisKey(namespace, "big"), JSON.stringify("y".repeat(200))))
      expect(yield* cache.getOption("big")).toStrictEqual(Option.none())
      expect(yield* Effect.promise(() => raw.exists(RedisCache.redisKey(namespace, "big")))).toBe(0)
    }).pipe(withRedis))

  it.effect("rejects a bad maxValueBytes, tombstone lifetime or namespace with IllegalArgumentException", () =>
    Effect.gen(function*() {
      const bad = [
        { namespace: "x", schema: Schema.String, maxValueBytes: 0 },
        { namespace: "x", schema: Schema.String, tombstoneTimeToLive: 0 },
        { namespace: "", schema: Schema.String }
      ] as const
      for (const options of bad) {
        const error = yield* Effect.flip(RedisCache.make<string, string, string>(options))
        expect(error._tag).toBe("IllegalArgumentException")
      }
    }).pipe(Effect.scoped, withRedis, Effect.scoped))

  it.effect.prop(
    "random bytes stored under our keys are a miss (and deleted), never a defect",
    [fc.uint8Array({ maxLength: 300 }), fc.boolean()],
    ([bytes, versionedTier]) =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace("bytes")
        const cache = versionedTier
          ? yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task, version: (t) => t.version })
          : yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task })
        const raw = yield* rawRedis()
        const key = RedisCache.redisKey(namespace, "k")
        yield* Effect.addFinalizer(() => Effect.promise(() => raw.del(key)))
        yield* Effect.promise(() => raw.set(key, Buffer.from(bytes)))
        const exit = yield* Effect.exit(cache.get("k"))
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "CacheMiss").toBe(true)
        expect(yield* cache.getMany(["k", "other"])).toStrictEqual(new Map())
        const left = yield* Effect.promise(() => raw.get(key))
        // Deleted, unless the bytes happen to spell the tombstone of a versioned tier (a plain miss).
        expect(left === null || (versionedTier && left === "-:")).toBe(true)
      }).pipe(Effect.scoped, withRedis, Effect.scoped),
    { fastCheck: { numRuns: 60 } }
  )
})
