/**
 * Tags under `TestClock`: what an instance knows of the tag ledger (`TagClock`: stamps, checks, reads, gaps),
 * and `invalidateTag` on one instance and on two over an in-process bus sharing an L2 — only the tag's entries
 * go, a tagged hit reads nothing, the other instance follows after the bus delay, a load or save overtaken by
 * an invalidation is never served, an instance started (or deaf) since an invalidation reads the ledger once,
 * a ledger that fails is a typed error or a read from the source — and random sequences of reads, changes and
 * invalidations on two instances, with loads and deliveries reordered, against the source as the model.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import type * as Cache from "../src/Cache.js"
import * as CachedStore from "../src/CachedStore.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import { Endpoint, type Message } from "../src/internal/busEndpoint.js"
import { LocalLedger, type Ledger, TagClock, unseen } from "../src/internal/tags.js"
import { type Item, makeSource, type Source, SourceDown } from "./support/loadingSource.js"
import { settle, until } from "./support/turns.js"

type Entry = LoadingCache.Entry<Item>
type Tier = Cache.Cache<string, Entry, unknown>

/** The tag of an item: its project, the text before the slash. */
const project = (item: Item): ReadonlyArray<string> => [item.text.split("/")[0]!]

const unique = (label: string) => `tags-${label}-${Math.random().toString(36).slice(2, 8)}`



/**
 * A bus whose use of the tag ledger is counted, and that can be made to fail it or to miss tag messages (as a
 * subscription that was lost would, before its gap is noticed).
 */
const watched = (bus: InvalidationBus.InvalidationBus<string>) => {
  const state = { reads: 0, writes: 0, failReads: false, failWrites: false, deaf: false }
  const down = new InvalidationBus.TagLedgerError({ reason: "down" })
  const wrapped: InvalidationBus.InvalidationBus<string> = {
    ...bus,
    tagPositions: (tags) =>
      Effect.suspend(() => {
        state.reads++
        return state.failReads ? Effect.fail(down) : bus.tagPositions(tags)
      }),
    invalidateTags: (tags, floor) =>
      Effect.suspend(() => {
        state.writes++
        return state.failWrites ? Effect.fail(down) : bus.invalidateTags(tags, floor)
      }),
    listen: (listener) =>
      bus.listen({
        ...listener,
        onTags: (tags) => (state.deaf || listener.onTags === undefined ? Effect.void : listener.onTags(tags))
      })
  }
  return { bus: wrapped, state }
}

/** One instance: its own L1, the shared L2 if any, its (watched) end of the hub if any. */
const instance = (options: {
  readonly name: string
  readonly source: Source
  readonly l2?: Tier
  readonly hub?: InvalidationBus.MemoryHub<string>
  readonly freshness?: Omit<LoadingCache.FreshnessOptions<string, Item>, "timeToLive" | "tags">
}) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, Entry>({ capacity: 100, name: `${options.name}-l1` })
    const link = options.hub === undefined ? undefined : watched(yield* options.hub.connect)
    const cache = yield* LoadingCache.make<string, Item, SourceDown>({
      name: options.name,
      tiers: options.l2 === undefined ? [l1] : [l1, options.l2],
      timeToLive: "1 hour",
      ...options.freshness,
      tags: project,
      load: options.source.load,
      ...(link === undefined ? {} : { invalidations: link.bus })
    })
    return { cache, l1, ledger: link?.state }
  })

const versionOf = (item: Item) => item.version
const sharedL2 = (name: string) => LruCache.make<string, Entry>({ capacity: 1000, name: `${name}-l2` })

describe("TagClock", () => {
  const clockOver = (ledger: Ledger) => Effect.map(Effect.clock, (clock) => new TagClock(ledger, clock))

  it.effect("an entry holds until one of its tags is invalidated at a position above what its load saw", () =>
    Effect.gen(function*() {
      const tags = yield* clockOver(new LocalLedger())
      yield* tags.ready
      const before = tags.seenOf(tags.take())
      expect(tags.check(["p", "q"], before)).toBe("valid")
      const at = yield* tags.invalidate(["p"])
      expect(at).toBeGreaterThan(before)
      expect(tags.check(["p", "q"], before)).toBe("invalid")
      expect(tags.check(["q"], before)).toBe("valid")
      expect(tags.check(["p", "q"], tags.seenOf(tags.take()))).toBe("valid")
      // Without a stamp (written when nothing was known), a tagged entry never holds.
      expect(tags.check(["q"], undefined)).toBe("invalid")
    }))

  it.effect("a tag not heard of is known only for entries stamped since the ledger was read; older ones read it", () =>
    Effect.gen(function*() {
      const ledger = new LocalLedger()
      ledger.unsafeInvalidate(["p"], 0) // 1
      ledger.unsafeInvalidate(["q"], 0) // 2
      const tags = yield* clockOver(ledger)
      expect(tags.take().seen).toBe(unseen)
      expect(tags.check(["p"], 5)).toBe("unknown")
      yield* tags.ready
      expect(tags.take().seen).toBe(2)
      expect(tags.check(["p"], 2)).toBe("valid")
      expect(tags.check(["p"], 0)).toBe("unknown")
      yield* tags.read(["p"])
      expect(tags.check(["p"], 0)).toBe("invalid")
      expect(tags.check(["p"], 1)).toBe("valid")
      expect(tags.check(["q"], 1)).toBe("unknown")
    }))

  it.effect("a gap forgets everything: a stamp taken before it no longer holds, a read begun before it is not kept", () =>
    Effect.gen(function*() {
      const local = new LocalLedger()
      const gate = yield* Deferred.make<void>()
      let held = false
      const slow: Ledger = {
        invalidateTags: (tags, floor) => local.invalidateTags(tags, floor),
        tagPositions: (tags) => (held ? Effect.zipRight(Deferred.await(gate), local.tagPositions(tags)) : local.tagPositions(tags))
      }
      const tags = yield* clockOver(slow)
      yield* tags.ready
      yield* tags.invalidate(["p"])
      const stamp = tags.take()
      expect(tags.seenOf(stamp)).toBe(1)
      tags.gap()
      expect(tags.seenOf(stamp)).toBe(unseen)
      expect(tags.check(["p"], 1)).toBe("unknown")
      held = true
      const reading = yield* Effect.fork(tags.ready)
      yield* settle
      tags.gap()
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(reading)
      expect(tags.take().seen).toBe(unseen)
      held = false
      yield* tags.ready
      expect(tags.take().seen).toBe(1)
    }))

  it.effect("the ledger orders an invalidation above its floor, and every tag of it at one position", () =>
    Effect.gen(function*() {
      const ledger = new LocalLedger()
      expect(yield* ledger.invalidateTags(["a", "b"], 10)).toBe(11)
      expect(yield* ledger.invalidateTags(["c"], 3)).toBe(12)
      const read = yield* ledger.tagPositions(["a", "b", "c", "never"])
      expect(read.position).toBe(12)
      expect([...read.tags]).toStrictEqual([["a", 11], ["b", 11], ["c", 12], ["never", 0]])
    }))
})

describe("tag messages on the bus", () => {
  it.effect("a tag message that could not be sent is kept (the latest position of each tag) and sent with the next flush", () =>
    Effect.gen(function*() {
      const sent: Array<Message<string>> = []
      let up = false
      const endpoint = new Endpoint<string, string>(
        "me",
        unique("endpoint"),
        (effect) => Effect.runFork(effect),
        (message) => (up ? Effect.sync(() => void sent.push(message)) : Effect.fail("down")),
        (key) => key,
        10,
        yield* Effect.clock
      )
      yield* endpoint.publishTags([["x", 3], ["y", 3]])
      yield* endpoint.publishTags([["x", 5]])
      expect((yield* endpoint.stats).pending).toBe(2)
      up = true
      yield* endpoint.flush
      // Stamped with the publisher's clock when sent (TestClock: 0).
      expect(sent).toStrictEqual([{ from: "me", tags: [["x", 5], ["y", 3]], sent: 0 }])
      expect((yield* endpoint.stats).pending).toBe(0)
      // Heard from another instance: every listener learns the positions.
      const heard: Array<ReadonlyArray<readonly [string, number]>> = []
      yield* Effect.scoped(Effect.gen(function*() {
        yield* endpoint.listen({ onInvalidate: () => Effect.void, onGap: Effect.void, onTags: (tags) => Effect.sync(() => void heard.push(tags)) })
        endpoint.receive({ from: "other", tags: [["x", 9]] })
        endpoint.receive({ from: "me", tags: [["x", 10]] })
        yield* until(() => heard.length === 1)
      }))
      expect(heard).toStrictEqual([[["x", 9]]])
    }))
})

describe("invalidateTag on one instance", () => {
  it.scoped("makes every entry of the tag a miss in every tier, and only those", () =>
    Effect.gen(function*() {
      const name = unique("one")
      const source = yield* makeSource([["a", "p1/a"], ["b", "p1/b"], ["c", "p2/c"]])
      const l2 = yield* sharedL2(name)
      const { cache } = yield* instance({ name, source, l2 })
      yield* cache.getMany(["a", "b", "c"])
      expect(source.calls()).toBe(1)
      source.write("a", "p1/a2")
      source.write("b", "p1/b2")
      source.write("c", "p2/c2") // not invalidated: still served from the cache
      yield* cache.invalidateTag("p1")
      const read = yield* cache.getMany(["a", "b", "c"])
      expect(source.loads.at(-1)).toStrictEqual(["a", "b"])
      expect(Object.fromEntries([...read].map(([key, item]) => [key, item.text]))).toStrictEqual({ a: "p1/a2", b: "p1/b2", c: "p2/c" })
      // The reloads hold: no further call.
      yield* cache.get("a")
      expect(source.calls()).toBe(2)
      // An entry that moved to another tag is judged by its new tags.
      source.write("a", "p3/a3")
      yield* cache.invalidateTag("p1")
      expect((yield* cache.get("a")).text).toBe("p3/a3")
      yield* cache.invalidateTag("p1")
      expect((yield* cache.get("a")).text).toBe("p3/a3")
      expect(source.calls()).toBe(3)
    }))

  it.scoped("a tagged hit reads nothing of the ledger once it is known", () =>
    Effect.gen(function*() {
      const name = unique("hits")
      const source = yield* makeSource([["a", "p1/a"]])
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const { cache, ledger } = yield* instance({ name, source, hub })
      yield* cache.get("a")
      const reads = ledger!.reads
      expect(reads).toBeLessThanOrEqual(1) // the ledger's position, read before the first load
      for (let i = 0; i < 1000; i++) yield* cache.get("a")
      yield* cache.invalidateTag("p2")
      for (let i = 0; i < 1000; i++) yield* cache.get("a")
      expect(ledger!.reads).toBe(reads)
      expect(source.calls()).toBe(1)
    }))

  it.scoped("a load in flight when its tag is invalidated is answered, but never served afterwards", () =>
    Effect.gen(function*() {
      const name = unique("inflight")
      const source = yield* makeSource([["a", "p1/a"]])
      const l2 = yield* sharedL2(name)
      const { cache } = yield* instance({ name, source, l2 })
      yield* source.hold
      const reading = yield* Effect.fork(cache.get("a"))
      yield* until(() => source.running() === 1, "the load has read the row")
      source.write("a", "p1/a2")
      yield* cache.invalidateTag("p1")
      yield* source.release
      // Begun before the invalidation: it may answer what it read.
      expect((yield* Fiber.join(reading)).text).toBe("p1/a")
      // What it stored, in both tiers, is not served again.
      expect((yield* cache.get("a")).text).toBe("p1/a2")
      expect(source.calls()).toBe(2)
    }))

  it.scoped("an entry of an invalidated tag is no fail-safe answer, nor a stale-while-revalidate one", () =>
    Effect.gen(function*() {
      const name = unique("failsafe")
      const source = yield* makeSource([["a", "p1/a"]])
      const l2 = yield* sharedL2(name)
      const { cache } = yield* instance({ name, source, l2, freshness: { grace: "1 day", staleWhileRevalidate: true } })
      yield* cache.get("a")
      yield* TestClock.adjust("2 hours") // stale, within its grace
      yield* cache.invalidateTag("p1")
      source.setFailing(true)
      const read = yield* Effect.exit(cache.get("a"))
      expect(Exit.isFailure(read) && read.cause._tag === "Fail" && read.cause.error._tag).toBe("SourceDown")
      source.setFailing(false)
      source.write("a", "p1/a2")
      expect((yield* cache.get("a")).text).toBe("p1/a2")
    }))

  it.scoped("a save overtaken by an invalidation of its tag is not served from the tiers", () =>
    Effect.gen(function*() {
      const name = unique("save")
      const source = yield* makeSource([["a", "p1/a"]])
      const gate = yield* Deferred.make<void>()
      let holdSaves = false
      const l1 = yield* LruCache.make<string, Entry>({ capacity: 100, name: `${name}-l1` })
      const store: CachedStore.Store<string, Item, { readonly key: string; readonly text: string }, SourceDown, never, never> = {
        getMany: source.load,
        save: ({ key, text }) =>
          Effect.suspend(() => {
            const saved = source.write(key, text)
            return holdSaves ? Effect.as(Deferred.await(gate), saved) : Effect.succeed(saved)
          }),
        remove: (key) => Effect.sync(() => source.remove(key))
      }
      const cached = yield* CachedStore.make({
        name,
        store,
        keyOf: (input) => input.key,
        tiers: [l1],
        freshness: { timeToLive: "1 hour", tags: project }
      })
      yield* cached.save({ key: "a", text: "p1/a2" })
      expect((yield* cached.get("a")).text).toBe("p1/a2")
      expect(source.calls()).toBe(0) // a save that was not overtaken is served
      holdSaves = true
      const saving = yield* Effect.fork(cached.save({ key: "a", text: "p1/a3" }))
      yield* settle
      yield* cached.invalidateTag("p1")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(saving)
      expect((yield* cached.get("a")).text).toBe("p1/a3")
      expect(source.calls()).toBe(1) // read from the store, not the tier
    }))
})

describe("invalidateTag across two instances", () => {
  it.scoped("reaches the other instance after the bus delay; it then reads nothing older from its L1 or the shared L2", () =>
    Effect.gen(function*() {
      const name = unique("two")
      const source = yield* makeSource([["a", "p1/a"], ["c", "p2/c"]])
      const l2 = yield* sharedL2(name)
      const hub = yield* InvalidationBus.makeMemoryHub<string>({ delay: "100 millis" })
      const a = yield* instance({ name: `${name}-a`, source, l2, hub })
      const b = yield* instance({ name: `${name}-b`, source, l2, hub })
      yield* a.cache.getMany(["a", "c"])
      yield* b.cache.getMany(["a", "c"])
      expect(source.calls()).toBe(1) // B read A's entries from the shared L2
      source.write("a", "p1/a2")
      yield* a.cache.invalidateTag("p1")
      expect((yield* a.cache.get("a")).text).toBe("p1/a2")
      // Within the bus delay B still has its L1 entry, as for a key's invalidation.
      expect((yield* b.cache.get("a")).text).toBe("p1/a")
      yield* TestClock.adjust("100 millis")
      yield* settle
      expect((yield* b.cache.get("a")).text).toBe("p1/a2")
      expect((yield* b.cache.get("c")).text).toBe("p2/c")
      // B took A's reload from L2: one source call for the change, made by A.
      expect(source.calls()).toBe(2)
    }))

  it.scoped("an instance started after an invalidation reads the tag's position once, and serves nothing older", () =>
    Effect.gen(function*() {
      const name = unique("late")
      const source = yield* makeSource([["a", "p1/a"], ["c", "p2/c"]])
      const l2 = yield* sharedL2(name)
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const a = yield* instance({ name: `${name}-a`, source, l2, hub })
      yield* a.cache.getMany(["a", "c"])
      source.write("a", "p1/a2")
      yield* a.cache.invalidateTag("p1")
      const c = yield* instance({ name: `${name}-c`, source, l2, hub })
      expect((yield* c.cache.get("a")).text).toBe("p1/a2")
      expect((yield* c.cache.get("c")).text).toBe("p2/c")
      const reads = c.ledger!.reads
      expect(reads).toBeLessThanOrEqual(3)
      for (let i = 0; i < 100; i++) yield* Effect.zip(c.cache.get("a"), c.cache.get("c"))
      expect(c.ledger!.reads).toBe(reads)
      expect(source.calls()).toBe(2)
    }))

  it.scoped("an instance that missed an invalidation while deaf reads the ledger again after the gap", () =>
    Effect.gen(function*() {
      const name = unique("deaf")
      const source = yield* makeSource([["a", "p1/a"]])
      const l2 = yield* sharedL2(name)
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const a = yield* instance({ name: `${name}-a`, source, l2, hub })
      const b = yield* instance({ name: `${name}-b`, source, l2, hub })
      yield* a.cache.get("a")
      yield* b.cache.get("a")
      b.ledger!.deaf = true
      source.write("a", "p1/a2")
      yield* a.cache.invalidateTag("p1")
      yield* settle
      // The message never reached B; then its bus notices the loss.
      yield* hub.gap
      yield* settle
      b.ledger!.deaf = false
      expect((yield* b.cache.get("a")).text).toBe("p1/a2")
    }))

  it.scoped("a ledger that cannot be written fails invalidateTag; one that cannot be read serves no entry it cannot check", () =>
    Effect.gen(function*() {
      const name = unique("down")
      const source = yield* makeSource([["a", "p1/a"]])
      const l2 = yield* sharedL2(name)
      const hub = yield* InvalidationBus.makeMemoryHub<string>()
      const a = yield* instance({ name: `${name}-a`, source, l2, hub })
      yield* a.cache.get("a")
      a.ledger!.failWrites = true
      const failed = yield* Effect.exit(a.cache.invalidateTag("p1"))
      expect(Exit.isFailure(failed) && failed.cause._tag === "Fail" && failed.cause.error._tag).toBe("TagLedgerError")
      // Nothing was invalidated.
      expect((yield* a.cache.get("a")).text).toBe("p1/a")
      expect(source.calls()).toBe(1)
      a.ledger!.failWrites = false
      yield* a.cache.invalidateTag("p1")
      // A new instance whose ledger reads fail cannot check L2's entry (stamped before it knew the ledger): it
      // reads the source, and says nothing of it to its caller.
      const c = yield* instance({ name: `${name}-c`, source, l2, hub })
      c.ledger!.failReads = true
      source.write("a", "p1/a2")
      expect((yield* c.cache.get("a")).text).toBe("p1/a2")
      expect(source.calls()).toBe(2)
    }))
})

describe("tags against a model", () => {
  type Op =
    | { readonly _tag: "get"; readonly on: 0 | 1; readonly key: number }
    | { readonly _tag: "change"; readonly on: 0 | 1; readonly project: number }
    | { readonly _tag: "wait"; readonly millis: number }
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ _tag: fc.constant("get" as const), on: fc.constantFrom(0 as const, 1 as const), key: fc.nat(5) }),
    fc.record({ _tag: fc.constant("change" as const), on: fc.constantFrom(0 as const, 1 as const), project: fc.nat(2) }),
    fc.record({ _tag: fc.constant("wait" as const), millis: fc.integer({ min: 1, max: 40 }) })
  )
  const keys = Array.from({ length: 6 }, (_, i) => `k${i}`)
  const projectOfKey = (i: number) => `p${i % 3}`

  it.effect.prop(
    "two instances sharing an L2, loads and deliveries reordered: once every message is delivered, every read is the source's",
    { ops: fc.array(op, { minLength: 1, maxLength: 40 }), seed: fc.integer() },
    ({ ops, seed }) =>
      Effect.scoped(Effect.gen(function*() {
        const name = unique("model")
        const source = yield* makeSource(keys.map((key, i) => [key, `${projectOfKey(i)}/${key}`] as const))
        // Each load takes 0–30 ms and each delivery 0–30 ms, drawn per call: they finish out of order.
        source.setJitter(Effect.flatMap(Random.nextIntBetween(0, 30), (ms) => Effect.sleep(Duration.millis(ms))))
        const l2 = yield* sharedL2(name)
        const hub = yield* InvalidationBus.makeMemoryHub<string>({
          delay: Effect.map(Random.nextIntBetween(0, 30), Duration.millis)
        })
        const nodes = [yield* instance({ name: `${name}-a`, source, l2, hub }), yield* instance({ name: `${name}-b`, source, l2, hub })]
        const running: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
        for (const step of ops) {
          if (step._tag === "get") running.push(yield* Effect.fork(nodes[step.on]!.cache.get(keys[step.key]!)))
          else if (step._tag === "change") {
            // A change of the project's rows in the source, then the invalidation of its tag.
            keys.forEach((key, i) => {
              if (projectOfKey(i) === `p${step.project}`) source.write(key, `p${step.project}/${key}`)
            })
            running.push(yield* Effect.fork(nodes[step.on]!.cache.invalidateTag(`p${step.project}`)))
          } else yield* TestClock.adjust(Duration.millis(step.millis))
          yield* settle
        }
        yield* TestClock.adjust("1 second")
        for (const fiber of running) yield* Fiber.await(fiber)
        yield* TestClock.adjust("1 second")
        for (const node of nodes) {
          for (const key of keys) {
            const read = yield* Effect.fork(node.cache.get(key))
            yield* TestClock.adjust("100 millis")
            expect(versionOf(yield* Fiber.join(read))).toBe(source.rows.get(key)!.version)
          }
        }
      }).pipe(Effect.provideService(Random.Random, Random.make(seed)))),
    { fastCheck: { numRuns: 40 } }
  )
})
