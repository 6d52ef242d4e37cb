/**
 * The invalidation bus on a real Redis Cluster (3 masters, started by the test): sharded channels spread over
 * the masters, messages spread evenly over the channels, delivery, and a lost subscription heard as a gap.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Cluster, Redis } from "ioredis"
import * as InvalidationBus from "../src/InvalidationBus.js"
import { shardChannel } from "../src/internal/redisBus.js"
import * as RedisClient from "../src/RedisClient.js"
import { testCluster } from "./support/cluster.js"
import { uniqueNamespace } from "./support/redis.js"

/** A bus on the cluster with a listener that records what it hears and when. */
const busOn = (seeds: string, namespace: string) =>
  Effect.gen(function*() {
    const heard: Array<ReadonlyArray<string> | "gap"> = []
    const arrivals: Array<number> = []
    const client = yield* RedisClient.make({ clusterNodes: seeds.split(","), commandTimeout: "500 millis" })
    const bus = yield* InvalidationBus.make<string>({ namespace, decodeKey: Option.some, shards: 8 }).pipe(
      Effect.provideService(RedisClient.RedisClient, client)
    )
    yield* bus.listen({
      onInvalidate: (keys) => Effect.sync(() => {
        heard.push(keys)
        arrivals.push(performance.now())
      }),
      onGap: Effect.sync(() => void heard.push("gap"))
    })
    return { bus, heard, arrivals }
  })

const waitFor = (condition: () => boolean, millis = 10_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`not reached within ${millis} ms`)
      yield* Effect.sleep("10 millis")
    }
  })

describe("InvalidationBus on a Redis Cluster (sharded pub/sub)", () => {
  it.scopedLive("spreads messages evenly over sharded channels on every master, and delivers each once", () =>
    Effect.gen(function*() {
      const cluster = yield* testCluster()
      const namespace = uniqueNamespace("bus-cluster")
      const a = yield* busOn(cluster.seeds, namespace)
      const b = yield* busOn(cluster.seeds, namespace)
      // A raw sharded subscriber counts what each channel carries.
      const counter = yield* Effect.acquireRelease(
        Effect.sync(() => new Cluster(cluster.seeds.split(",").map((seed) => ({ host: "127.0.0.1", port: Number(seed.split(":")[1]) })), { shardedSubscribers: true })),
        (c) => Effect.sync(() => c.disconnect())
      )
      const perChannel = new Map<string, number>()
      counter.on("smessage", (channel: string) => perChannel.set(channel, (perChannel.get(channel) ?? 0) + 1))
      const channels = Array.from({ length: 8 }, (_, i) => shardChannel(a.bus.channel, i, 8))
      for (const channel of channels) yield* Effect.promise(() => counter.ssubscribe(channel))
      // The channels' owners, asked of each master: more than one carries them.
      const owners = new Map<number, number>()
      for (const node of cluster.nodes) {
        const admin = new Redis({ port: node.port, host: "127.0.0.1" })
        const active = (yield* Effect.promise(() => admin.call("PUBSUB", "SHARDCHANNELS", `${a.bus.channel}:*`))) as Array<string>
        admin.disconnect()
        // Each active channel is held by A's, B's and the counter's subscribers: counted once.
        owners.set(node.port, new Set(active).size)
      }
      // Channels spread over the slot space, so over the three masters' equal ranges: 2 or 3 each.
      expect([...owners.values()].sort()).toStrictEqual([2, 3, 3])

      const messages = 160
      const sent: Array<number> = []
      for (let i = 0; i < messages; i++) {
        sent.push(performance.now())
        yield* a.bus.publish([`key-${i}`])
      }
      yield* waitFor(() => b.heard.length === messages && [...perChannel.values()].reduce((x, y) => x + y, 0) === messages)
      // Each message once; across channels (and masters) there is no order, nor need for one: a drop is a drop.
      expect([...b.heard.flat()].sort()).toStrictEqual(Array.from({ length: messages }, (_, i) => `key-${i}`).sort())
      expect(a.heard).toStrictEqual([])
      for (const channel of channels) expect(perChannel.get(channel) ?? 0).toBeLessThanOrEqual(Math.ceil(messages * (1 / 8 + 0.1)))
      const sentAt = new Map(sent.map((at, i) => [`key-${i}`, at]))
      const lags = b.heard.map((keys, i) => b.arrivals[i]! - sentAt.get((keys as ReadonlyArray<string>)[0]!)!).sort((x, y) => x - y)
      console.log(`cluster bus: ${messages} messages over 8 channels on ${owners.size} masters, per channel ${
        [...perChannel.values()].join("/")
      }, delivery p50 ${lags[Math.floor(lags.length / 2)]!.toFixed(2)} ms, p99 ${lags[Math.floor(lags.length * 0.99)]!.toFixed(2)} ms`)
    }), 60_000)

  it.scopedLive("a lost sharded subscription is a gap, and delivery resumes once it is back", () =>
    Effect.gen(function*() {
      const cluster = yield* testCluster()
      const namespace = uniqueNamespace("bus-cluster-gap")
      const a = yield* busOn(cluster.seeds, namespace)
      const b = yield* busOn(cluster.seeds, namespace)
      yield* a.bus.publish(["before"])
      yield* waitFor(() => b.heard.length === 1)
      expect(b.heard).toStrictEqual([["before"]])
      // Every master drops its pub/sub connections: B's sharded subscribers end.
      for (const node of cluster.nodes) {
        const admin = new Redis({ port: node.port, host: "127.0.0.1" })
        yield* Effect.promise(() => admin.call("CLIENT", "KILL", "TYPE", "pubsub").catch(() => 0))
        admin.disconnect()
      }
      yield* waitFor(() => b.heard.includes("gap"))
      // Once resubscribed, messages flow again (published until one arrives: the resubscription takes a moment).
      yield* waitFor(() => {
        void Effect.runFork(a.bus.publish(["after"]))
        return b.heard.some((entry) => Array.isArray(entry) && entry.includes("after"))
      }, 15_000)
      expect((yield* b.bus.stats).gaps).toBeGreaterThanOrEqual(1)
    }), 60_000)
})
