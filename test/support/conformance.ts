/**
 * The behaviour every tier shares, run against each of them (`it.scoped` per case, a fresh tier each time).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Cache from "../../src/Cache.js"

/** Runs the shared cases against tiers built by `make`, which must return an empty tier named `name`. */
export const conformance = <E>(
  tier: string,
  make: (name: string) => Effect.Effect<Cache.Cache<string, string, E>, unknown, Scope.Scope>
) =>
  describe(`${tier}: the Cache contract`, () => {
    const fresh = () => make(`conformance-${tier}-${Math.random().toString(36).slice(2)}`)

    it.scoped("get fails with CacheMiss carrying the key and the cache name; getOption gives None", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        const miss = yield* cache.get("nope").pipe(Effect.flip)
        expect(miss).toMatchObject({ _tag: "CacheMiss", key: "nope", cache: cache.name })
        expect(yield* cache.getOption("nope")).toStrictEqual(Option.none())
      }))

    it.scoped("set then get returns the value; a second set replaces it", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.set("a", "1")
        expect(yield* cache.get("a")).toBe("1")
        yield* cache.set("a", "2")
        expect(yield* cache.getOption("a")).toStrictEqual(Option.some("2"))
        expect(yield* cache.size).toBe(1)
      }))

    it.scoped("getMany returns only the keys found; setMany stores all", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.setMany([["a", "1"], ["b", "2"], ["c", "3"]])
        expect(yield* cache.getMany(["a", "x", "c"])).toStrictEqual(new Map([["a", "1"], ["c", "3"]]))
        expect(yield* cache.getMany([])).toStrictEqual(new Map())
        expect(yield* cache.size).toBe(3)
      }))

    it.scoped("invalidate removes one key; invalidateAll removes every key", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.setMany([["a", "1"], ["b", "2"], ["c", "3"]])
        yield* cache.invalidate("b")
        yield* cache.invalidate("not there")
        expect(yield* cache.getMany(["a", "b", "c"])).toStrictEqual(new Map([["a", "1"], ["c", "3"]]))
        yield* cache.invalidateAll
        expect(yield* cache.size).toBe(0)
        expect(yield* cache.getOption("a")).toStrictEqual(Option.none())
      }))

    it.scoped("keys are exact: no prefix, case or unicode folding", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        const keys = ["k", "K", "k ", "k:1", "k:1:", "é", "e\u0301", "", "🔑", "x".repeat(10_000), "\ud800", "\ufffd", "%uD800"]
        yield* cache.setMany(keys.map((k, i) => [k, String(i)] as const))
        for (const [i, k] of keys.entries()) expect(yield* cache.get(k)).toBe(String(i))
        expect(yield* cache.size).toBe(keys.length)
      }))

    it.scoped("a zero time-to-live stores nothing and drops the previous value", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.set("a", "1")
        yield* cache.set("a", "2", { timeToLive: 0 })
        expect(yield* cache.getOption("a")).toStrictEqual(Option.none())
      }))
  })
