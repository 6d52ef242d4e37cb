/**
 * The behaviour every versioned tier shares (`Cache.versioned`): run against the versioned `LruCache` and the
 * versioned `RedisCache`, so that the in-memory stand-in that tests use behaves as Redis does.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Cache from "../../src/Cache.js"

/** A versioned value. */
export interface Versioned {
  readonly version: number
  readonly text: string
}

/** Runs the shared cases against tiers built by `make`: empty, versioned by `version`, tombstones of a minute. */
export const versionedConformance = <E>(
  tier: string,
  make: (name: string) => Effect.Effect<Cache.Cache<string, Versioned, E>, unknown, Scope.Scope>
) =>
  describe(`${tier}: the versioned tier contract`, () => {
    const fresh = () => make(`versioned-${tier}-${Math.random().toString(36).slice(2)}`)
    const at = (version: number, text = `v${version}`): Versioned => ({ version, text })
    const versionOf = (found: Option.Option<Versioned>) => Option.map(found, (value) => value.version)

    it.scoped("says it is versioned; an older write is refused, an equal or newer one replaces", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        expect(cache.versioned).toBe(true)
        yield* cache.set("k", at(3))
        yield* cache.set("k", at(2))
        expect(versionOf(yield* cache.getOption("k"))).toStrictEqual(Option.some(3))
        yield* cache.setMany([["k", at(1)], ["j", at(1)]])
        expect((yield* cache.getMany(["k", "j"])).get("k")?.version).toBe(3)
        yield* cache.set("k", at(3, "rewritten"))
        expect((yield* cache.get("k")).text).toBe("rewritten")
        yield* cache.set("k", at(4))
        expect(versionOf(yield* cache.getOption("k"))).toStrictEqual(Option.some(4))
      }))

    it.scoped("invalidate leaves a tombstone: a miss that refuses every write, a newer one too", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.set("k", at(5))
        yield* cache.invalidate("k")
        expect(yield* cache.getOption("k")).toStrictEqual(Option.none())
        yield* cache.set("k", at(6))
        expect(yield* cache.getOption("k")).toStrictEqual(Option.none())
        expect(yield* cache.getMany(["k"])).toStrictEqual(new Map())
        expect(yield* Effect.flip(cache.get("k"))).toMatchObject({ _tag: "CacheMiss" })
      }))

    it.scoped("a dead-on-arrival write drops only what is older, and leaves a floor that refuses older writes", () =>
      Effect.gen(function*() {
        const cache = yield* fresh()
        yield* cache.set("newer", at(9))
        yield* cache.set("newer", at(8), { timeToLive: 0 })
        expect(versionOf(yield* cache.getOption("newer"))).toStrictEqual(Option.some(9))

        yield* cache.set("older", at(7))
        yield* cache.set("older", at(10), { timeToLive: 0 })
        expect(yield* cache.getOption("older")).toStrictEqual(Option.none())
        yield* cache.set("older", at(9))
        expect(yield* cache.getOption("older")).toStrictEqual(Option.none())
        yield* cache.set("older", at(11))
        expect(versionOf(yield* cache.getOption("older"))).toStrictEqual(Option.some(11))

        yield* cache.set("gone", at(1))
        yield* cache.invalidate("gone")
        yield* cache.set("gone", at(2), { timeToLive: 0 })
        yield* cache.set("gone", at(3))
        expect(yield* cache.getOption("gone")).toStrictEqual(Option.none()) // the tombstone survived it
      }))
  })
