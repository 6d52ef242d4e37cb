import { describe, expect, it } from "@effect/vitest"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scheduler from "effect/Scheduler"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as SingleFlight from "../src/SingleFlight.js"

class Boom extends Data.TaggedError("Boom")<{}> {}

/** A resolver that records its calls and, when gated, waits for `release` before answering. */
const recordingResolver = (options: { readonly gated?: boolean; readonly fail?: boolean } = {}) =>
  Effect.gen(function*() {
    const calls: Array<ReadonlyArray<number>> = []
    const currentAtEnd: Array<Map<number, boolean>> = []
    const started = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    let interrupted = 0
    const resolve = (keys: ReadonlyArray<number>, isCurrent: (key: number) => boolean) =>
      Effect.gen(function*() {
        calls.push([...keys])
        yield* Deferred.succeed(started, undefined)
        if (options.gated) yield* Deferred.await(release)
        currentAtEnd.push(new Map(keys.map((k) => [k, isCurrent(k)])))
        if (options.fail) return yield* new Boom()
        // Odd keys do not exist.
        return new Map(keys.filter((k) => k % 2 === 0).map((k) => [k, `v${k}`]))
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted++)))
    return { calls, currentAtEnd, started, release, resolve, interrupted: () => interrupted }
  })

const waitUntil = (condition: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000 && !condition(); i++) yield* Effect.yieldNow()
    if (!condition()) throw new Error("condition not reached")
  })

describe("SingleFlight.makeBatched", () => {
  it.scoped("1,000 concurrent gets of distinct keys make one resolve call with all of them", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver()
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      const results = yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), flight.get, {
        concurrency: "unbounded"
      })
      expect(r.calls).toHaveLength(1)
      expect([...r.calls[0]!].sort((a, b) => a - b)).toStrictEqual(Array.from({ length: 1000 }, (_, i) => i))
      expect(results[10]).toStrictEqual(Option.some("v10"))
      expect(results[11]).toStrictEqual(Option.none())
      expect(yield* flight.size).toBe(0)
    }))

  it.scoped("concurrent callers of one key share its load, including callers arriving while it runs", () =>
    Effect.gen(function*() {
      const metrics = CacheMetrics.make({ cache: `batched-${Math.random()}`, tier: "loader" })
      const r = yield* recordingResolver({ gated: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve, metrics })
      const early = yield* Effect.forEach([4, 4, 4], (k) => Effect.fork(flight.get(k)), { concurrency: "unbounded" })
      yield* Deferred.await(r.started)
      const late = yield* Effect.fork(flight.getMany([4, 6]))
      yield* waitUntil(() => r.calls.length === 2)
      yield* Deferred.succeed(r.release, undefined)
      for (const f of early) expect(yield* Fiber.join(f)).toStrictEqual(Option.some("v4"))
      expect(yield* Fiber.join(late)).toStrictEqual(new Map([[4, "v4"], [6, "v6"]]))
      // 4 was loaded once; 6 came in a second batch of its own.
      expect(r.calls).toStrictEqual([[4], [6]])
      const stats = yield* metrics.stats
      expect({ loads: stats.loads, shared: stats.sharedLoads }).toStrictEqual({ loads: 2, shared: 3 })
    }))

  it.scoped("batches hold at most maxBatchSize keys", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver()
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve, maxBatchSize: 1000 })
      const found = yield* flight.getMany(Array.from({ length: 2500 }, (_, i) => i))
      expect(found.size).toBe(1250)
      expect(r.calls.map((c) => c.length)).toStrictEqual([1000, 1000, 500])
    }))

  it.scoped("a failure reaches every caller of the batch as the same typed error", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver({ gated: true, fail: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      const callers = yield* Effect.forEach([1, 2, 3], (k) => Effect.fork(Effect.flip(flight.get(k))), {
        concurrency: "unbounded"
      })
      yield* Deferred.await(r.started)
      yield* Deferred.succeed(r.release, undefined)
      const errors = yield* Effect.forEach(callers, Fiber.join)
      expect(errors[0]).toBeInstanceOf(Boom)
      expect(errors[1]).toBe(errors[0])
      expect(errors[2]).toBe(errors[0])
      expect(yield* flight.size).toBe(0)
    }))

  it.scoped("interrupting some callers leaves the batch running; interrupting all interrupts it", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver({ gated: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      const a = yield* Effect.fork(flight.get(2))
      const b = yield* Effect.fork(flight.get(4))
      yield* Deferred.await(r.started)
      yield* Fiber.interrupt(a)
      expect(r.interrupted()).toBe(0)
      yield* Deferred.succeed(r.release, undefined)
      expect(yield* Fiber.join(b)).toStrictEqual(Option.some("v4"))

      const r2 = yield* recordingResolver({ gated: true })
      const flight2 = yield* SingleFlight.makeBatched({ resolve: r2.resolve })
      const c = yield* Effect.fork(flight2.get(2))
      const d = yield* Effect.fork(flight2.getMany([4, 2]))
      yield* Deferred.await(r2.started)
      yield* Fiber.interrupt(c)
      yield* Fiber.interrupt(d)
      expect(r2.interrupted()).toBe(1)
      expect(yield* flight2.size).toBe(0)
      expect(Exit.isInterrupted(yield* Fiber.await(d))).toBe(true)
    }))

  it.scoped("a caller interrupted at any point before the answer leaves nothing behind", () =>
    Effect.gen(function*() {
      // Interrupt after 0, 1, 2 … scheduler turns: before registering, while collecting, while resolving.
      for (let turns = 0; turns < 6; turns++) {
        const r = yield* recordingResolver({ gated: true })
        const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
        const caller = yield* Effect.fork(flight.get(2))
        for (let i = 0; i < turns; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(caller)
        expect(yield* flight.size).toBe(0)
        // A resolve that started was interrupted; none ran to the end.
        expect(r.interrupted()).toBe(r.calls.length)
        expect(r.currentAtEnd).toStrictEqual([])
        yield* Deferred.succeed(r.release, undefined)
        expect(yield* flight.get(2)).toStrictEqual(Option.some("v2"))
      }
    }))

  it.scoped("invalidate marks the key stale for the running load and sends later callers to a new one", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver({ gated: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      const first = yield* Effect.fork(flight.getMany([2, 4]))
      yield* Deferred.await(r.started)
      yield* flight.invalidate(2)
      const after = yield* Effect.fork(flight.get(2))
      yield* waitUntil(() => r.calls.length === 2)
      yield* Deferred.succeed(r.release, undefined)
      expect(yield* Fiber.join(first)).toStrictEqual(new Map([[2, "v2"], [4, "v4"]]))
      expect(yield* Fiber.join(after)).toStrictEqual(Option.some("v2"))
      expect(r.calls).toStrictEqual([[2, 4], [2]])
      expect(r.currentAtEnd[0]).toStrictEqual(new Map([[2, false], [4, true]]))
      expect(r.currentAtEnd[1]).toStrictEqual(new Map([[2, true]]))
    }))

  it.scoped("invalidating a key whose batch is still collecting keeps it in that batch, current", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver()
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      // The first caller opens the batch and gives the other a scheduler turn before resolving: the invalidation
      // and the second get both happen while it is collecting.
      const [first, second] = yield* Effect.all([
        flight.get(2),
        Effect.zipRight(flight.invalidate(2), flight.get(2))
      ], { concurrency: "unbounded" })
      expect(first).toStrictEqual(Option.some("v2"))
      expect(second).toStrictEqual(Option.some("v2"))
      expect(r.calls).toStrictEqual([[2]]) // once, not twice
      expect(r.currentAtEnd).toStrictEqual([new Map([[2, true]])])
    }))

  it.scoped("a caller leaving a batch its leader has not started yet does not unregister the leader's keys", () =>
    Effect.gen(function*() {
      const r = yield* recordingResolver({ gated: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve })
      // The leader's scheduler turn takes a timer tick (5 ms of real time): the follower joins and leaves before.
      const leader = yield* Effect.fork(Effect.withScheduler(flight.get(2), Scheduler.timer(5)))
      const follower = yield* Effect.fork(flight.getMany([2]))
      yield* waitUntil(() => Effect.runSync(flight.size) === 1 && follower.unsafePoll() === null)
      for (let i = 0; i < 3; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(follower)
      yield* Deferred.await(r.started)
      // A change of the key after the load began must reach that load, whoever runs it.
      yield* flight.invalidate(2)
      yield* Deferred.succeed(r.release, undefined)
      expect(yield* Fiber.join(leader)).toStrictEqual(Option.some("v2"))
      expect(r.currentAtEnd).toStrictEqual([new Map([[2, false]])])
    }))

  it.scoped("a leader interrupted while others wait hands the batch over: they get the answer", () =>
    Effect.gen(function*() {
      const metrics = CacheMetrics.make({ cache: `handover-${Math.random()}`, tier: "loader" })
      const r = yield* recordingResolver({ gated: true })
      const flight = yield* SingleFlight.makeBatched({ resolve: r.resolve, metrics })
      // Alone when its turn comes, the first caller resolves in its own fiber; the second joins the running load.
      const leader = yield* Effect.fork(flight.get(2))
      yield* Deferred.await(r.started)
      const follower = yield* Effect.fork(flight.get(2))
      // The follower joined the load in flight before the leader is interrupted.
      yield* waitUntil(() => Effect.runSync(metrics.stats).sharedLoads === 1)
      yield* Fiber.interrupt(leader)
      expect(r.interrupted()).toBe(1)
      yield* Deferred.succeed(r.release, undefined)
      expect(yield* Fiber.join(follower)).toStrictEqual(Option.some("v2"))
      expect(r.calls).toStrictEqual([[2], [2]])
      expect(yield* flight.size).toBe(0)
    }))
})
