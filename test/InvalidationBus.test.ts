import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as RedisClient from "../src/RedisClient.js"
import { tagLedgerKey } from "../src/internal/redisTagLedger.js"
import { privateRedis, rawRedis, redisUrl, uniqueNamespace } from "./support/redis.js"

/** A bus on `url` with a listener that records what it hears. */
const busWith = (namespace: string, url = redisUrl, extra: Partial<InvalidationBus.Options<string>> = {}) =>
  Effect.gen(function*() {
    const heard: Array<ReadonlyArray<string> | "gap"> = []
    const tags: Array<ReadonlyArray<readonly [string, number]>> = []
    const client = yield* RedisClient.make({ url, commandTimeout: "300 millis" })
    const bus = yield* InvalidationBus.make<string>({
      namespace,
      // Keys starting with "!" are not valid here: dropped on arrival.
      decodeKey: (raw) => (raw.startsWith("!") ? Option.none() : Option.some(raw)),
      ...extra
    }).pipe(Effect.provideService(RedisClient.RedisClient, client))
    yield* bus.listen({
      onInvalidate: (keys) => Effect.sync(() => void heard.push(keys)),
      onGap: Effect.sync(() => void heard.push("gap")),
      onTags: (positions) => Effect.sync(() => void tags.push(positions))
    })
    return { bus, heard, tags }
  })

/** Waits (a bounded time) until `condition` holds. */
const waitFor = (condition: () => boolean, millis = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`not reached within ${millis} ms`)
      yield* Effect.sleep("10 millis")
    }
  })

describe("InvalidationBus (real Redis pub/sub)", () => {
  it.scopedLive("delivers keys to the other instances, never to the one that published them", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("bus")
      const a = yield* busWith(namespace)
      const b = yield* busWith(namespace)
      yield* a.bus.publish(["task 1", "a:b", "ünï"])
      yield* b.bus.publish(["from b"])
      yield* waitFor(() => b.heard.length === 1 && a.heard.length === 1)
      expect(b.heard).toStrictEqual([["task 1", "a:b", "ünï"]])
      // Redis delivers a channel's messages in order: had A heard its own message, it would be first.
      expect(a.heard).toStrictEqual([["from b"]])
      expect((yield* a.bus.stats).published).toBe(1)
      expect((yield* b.bus.stats).received).toBe(1)
      expect(a.bus.channel).toBe(b.bus.channel)
      expect(a.bus.instanceId).not.toBe(b.bus.instanceId)
    }))

  it.scopedLive("records each message's lag from the publisher's timestamp; a message without one records none", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("bus-lag")
      const a = yield* busWith(namespace)
      const b = yield* busWith(namespace)
      const lag = CacheMetrics.busLag(namespace)
      yield* a.bus.publish(["k"])
      yield* waitFor(() => b.heard.length === 1)
      const once = yield* Metric.value(lag)
      expect(once.count).toBe(1)
      // Same machine, same clock: between 0 and the time the test has waited.
      expect(once.sum).toBeGreaterThanOrEqual(0)
      expect(once.sum).toBeLessThan(5_000)
      // From a publisher 250 ms behind (an older message, or a clock 250 ms late), and from one without a stamp.
      const raw = yield* rawRedis()
      yield* Effect.promise(() => raw.publish(a.bus.channel, JSON.stringify({ from: "old", keys: ["x"], sent: Date.now() - 250 })))
      yield* Effect.promise(() => raw.publish(a.bus.channel, JSON.stringify({ from: "older", keys: ["y"] })))
      yield* waitFor(() => b.heard.length === 3 && a.heard.length === 2)
      // Both instances heard the stamped one (the histogram is the namespace's); nobody timed the other.
      const after = yield* Metric.value(lag)
      expect(after.count).toBe(3)
      expect(after.sum - once.sum).toBeGreaterThanOrEqual(500)
    }))

  it.scopedLive("ignores foreign, malformed and invalid messages on its channel", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("bus-junk")
      const a = yield* busWith(namespace)
      const raw = yield* rawRedis()
      for (const junk of ["not json", "{}", `{"from":1,"keys":["x"]}`, `{"from":"z","keys":[1,2]}`, `{"from":"z","keys":["!bad"]}`]) {
        yield* Effect.promise(() => raw.publish(a.bus.channel, junk))
      }
      yield* Effect.promise(() => raw.publish(a.bus.channel, JSON.stringify({ from: "someone", keys: ["!bad", "good"] })))
      yield* waitFor(() => a.heard.length === 1)
      expect(a.heard).toStrictEqual([["good"]])
    }))

  it.scopedLive("after the subscription was lost, listeners hear of the gap once it is back", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      const namespace = uniqueNamespace("bus-gap")
      const a = yield* busWith(namespace, server.url)
      const b = yield* busWith(namespace, server.url)
      yield* server.stop
      yield* server.start
      // ioredis reconnects with a backoff capped at 2 s; each bus resubscribes, then reports the gap.
      yield* waitFor(() => a.heard.includes("gap") && b.heard.includes("gap"), 10_000)
      // Once per lost subscription: a reconnection that drops again on a busy machine is a second gap.
      expect((yield* a.bus.stats).gaps).toBeGreaterThanOrEqual(1)
      // And messages flow again.
      yield* a.bus.publish(["after"])
      yield* waitFor(() => b.heard.some((h) => Array.isArray(h) && h[0] === "after"))
    }), { timeout: 30_000 })

  it.scopedLive("keys that could not be published are kept and published once Redis answers again", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      const namespace = uniqueNamespace("bus-pending")
      const a = yield* busWith(namespace, server.url, { retryInterval: "500 millis" })
      yield* server.stop
      yield* a.bus.publish(["written during the outage"])
      const stats = yield* a.bus.stats
      expect(stats.publishFailures).toBe(1)
      expect(stats.pending).toBe(1)
      yield* server.start
      // A listener that subscribes right after the restart (A publishes again only every 500 ms, after its own
      // reconnection) still hears the kept keys.
      const b = yield* busWith(namespace, server.url)
      yield* waitFor(() => b.heard.some((h) => Array.isArray(h) && h[0] === "written during the outage"), 10_000)
      expect((yield* a.bus.stats).pending).toBe(0)
    }), { timeout: 30_000 })

  it.scopedLive("when more keys were lost than it keeps, it asks everyone to drop everything", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      const namespace = uniqueNamespace("bus-overflow")
      const a = yield* busWith(namespace, server.url, { retryInterval: "500 millis", maxPending: 3 })
      yield* server.stop
      yield* a.bus.publish(["1", "2"])
      yield* a.bus.publish(["3", "4"])
      expect((yield* a.bus.stats).pending).toBe(Infinity)
      yield* server.start
      const b = yield* busWith(namespace, server.url)
      yield* waitFor(() => b.heard.includes("gap"), 10_000)
    }), { timeout: 30_000 })

  it.scopedLive("tag invalidations get ordered positions in the ledger, which the others hear and can read", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("bus-tags")
      const a = yield* busWith(namespace)
      const b = yield* busWith(namespace)
      const raw = yield* rawRedis()
      yield* Effect.addFinalizer(() => Effect.promise(() => raw.del(tagLedgerKey(namespace))))
      // Each instance's first invalidation jumps by a million or more (see the ledger's doc: a failover or a
      // restart may have rolled it back); the next ones follow one by one.
      const first = yield* a.bus.invalidateTags(["x", "y"], 0)
      expect(first).toBeGreaterThan(1_000_000)
      yield* waitFor(() => b.tags.length === 1)
      expect(b.tags).toStrictEqual([[["x", first], ["y", first]]])
      expect(a.tags).toStrictEqual([])
      const second = yield* b.bus.invalidateTags(["x"], 0)
      expect(second).toBeGreaterThan(first + 1_000_000)
      expect(yield* a.bus.invalidateTags(["z"], 3)).toBe(second + 1)
      // Above the floor it is given.
      expect(yield* a.bus.invalidateTags(["w"], second + 100)).toBe(second + 101)
      const read = yield* a.bus.tagPositions(["x", "y", "z", "w", "never"])
      expect(read.position).toBe(second + 101)
      expect([...read.tags]).toStrictEqual([["x", second], ["y", first], ["z", second + 1], ["w", second + 101], ["never", 0]])
      // Malformed tag messages are ignored.
      for (const junk of [`{"from":"z","tags":[["t"]]}`, `{"from":"z","tags":[["t","1"]]}`, `{"from":"z","tags":"t"}`]) {
        yield* Effect.promise(() => raw.publish(a.bus.channel, junk))
      }
      yield* Effect.promise(() => raw.publish(a.bus.channel, JSON.stringify({ from: "z", tags: [["t", 7]] })))
      yield* waitFor(() => a.tags.length === 2)
      expect(a.tags[1]).toStrictEqual([["t", 7]])
    }))

  it.scopedLive("a ledger key that holds something else is a TagLedgerError, not a defect", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("bus-tags-junk")
      const a = yield* busWith(namespace)
      const raw = yield* rawRedis()
      yield* Effect.addFinalizer(() => Effect.promise(() => raw.del(tagLedgerKey(namespace))))
      yield* Effect.promise(() => raw.set(tagLedgerKey(namespace), "not a hash"))
      const written = yield* Effect.exit(a.bus.invalidateTags(["x"], 0))
      const read = yield* Effect.exit(a.bus.tagPositions(["x"]))
      for (const exit of [Exit.asVoid(written), Exit.asVoid(read)]) {
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("TagLedgerError")
      }
      yield* Effect.promise(() => raw.del(tagLedgerKey(namespace)))
      yield* Effect.promise(() => raw.hset(tagLedgerKey(namespace), "#seq", "seven"))
      const garbled = yield* Effect.exit(a.bus.tagPositions(["x"]))
      expect(Exit.isFailure(garbled) && garbled.cause._tag === "Fail" && garbled.cause.error._tag).toBe("TagLedgerError")
    }))

  it.scopedLive("while Redis is down a tag invalidation fails at once with TagLedgerError, and works again after", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      const namespace = uniqueNamespace("bus-tags-down")
      const a = yield* busWith(namespace, server.url, { retryInterval: "500 millis" })
      expect(yield* a.bus.invalidateTags(["x"], 0)).toBeGreaterThan(1_000_000)
      yield* server.stop
      const failed = yield* Effect.exit(a.bus.invalidateTags(["y"], 0))
      expect(Exit.isFailure(failed) && failed.cause._tag === "Fail" && failed.cause.error._tag).toBe("TagLedgerError")
      // Nothing kept for "y": its invalidation failed as a whole (the ledger was not written).
      expect((yield* a.bus.stats).pending).toBe(0)
      yield* server.start
      const b = yield* busWith(namespace, server.url)
      let delivered = false
      for (let i = 0; i < 100 && !delivered; i++) {
        const exit = yield* Effect.exit(a.bus.invalidateTags(["z"], 0))
        delivered = Exit.isSuccess(exit)
        if (!delivered) yield* Effect.sleep("100 millis")
      }
      yield* waitFor(() => b.tags.some((t) => t[0]?.[0] === "z"), 10_000)
    }), { timeout: 30_000 })
})
