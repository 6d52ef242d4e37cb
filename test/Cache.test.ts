import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Cache from "../src/Cache.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as TtlCache from "../src/TtlCache.js"
import { conformance } from "./support/conformance.js"
import { type Versioned, versionedConformance } from "./support/versionedConformance.js"

conformance("LruCache", (name) => LruCache.make<string, string>({ capacity: 100, name }))
conformance("LruCache, tinyLfu", (name) => LruCache.make<string, string>({ capacity: 100, name, eviction: "tinyLfu" }))
conformance("TtlCache", (name) => TtlCache.make<string, string>({ timeToLive: "1 hour", name }))
// Versioned, every value at one version: each write replaces the last, as in a plain tier.
conformance("LruCache, versioned", (name) => LruCache.make<string, string>({ capacity: 100, name, version: () => 1 }))
versionedConformance("LruCache, versioned", (name) =>
  LruCache.make<string, Versioned>({ capacity: 100, name, version: (value) => value.version, tombstoneTimeToLive: "1 minute" }))
versionedConformance("LruCache, versioned, tinyLfu", (name) =>
  LruCache.make<string, Versioned>({
    capacity: 100,
    name,
    eviction: "tinyLfu",
    version: (value) => value.version,
    tombstoneTimeToLive: "1 minute"
  }))
conformance("MultiLevelCache", (name) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, string>({ capacity: 100, name: `${name}-l1` })
    const l2 = yield* LruCache.make<string, string>({ capacity: 1000, name: `${name}-l2`, version: () => 1 })
    // A loader with nothing: what the tiers do not hold does not exist.
    return yield* MultiLevelCache.make({ name, tiers: [l1, { cache: l2, timeout: "1 second" }], load: () => Effect.succeed(new Map()) })
  }))

class Users extends Cache.Tag("test/Users")<Users, number, { readonly name: string }>() {}

describe("Cache.Tag", () => {
  it.effect("declares a typed cache service that any in-memory layer provides", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        const users = yield* Users
        yield* users.set(1, { name: "Ada" })
        const found = yield* users.get(1)
        const missing = yield* users.get(2).pipe(Effect.catchTag("CacheMiss", () => Effect.succeed({ name: "?" })))
        return [found.name, missing.name, users.name]
      })
      expect(yield* program.pipe(Effect.provide(LruCache.layer(Users, { capacity: 10 })))).toStrictEqual([
        "Ada",
        "?",
        "test/Users"
      ])
      const ttl = TtlCache.layer(Users, { timeToLive: "1 minute", name: "users-ttl" })
      expect(yield* program.pipe(Effect.provide(ttl))).toStrictEqual(["Ada", "?", "users-ttl"])
    }))

  it.effect("one layer is one cache: what a program writes, it reads back; another provide starts empty", () =>
    Effect.gen(function*() {
      const layer = LruCache.layer(Users, { capacity: 10 })
      const write = Effect.flatMap(Users, (users) => users.set(7, { name: "Grace" }))
      const read = Effect.flatMap(Users, (users) => users.getOption(7))
      const together = yield* Effect.zipRight(write, read).pipe(Effect.provide(layer))
      expect(Option.map(together, (u) => u.name)).toStrictEqual(Option.some("Grace"))
      yield* write.pipe(Effect.provide(layer))
      expect(yield* read.pipe(Effect.provide(layer))).toStrictEqual(Option.none())
    }))

  it("formats long keys in CacheMiss messages without flooding logs", () => {
    const miss = new Cache.CacheMiss({ key: "x".repeat(1000), cache: "c" })
    expect(miss.message.length).toBeLessThan(150)
    expect(new Cache.CacheError({ cache: "c", operation: "get", cause: new Error("down") }).message).toBe(
      `cache "c" failed on get: down`
    )
  })
})
