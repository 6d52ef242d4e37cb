import { describe, expect, it } from "@effect/vitest"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as SingleFlight from "../src/SingleFlight.js"

class LoadFailed extends Data.TaggedError("LoadFailed")<{ readonly id: number }> {}

/** Yields until `condition` holds; fails the test after a bounded number of turns instead of hanging. */
const eventually = (condition: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 10_000; turn++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    throw new Error("condition not reached")
  })

/** A load that counts its executions, waits for `release`, and records whether it was interrupted. */
const gatedLoad = Effect.gen(function*() {
  const executions = yield* Ref.make(0)
  const interrupted = yield* Ref.make(false)
  const started = yield* Deferred.make<void>()
  const release = yield* Deferred.make<void>()
  const load = <A>(value: Effect.Effect<A, LoadFailed>) =>
    Ref.update(executions, (n) => n + 1).pipe(
      Effect.zipRight(Deferred.succeed(started, undefined)),
      Effect.zipRight(Deferred.await(release)),
      Effect.zipRight(value),
      Effect.onInterrupt(() => Ref.set(interrupted, true))
    )
  return { executions, interrupted, started, release, load }
})

describe("SingleFlight", () => {
  it.scoped("1,000 concurrent callers of one key share exactly one execution", () =>
    Effect.gen(function*() {
      const labels = { cache: `sf-${Math.random()}`, tier: "singleflight" }
      const metrics = CacheMetrics.make(labels)
      const flight = yield* SingleFlight.make<string, number, LoadFailed>({ metrics })
      const gate = yield* gatedLoad
      const callers = yield* Effect.forEach(
        Array.from({ length: 1000 }),
        () => Effect.fork(flight.run("hot", gate.load(Effect.succeed(7)))),
        { concurrency: "unbounded" }
      )
      yield* eventually(metrics.stats.pipe(Effect.map((s) => s.sharedLoads === 999)))
      yield* Deferred.succeed(gate.release, undefined)
      const results = yield* Effect.forEach(callers, Fiber.join)
      expect(results).toStrictEqual(Array.from({ length: 1000 }, () => 7))
      expect(yield* Ref.get(gate.executions)).toBe(1)
      expect(yield* flight.size).toBe(0)
      const stats = yield* metrics.stats
      expect({ loads: stats.loads, shared: stats.sharedLoads, failures: stats.loadFailures }).toStrictEqual({
        loads: 1,
        shared: 999,
        failures: 0
      })
    }))

  it.scoped("a failure reaches every caller as the same typed error, and the key is released", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<number, string, LoadFailed>()
      const gate = yield* gatedLoad
      const error = new LoadFailed({ id: 1 })
      const callers = yield* Effect.forEach(
        Array.from({ length: 10 }),
        () => Effect.fork(Effect.flip(flight.run(1, gate.load(Effect.fail(error))))),
        { concurrency: "unbounded" }
      )
      yield* Deferred.await(gate.started)
      yield* Deferred.succeed(gate.release, undefined)
      const errors = yield* Effect.forEach(callers, Fiber.join)
      for (const e of errors) expect(e).toBe(error)
      expect(yield* Ref.get(gate.executions)).toBe(1)
      expect(yield* flight.size).toBe(0)
      // The next caller runs a fresh execution: failures are not remembered.
      expect(yield* flight.run(1, Effect.succeed("ok"))).toBe("ok")
    }))

  it.scoped("a defect reaches every caller too", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<number, string, LoadFailed>()
      const gate = yield* gatedLoad
      const callers = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.fork(Effect.exit(flight.run(1, gate.load(Effect.dieMessage("bug"))))),
        { concurrency: "unbounded" }
      )
      yield* Deferred.succeed(gate.release, undefined)
      for (const exit of yield* Effect.forEach(callers, Fiber.join)) {
        expect(Exit.isFailure(exit) && exit.cause._tag === "Die").toBe(true)
      }
      expect(yield* flight.size).toBe(0)
    }))

  it.scoped("interrupting the caller that started the execution neither interrupts it nor hangs the others", () =>
    Effect.gen(function*() {
      const metrics = CacheMetrics.make({ cache: `sf-first-${Math.random()}`, tier: "singleflight" })
      const flight = yield* SingleFlight.make<string, number, LoadFailed>({ metrics })
      const gate = yield* gatedLoad
      const first = yield* Effect.fork(flight.run("k", gate.load(Effect.succeed(1))))
      yield* Deferred.await(gate.started)
      const others = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.fork(flight.run("k", gate.load(Effect.succeed(2)))),
        { concurrency: "unbounded" }
      )
      yield* eventually(metrics.stats.pipe(Effect.map((s) => s.sharedLoads === 3)))
      yield* Fiber.interrupt(first)
      expect(yield* Ref.get(gate.interrupted)).toBe(false)
      expect(yield* flight.size).toBe(1)
      yield* Deferred.succeed(gate.release, undefined)
      expect(yield* Effect.forEach(others, Fiber.join)).toStrictEqual([1, 1, 1])
      expect(yield* Ref.get(gate.executions)).toBe(1)
      expect(yield* flight.size).toBe(0)
    }))

  it.scoped("interrupting every caller interrupts the execution and frees the key", () =>
    Effect.gen(function*() {
      const labels = { cache: `sf-int-${Math.random()}`, tier: "singleflight" }
      const metrics = CacheMetrics.make(labels)
      const flight = yield* SingleFlight.make<string, number, LoadFailed>({ metrics })
      const gate = yield* gatedLoad
      const callers = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.fork(flight.run("k", gate.load(Effect.succeed(1)))),
        { concurrency: "unbounded" }
      )
      yield* eventually(metrics.stats.pipe(Effect.map((s) => s.sharedLoads === 2)))
      yield* Fiber.interrupt(callers[0]!)
      yield* Fiber.interrupt(callers[1]!)
      expect(yield* Ref.get(gate.interrupted)).toBe(false)
      yield* Fiber.interrupt(callers[2]!)
      // The last caller's interruption waits for the execution to be interrupted.
      expect(yield* Ref.get(gate.interrupted)).toBe(true)
      expect(yield* flight.size).toBe(0)
      // The key starts afresh for the next caller.
      expect(yield* flight.run("k", Effect.succeed(5))).toBe(5)
      const stats = yield* metrics.stats
      expect({ loads: stats.loads, failures: stats.loadFailures }).toStrictEqual({ loads: 1, failures: 0 })
    }))

  it.scoped("different keys run independently and concurrently", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<number, number>()
      const running = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      const both = yield* Deferred.make<void>()
      const load = (n: number) =>
        Ref.updateAndGet(running, (r) => r + 1).pipe(
          Effect.tap((r) => Ref.update(peak, (p) => Math.max(p, r))),
          Effect.tap((r) => (r === 2 ? Deferred.succeed(both, undefined) : Effect.void)),
          Effect.zipRight(Deferred.await(both)),
          Effect.as(n)
        )
      const results = yield* Effect.all([flight.run(1, load(1)), flight.run(2, load(2))], { concurrency: 2 })
      expect(results).toStrictEqual([1, 2])
      expect(yield* Ref.get(peak)).toBe(2)
    }))

  it.effect("closing its scope interrupts executions in flight", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const flight = yield* SingleFlight.make<string, number, LoadFailed>().pipe(Scope.extend(scope))
      const gate = yield* gatedLoad
      const caller = yield* Effect.fork(flight.run("k", gate.load(Effect.succeed(1))))
      yield* Deferred.await(gate.started)
      yield* Scope.close(scope, Exit.void)
      expect(yield* Ref.get(gate.interrupted)).toBe(true)
      const exit = yield* Fiber.await(caller)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* flight.size).toBe(0)
    }))
})
