import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import * as Cache from "../src/Cache.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { notFound, syncReaderOf } from "../src/internal/syncRead.js"
import * as TtlCache from "../src/TtlCache.js"

const key = fc.integer({ min: 0, max: 10 })
const ttl = fc.option(fc.oneof(fc.integer({ min: 0, max: 60 }), fc.constant(Infinity)), { nil: undefined })

type Op =
  | { readonly op: "get" | "invalidate"; readonly key: number }
  | { readonly op: "set"; readonly key: number; readonly value: number; readonly ttl: number | undefined }
  | { readonly op: "invalidateAll" }
  | { readonly op: "advance"; readonly millis: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("get" as const), key }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("set" as const), key, value: fc.integer(), ttl }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("invalidate" as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("invalidateAll" as const) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 45 }) }) }
)

describe("TtlCache", () => {
  it.effect.prop(
    "matches a reference model of expiry and sweeping over random operations and clock steps",
    [fc.integer({ min: 1, max: 50 }), fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }), fc.array(op, {
      maxLength: 100
    })],
    ([timeToLive, sweepEvery, ops]) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const cache = yield* TtlCache.make<number, number>({
          timeToLive: Duration.millis(timeToLive),
          ...(sweepEvery === undefined ? {} : { sweepInterval: Duration.millis(sweepEvery) })
        }).pipe(Scope.extend(scope))
        const interval = sweepEvery ?? timeToLive / 2
        const model = new Map<number, { value: number; expiresAt: number }>()
        let now = 0
        for (const step of ops) {
          switch (step.op) {
            case "get": {
              const entry = model.get(step.key)
              let expected: Option.Option<number> = Option.none()
              if (entry !== undefined && entry.expiresAt <= now) model.delete(step.key)
              else if (entry !== undefined) expected = Option.some(entry.value)
              expect(yield* cache.getOption(step.key)).toStrictEqual(expected)
              break
            }
            case "set": {
              yield* cache.set(step.key, step.value, step.ttl === undefined ? undefined : { timeToLive: step.ttl })
              const life = step.ttl ?? timeToLive
              if (life <= 0) model.delete(step.key)
              else model.set(step.key, { value: step.value, expiresAt: now + life })
              break
            }
            case "invalidate":
              yield* cache.invalidate(step.key)
              model.delete(step.key)
              break
            case "invalidateAll":
              yield* cache.invalidateAll
              model.clear()
              break
            case "advance": {
              yield* TestClock.adjust(Duration.millis(step.millis))
              const before = now
              now += step.millis
              // The sweeper runs at every multiple of the interval; the last one reached removes all it can.
              const lastSweep = Math.floor(now / interval) * interval
              if (lastSweep > before) {
                for (const [k, entry] of model) if (entry.expiresAt <= lastSweep) model.delete(k)
              }
              break
            }
          }
          expect(yield* cache.size).toBe(model.size)
        }
        yield* Scope.close(scope, Exit.void)
      }),
    { fastCheck: { numRuns: 150 } }
  )

  it.scoped("the sweeper removes expired entries that are never read", () =>
    Effect.gen(function*() {
      const name = `ttl-sweep-${Math.random()}`
      const cache = yield* TtlCache.make<string, number>({ timeToLive: "10 seconds", name })
      yield* cache.setMany([["a", 1], ["b", 2], ["c", 3]])
      yield* cache.set("d", 4, { timeToLive: "1 minute" })
      yield* TestClock.adjust("9 seconds")
      expect(yield* cache.size).toBe(4)
      // Default sweep interval: half the time-to-live, so the sweep at 10 s removes a, b and c.
      yield* TestClock.adjust("1 second")
      expect(yield* cache.size).toBe(1)
      expect((yield* CacheMetrics.stats({ cache: name, tier: "ttl" })).expirations).toBe(3)
      yield* TestClock.adjust("50 seconds")
      expect(yield* cache.size).toBe(0)
    }))

  it.effect("closing the layer's scope interrupts the sweeper fiber", () =>
    Effect.gen(function*() {
      class Sessions extends Cache.Tag("test/Sessions")<Sessions, string, number>() {}
      const supervisor = yield* Supervisor.track
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(TtlCache.layer(Sessions, { timeToLive: "1 minute" }), scope).pipe(
        Effect.supervised(supervisor)
      )
      const sessions = Context.get(context, Sessions)
      yield* sessions.set("s", 1)
      const fibers = yield* supervisor.value
      expect(fibers.length).toBe(1)
      const sweeper = fibers[0]!
      expect(Option.isNone(yield* sweeper.poll)).toBe(true)

      yield* Scope.close(scope, Exit.void)
      const exit = yield* sweeper.await
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* supervisor.value).toStrictEqual([])
    }))

  it.scoped("rejects a time-to-live or sweep interval that is not a positive finite duration", () =>
    Effect.gen(function*() {
      for (const bad of [{ timeToLive: 0 }, { timeToLive: Duration.infinity }, {
        timeToLive: "1 second",
        sweepInterval: -1
      }] as const) {
        const error = yield* Effect.flip(TtlCache.make(bad))
        expect(error._tag).toBe("IllegalArgumentException")
      }
    }))

  it.scoped("answers a synchronous read as get does, and sweeps many entries written at different times", () =>
    Effect.gen(function*() {
      const name = `ttl-read-${Math.random()}`
      const cache = yield* TtlCache.make<number, number>({ timeToLive: "10 seconds", sweepInterval: "1 second", name })
      const read = syncReaderOf(cache)!
      // 10,000 entries, one batch per second for ten seconds, with their own lifetimes of 1 to 10 seconds.
      for (let second = 0; second < 10; second++) {
        yield* cache.setMany(Array.from({ length: 1_000 }, (_, i) => [second * 1_000 + i, i] as const), {
          timeToLive: Duration.seconds(1 + (second % 10))
        })
        yield* TestClock.adjust("1 second")
      }
      // Written at second s with a lifetime of 1 + s seconds: alive until 1 + 2s, so batches 0 … 4 are swept.
      expect(yield* cache.size).toBe(5_000)
      expect(read(4_999)).toBe(notFound)
      expect(read(5_000)).toBe(0)
      expect(yield* cache.get(9_999)).toBe(999)
      const stats = yield* CacheMetrics.stats({ cache: name, tier: "ttl" })
      expect(stats).toMatchObject({ hits: 2, misses: 1, expirations: 5_000, size: 5_000 })
      const traced: Cache.Cache<number, number> = { ...cache, get: (key) => cache.get(key) }
      expect(syncReaderOf(traced)).toBeUndefined()
    }))
})
