import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import type * as Cache from "../src/Cache.js"
import { deadlineLeaf, honours, honoursDeadlines, markOf } from "../src/internal/deadline.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import { hangingTier } from "./support/tiers.js"

/** Counts the fibers started under it. */
class FiberCounter extends Supervisor.AbstractSupervisor<number> {
  started = 0
  get value() {
    return Effect.sync(() => this.started)
  }
  override onStart() {
    this.started++
  }
}

/** A promise that never settles: a backend that stopped answering. */
const never = () => new Promise<never>(() => {})

/**
 * A tier whose backend never answers and whose every wait is a `deadlineLeaf`, marked as honouring deadlines
 * (as the Redis tier is). `aborted` counts the waits that gave up.
 */
const makeSilentTier = () => {
  const state = { aborted: 0 }
  const leaf = <A>() =>
    deadlineLeaf<A, Cause.TimeoutException>(never, (cause) => {
      state.aborted++
      return cause instanceof Cause.TimeoutException ? cause : new Cause.TimeoutException(String(cause))
    })
  const tier: Cache.Cache<string, string, Cause.TimeoutException> = {
    name: "silent",
    get: () => leaf(),
    getOption: () => leaf(),
    getMany: () => leaf(),
    set: () => leaf(),
    setMany: () => leaf(),
    invalidate: () => leaf(),
    invalidateAll: leaf(),
    size: leaf()
  }
  return { tier: Object.assign(tier, { [honoursDeadlines]: markOf(tier) }), state }
}


const loadAll = (keys: ReadonlyArray<string>) => Effect.succeed(new Map(keys.map((key) => [key, key.toUpperCase()])))

const withL2 = (l2: Cache.Cache<string, string, unknown>) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, string>({ capacity: 100 })
    return yield* MultiLevelCache.make({
      name: `deadline-${Math.random()}`,
      tiers: [l1, { cache: l2, timeout: "100 millis" }],
      load: loadAll
    })
  })

describe("bounded tier calls", () => {
  it.scoped("1,000 concurrent calls to a hanging tier wait on one sleeping watchdog, not on a timer each", () =>
    Effect.gen(function*() {
      const cache = yield* withL2(hangingTier)
      const writers = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 1000 }, (_, i) => `k${i}`), (key) => cache.set(key, "v"), {
          concurrency: "unbounded",
          discard: true
        })
      )
      // Let every write reach its L2 call.
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      expect(Chunk.size(yield* TestClock.sleeps())).toBe(1)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(writers)
      expect((yield* cache.metrics.stats).errors).toBe(1000)
    }))

  it.scoped("a tier that honours deadlines is bounded in the caller's fiber: no fiber per call", () =>
    Effect.gen(function*() {
      const { state, tier } = makeSilentTier()
      expect(honours(tier)).toBe(true)
      const cache = yield* withL2(tier)
      const counter = new FiberCounter()
      const writes = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 50 }, (_, i) => `k${i}`), (key) => cache.set(key, "v"), { discard: true })
          .pipe(Effect.supervised(counter))
      )
      for (let i = 0; i < 50; i++) {
        yield* Effect.yieldNow()
        yield* TestClock.adjust("100 millis")
      }
      yield* Fiber.join(writes)
      expect(state.aborted).toBe(50)
      expect((yield* cache.metrics.stats).errors).toBe(50)
      expect(counter.started).toBe(0)
    }))

  it.scoped("its reads fall through to the loader once the deadline passes, also inside an uninterruptible region", () =>
    Effect.gen(function*() {
      const { state, tier } = makeSilentTier()
      const cache = yield* withL2(tier)
      const reader = yield* Effect.fork(Effect.uninterruptible(cache.get("a")))
      yield* TestClock.adjust("100 millis") // the L2 read
      yield* TestClock.adjust("100 millis") // the L2 back-fill
      expect(yield* Fiber.join(reader)).toBe("A")
      expect(state.aborted).toBe(2)
    }))

  it.scoped("a wrapper that replaces one operation of a marked tier is not trusted, and still bounded", () =>
    Effect.gen(function*() {
      const { tier } = makeSilentTier()
      const wrapped = { ...tier, getMany: () => Effect.never }
      expect(honours(wrapped)).toBe(false)
      const cache = yield* withL2(wrapped)
      const reader = yield* Effect.fork(cache.get("a"))
      yield* TestClock.adjust("100 millis")
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(reader)).toBe("A")
    }))

  it.scoped("calls that end in time are not cut; after an idle spell the watchdog bounds the next call again", () =>
    Effect.gen(function*() {
      let answer: (value: Map<string, string>) => void = () => {}
      let calls = 0
      const slowTier: Cache.Cache<string, string, unknown> = {
        ...hangingTier,
        getMany: () => {
          calls++
          return calls === 1 ? Effect.promise(() => new Promise<Map<string, string>>((resolve) => (answer = resolve))) : Effect.never
        }
      }
      const cache = yield* withL2(slowTier)
      const first = yield* Effect.fork(cache.getOption("a"))
      yield* TestClock.adjust("99 millis")
      answer(new Map([["a", "from L2"]]))
      expect(yield* Fiber.join(first)).toStrictEqual(expect.objectContaining({ value: "from L2" }))
      // Idle for a long while: the next call is bounded from its own start.
      yield* TestClock.adjust("10 seconds")
      const second = yield* Effect.fork(cache.getOption("b"))
      yield* TestClock.adjust("99 millis")
      expect(yield* Fiber.poll(second)).toStrictEqual(expect.objectContaining({ _tag: "None" }))
      yield* TestClock.adjust("1 millis")
      yield* TestClock.adjust("100 millis") // the back-fill of L2, which hangs too
      expect(yield* Fiber.join(second)).toStrictEqual(expect.objectContaining({ value: "B" }))
    }))

  it.effect("a deadline leaf without a deadline waits for its promise however long it takes", () =>
    Effect.gen(function*() {
      let resolve: (value: number) => void = () => {}
      const leaf = yield* Effect.fork(deadlineLeaf(() => new Promise<number>((r) => (resolve = r)), String))
      yield* TestClock.adjust("1 hour")
      expect(yield* Fiber.poll(leaf)).toStrictEqual(expect.objectContaining({ _tag: "None" }))
      resolve(7)
      expect(yield* Fiber.join(leaf)).toBe(7)
      const failing = yield* Effect.exit(deadlineLeaf(() => Promise.reject(new Error("down")), (cause) => `mapped: ${cause}`))
      expect(failing).toStrictEqual(Exit.fail("mapped: Error: down"))
    }))
})
