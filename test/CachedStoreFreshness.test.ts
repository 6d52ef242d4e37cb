/**
 * `CachedStore` with `freshness`: saves stamp fresh entries, a stale read answers at once and refreshes, a
 * refresh overtaken by a save or a delete stores nothing, negative entries never outlive a save, and fail-safe
 * answers a failing store with the stale value. In-memory store and tiers, under `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as CachedStore from "../src/CachedStore.js"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import { classify, type Input, memoryStore, type Row } from "./support/entities.js"

class StoreDown {
  readonly _tag = "StoreDown"
}

/** One cached store with freshness over an in-memory store whose reads can be held on a gate or fail. */
const freshStore = (freshness: LoadingCache.FreshnessOptions<string, Row>) =>
  Effect.gen(function*() {
    const backing = yield* memoryStore()
    const name = `fresh-${Math.random().toString(36).slice(2, 8)}`
    let gate: Deferred.Deferred<void> | undefined
    let down = false
    let reads = 0
    const store: CachedStore.Store<string, Row, Input, StoreDown, unknown, unknown> = {
      ...backing.store,
      getMany: (ids) =>
        Effect.gen(function*() {
          reads++
          const found = yield* backing.store.getMany(ids)
          const held = gate
          if (held !== undefined) yield* Deferred.await(held)
          if (down) return yield* Effect.fail(new StoreDown())
          return found
        })
    }
    const l1 = yield* LruCache.make<string, LoadingCache.Entry<Row>>({ capacity: 100, name: `${name}-l1` })
    const l2 = yield* LruCache.make<string, LoadingCache.Entry<Row>>({
      capacity: 100,
      name: `${name}-l2`,
      version: LoadingCache.entryVersion((row: Row) => row.version)
    })
    const cached = yield* CachedStore.make({
      name,
      store,
      keyOf: (input: Input) => input.id,
      tiers: [l1, l2],
      classify: (error) => (error instanceof StoreDown ? "unknown" : classify(error as never)),
      freshness
    })
    const held = (tier: typeof l1, id: string) => Effect.map(tier.getOption(id), Option.map((entry) => entry.value?.version))
    return {
      cached,
      l1,
      l2,
      held,
      reads: () => reads,
      hold: Effect.map(Deferred.make<void>(), (d) => (gate = d)),
      release: Effect.suspend(() => {
        const open = gate
        gate = undefined
        return open === undefined ? Effect.void : Deferred.succeed(open, undefined)
      }),
      down: (on: boolean) => void (down = on)
    }
  })

/** Lets every runnable fiber (background refreshes) run to its next wait. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
})

describe("CachedStore with freshness", () => {
  it.scoped("a save stores a fresh entry in every tier; past its time-to-live a read answers stale at once and refreshes", () =>
    Effect.gen(function*() {
      const t = yield* freshStore({ timeToLive: "10 seconds", grace: "1 hour", staleWhileRevalidate: true })
      const saved = yield* t.cached.save({ id: "a", text: "one" })
      expect(yield* t.held(t.l1, "a")).toStrictEqual(Option.some(saved.version))
      expect(yield* t.held(t.l2, "a")).toStrictEqual(Option.some(saved.version))
      const entry = Option.getOrThrow(yield* t.l1.getOption("a"))
      expect(entry.freshUntil).toBe(10_000)
      expect(entry.staleUntil).toBe(10_000 + 3_600_000)
      expect((yield* t.cached.get("a")).text).toBe("one")
      expect(t.reads()).toBe(0)

      // Past the time-to-live the stale value answers at once, and one refresh reloads it.
      yield* TestClock.adjust("11 seconds")
      expect((yield* t.cached.get("a")).text).toBe("one")
      expect(t.reads()).toBe(0)
      yield* settle
      const stats = yield* t.cached.freshness
      expect(stats.staleServed).toBe(1)
      expect(stats.refreshesStarted).toBe(1)
      expect(stats.refreshesCompleted).toBe(1)
      // The refresh stamped a new entry.
      expect(t.reads()).toBe(1)
      expect(Option.getOrThrow(yield* t.l1.getOption("a")).freshUntil).toBe(21_000)
    }))

  for (const change of ["save", "delete"] as const) {
    it.scoped(`a refresh overtaken by a ${change} of its key stores nothing, on any tier`, () =>
      Effect.gen(function*() {
        const t = yield* freshStore({ timeToLive: "10 seconds", grace: "1 hour", staleWhileRevalidate: true })
        const first = yield* t.cached.save({ id: "k", text: "v1" })
        yield* TestClock.adjust("11 seconds")
        // The refresh reads v1 from the store, then waits on the gate.
        const gate = yield* t.hold
        expect((yield* t.cached.get("k")).version).toBe(first.version)
        yield* settle
        expect(t.reads()).toBe(1)
        if (change === "save") yield* t.cached.save({ id: "k", text: "v2" })
        else yield* t.cached.delete("k")
        yield* Deferred.succeed(gate, undefined)
        yield* settle
        expect((yield* t.cached.freshness).refreshesDiscarded).toBe(1)
        for (const tier of [t.l1, t.l2]) {
          const version = yield* t.held(tier, "k")
          if (Option.isSome(version)) expect(version.value).toBeGreaterThan(first.version)
        }
        const now = yield* t.cached.getOption("k")
        if (change === "save") expect(Option.map(now, (row) => row.text)).toStrictEqual(Option.some("v2"))
        else expect(now).toStrictEqual(Option.none())
      }))
  }

  it.scoped("a negative entry answers until its time-to-live, and never outlives a save", () =>
    Effect.gen(function*() {
      const t = yield* freshStore({ timeToLive: "10 seconds", notFoundTimeToLive: "1 minute" })
      expect(yield* t.cached.getOption("n")).toStrictEqual(Option.none())
      expect(yield* t.cached.getOption("n")).toStrictEqual(Option.none())
      expect(t.reads()).toBe(1)
      expect((yield* t.cached.freshness).negativeHits).toBe(1)
      yield* t.cached.save({ id: "n", text: "now it exists" })
      expect(Option.map(yield* t.cached.getOption("n"), (row) => row.text)).toStrictEqual(Option.some("now it exists"))
      expect(t.reads()).toBe(1)
    }))

  it.scoped("fail-safe: a failing store read answers the stale value, and the store is left alone for the throttle", () =>
    Effect.gen(function*() {
      const t = yield* freshStore({ timeToLive: "10 seconds", grace: "1 hour", failSafeThrottle: "30 seconds" })
      yield* t.cached.save({ id: "f", text: "kept" })
      yield* TestClock.adjust("11 seconds")
      t.down(true)
      expect((yield* t.cached.get("f")).text).toBe("kept")
      const reads = t.reads()
      for (let i = 0; i < 5; i++) expect((yield* t.cached.get("f")).text).toBe("kept")
      expect(t.reads()).toBe(reads)
      expect((yield* t.cached.freshness).failSafeActivations).toBe(1)
      // Without a stale value the store's error stands.
      const missing = yield* Effect.either(t.cached.get("never-cached"))
      expect(missing._tag).toBe("Left")
    }))

  it.scoped("an interrupted reader leaves the cache usable", () =>
    Effect.gen(function*() {
      const t = yield* freshStore({ timeToLive: "10 seconds" })
      yield* t.cached.save({ id: "i", text: "x" })
      yield* t.cached.invalidate("i")
      const gate = yield* t.hold
      const reader = yield* Effect.fork(t.cached.get("i"))
      yield* settle
      yield* Fiber.interrupt(reader)
      yield* Deferred.succeed(gate, undefined)
      yield* t.release
      expect((yield* t.cached.get("i")).text).toBe("x")
    }))
})
