/**
 * `RedisCache` on a real Redis Cluster: 3 masters, started once for this file and stopped by pid with it. The tier
 * contracts, versioned writes and tombstones, batches spread over every slot (round trips counted at the client,
 * commands by `MONITOR` at each node, `CROSSSLOT` and `MOVED` in each node's error statistics), a slot map that is
 * wrong or missing, the namespace generation across two instances, corrupt values. Each test has its own
 * namespace.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Cluster, Redis } from "ioredis"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { slotOf } from "../src/internal/redisCluster.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { clusterForFile, onNode, rawCluster, type TestCluster } from "./support/cluster.js"
import { conformance } from "./support/conformance.js"
import { uniqueNamespace } from "./support/redis.js"
import { versionedConformance } from "./support/versionedConformance.js"

interface Shared {
  readonly cluster: TestCluster
  /** The library's client, as a service would have it. */
  readonly service: RedisClient.Service
  /** A second client: another instance of the service. */
  readonly other: RedisClient.Service
  /** A plain ioredis cluster client, outside the library. */
  readonly raw: Cluster
  /** The masters, by port. */
  readonly masters: ReadonlyArray<number>
}

const the = clusterForFile((cluster): Effect.Effect<Shared, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const nodes = cluster.seeds.split(",")
    const service = yield* RedisClient.make({ clusterNodes: nodes })
    const other = yield* RedisClient.make({ clusterNodes: nodes })
    return { cluster, service, other, raw: yield* rawCluster(cluster), masters: yield* cluster.masters }
  })
)

/** Provides the shared cluster client (or `other`'s). */
const onCluster = <A, E, R>(effect: Effect.Effect<A, E, R>, client: "service" | "other" = "service") =>
  Effect.suspend(() => Effect.provideService(effect, RedisClient.RedisClient, the()[client]))

/** The library client's `Cluster`. */
const clusterOf = (service: RedisClient.Service): Cluster => {
  const client = service.client
  if (!RedisClient.isCluster(client)) throw new Error("not a cluster client")
  return client
}

/** Each node's error replies so far, by kind (`MOVED`, `CROSSSLOT`…), from `INFO errorstats`: counted by Redis. */
const errorStats = Effect.suspend(() =>
  Effect.forEach(the().masters, (port) =>
    Effect.map(onNode(port, "INFO", "errorstats"), (info) => {
      const counts = new Map<string, number>()
      for (const [, kind, count] of String(info).matchAll(/errorstat_(\w+):count=(\d+)/g)) counts.set(kind!, Number(count))
      return [port, counts] as const
    }))
)
const totalOf = (stats: ReadonlyArray<readonly [number, ReadonlyMap<string, number>]>, kind: string) =>
  stats.reduce((sum, [, counts]) => sum + (counts.get(kind) ?? 0), 0)

/**
 * Records, at each master, every command that mentions `needle` (`MONITOR` on a connection of its own), so that
 * counts are taken at the servers.
 */
const monitorMasters = (needle: string) =>
  Effect.gen(function*() {
    const seen = new Map<number, Array<ReadonlyArray<string>>>()
    for (const port of the().masters) {
      const list: Array<ReadonlyArray<string>> = []
      seen.set(port, list)
      const connection = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis({ port, host: "127.0.0.1" })),
        (c) => Effect.sync(() => c.disconnect())
      )
      const monitor = yield* Effect.acquireRelease(Effect.promise(() => connection.monitor()), (m) => Effect.sync(() => m.disconnect()))
      monitor.on("monitor", (_time: string, args: Array<string>) => {
        if (args.some((arg) => arg.includes(needle))) list.push([args[0]!.toLowerCase(), ...args.slice(1)])
      })
    }
    /**
     * The commands each master ran since the last `take`. MONITOR lags a little (and starts asynchronously): an
     * `ECHO` of a marker, sent after the commands under test and sent again until seen, says that they were seen.
     */
    const take = Effect.forEach(the().masters, (port) =>
      Effect.gen(function*() {
        const list = seen.get(port)!
        const marker = `${needle}:mark:${Math.random()}`
        for (let attempt = 0; attempt < 50 && !list.some((args) => args.includes(marker)); attempt++) {
          yield* onNode(port, "ECHO", marker)
          for (let i = 0; i < 20 && !list.some((args) => args.includes(marker)); i++) yield* Effect.sleep("5 millis")
        }
        const commands = list.filter((args) => !args.some((arg) => arg.startsWith(`${needle}:mark:`)))
        list.length = 0
        return [port, commands] as const
      }), { concurrency: "unbounded" }).pipe(Effect.map((entries) => new Map(entries)))
    yield* take
    return { take }
  })

/** Counts the requests the client writes to each node's socket: one per pipeline, one per lone command. */
const countRequests = (cluster: Cluster) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const counts = new Map<string, number>()
      const restore: Array<() => void> = []
      for (const node of cluster.nodes("all")) {
        const stream = node.stream as unknown as { write: (...args: Array<unknown>) => boolean }
        const write = stream.write
        const address = `${node.options.host}:${node.options.port}`
        stream.write = function(this: unknown, ...args: Array<unknown>) {
          counts.set(address, (counts.get(address) ?? 0) + 1)
          return write.apply(this, args)
        }
        restore.push(() => void (stream.write = write))
      }
      return {
        /** Requests per node since the last call, then starts again. */
        take: () => {
          const snapshot = new Map(counts)
          counts.clear()
          return snapshot
        },
        restore: () => restore.forEach((undo) => undo())
      }
    }),
    (counter) => Effect.sync(() => counter.restore())
  )

const sum = (counts: ReadonlyMap<unknown, number>) => [...counts.values()].reduce((a, b) => a + b, 0)

/** The master (`host:port`) that serves `key`'s slot, by the client's map. */
const ownerOf = (cluster: Cluster, key: string) => cluster.slots[slotOf(key)]![0]!

/** Random keys, spread over the slots. */
const randomKeys = (count: number) => Array.from({ length: count }, (_, i) => `key-${i}-${Math.random().toString(36).slice(2)}`)

const stringTier = (label: string, extra: { readonly client?: "service" | "other"; readonly namespace?: string } = {}) =>
  Effect.gen(function*() {
    const namespace = extra.namespace ?? uniqueNamespace(label)
    const cache = yield* onCluster(
      RedisCache.make<string, string, string>({ namespace, schema: Schema.String, timeToLive: "1 minute" }),
      extra.client
    )
    return { cache, namespace }
  })

const Versioned = Schema.Struct({ version: Schema.Number, text: Schema.String })

conformance("RedisCache on a cluster", (name) =>
  onCluster(RedisCache.make<string, string, string>({ namespace: uniqueNamespace(name), schema: Schema.String, name, timeToLive: "1 minute" })))

conformance("RedisCache on a cluster, versioned", (name) =>
  onCluster(RedisCache.make<string, string, string>({
    namespace: uniqueNamespace(name),
    schema: Schema.String,
    name,
    timeToLive: "1 minute",
    version: () => 1
  })))

versionedConformance("RedisCache on a cluster, versioned", (name) =>
  onCluster(RedisCache.make<string, typeof Versioned.Type, typeof Versioned.Encoded>({
    namespace: uniqueNamespace(name),
    schema: Versioned,
    name,
    timeToLive: "1 minute",
    version: (value) => value.version,
    tombstoneTimeToLive: "1 minute"
  })))

describe("RedisCache on a Redis Cluster (3 masters)", () => {
  it.scopedLive("getMany of 100 random keys over every master: exactly what was set, one pipeline per master, no CROSSSLOT", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* stringTier("spread")
      const cluster = clusterOf(the().service)
      const keys = randomKeys(100)
      const stored = keys.map((key) => RedisCache.redisKey(namespace, key, 0))
      expect(new Set(stored.map(slotOf)).size).toBeGreaterThan(95)
      expect(new Set(stored.map((key) => ownerOf(cluster, key))).size).toBe(3)
      const values = new Map(keys.map((key, i) => [key, `value ${i}`]))
      const absent = randomKeys(20).map((key) => `absent-${key}`)

      const before = yield* errorStats
      const watch = yield* monitorMasters(RedisCache.escapeKeyPart(namespace))
      const requests = yield* countRequests(cluster)

      yield* cache.setMany(values)
      const writes = requests.take()
      const written = yield* watch.take
      const found = yield* cache.getMany([...keys, ...absent])
      const reads = requests.take()
      const read = yield* watch.take
      const after = yield* errorStats

      expect(found).toStrictEqual(values)
      // At the client: one request per master for the whole batch, writes and reads alike.
      expect(sum(reads)).toBeLessThanOrEqual(3)
      expect(sum(writes)).toBeLessThanOrEqual(3)
      expect([...reads.values()].every((count) => count === 1)).toBe(true)
      // At the servers: each key read once, on the master that owns it, with the generation beside them.
      const generation = RedisCache.generationKey(namespace)
      for (const [port, commands] of read) {
        expect(commands.every(([name]) => name === "get" || name === "mget")).toBe(true)
        for (const [, ...args] of commands) {
          for (const key of args) {
            if (key !== generation) expect(ownerOf(cluster, key)).toBe(`127.0.0.1:${port}`)
          }
        }
      }
      const readKeys = [...read.values()].flatMap((commands) => commands.flatMap(([, ...args]) => args))
      expect(readKeys.filter((key) => key === generation)).toHaveLength(1)
      expect(readKeys.filter((key) => key !== generation).sort()).toStrictEqual(
        [...keys, ...absent].map((key) => RedisCache.redisKey(namespace, key, 0)).sort()
      )
      const sets = [...written.values()].flat().filter(([name]) => name === "set")
      expect(sets).toHaveLength(100)
      // No error reply of any kind on any node: no CROSSSLOT, no MOVED.
      expect(totalOf(after, "CROSSSLOT") - totalOf(before, "CROSSSLOT")).toBe(0)
      expect(totalOf(after, "MOVED") - totalOf(before, "MOVED")).toBe(0)
      console.log(
        `cluster getMany of 120 keys (100 found): ${sum(reads)} requests (${[...reads.values()].join("/")} per master), ` +
          `${[...read.values()].map((c) => c.length).join("/")} commands per master; setMany of 100: ${sum(writes)} requests; ` +
          `CROSSSLOT ${totalOf(after, "CROSSSLOT") - totalOf(before, "CROSSSLOT")}`
      )
    }))

  it.scopedLive("a namespace with a hash tag lives in one slot: a batch is one MGET on one master", () =>
    Effect.gen(function*() {
      const namespace = `{${Math.random().toString(36).slice(2)}}:tagged`
      const { cache } = yield* stringTier("tagged", { namespace })
      const cluster = clusterOf(the().service)
      const requests = yield* countRequests(cluster)
      const keys = randomKeys(30)
      yield* cache.setMany(keys.map((key) => [key, key]))
      const watch = yield* monitorMasters(RedisCache.escapeKeyPart(namespace))
      requests.take()
      const found = yield* cache.getMany(keys)
      expect(found.size).toBe(30)
      const reads = requests.take()
      expect(sum(reads)).toBe(1)
      const commands = [...(yield* watch.take).values()].flat()
      expect(commands.map(([name, ...args]) => [name, args.length])).toStrictEqual([["mget", 30], ["get", 1]])
      // A key that holds another type reads as absent, inside an MGET as alone.
      const listKey = RedisCache.redisKey(namespace, keys[0]!, 0)
      yield* Effect.promise(() => the().raw.del(listKey).then(() => the().raw.rpush(listKey, "x")))
      expect((yield* cache.getMany(keys)).has(keys[0]!)).toBe(false)
      expect(yield* cache.getOption(keys[0]!)).toStrictEqual(Option.none())
    }))

  it.scopedLive("a slot map that is wrong (MOVED) or missing still gives exactly the values stored, on reads and writes", () =>
    Effect.gen(function*() {
      // A client of its own: the test damages its slot map.
      const service = yield* RedisClient.make({ clusterNodes: the().cluster.seeds.split(",") })
      const cluster = clusterOf(service)
      const namespace = uniqueNamespace("moved")
      const cache = yield* RedisCache.make<string, string, string>({ namespace, schema: Schema.String, timeToLive: "1 minute" }).pipe(
        Effect.provideService(RedisClient.RedisClient, service)
      )
      const keys = randomKeys(60)
      const values = new Map(keys.map((key, i) => [key, `v${i}`]))
      yield* cache.setMany(values)
      const masters = [...new Set(keys.map((key) => ownerOf(cluster, RedisCache.redisKey(namespace, key, 0))))]
      const [a, b] = masters as [string, string]
      const slotOfB = keys.map((key) => slotOf(RedisCache.redisKey(namespace, key, 0))).find((slot) => cluster.slots[slot]![0] === b)!
      /** Points the client's map at the wrong master for every slot of `a`'s keys, as a map gone stale would. */
      const misdirect = () => {
        for (const key of keys) {
          const slot = slotOf(RedisCache.redisKey(namespace, key, 0))
          if (cluster.slots[slot]![0] === a) {
            cluster.slots[slot] = [b]
            cluster._groupsBySlot[slot] = cluster._groupsBySlot[slotOfB]!
          }
        }
      }
      const before = yield* errorStats
      misdirect()
      expect(yield* cache.getMany(keys)).toStrictEqual(values)
      const afterReads = yield* errorStats
      expect(totalOf(afterReads, "MOVED") - totalOf(before, "MOVED")).toBeGreaterThan(0)

      misdirect()
      const rewritten = new Map(keys.map((key, i) => [key, `w${i}`]))
      yield* cache.setMany(rewritten)
      const afterWrites = yield* errorStats
      expect(totalOf(afterWrites, "MOVED") - totalOf(afterReads, "MOVED")).toBeGreaterThan(0)
      const check = yield* stringTier("moved-check", { namespace })
      expect(yield* check.cache.getMany(keys)).toStrictEqual(rewritten)

      // No owner known for some slots: those keys go alone, and the client finds their owner.
      for (const key of keys.slice(0, 20)) delete cluster.slots[slotOf(RedisCache.redisKey(namespace, key, 0))]
      expect(yield* cache.getMany(keys)).toStrictEqual(rewritten)
      expect(totalOf(yield* errorStats, "CROSSSLOT")).toBe(0)
    }))

  it.scopedLive("invalidateAll is one INCR of the generation on one node: no SCAN, no KEYS, no DEL", () =>
    Effect.gen(function*() {
      const { cache, namespace } = yield* stringTier("incr")
      yield* cache.setMany(randomKeys(30).map((key) => [key, key]))
      const watch = yield* monitorMasters(RedisCache.escapeKeyPart(namespace))
      yield* cache.invalidateAll
      const seen = [...(yield* watch.take).values()].flat()
      expect(seen).toStrictEqual([["incr", RedisCache.generationKey(namespace)]])
      expect(yield* cache.size).toBe(0)
    }))

  it.scopedLive("two instances: after A's invalidateAll, B's next read misses; B's write with an outdated generation is written again", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("two")
      const a = (yield* stringTier("two", { namespace })).cache
      const b = (yield* stringTier("two", { namespace, client: "other" })).cache
      const keys = randomKeys(12)
      yield* b.setMany(keys.map((key) => [key, `b:${key}`]))
      expect((yield* a.getMany(keys)).size).toBe(12)
      expect((yield* b.getMany(keys)).size).toBe(12)

      yield* a.invalidateAll
      // B still holds generation 0 in memory: its reads find the old values, and the generation beside them.
      expect(yield* b.getMany(keys)).toStrictEqual(new Map())
      expect(yield* b.getOption(keys[0]!)).toStrictEqual(Option.none())
      expect(yield* a.getOption(keys[1]!)).toStrictEqual(Option.none())

      // A writes under generation 1, and B reads it.
      yield* a.set(keys[0]!, "a:new")
      expect(yield* b.get(keys[0]!)).toBe("a:new")

      // B writes while its generation is outdated: the write lands under the new one too.
      yield* a.invalidateAll
      yield* b.set(keys[1]!, "b:after")
      expect(yield* a.get(keys[1]!)).toBe("b:after")
      // Its first attempt is an orphan under the old generation, expiring with the tier's time-to-live.
      const orphan = RedisCache.redisKey(namespace, keys[1]!, 1)
      expect(yield* Effect.promise(() => the().raw.get(orphan))).toBe(JSON.stringify("b:after"))
      const pttl = yield* Effect.promise(() => the().raw.pttl(orphan))
      expect(pttl).toBeGreaterThan(0)
      expect(pttl).toBeLessThanOrEqual(60_000)
      expect(yield* Effect.promise(() => the().raw.get(RedisCache.redisKey(namespace, keys[1]!, 2)))).toBe(JSON.stringify("b:after"))
      // An invalidate with an outdated generation removes the current entry too.
      yield* a.invalidateAll
      yield* a.set(keys[2]!, "a:three")
      // B's first read after an invalidateAll it has not seen is a miss (what it read was of generation 2); then
      // it reads generation 3.
      expect(yield* b.getOption(keys[2]!)).toStrictEqual(Option.none())
      expect(yield* b.getOption(keys[2]!)).toStrictEqual(Option.some("a:three"))
      yield* a.invalidateAll
      yield* a.set(keys[2]!, "a:four")
      yield* b.invalidate(keys[2]!) // B holds generation 3, the namespace is at 4
      expect(yield* a.getOption(keys[2]!)).toStrictEqual(Option.none())

      // A fresh instance starts at the current generation: its first read is a hit.
      yield* a.set(keys[3]!, "a:five")
      const c = (yield* stringTier("two", { namespace, client: "other" })).cache
      expect(yield* c.get(keys[3]!)).toBe("a:five")
      expect(yield* a.size).toBe(1)
    }))

  it.scopedLive("versioned writes and tombstones go through the one-key script on every master", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("versioned")
      const cache = yield* onCluster(RedisCache.make<string, typeof Versioned.Type, typeof Versioned.Encoded>({
        namespace,
        schema: Versioned,
        version: (value) => value.version,
        timeToLive: "1 minute",
        tombstoneTimeToLive: "10 seconds"
      }))
      const cluster = clusterOf(the().service)
      const keys = randomKeys(60)
      expect(new Set(keys.map((key) => ownerOf(cluster, RedisCache.redisKey(namespace, key, 0)))).size).toBe(3)
      const before = yield* errorStats
      yield* cache.setMany(keys.map((key) => [key, { version: 5, text: "five" }]))
      yield* cache.setMany(keys.map((key) => [key, { version: 4, text: "older" }]))
      const found = yield* cache.getMany(keys)
      expect([...found.values()].every((value) => value.version === 5)).toBe(true)
      expect(found.size).toBe(60)
      const raw = the().raw
      expect(yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, keys[0]!, 0)))).toBe(
        `5:${JSON.stringify({ version: 5, text: "five" })}`
      )

      yield* Effect.forEach(keys.slice(0, 10), (key) => cache.invalidate(key), { discard: true })
      yield* cache.setMany(keys.slice(0, 10).map((key) => [key, { version: 9, text: "revived?" }]))
      expect((yield* cache.getMany(keys)).size).toBe(50)
      expect(yield* Effect.promise(() => raw.get(RedisCache.redisKey(namespace, keys[0]!, 0)))).toBe("-:")
      const pttl = yield* Effect.promise(() => raw.pttl(RedisCache.redisKey(namespace, keys[0]!, 0)))
      expect(pttl).toBeGreaterThan(0)
      expect(pttl).toBeLessThanOrEqual(10_000)
      // `size` counts the current generation's keys, tombstones included.
      expect(yield* cache.size).toBe(60)
      yield* cache.invalidateAll
      expect(yield* cache.size).toBe(0)
      // After invalidateAll the tombstones are gone with their generation (documented: no tombstones kept).
      yield* cache.set(keys[0]!, { version: 1, text: "new generation" })
      expect((yield* cache.get(keys[0]!)).version).toBe(1)
      const after = yield* errorStats
      expect(totalOf(after, "CROSSSLOT") - totalOf(before, "CROSSSLOT")).toBe(0)
    }))

  it.scopedLive("corrupt values are a miss, deleted and counted; a generation key holding anything else is a CacheError", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("corrupt")
      const cache = yield* onCluster(RedisCache.make<string, typeof Versioned.Type, typeof Versioned.Encoded>({
        namespace,
        schema: Versioned,
        timeToLive: "1 minute"
      }))
      const raw = the().raw
      const planted = ["not-json", "wrong-shape", "binary", "list"]
      const at = (key: string) => RedisCache.redisKey(namespace, key, 0)
      yield* Effect.promise(() => raw.set(at("not-json"), "{oops"))
      yield* Effect.promise(() => raw.set(at("wrong-shape"), JSON.stringify({ version: "1" })))
      yield* Effect.promise(() => raw.set(at("binary"), Buffer.from([0, 255, 254])))
      yield* Effect.promise(() => raw.rpush(at("list"), "x"))
      yield* cache.set("good", { version: 1, text: "good" })

      expect(yield* cache.getOption("not-json")).toStrictEqual(Option.none())
      expect((yield* Effect.flip(cache.get("wrong-shape")))._tag).toBe("CacheMiss")
      const many = yield* cache.getMany([...planted, "good"])
      expect([...many.keys()]).toStrictEqual(["good"])
      for (const key of ["not-json", "wrong-shape", "binary"]) {
        expect(yield* Effect.promise(() => raw.exists(at(key)))).toBe(0)
      }
      const stats = yield* CacheMetrics.stats({ cache: namespace, tier: "redis" })
      expect(stats.decodeFailures).toBe(3)
      expect(stats.hits).toBe(1)

      yield* Effect.promise(() => raw.set(RedisCache.generationKey(namespace), "not a number"))
      for (const attempt of [cache.get("good"), cache.getMany(["good", "other"]), cache.set("good", { version: 2, text: "x" }), cache.size]) {
        const error = yield* Effect.flip(attempt)
        expect(error._tag).toBe("CacheError")
      }
    }))
})

describe("RedisCache on a Redis Cluster: the whole file", () => {
  it.live("no node answered CROSSSLOT to anything this file sent", () =>
    Effect.gen(function*() {
      expect(totalOf(yield* errorStats, "CROSSSLOT")).toBe(0)
    }))
})
