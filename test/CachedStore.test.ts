/**
 * `CachedStore` over an in-memory store and tiers, one or two instances on an in-process bus, under
 * `TestClock`: reads, each outcome of a write, the order of concurrent writes, messages arriving mid-write, a
 * writer whose shared tier is down, rechecks, and a model-based property over random concurrent operations on
 * two instances whose tier calls, store calls and messages complete in random order.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import type * as Cache from "../src/Cache.js"
import * as CachedStore from "../src/CachedStore.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as LruCache from "../src/LruCache.js"
import { classify, type Failure, type Input, memoryStore, type Row, upTo, view } from "./support/entities.js"
import { settle } from "./support/turns.js"

type Store = Effect.Effect.Success<ReturnType<typeof memoryStore>>

/** One instance: its own L1, its view of the shared L2 (a timeout and a breaker, as for Redis), the bus. */
const instance = (options: {
  readonly name: string
  readonly store: Store
  readonly l2: Cache.Cache<string, Row, unknown>
  readonly hub?: InvalidationBus.MemoryHub<string>
  readonly l1Capacity?: number
}) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, Row>({ capacity: options.l1Capacity ?? 100, name: `${options.name}-l1` })
    const bus = options.hub === undefined ? undefined : yield* options.hub.connect
    const cached = yield* CachedStore.make({
      name: options.name,
      store: options.store.store,
      keyOf: (input: Input) => input.id,
      tiers: [l1, { cache: options.l2, timeout: "250 millis", breaker: { failures: 2, cooldown: "5 seconds" } }],
      classify,
      ...(bus === undefined ? {} : { invalidations: bus })
    })
    return { cached, l1, bus }
  })

/** A versioned in-memory tier standing in for the shared Redis. */
const sharedTier = (name: string) =>
  LruCache.make<string, Row>({ capacity: 1000, name: `${name}-l2`, version: (row) => row.version })

const unique = (label: string) => `${label}-${Math.random().toString(36).slice(2, 8)}`
const versionIn = (found: Option.Option<Row>) => Option.map(found, (row) => row.version)

/**
 * Two instances on one in-process bus over one store and one shared versioned L2; A reaches L2 through a view
 * that can hold its writes or be switched down.
 */
const twoInstances = (label: string) =>
  Effect.gen(function*() {
    const name = unique(label)
    const store = yield* memoryStore()
    const hub = yield* InvalidationBus.makeMemoryHub<string>()
    const shared = yield* sharedTier(name)
    const aView = view(shared)
    const a = yield* instance({ name, store, l2: aView.tier, hub })
    const b = yield* instance({ name, store, l2: shared, hub })
    return { a, aView, b, shared, store }
  })


/**
 * Runs the fibers to their end: scheduler turns first, then the `TestClock` forward 10 ms at a time (each
 * adjustment waits for every fiber to suspend, on real timers: costly, so only when something sleeps).
 */
const untilDone = (fibers: ReadonlyArray<Fiber.RuntimeFiber<unknown, unknown>>) =>
  Effect.gen(function*() {
    const done = Effect.map(Effect.forEach(fibers, (f) => f.poll), (polls) => polls.every(Option.isSome))
    for (let step = 0; step < 100 && !(yield* done); step++) {
      for (let turn = 0; turn < 50 && !(yield* done); turn++) yield* settle
      if (!(yield* done)) yield* TestClock.adjust("10 millis")
    }
    expect(yield* done).toBe(true)
  })

describe("CachedStore", () => {
  it.scoped("reads through the tiers; a missing key is CacheMiss; save and delete write the store, then every tier", () =>
    Effect.gen(function*() {
      const name = unique("basics")
      const store = yield* memoryStore()
      const l2 = yield* sharedTier(name)
      const { cached, l1 } = yield* instance({ name, store, l2 })
      expect((yield* Effect.flip(cached.get("a")))._tag).toBe("CacheMiss")
      const saved = yield* cached.save({ id: "a", text: "one" })
      expect(saved).toStrictEqual({ id: "a", text: "one", version: 1 })
      expect(versionIn(yield* l1.getOption("a"))).toStrictEqual(Option.some(1))
      expect(versionIn(yield* l2.getOption("a"))).toStrictEqual(Option.some(1))
      expect(yield* cached.get("a")).toStrictEqual(saved)
      expect(store.loads).toStrictEqual([["a"]]) // the first miss only

      yield* cached.delete("a")
      expect(store.rows.has("a")).toBe(false)
      expect(yield* l1.getOption("a")).toStrictEqual(Option.none())
      expect(yield* l2.getOption("a")).toStrictEqual(Option.none())
      expect((yield* Effect.flip(cached.get("a")))._tag).toBe("CacheMiss")
      expect(yield* cached.getMany(["a", "b"])).toStrictEqual(new Map())
    }))

  it.scoped("each outcome of a failed write: refused changes nothing, absent and unknown drop the key and publish", () =>
    Effect.gen(function*() {
      const name = unique("outcomes")
      const store = yield* memoryStore()
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const l2 = yield* sharedTier(name)
      const a = yield* instance({ name, store, l2, hub })
      const b = yield* instance({ name, store, l2, hub })
      yield* a.cached.save({ id: "k", text: "one" })
      yield* b.cached.get("k") // in B's L1
      yield* settle
      const published = () => Effect.map(a.bus!.stats, (s) => s.published)
      const before = yield* published()

      store.failNext("refused")
      expect((yield* Effect.flip(a.cached.save({ id: "k", text: "two" })))._tag).toBe("Refused")
      expect(versionIn(yield* a.l1.getOption("k"))).toStrictEqual(Option.some(1)) // untouched
      expect(yield* published()).toBe(before) // nothing to tell

      expect((yield* Effect.flip(a.cached.delete("absent")))._tag).toBe("Missing")
      expect(yield* published()).toBe(before + 1) // absent: told, in case a tier still has it

      store.failNext("unknown-applied")
      expect((yield* Effect.flip(a.cached.save({ id: "k", text: "three" })))._tag).toBe("Unknown")
      expect(yield* a.l1.getOption("k")).toStrictEqual(Option.none()) // dropped: the store may have it
      expect(yield* l2.getOption("k")).toStrictEqual(Option.none())
      yield* settle
      expect(yield* b.l1.getOption("k")).toStrictEqual(Option.none()) // and B heard of it
      expect(yield* published()).toBe(before + 2)
      expect((yield* a.cached.get("k")).version).toBe(2) // what the store holds

      // The recheck: dropped and published once more, 10 s later.
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(yield* published()).toBe(before + 3)
      expect(yield* a.l1.getOption("k")).toStrictEqual(Option.none())
    }))

  it.scoped("a write interrupted while the store has it is an unknown outcome: dropped, published, rechecked", () =>
    Effect.gen(function*() {
      const name = unique("interrupted")
      const store = yield* memoryStore()
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const l2 = yield* sharedTier(name)
      const a = yield* instance({ name, store, l2, hub })
      yield* a.cached.save({ id: "k", text: "one" })
      yield* store.hold
      const saving = yield* Effect.fork(a.cached.save({ id: "k", text: "two" }))
      yield* settle
      yield* Fiber.interrupt(saving)
      expect(yield* a.l1.getOption("k")).toStrictEqual(Option.none())
      expect(yield* l2.getOption("k")).toStrictEqual(Option.none())
      expect((yield* a.bus!.stats).published).toBe(2)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect((yield* a.bus!.stats).published).toBe(3)
    }))

  it.scoped("rechecks of one key are one: the last unknown write sets when it runs", () =>
    Effect.gen(function*() {
      const name = unique("rechecks")
      const store = yield* memoryStore()
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const a = yield* instance({ name, store, l2: yield* sharedTier(name), hub })
      for (let i = 0; i < 3; i++) {
        store.failNext("unknown-applied")
        yield* Effect.flip(a.cached.save({ id: "k", text: `t${i}` }))
        yield* TestClock.adjust("4 seconds")
      }
      const afterWrites = (yield* a.bus!.stats).published
      expect(afterWrites).toBe(3)
      yield* TestClock.adjust("5 seconds") // 10 s after the first, 6 s after the last: none yet
      yield* settle
      expect((yield* a.bus!.stats).published).toBe(afterWrites)
      yield* TestClock.adjust("1 second")
      yield* settle
      expect((yield* a.bus!.stats).published).toBe(afterWrites + 1)
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect((yield* a.bus!.stats).published).toBe(afterWrites + 1)
    }))

  it.scoped("two concurrent saves of one key never leave the older value in L1 (their L2 writes end out of order)", () =>
    Effect.gen(function*() {
      const name = unique("ordering")
      const store = yield* memoryStore()
      const shared = yield* sharedTier(name)
      // The first save's L2 write takes 20 ms, the second's 5 ms: store v1, store v2, L2 set v1, L2 set v2,
      // L2 v2 done, L1 set v2, L2 v1 done (refused: older), L1 set v1 — unless the first knows it was overtaken.
      let calls = 0
      const l2 = view(shared, Effect.suspend(() => Effect.sleep(++calls === 1 ? "20 millis" : "5 millis")))
      const { cached, l1 } = yield* instance({ name, store, l2: l2.tier })
      const first = yield* Effect.fork(cached.save({ id: "k", text: "one" }))
      const second = yield* Effect.fork(cached.save({ id: "k", text: "two" }))
      yield* settle
      yield* TestClock.adjust("100 millis")
      expect((yield* Fiber.join(first)).version).toBe(1)
      expect((yield* Fiber.join(second)).version).toBe(2)
      expect(versionIn(yield* l1.getOption("k"))).not.toStrictEqual(Option.some(1))
      expect(versionIn(yield* shared.getOption("k"))).toStrictEqual(Option.some(2))
      const reading = yield* Effect.fork(cached.get("k")) // through L2's 5 ms
      yield* settle
      yield* TestClock.adjust("10 millis")
      expect((yield* Fiber.join(reading)).version).toBe(2)
    }))

  it.scoped("a load that read L2 while a write was updating it does not fill L1 after that write did", () =>
    Effect.gen(function*() {
      const name = unique("late-load")
      const store = yield* memoryStore()
      const shared = yield* sharedTier(name)
      const l2 = view(shared)
      const { cached, l1 } = yield* instance({ name, store, l2: l2.tier })
      yield* cached.save({ id: "k", text: "one" })
      yield* l1.invalidate("k") // cold in L1, v1 in L2

      yield* l2.holdWrites
      const saving = yield* Effect.fork(cached.save({ id: "k", text: "two" })) // v2 in the store; L2 write held
      yield* settle
      yield* l2.holdAnswers
      const reading = yield* Effect.fork(cached.get("k")) // began after the write: reads v1 in L2, answer held
      yield* settle
      yield* l2.releaseWrites
      expect((yield* Fiber.join(saving)).version).toBe(2) // L2, then L1 have v2
      yield* l2.releaseAnswers
      expect((yield* Fiber.join(reading)).version).toBe(1) // it read before the write reached L2
      expect(versionIn(yield* l1.getOption("k"))).toStrictEqual(Option.some(2)) // and filled nothing after it
    }))

  it.scoped("another instance's invalidation received while a write updates L2 overtakes that write's L1 update", () =>
    Effect.gen(function*() {
      const { a, aView, b } = yield* twoInstances("crossing")
      yield* aView.holdWrites // A's Redis write is slow
      const saving = yield* Effect.fork(a.cached.save({ id: "k", text: "by A" })) // v1 in the store
      yield* settle
      const bSaved = yield* b.cached.save({ id: "k", text: "by B" }) // v2: store, L2, then the message to A
      yield* settle // B's message has reached A, mid-write
      yield* aView.releaseWrites
      expect((yield* Fiber.join(saving)).version).toBe(1)
      expect(versionIn(yield* a.l1.getOption("k"))).not.toStrictEqual(Option.some(1))
      expect(yield* a.cached.get("k")).toStrictEqual(bSaved)
    }))

  it.scoped("a writer whose L2 is down tells the others, who then do not read the older value from L2", () =>
    Effect.gen(function*() {
      const { a, aView, b, shared } = yield* twoInstances("stale-l2")
      yield* a.cached.save({ id: "k", text: "one" })
      yield* settle
      expect((yield* b.cached.get("k")).version).toBe(1) // B's L1 and the shared L2 hold v1

      aView.setDown(true) // A cannot reach L2 (a stall; its breaker opens)
      yield* a.cached.save({ id: "k", text: "two" })
      expect(versionIn(yield* shared.getOption("k"))).toStrictEqual(Option.some(1)) // L2 missed the write
      yield* settle
      // B heard that the key changed and that L2 missed it: it reads the store, not L2's v1.
      expect((yield* b.cached.get("k")).version).toBe(2)
      expect((yield* b.cached.getMany(["k"])).get("k")?.version).toBe(2)
    }))

  it.scoped("a delete that finds the key absent drops it from every tier (a tier that still served it)", () =>
    Effect.gen(function*() {
      const name = unique("absent")
      const store = yield* memoryStore()
      const l2 = yield* sharedTier(name)
      const { cached, l1 } = yield* instance({ name, store, l2 })
      const ghost = { id: "ghost", text: "left in a tier", version: 3 }
      yield* l1.set("ghost", ghost)
      yield* l2.set("ghost", ghost)
      expect((yield* Effect.flip(cached.delete("ghost")))._tag).toBe("Missing")
      expect(yield* l1.getOption("ghost")).toStrictEqual(Option.none())
      expect(yield* l2.getOption("ghost")).toStrictEqual(Option.none())
    }))

  interface Step {
    readonly op: "get" | "getMany" | "save" | "delete" | "invalidate" | "outage"
    readonly on: number
    readonly key: number
    readonly outcome?: "ok" | Failure
  }
  const step = (op: Step["op"]) =>
    fc.record({ op: fc.constant(op), on: fc.integer({ min: 0, max: 1 }), key: fc.integer({ min: 0, max: 2 }) })
  const operation: fc.Arbitrary<Step> = fc.oneof(
    { weight: 4, arbitrary: step("get") },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant("save" as const),
        on: fc.integer({ min: 0, max: 1 }),
        key: fc.integer({ min: 0, max: 2 }),
        outcome: fc.constantFrom<"ok" | Failure>("ok", "ok", "ok", "refused", "unknown-applied", "unknown-not-applied")
      })
    },
    { weight: 1, arbitrary: step("delete") },
    { weight: 1, arbitrary: step("invalidate") },
    { weight: 1, arbitrary: step("getMany") },
    // The instance's connection to L2 goes down, or comes back.
    { weight: 1, arbitrary: step("outage") }
  )
  /** Up to 20 scheduler turns: steps of concurrent operations interleave at random, without time passing. */
  const randomYields = Effect.flatMap(Random.nextIntBetween(0, 21), (n) => Effect.forEach(Array.from({ length: n }), () => Effect.yieldNow(), { discard: true }))


  /**
   * The model: whatever the operations and the order their steps complete in, once everything has run (the
   * messages delivered, the rechecks done) every read on every instance returns what the store holds.
   */
  const twoInstancesAgree = (timing: {
    /** What each step of a store call, a tier call, or a message delivery waits first. */
    readonly jitter: Effect.Effect<void>
    readonly delivery: Effect.Effect<Duration.DurationInput>
    /** When an operation starts, from its generated offset. */
    readonly start: (offset: number) => Effect.Effect<void>
    /** Whether to run the rechecks of unknown outcomes (10 s of `TestClock`) before the final reads. */
    readonly rechecks: boolean
  }) =>
    ([ops, seed]: readonly [ReadonlyArray<readonly [Step, number]>, number]) =>
      Effect.gen(function*() {
        const name = unique("model")
        const { jitter } = timing
        const store = yield* memoryStore({ delay: jitter })
        const hub = yield* InvalidationBus.makeMemoryHub<string>({ delay: timing.delivery })
        const shared = yield* sharedTier(name)
        const views = [view(shared, jitter), view(shared, jitter)]
        const instances = [
          yield* instance({ name: `${name}-a`, store, l2: views[0]!.tier, hub, l1Capacity: 3 }),
          yield* instance({ name: `${name}-b`, store, l2: views[1]!.tier, hub, l1Capacity: 3 })
        ]
        const down = [false, false]
        const keys = ["x", "y", "z"]
        let counter = 0
        const fibers = []
        for (const [step, startAt] of ops) {
          const { cached } = instances[step.on]!
          const key = keys[step.key]!
          const run: Effect.Effect<unknown, unknown> = step.op === "get"
            ? Effect.either(cached.get(key))
            : step.op === "getMany"
            ? cached.getMany(keys)
            : step.op === "save"
            ? Effect.either(Effect.suspend(() => {
              if (step.outcome !== "ok") store.failNext(step.outcome)
              return cached.save({ id: key, text: `t${++counter}` })
            }))
            : step.op === "delete"
            ? Effect.either(cached.delete(key))
            : step.op === "outage"
            ? Effect.sync(() => views[step.on]!.setDown((down[step.on] = !down[step.on])))
            : cached.invalidate(key)
          fibers.push(yield* Effect.fork(Effect.zipRight(timing.start(startAt), run)))
        }
        // Everything completes, the messages arrive, and the rechecks run.
        yield* untilDone(fibers)
        for (const v of views) v.setDown(false)
        if (timing.rechecks) {
          yield* TestClock.adjust("11 seconds")
          yield* settle
        }

        for (const [i, { cached }] of instances.entries()) {
          for (const key of keys) {
            const reading = yield* Effect.fork(Effect.either(cached.get(key)))
            yield* untilDone([reading])
            const read = yield* Fiber.join(reading)
            expect(Either.getRight(read), `instance ${i}, key ${key}`).toStrictEqual(Option.fromNullable(store.rows.get(key)))
          }
        }
      }).pipe(Effect.scoped, Effect.withRandom(Random.make(seed)))

  it.effect.prop(
    "two instances, random concurrent operations, steps delayed 0-3 ms (TestClock): afterwards every read is the store's latest",
    [fc.array(fc.tuple(operation, fc.integer({ min: 0, max: 6 })), { minLength: 1, maxLength: 25 }), fc.integer()],
    twoInstancesAgree({
      jitter: upTo("3 millis"),
      delivery: Effect.map(Random.nextIntBetween(0, 4), Duration.millis),
      start: (offset) => Effect.sleep(Duration.millis(offset)),
      rechecks: true
    }),
    { timeout: 120_000, fastCheck: { numRuns: 40 } }
  )

  it.effect.prop(
    "two instances, random concurrent operations, steps reordered by random yields: afterwards every read is the store's latest",
    [fc.array(fc.tuple(operation, fc.integer({ min: 0, max: 40 })), { minLength: 1, maxLength: 30 }), fc.integer()],
    // No time passes: the clock is never adjusted (which costs real milliseconds per adjustment), so many more
    // runs fit. Unknown outcomes are applied before they fail here, so the rechecks change nothing.
    twoInstancesAgree({
      jitter: randomYields,
      delivery: Effect.succeed(Duration.zero),
      start: (offset) => Effect.forEach(Array.from({ length: offset }), () => Effect.yieldNow(), { discard: true }),
      rechecks: false
    }),
    { timeout: 120_000, fastCheck: { numRuns: 500 } }
  )
})
