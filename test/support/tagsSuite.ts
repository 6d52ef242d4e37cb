/**
 * Tag invalidation across two (or three) instances over a real Redis: each instance has its own connection, bus,
 * L1 and `LoadingCache`, and all share one namespace — one L2 of entries and one tag ledger (the hash
 * `escape(namespace)#tags`). The source is an in-memory one shared by the instances (the user's store, not the
 * subject: Redis is). Its rows' texts are `<project>/<name>`, and an entry's tag is its project.
 *
 * What is checked: a tagged L1 hit reads nothing from the ledger and `invalidateTag` on one instance reaches the
 * other within the bus's delivery time (logged); a load overtaken by an invalidation of its tag is never served
 * afterwards, on either instance, although it was written back; an instance started after an invalidation reads
 * the ledger once and serves nothing older than it; the ledger is one key, written by one script call (so no
 * `CROSSSLOT` on a cluster). Every instance's bus is wrapped to count its ledger reads and writes.
 * `Coherence.test.ts` runs it on the shared Redis server, `CoherenceCluster.test.ts` on a private Redis Cluster.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Cache } from "../../src/Cache.js"
import { tagLedgerKey } from "../../src/internal/redisTagLedger.js"
import * as InvalidationBus from "../../src/InvalidationBus.js"
import * as LoadingCache from "../../src/LoadingCache.js"
import * as LruCache from "../../src/LruCache.js"
import * as RedisCache from "../../src/RedisCache.js"
import * as RedisClient from "../../src/RedisClient.js"
import type { Backend } from "./coherence.js"
import { Item, makeSource, type Source, type SourceDown } from "./loadingSource.js"
import { uniqueNamespace } from "./redis.js"
import { waitFor } from "./wait.js"

type Entry = LoadingCache.Entry<Item>

/** One instance: its cache, its L1, its bus's counters, and how often it went to the ledger. */
interface Instance {
  readonly cache: LoadingCache.LoadingCache<string, Item, SourceDown>
  readonly l1: Cache<string, Entry, unknown>
  readonly bus: Effect.Effect<InvalidationBus.Stats>
  /** Reads of the ledger (`HMGET`) so far. */
  readonly ledgerReads: () => number
  /** Writes of the ledger (one script call each) so far. */
  readonly ledgerWrites: () => number
}

/** The project of a row: what its entry is tagged with. */
const projectOf = (item: Item): ReadonlyArray<string> => [item.text.split("/")[0]!]

/**
 * An instance over `backend` in `namespace`, closed with the scope: a connection of its own (as a separate
 * process would have), its bus wrapped to count the ledger's round trips, an L1, and the shared L2 of entries.
 */
const instance = (backend: Backend, namespace: string, label: string, source: Source) =>
  Effect.gen(function*() {
    const client = yield* RedisClient.make(backend.connection())
    const withClient = Effect.provideService(RedisClient.RedisClient, client)
    const raw = yield* InvalidationBus.make<string>({ namespace, decodeKey: Option.some }).pipe(withClient)
    let reads = 0
    let writes = 0
    // The cache orders and reads tag invalidations through its bus: counted here, where they leave for Redis.
    const bus: InvalidationBus.InvalidationBus<string> = {
      ...raw,
      tagPositions: (tags) => Effect.zipRight(Effect.sync(() => void reads++), raw.tagPositions(tags)),
      invalidateTags: (tags, floor) => Effect.zipRight(Effect.sync(() => void writes++), raw.invalidateTags(tags, floor))
    }
    const l1 = yield* LruCache.make<string, Entry>({ capacity: 1000, name: `${label}-l1` })
    // Not versioned: last write wins, so nothing but the tags keeps an overtaken entry from answering.
    const l2 = yield* RedisCache.make<string, Entry, LoadingCache.EntryEncoded<Item>>({
      namespace,
      schema: LoadingCache.entrySchema(Item),
      timeToLive: "5 minutes",
      name: `${label}-l2`
    }).pipe(withClient)
    const cache = yield* LoadingCache.make({
      name: label,
      tiers: [l1, l2],
      invalidations: bus,
      timeToLive: "1 minute",
      tags: projectOf,
      load: source.load
    })
    return {
      cache,
      l1,
      bus: raw.stats,
      ledgerReads: () => reads,
      ledgerWrites: () => writes
    } satisfies Instance
  })

/** A fresh namespace on `backend` (its keys removed with the scope) and a source shared by its instances. */
const setup = (backend: Backend, rows: ReadonlyArray<readonly [string, string]>) =>
  Effect.gen(function*() {
    const namespace = uniqueNamespace("tags")
    yield* Layer.build(backend.cleanNamespaceOnClose(namespace))
    const source = yield* makeSource(rows)
    const start = (label: string): Effect.Effect<Instance, unknown, Scope.Scope> =>
      instance(backend, namespace, `${namespace}-${label}`, source)
    return { namespace, source, start }
  })

/** Rows of two projects: their key is their text at version 1. */
const rows = ["p1/a", "p1/b", "p2/a", "p2/b"].map((key) => [key, key] as const)

const versionOf = (read: Effect.Effect<Item, unknown>) => Effect.map(read, (item) => item.version)

/** The suite on `backend`. */
export const tagsSuite = (backend: Backend): void => {
  describe(`tags across two instances over ${backend.name}`, () => {
    it.scopedLive("a tagged L1 hit costs no round trip, and invalidateTag on A reaches B within the bus delivery time", () =>
      Effect.gen(function*() {
        const { source, start } = yield* setup(backend, rows)
        const a = yield* start("a")
        const b = yield* start("b")
        for (const [key] of rows) yield* a.cache.get(key)
        expect(source.calls()).toBe(rows.length)
        for (const [key] of rows) yield* b.cache.get(key)
        expect(source.calls()).toBe(rows.length) // B answered from A's entries in Redis
        // B had not read the ledger: the first entry it took from Redis cost one read of its tags, once.
        expect(b.ledgerReads()).toBeLessThanOrEqual(2)

        const readsBefore = b.ledgerReads()
        const callsBefore = source.calls()
        const hitsStarted = performance.now()
        for (let i = 0; i < 1_000; i++) expect((yield* b.cache.get("p1/a")).version).toBe(1)
        const hitsMillis = performance.now() - hitsStarted
        expect(b.ledgerReads() - readsBefore).toBe(0)
        expect(source.calls() - callsBefore).toBe(0)

        const changed = source.write("p1/a", "p1/a")
        const received = (yield* b.bus).received
        const sent = performance.now()
        yield* a.cache.invalidateTag("p1")
        const written = performance.now()
        expect(a.ledgerWrites()).toBe(1)
        // B answers from its L1 until the message arrives, then loads: polled every millisecond, for 2 s at most.
        let heard: number | undefined
        let served: number | undefined
        while (served === undefined && performance.now() - sent < 2_000) {
          if (heard === undefined && (yield* b.bus).received > received) heard = performance.now()
          if ((yield* b.cache.get("p1/a")).version === changed.version) served = performance.now()
          else yield* Effect.sleep("1 millis")
        }
        expect(served, "B read the new version within 2 s").toBeDefined()
        console.log(
          `[tags over ${backend.name}] invalidateTag on A → new version on B: ${(served! - sent).toFixed(1)} ms ` +
            `(the ledger write took ${(written - sent).toFixed(1)} ms, the message was seen on B after ` +
            `${heard === undefined ? "?" : (heard - sent).toFixed(1)} ms; 1,000 L1 hits took ${hitsMillis.toFixed(1)} ms; ` +
            `B read the ledger ${readsBefore} time(s) to take A's entries from Redis)`
        )

        // Every entry of p1 is gone on B, not only the changed row's; p2's are still served from cache.
        const reloads = source.calls()
        expect(yield* versionOf(b.cache.get("p1/b"))).toBe(1)
        expect(source.calls() - reloads).toBe(1)
        const readsAfter = b.ledgerReads()
        expect(yield* versionOf(b.cache.get("p2/a"))).toBe(1)
        expect(yield* versionOf(b.cache.get("p2/b"))).toBe(1)
        expect(source.calls() - reloads).toBe(1)
        expect(b.ledgerReads() - readsAfter).toBe(0)
        expect(yield* versionOf(a.cache.get("p1/a"))).toBe(changed.version)
      }))

    it.scopedLive("a load in flight when its tag is invalidated is never served afterwards, on either instance", () =>
      Effect.gen(function*() {
        const { namespace, source, start } = yield* setup(backend, [...rows, ["p1/late", "p1/late"]])
        const a = yield* start("a")
        const b = yield* start("b")
        // Both know the ledger before the race: B's load is stamped with a real position, not "unseen".
        yield* a.cache.get("p1/a")
        yield* b.cache.get("p1/b")

        yield* source.hold
        const reading = yield* Effect.fork(b.cache.get("p1/late"))
        yield* waitFor(() => source.running() === 1, 2_000) // B's load has read version 1 and waits
        const changed = source.write("p1/late", "p1/late")
        const received = (yield* b.bus).received
        yield* a.cache.invalidateTag("p1")
        yield* waitFor(() => Effect.map(b.bus, (stats) => stats.received > received), 2_000)
        yield* Effect.sleep("20 millis") // the message is counted before its listener has run
        yield* source.release

        const first = yield* Fiber.join(reading)
        expect([1, changed.version]).toContain(first.version) // it began before the invalidation: either is right
        // The premise: the overtaken load was written back (here at least into B's L1), and must not answer.
        const backFilled = Option.map(yield* b.l1.getOption("p1/late"), (entry) => entry.value?.version)
        const raw = yield* backend.raw
        const stored = yield* backend.storedKey(raw, namespace, "p1/late")
        const inRedis = yield* Effect.promise(() => raw.get(stored))
        console.log(
          `[tags over ${backend.name}] the overtaken load answered version ${first.version}; ` +
            `B's L1 holds version ${String(Option.getOrUndefined(backFilled))}, Redis ${inRedis}`
        )

        expect(yield* versionOf(a.cache.get("p1/late"))).toBe(changed.version)
        expect(yield* versionOf(b.cache.get("p1/late"))).toBe(changed.version)
        // And again, with A's fresh entry gone from Redis: B's own answer does not come from what it held.
        yield* b.l1.invalidate("p1/late")
        expect(yield* versionOf(b.cache.get("p1/late"))).toBe(changed.version)
      }))

    it.scopedLive("an instance started after an invalidation reads the tag positions once and never serves an entry older than it", () =>
      Effect.gen(function*() {
        const { source, start } = yield* setup(backend, rows)
        const a = yield* start("a")
        yield* a.cache.get("p1/a")
        yield* a.cache.get("p2/a") // in Redis, stamped before the invalidation, and not of its tag
        const changed = source.write("p1/a", "p1/a")
        yield* a.cache.invalidateTag("p1")

        const c = yield* start("c")
        const calls = source.calls()
        expect(yield* versionOf(c.cache.get("p1/a"))).toBe(changed.version) // Redis's entry is older than the invalidation
        expect(source.calls() - calls).toBe(1)
        console.log(`[tags over ${backend.name}] C, started after the invalidation, read the ledger ${c.ledgerReads()} time(s)`)
        expect(c.ledgerReads()).toBeGreaterThanOrEqual(1)
        expect(c.ledgerReads()).toBeLessThanOrEqual(2)
        const reads = c.ledgerReads()
        expect(yield* versionOf(c.cache.get("p1/a"))).toBe(changed.version) // an L1 hit
        expect(c.ledgerReads()).toBe(reads)
        expect(source.calls() - calls).toBe(1)

        // A's p2 entry in Redis predates what C read of the ledger: its tag is read once, and it answers.
        expect(yield* versionOf(c.cache.get("p2/a"))).toBe(1)
        expect(source.calls() - calls).toBe(1)
        expect(c.ledgerReads() - reads).toBeLessThanOrEqual(1)
      }))

    it.scopedLive("the ledger is one key: invalidateTag is one script call and no CROSSSLOT", () =>
      Effect.gen(function*() {
        const { namespace, start } = yield* setup(backend, rows)
        const a = yield* start("a")
        const b = yield* start("b")
        for (const tag of ["p1", "p2", "p3"]) yield* a.cache.invalidateTag(tag)
        yield* b.cache.invalidateTag("p1")
        // One write of the ledger each, and no read: an invalidation needs nothing from it first.
        expect([a.ledgerWrites(), b.ledgerWrites()]).toStrictEqual([3, 1])
        expect([a.ledgerReads(), b.ledgerReads()]).toStrictEqual([0, 0])
        for (const [key] of rows) yield* a.cache.get(key) // entries beside the ledger in the namespace

        const raw = yield* backend.raw
        const ledger = tagLedgerKey(namespace)
        const position = (name: string) => Effect.promise(() => raw.hget(ledger, name))
        const [p1, p2, p3, seq] = yield* Effect.all([position("t:p1"), position("t:p2"), position("t:p3"), position("#seq")])
        for (const at of [p1, p2, p3, seq]) expect(at).toMatch(/^[1-9]\d*$/) // positive integers
        // Ordered: each above the one before, B's (the last) above A's; the ledger's position is the last one.
        expect(Number(p2)).toBeLessThan(Number(p3))
        expect(Number(p3)).toBeLessThan(Number(p1))
        expect(seq).toBe(p1)

        // Every key of the namespace, on every master: the entries, and the ledger, one key.
        const prefix = RedisCache.escapeKeyPart(namespace)
        const keys = (yield* Effect.promise(() => raw.keysMatching(`${prefix}*`)))
          .filter((key) => key.startsWith(`${prefix}:`) || key.startsWith(`${prefix}#`))
        const entries = new Set(yield* Effect.forEach(rows, ([key]) => backend.storedKey(raw, namespace, key)))
        const others = keys.filter((key) => !entries.has(key) && key !== RedisCache.generationKey(namespace))
        expect(others).toStrictEqual([ledger])
        expect(keys.filter((key) => entries.has(key)).length).toBe(rows.length)
      }))
  })
}
