import { describe, expect, it } from "@effect/vitest"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type * as Cache from "../src/Cache.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as WriteThrough from "../src/WriteThrough.js"
import { hangingTier } from "./support/tiers.js"

class StoreDown extends Data.TaggedError("StoreDown")<{}> {}

/** An in-memory "database" whose batch loads are recorded (and can be held on a gate). */
const makeStore = (initial: ReadonlyArray<readonly [string, string]> = []) =>
  Effect.gen(function*() {
    const rows = new Map(initial)
    const loads: Array<ReadonlyArray<string>> = []
    let gate: Deferred.Deferred<void> | undefined
    let failing = false
    const load = (keys: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        loads.push([...keys])
        const snapshot = new Map(keys.flatMap((k) => (rows.has(k) ? [[k, rows.get(k)!] as const] : [])))
        if (gate !== undefined) yield* Deferred.await(gate)
        if (failing) return yield* new StoreDown()
        return snapshot
      })
    return {
      rows,
      loads,
      load,
      hold: Effect.map(Deferred.make<void>(), (d) => {
        gate = d
        return d
      }),
      fail: (on: boolean) => (failing = on)
    }
  })

/** A tier whose every call fails: a backend that is down. */
const brokenTier: Cache.Cache<string, string, StoreDown> = {
  name: "broken",
  get: () => new StoreDown(),
  getOption: () => new StoreDown(),
  getMany: () => new StoreDown(),
  set: () => new StoreDown(),
  setMany: () => new StoreDown(),
  invalidate: () => new StoreDown(),
  invalidateAll: new StoreDown(),
  size: new StoreDown()
}


const twoTiers = (store: Effect.Effect.Success<ReturnType<typeof makeStore>>, name = `mlc-${Math.random()}`) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, string>({ capacity: 100, name: `${name}-l1` })
    const l2 = yield* LruCache.make<string, string>({ capacity: 1000, name: `${name}-l2` })
    const cache = yield* MultiLevelCache.make({ name, tiers: [l1, l2], load: store.load })
    return { l1, l2, cache }
  })

describe("MultiLevelCache", () => {
  it.scoped("a miss asks L1, then L2, then the loader, and back-fills the tiers above", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "A"], ["b", "B"]])
      const { cache, l1, l2 } = yield* twoTiers(store)
      yield* l2.set("a", "A from L2")

      expect(yield* cache.get("a")).toBe("A from L2")
      expect(store.loads).toStrictEqual([])
      expect(yield* l1.getOption("a")).toStrictEqual(Option.some("A from L2"))

      expect(yield* cache.get("b")).toBe("B")
      expect(store.loads).toStrictEqual([["b"]])
      expect(yield* l1.getOption("b")).toStrictEqual(Option.some("B"))
      expect(yield* l2.getOption("b")).toStrictEqual(Option.some("B"))

      // Now in L1: no tier below is asked again.
      expect(yield* cache.get("b")).toBe("B")
      expect(store.loads).toStrictEqual([["b"]])
    }))

  it.scoped("a key nobody has is a CacheMiss (getOption: None), and nothing is stored", () =>
    Effect.gen(function*() {
      const store = yield* makeStore()
      const { cache, l1, l2 } = yield* twoTiers(store)
      expect((yield* Effect.flip(cache.get("ghost")))._tag).toBe("CacheMiss")
      expect(yield* cache.getOption("ghost")).toStrictEqual(Option.none())
      expect([yield* l1.size, yield* l2.size]).toStrictEqual([0, 0])
    }))

  it.scoped("getMany asks each tier only for the keys still missing, and the loader once", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 30 }, (_, i) => `k${i}`)
      const store = yield* makeStore(keys.map((k) => [k, `${k} from store`]))
      const asked: Array<ReadonlyArray<string>> = []
      const l1 = yield* LruCache.make<string, string>({ capacity: 100 })
      const l2Inner = yield* LruCache.make<string, string>({ capacity: 100 })
      const l2: Cache.Cache<string, string> = {
        ...l2Inner,
        getMany: (ks) => Effect.suspend(() => (asked.push([...ks]), l2Inner.getMany(ks)))
      }
      const cache = yield* MultiLevelCache.make({ name: "many", tiers: [l1, l2], load: store.load })
      yield* l1.setMany(keys.slice(0, 10).map((k) => [k, `${k} from L1`]))
      yield* l2.setMany(keys.slice(10, 20).map((k) => [k, `${k} from L2`]))

      const found = yield* cache.getMany(keys)
      expect(found.size).toBe(30)
      expect(found.get("k3")).toBe("k3 from L1")
      expect(found.get("k13")).toBe("k13 from L2")
      expect(found.get("k23")).toBe("k23 from store")
      expect(asked).toStrictEqual([keys.slice(10)])
      expect(store.loads).toStrictEqual([keys.slice(20)])
    }))

  it.scoped("1,000 concurrent gets: one load for one cold key, one batched load for 1,000 distinct keys", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 1000 }, (_, i) => `k${i}`)
      const store = yield* makeStore(keys.map((k) => [k, k.toUpperCase()]))
      const { cache } = yield* twoTiers(store)
      const same = yield* Effect.forEach(keys, () => cache.get("k1"), { concurrency: "unbounded" })
      expect(new Set(same)).toStrictEqual(new Set(["K1"]))
      expect(store.loads).toStrictEqual([["k1"]])

      const distinct = yield* Effect.forEach(keys, (k) => cache.get(k), { concurrency: "unbounded" })
      expect(distinct[999]).toBe("K999")
      expect(store.loads).toHaveLength(2)
      expect(store.loads[1]).toHaveLength(999)
    }))

  it.scoped("a loader failure reaches the callers as its typed error and caches nothing", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "A"]])
      const { cache, l1 } = yield* twoTiers(store)
      store.fail(true)
      expect(yield* Effect.flip(cache.get("a"))).toBeInstanceOf(StoreDown)
      expect(yield* l1.size).toBe(0)
      store.fail(false)
      expect(yield* cache.get("a")).toBe("A")
    }))

  it.scoped("a failing tier is skipped on reads and writes, and counted", () =>
    Effect.gen(function*() {
      const name = `failing-${Math.random()}`
      const store = yield* makeStore([["a", "A"]])
      const l1 = yield* LruCache.make<string, string>({ capacity: 10 })
      const cache = yield* MultiLevelCache.make({ name, tiers: [l1, brokenTier], load: store.load })
      expect(yield* cache.get("a")).toBe("A")
      yield* cache.set("b", "B")
      yield* cache.invalidate("a")
      expect(yield* cache.getMany(["a", "b"])).toStrictEqual(new Map([["a", "A"], ["b", "B"]]))
      // get: L2 read and back-fill; set; invalidate; getMany: L2 read and back-fill.
      expect((yield* CacheMetrics.stats({ cache: name, tier: "multilevel" })).errors).toBe(6)
    }))

  it.scoped("a hanging tier is abandoned after its timeout (TestClock) and the read falls through", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "A"]])
      const l1 = yield* LruCache.make<string, string>({ capacity: 10 })
      const cache = yield* MultiLevelCache.make({
        name: `hanging-${Math.random()}`,
        tiers: [l1, { cache: hangingTier, timeout: "100 millis" }],
        load: store.load
      })
      const reader = yield* Effect.fork(cache.get("a"))
      // One timeout for the L2 read, one for the L2 back-fill.
      yield* TestClock.adjust("100 millis")
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(reader)).toBe("A")
      expect((yield* cache.metrics.stats).errors).toBe(2)
    }))

  it.scoped("a load that began before a write does not store its older value afterwards", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "old"]])
      const { cache, l1, l2 } = yield* twoTiers(store)
      const gate = yield* store.hold
      const reader = yield* Effect.fork(cache.get("a"))
      for (let i = 0; i < 100 && store.loads.length === 0; i++) yield* Effect.yieldNow()
      expect(store.loads).toStrictEqual([["a"]]) // the load has read "old" and is held

      store.rows.set("a", "new")
      yield* cache.set("a", "new") // the write-through's cache update

      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(reader)).toBe("old") // that read began before the write
      expect(yield* l1.getOption("a")).toStrictEqual(Option.some("new"))
      expect(yield* l2.getOption("a")).toStrictEqual(Option.some("new"))
      expect(yield* cache.get("a")).toBe("new")
    }))

  it.effect.prop(
    "through write-through, every read returns what the store holds",
    [
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("get" as const), key: fc.integer({ min: 0, max: 12 }) }),
          fc.record({ op: fc.constant("getMany" as const), keys: fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 6 }) }),
          fc.record({ op: fc.constant("save" as const), key: fc.integer({ min: 0, max: 12 }), value: fc.string({ maxLength: 3 }) }),
          fc.record({ op: fc.constant("delete" as const), key: fc.integer({ min: 0, max: 12 }) })
        ),
        { maxLength: 80 }
      )
    ],
    ([ops]) =>
      Effect.gen(function*() {
        const store = yield* makeStore()
        const l1 = yield* LruCache.make<string, string>({ capacity: 3 })
        const l2 = yield* LruCache.make<string, string>({ capacity: 6 })
        const cache = yield* MultiLevelCache.make({ name: "prop", tiers: [l1, l2], load: store.load })
        const writes = WriteThrough.make({
          cache,
          save: ([k, v]: readonly [string, string]) => Effect.sync(() => (store.rows.set(k, v), v)),
          remove: (k: string) => Effect.sync(() => void store.rows.delete(k)),
          keyOfInput: ([k]) => k
        })
        for (const step of ops) {
          if (step.op === "get") {
            const k = String(step.key)
            expect(yield* cache.getOption(k)).toStrictEqual(Option.fromNullable(store.rows.get(k)))
          } else if (step.op === "getMany") {
            const ks = step.keys.map(String)
            const expected = new Map(ks.flatMap((k) => (store.rows.has(k) ? [[k, store.rows.get(k)!] as const] : [])))
            expect(yield* cache.getMany(ks)).toStrictEqual(expected)
          } else if (step.op === "save") {
            const k = String(step.key)
            yield* writes.save([k, `${k}=${step.value}`])
          } else {
            yield* writes.delete(String(step.key))
          }
        }
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 200 } }
  )
})

describe("WriteThrough", () => {
  const setup = Effect.gen(function*() {
    const store = yield* makeStore([["a", "a=1"]])
    const { cache, l1, l2 } = yield* twoTiers(store)
    let failWrites = false
    let writeGate: Deferred.Deferred<void> | undefined
    const writes = WriteThrough.make({
      cache,
      save: ([k, v]: readonly [string, string]) =>
        Effect.gen(function*() {
          if (writeGate !== undefined) yield* Deferred.await(writeGate)
          if (failWrites) return yield* new StoreDown()
          store.rows.set(k, v)
          return v
        }),
      remove: (k: string) =>
        Effect.suspend(() => (failWrites ? new StoreDown() : Effect.sync(() => void store.rows.delete(k)))),
      keyOfInput: ([k]) => k
    })
    yield* cache.get("a") // now in L1 and L2
    return {
      store,
      l1,
      l2,
      writes,
      failWrites: (on: boolean) => (failWrites = on),
      holdWrites: Effect.map(Deferred.make<void>(), (d) => (writeGate = d))
    }
  })

  it.scoped("save writes the store first, then every tier", () =>
    Effect.gen(function*() {
      const t = yield* setup
      expect(yield* t.writes.save(["a", "a=2"])).toBe("a=2")
      expect(t.store.rows.get("a")).toBe("a=2")
      expect(yield* t.l1.getOption("a")).toStrictEqual(Option.some("a=2"))
      expect(yield* t.l2.getOption("a")).toStrictEqual(Option.some("a=2"))
    }))

  it.scoped("a failed store write leaves every tier as it was", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.failWrites(true)
      expect(yield* Effect.flip(t.writes.save(["a", "a=2"]))).toBeInstanceOf(StoreDown)
      expect(yield* Effect.flip(t.writes.delete("a"))).toBeInstanceOf(StoreDown)
      expect(yield* t.l1.getOption("a")).toStrictEqual(Option.some("a=1"))
      expect(yield* t.l2.getOption("a")).toStrictEqual(Option.some("a=1"))
    }))

  it.scoped("delete removes from the store, then invalidates every tier", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* t.writes.delete("a")
      expect(t.store.rows.has("a")).toBe(false)
      expect(yield* t.l1.getOption("a")).toStrictEqual(Option.none())
      expect(yield* t.l2.getOption("a")).toStrictEqual(Option.none())
    }))

  it.scoped("a save interrupted mid-write invalidates the key: its outcome is unknown", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* t.holdWrites
      const saving = yield* Effect.fork(t.writes.save(["a", "a=2"]))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(saving)
      expect(yield* t.l1.getOption("a")).toStrictEqual(Option.none())
      expect(yield* t.l2.getOption("a")).toStrictEqual(Option.none())
    }))
})

/** A working in-memory tier that can be switched off (every call then fails), counting the calls it gets. */
const switchableTier = (name: string) =>
  Effect.gen(function*() {
    const inner = yield* LruCache.make<string, string>({ capacity: 100, name })
    let down = false
    let calls = 0
    const through = <A>(effect: Effect.Effect<A>): Effect.Effect<A, StoreDown> =>
      Effect.suspend(() => {
        calls++
        return down ? Effect.fail(new StoreDown()) : effect
      })
    const tier: Cache.Cache<string, string, StoreDown> = {
      name,
      get: (k) => through(Effect.either(inner.get(k))).pipe(Effect.flatten),
      getOption: (k) => through(inner.getOption(k)),
      getMany: (ks) => through(inner.getMany(ks)),
      set: (k, v) => through(inner.set(k, v)),
      setMany: (es) => through(inner.setMany(es)),
      invalidate: (k) => through(inner.invalidate(k)),
      invalidateAll: through(inner.invalidateAll),
      size: through(inner.size)
    }
    return {
      tier,
      inner,
      setDown: (value: boolean) => (down = value),
      calls: () => calls
    }
  })

describe("MultiLevelCache tiers that fail", () => {
  it.scoped("the breaker opens after consecutive failures, skips the tier, probes after the cooldown, closes", () =>
    Effect.gen(function*() {
      const name = `breaker-${Math.random()}`
      const store = yield* makeStore(Array.from({ length: 20 }, (_, i) => [`k${i}`, `v${i}`] as const))
      const l1 = yield* LruCache.make<string, string>({ capacity: 1 }) // keeps sending reads on to L2
      const l2 = yield* switchableTier("l2")
      const cache = yield* MultiLevelCache.make({
        name,
        tiers: [l1, { cache: l2.tier, breaker: { failures: 3, cooldown: "10 seconds" } }],
        load: store.load
      })
      l2.setDown(true)
      for (let i = 0; i < 3; i++) expect(yield* cache.get(`k${i}`)).toBe(`v${i}`)
      // Each read failed on L2 twice (the read and the back-fill): the third failure opened the breaker.
      expect(yield* cache.breakers).toStrictEqual(["closed", "open"])
      const callsWhenOpen = l2.calls()
      for (let i = 3; i < 10; i++) expect(yield* cache.get(`k${i}`)).toBe(`v${i}`)
      expect(l2.calls()).toBe(callsWhenOpen) // not called at all while open
      expect((yield* cache.metrics.stats).skips).toBeGreaterThanOrEqual(7)

      yield* TestClock.adjust("10 seconds")
      expect(yield* cache.breakers).toStrictEqual(["closed", "half-open"])
      l2.setDown(false)
      expect(yield* cache.get("k10")).toBe("v10") // the probe goes through and succeeds
      expect(yield* cache.breakers).toStrictEqual(["closed", "closed"])
      expect(l2.calls()).toBeGreaterThan(callsWhenOpen)
    }))

  it.scoped("a failed probe opens the breaker for another cooldown", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "A"], ["b", "B"]])
      const l1 = yield* LruCache.make<string, string>({ capacity: 1 })
      const l2 = yield* switchableTier("l2")
      const cache = yield* MultiLevelCache.make({
        name: `probe-${Math.random()}`,
        tiers: [l1, { cache: l2.tier, breaker: { failures: 1, cooldown: "5 seconds" } }],
        load: store.load
      })
      l2.setDown(true)
      yield* cache.get("a")
      expect((yield* cache.breakers)[1]).toBe("open")
      yield* TestClock.adjust("5 seconds")
      yield* cache.get("b") // the probe fails
      expect((yield* cache.breakers)[1]).toBe("open")
      yield* TestClock.adjust("4 seconds")
      expect((yield* cache.breakers)[1]).toBe("open")
      yield* TestClock.adjust("1 second")
      expect((yield* cache.breakers)[1]).toBe("half-open")
    }))

  it.scoped("a write that missed a tier makes its key dirty there: not served, then invalidated on recovery", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["a", "a=1"], ["b", "b=1"]])
      const l1 = yield* LruCache.make<string, string>({ capacity: 10 })
      const l2 = yield* switchableTier("l2")
      const cache = yield* MultiLevelCache.make({ name: `dirty-${Math.random()}`, tiers: [l1, l2.tier], load: store.load })
      const writes = WriteThrough.make({
        cache,
        save: ([k, v]: readonly [string, string]) => Effect.sync(() => (store.rows.set(k, v), v)),
        remove: (k: string) => Effect.sync(() => void store.rows.delete(k)),
        keyOfInput: ([k]) => k
      })
      expect(yield* cache.getMany(["a", "b"])).toStrictEqual(new Map([["a", "a=1"], ["b", "b=1"]])) // in both tiers

      l2.setDown(true)
      yield* writes.save(["a", "a=2"]) // the store and L1 have it; L2 still holds a=1
      yield* writes.delete("b") // L2 still holds b=1
      l2.setDown(false)
      expect(yield* l2.inner.getOption("a")).toStrictEqual(Option.some("a=1")) // stale in the tier itself

      // Another instance's view: its L1 is empty, so it reads through L2 — which must not answer a or b.
      yield* l1.invalidateAll
      expect(yield* cache.getMany(["a", "b"])).toStrictEqual(new Map([["a", "a=2"]]))
      // That successful L2 read started the replay: a and b are invalidated in L2.
      for (let i = 0; i < 100 && Option.isSome(yield* l2.inner.getOption("b")); i++) yield* Effect.yieldNow()
      expect(yield* l2.inner.getOption("b")).toStrictEqual(Option.none())
      expect(yield* l2.inner.getOption("a")).not.toStrictEqual(Option.some("a=1"))
    }))
})

describe("MultiLevelCache concurrent writes", () => {
  it.scoped("of two concurrent sets of one key, each tier ends with the later one's value or none, never the earlier's", () =>
    Effect.gen(function*() {
      const store = yield* makeStore()
      const l1 = yield* LruCache.make<string, string>({ capacity: 10 })
      const inner = yield* LruCache.make<string, string>({ capacity: 10 })
      // The first set's L2 write is slow: the second set overtakes it.
      const slow = yield* Deferred.make<void>()
      let first = true
      const l2: Cache.Cache<string, string> = {
        ...inner,
        setMany: (entries) =>
          Effect.suspend(() => {
            if (!first) return inner.setMany(entries)
            first = false
            return Effect.zipRight(Deferred.await(slow), inner.setMany(entries))
          })
      }
      const cache = yield* MultiLevelCache.make({ name: `sets-${Math.random()}`, tiers: [l1, l2], load: store.load })
      const earlier = yield* Effect.fork(cache.set("k", "earlier"))
      yield* Effect.yieldNow()
      yield* cache.set("k", "later")
      expect(yield* l1.getOption("k")).toStrictEqual(Option.some("later"))
      yield* Deferred.succeed(slow, undefined)
      yield* Fiber.join(earlier)
      expect(yield* l1.getOption("k")).not.toStrictEqual(Option.some("earlier"))
      expect(yield* inner.getOption("k")).not.toStrictEqual(Option.some("earlier"))
    }))
})

describe("dirty marks and writes in flight", () => {
  it.scoped("a write still in flight when a later write of its key misses the tier does not clear that key's mark", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([["k", "k=1"]])
      const l1 = yield* LruCache.make<string, string>({ capacity: 10 })
      const inner = yield* LruCache.make<string, string>({ capacity: 10 })
      let gate: Deferred.Deferred<void> | undefined
      let down = false
      // An L2 whose writes can be held (a slow server) or fail (a down one).
      const l2: Cache.Cache<string, string, StoreDown> = {
        ...inner,
        set: (k, v) =>
          Effect.suspend(() => {
            if (down) return Effect.fail(new StoreDown())
            return gate === undefined ? inner.set(k, v) : Effect.zipRight(Deferred.await(gate), inner.set(k, v))
          })
      }
      const cache = yield* MultiLevelCache.make({ name: `ticks-${Math.random()}`, tiers: [l1, l2], load: store.load })

      const slowServer = yield* Deferred.make<void>()
      gate = slowServer
      const slow = yield* Effect.fork(cache.set("k", "k=2")) // its L2 write waits on the slow server
      yield* Effect.yieldNow()
      gate = undefined
      down = true
      store.rows.set("k", "k=3")
      yield* cache.set("k", "k=3") // misses L2: the key is dirty there
      down = false

      yield* Deferred.succeed(slowServer, undefined)
      yield* Fiber.join(slow) // k=2 lands in L2 and succeeds: it started before the mark, so the mark stays
      yield* l1.invalidateAll
      expect(yield* cache.get("k")).toBe("k=3") // not L2's k=2: dirty there, then repaired from the store
      expect(yield* cache.getMany(["k"])).toStrictEqual(new Map([["k", "k=3"]]))
    }))
})
