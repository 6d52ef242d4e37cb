/**
 * The decoder `RedisCache` compiles from its schema (`internal/redisLayout.ts`): for every input it must give
 * Schema's own answer, the same value when Schema decodes it and `invalid` when Schema refuses it, or not be
 * compiled at all. Checked against `ParseResult.decodeUnknownEither` on valid data, on data corrupted field by
 * field, and on arbitrary JSON; and through a real Redis, where a value that does not decode is a miss.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Cause from "effect/Cause"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { compile, invalid, valueDecoder } from "../src/internal/redisLayout.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { Task, TaskId } from "../src/Task.js"
import { monitor, rawRedis, uniqueNamespace, withRedis } from "./support/redis.js"

/** Asserts that the compiled decoder of `schema` answers `data` as Schema does. */
const agrees = <A, I>(schema: Schema.Schema<A, I>, data: unknown) => {
  const compiled = compile(schema.ast)
  expect(compiled).toBeDefined()
  const fast = compiled!(data)
  const slow = ParseResult.decodeUnknownEither(schema)(data)
  if (Either.isLeft(slow)) {
    expect(fast).toBe(invalid)
  } else {
    expect(fast).not.toBe(invalid)
    // Same class, same fields (NaN included, which `Equal.equals` would call unequal).
    expect(fast).toStrictEqual(slow.right)
  }
  // The decoder the tier uses gives the same answer, whatever path it takes.
  const used = valueDecoder(schema)(data)
  if (Either.isLeft(slow)) expect(used).toBe(invalid)
  else expect(used).toStrictEqual(slow.right)
  return fast
}

const task = new Task({
  id: TaskId.make("t-1"),
  title: "write the tests",
  status: "in_progress",
  assignee: "ada",
  createdAt: DateTime.unsafeMake("2026-03-04T05:06:07.891Z"),
  updatedAt: DateTime.unsafeMake("2026-03-05T05:06:07.891Z"),
  version: 3
})
const encoded = Schema.encodeSync(Task)(task) as unknown as Record<string, unknown>
/** `value` as it comes back from JSON (`undefined`, which JSON cannot hold, as `null`). */
const json = (value: unknown): unknown => {
  const text = JSON.stringify(value)
  return text === undefined ? null : JSON.parse(text)
}

/** Values a stored field may hold instead of the right one: each breaks some refinement or type of `Task`. */
const tricky: ReadonlyArray<unknown> = [
  "",
  " ",
  " padded ",
  "a\u0000b",
  "\u007f",
  "\ud800",
  "x\udc00y",
  "\ud83d\ude00",
  "x".repeat(101),
  "x".repeat(201),
  "x".repeat(501),
  "todo",
  "TODO",
  "not a date",
  "2026-02-30T00:00:00.000Z",
  "2026-03-04",
  "2026-03-04T05:06:07",
  "2026-03-04T05:06:07+02:00",
  "+275760-09-13T00:00:00.000Z",
  0,
  -1,
  1.5,
  3,
  2 ** 53,
  1e308,
  true,
  null,
  [],
  {},
  ["t-1"]
]

describe("the compiled decoder of RedisCache", () => {
  it("compiles the Task schema and decodes a stored Task to an equal Task", () => {
    const decoded = agrees(Task, json(encoded))
    expect(decoded).toBeInstanceOf(Task)
    expect(decoded).toStrictEqual(task)
  })

  it("refuses every field that breaks a refinement or a type, as Schema does", () => {
    for (const field of [...Object.keys(encoded), "extra"]) {
      for (const value of tricky) agrees(Task, json({ ...encoded, [field]: value }))
      const { [field]: _, ...without } = encoded
      agrees(Task, json(without))
    }
    for (const data of [null, [], "t-1", 42, true, {}, [encoded]]) expect(agrees(Task, data)).toBe(invalid)
  })

  it.prop("valid Tasks decode to what Schema decodes", [Arbitrary.make(Task)], ([generated]) => {
    expect(agrees(Task, json(Schema.encodeSync(Task)(generated)))).not.toBe(invalid)
  })

  it.prop(
    "Tasks corrupted field by field get Schema's answer",
    [
      Arbitrary.make(Task),
      fc.constantFrom(...Object.keys(encoded), "extra"),
      fc.oneof(fc.constantFrom(...tricky), fc.jsonValue(), fc.string(), fc.integer(), fc.double({ noNaN: true }), fc.constant(undefined))
    ],
    ([generated, field, value]) => {
      agrees(Task, json({ ...Schema.encodeSync(Task)(generated), [field]: value }))
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop("arbitrary JSON gets Schema's answer", [fc.jsonValue()], ([data]) => {
    agrees(Task, data)
  })

  describe("other schemas", () => {
    const Point = Schema.Struct({
      x: Schema.Number,
      label: Schema.optional(Schema.String),
      tag: Schema.NullOr(Schema.Literal("a", "b")),
      flag: Schema.optionalWith(Schema.Boolean, { exact: true })
    })
    class Holder extends Schema.Class<Holder>("Holder")({ at: Schema.Date, n: Schema.NumberFromString, any: Schema.Unknown }) {}
    const supported = [
      ["Schema.String", Schema.String],
      ["Schema.Unknown", Schema.Unknown],
      ["a struct of optional, nullable and literal fields", Point],
      ["a class of transformations", Holder],
      ["a branded, refined number", Schema.Int.pipe(Schema.between(1, 10), Schema.brand("Small"))],
      ["a composition", Schema.compose(Schema.NumberFromString, Schema.Int)]
    ] as const
    for (const [label, schema] of supported) {
      it.prop(`${label}: compiled, and Schema's answer on arbitrary and valid data`, [
        fc.oneof(fc.jsonValue(), Arbitrary.make(schema as Schema.Schema<unknown, unknown>).map((a) => json(Schema.encodeSync(schema as Schema.Schema<unknown, unknown>)(a))))
      ], ([data]) => {
        agrees(schema as Schema.Schema<unknown, unknown>, data)
      })
    }

    it("a missing required key is decoded as undefined, as Schema does (so it fails unless undefined is allowed)", () => {
      const Loose = Schema.Struct({ a: Schema.UndefinedOr(Schema.String), b: Schema.String })
      expect(agrees(Loose, { b: "x" })).toStrictEqual({ a: undefined, b: "x" })
      expect(agrees(Loose, { a: "y" })).toBe(invalid)
    })

    it("leaves to Schema what it does not reproduce: unions of structs, arrays, records, defaults, suspensions", () => {
      interface Tree {
        readonly children: ReadonlyArray<Tree>
      }
      const Tree: Schema.Schema<Tree> = Schema.Struct({
        children: Schema.Array(Schema.suspend((): Schema.Schema<Tree> => Tree))
      })
      const others = [
        Schema.Union(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.Number })),
        Schema.Array(Schema.String),
        Schema.Record({ key: Schema.String, value: Schema.Number }),
        Schema.Struct({ a: Schema.optionalWith(Schema.Number, { default: () => 1 }) }),
        Schema.Struct({ a: Schema.Number }, Schema.Record({ key: Schema.String, value: Schema.Number })),
        Schema.Struct({ a: Schema.Number }).annotations({ parseOptions: { onExcessProperty: "preserve" } }),
        Tree
      ] as ReadonlyArray<Schema.Schema<unknown, unknown>>
      for (const schema of others) {
        expect(compile(schema.ast)).toBeUndefined()
        // …and the tier still decodes with them, by Schema.
        const decode = valueDecoder(schema)
        for (const data of [{ a: "x" }, { b: 1 }, ["x"], { a: 1, b: 2 }, { children: [{ children: [] }] }, null]) {
          const slow = ParseResult.decodeUnknownEither(schema)(data)
          const used = decode(data)
          if (Either.isLeft(slow)) expect(used).toBe(invalid)
          else expect(used).toStrictEqual(slow.right)
        }
      }
    })

    it("a transformation that answers with an Effect is settled by Schema: run when synchronous, refused when not", () => {
      const Upper = Schema.transformOrFail(Schema.String, Schema.String, {
        strict: true,
        decode: (s) => Effect.succeed(s.toUpperCase()),
        encode: (s) => Effect.succeed(s.toLowerCase())
      })
      expect(compile(Upper.ast)).toBeDefined()
      expect(valueDecoder(Upper)("abc")).toBe("ABC")
      expect(valueDecoder(Upper)(1)).toBe(invalid)
      const Slow = Schema.transformOrFail(Schema.String, Schema.String, {
        strict: true,
        decode: (s) => Effect.as(Effect.sleep("1 millis"), s),
        encode: ParseResult.succeed
      })
      expect(valueDecoder(Slow)("abc")).toBe(invalid)
    })
  })
})

describe("RedisCache reads through the compiled decoder (real Redis)", () => {
  it.scoped("a stored Task that breaks a refinement is a miss, deleted and counted, by get, getOption and getMany", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("refined")
      const cache = yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      const raw = yield* rawRedis()
      const broken = [
        { ...encoded, id: "" },
        { ...encoded, id: "a\u0001b" },
        { ...encoded, title: " padded " },
        { ...encoded, title: "\ud800" },
        { ...encoded, status: "blocked" },
        { ...encoded, assignee: "" },
        { ...encoded, createdAt: "not a date" },
        { ...encoded, version: 0 },
        { ...encoded, version: 2.5 }
      ]
      const keys = broken.map((_, i) => `k${i}`)
      for (let i = 0; i < broken.length; i++) {
        yield* Effect.promise(() => raw.set(RedisCache.redisKey(namespace, keys[i]!), JSON.stringify(broken[i])))
      }
      yield* cache.set("good", task)
      const [first, second, ...rest] = keys
      expect((yield* Effect.flip(cache.get(first!)))._tag).toBe("CacheMiss")
      expect(yield* cache.getOption(second!)).toStrictEqual(Option.none())
      const found = yield* cache.getMany([...rest, "good"])
      expect([...found.keys()]).toStrictEqual(["good"])
      expect(found.get("good")).toStrictEqual(task)
      for (const k of keys) expect(yield* Effect.promise(() => raw.exists(RedisCache.redisKey(namespace, k)))).toBe(0)
      const stats = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect(stats.decodeFailures).toBe(broken.length)
      expect(stats.misses).toBe(broken.length)
      expect(stats.hits).toBe(1)
    }).pipe(withRedis))

  it.scoped("getMany of one key is one GET; of several, one MGET; a key asked twice is read once", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("one-get")
      const cache = yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      yield* cache.setMany([["a", task], ["b", task]])
      const watch = yield* monitor(RedisCache.escapeKeyPart(namespace))
      expect([...(yield* cache.getMany(["a"])).keys()]).toStrictEqual(["a"])
      expect([...(yield* cache.getMany(["a", "a"])).keys()]).toStrictEqual(["a"])
      expect(yield* cache.getMany(["missing"])).toStrictEqual(new Map())
      expect([...(yield* cache.getMany(["b", "missing", "a", "b"])).keys()]).toStrictEqual(["b", "a"])
      expect(yield* cache.getMany([])).toStrictEqual(new Map())
      yield* watch.settle
      expect(watch.commands().map((c) => c.length === 2 ? c[0] : `${c[0]}/${c.length - 1}`)).toStrictEqual([
        "get",
        "get",
        "get",
        "mget/3"
      ])
    }).pipe(withRedis))

  it.scoped("a key that holds another type (a list) is a miss for every read, as MGET answers, never a CacheError", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("wrong-type")
      const cache = yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      const raw = yield* rawRedis()
      yield* Effect.promise(() => raw.rpush(RedisCache.redisKey(namespace, "list"), "x"))
      yield* cache.set("good", task)
      expect((yield* Effect.flip(cache.get("list")))._tag).toBe("CacheMiss")
      expect(yield* cache.getOption("list")).toStrictEqual(Option.none())
      expect(yield* cache.getMany(["list"])).toStrictEqual(new Map())
      expect([...(yield* cache.getMany(["list", "good"])).keys()]).toStrictEqual(["good"])
      const stats = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect({ hits: stats.hits, misses: stats.misses, errors: stats.errors }).toStrictEqual({ hits: 1, misses: 4, errors: 0 })
      // A write replaces it.
      yield* cache.set("list", task)
      expect(yield* cache.get("list")).toStrictEqual(task)
    }).pipe(withRedis))

  it.scopedLive("a read abandoned before its reply (a timeout) records no hit or miss when the reply comes", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("abandoned")
      const cache = yield* RedisCache.make<string, Task, typeof Task.Encoded>({ namespace, schema: Task })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      const { client } = yield* RedisClient.RedisClient
      yield* cache.set("k", task)
      const reads: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
        cache.get("k"),
        cache.getOption("k"),
        cache.getMany(["k"]),
        cache.getMany(["k", "absent"]),
        cache.get("absent")
      ]
      for (const read of reads) {
        // A BLPOP that waits 200 ms holds up the commands queued behind it on the same connection, and only them.
        const blocker = RedisCache.redisKey(namespace, "blocker")
        const held = yield* Effect.fork(Effect.promise(() => client.blpop(blocker, 0.2)))
        const exit = yield* Effect.exit(Effect.timeout(read, "50 millis"))
        expect(Exit.isFailure(exit) && Cause.isFailType(exit.cause) && Cause.isTimeoutException(exit.cause.error)).toBe(true)
        yield* Fiber.join(held)
        yield* Effect.sleep("50 millis") // the read's reply has arrived by now
      }
      const stats = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect({ hits: stats.hits, misses: stats.misses, errors: stats.errors }).toStrictEqual({ hits: 0, misses: 0, errors: 0 })
    }).pipe(withRedis))

  it.scoped("a schema whose decoding throws makes a read die, never hang", () =>
    Effect.gen(function*() {
      const Throwing = Schema.transform(Schema.String, Schema.String, {
        strict: true,
        decode: () => {
          throw new Error("boom")
        },
        encode: (s) => s
      })
      const namespace = uniqueNamespace("throwing")
      const cache = yield* RedisCache.make<string, string, string>({ namespace, schema: Throwing })
      yield* Effect.addFinalizer(() => Effect.ignore(cache.invalidateAll))
      yield* cache.set("k", "v")
      const reads: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
        cache.get("k"),
        cache.getOption("k"),
        cache.getMany(["k"]),
        cache.getMany(["k", "j"])
      ]
      for (const read of reads) {
        const exit = yield* Effect.exit(Effect.timeout(read, "2 seconds"))
        expect(Exit.isFailure(exit) && exit.cause._tag === "Die").toBe(true)
      }
    }).pipe(withRedis))
})
