/**
 * The two-instance coherence suite (`support/coherence.ts`, as `Coherence.test.ts` runs it on the shared Redis)
 * on a private Redis Cluster of 3 masters, started once for this file and stopped by pid with it: both
 * instances' `RedisClient`s in cluster mode, their L2 (keys under the namespace's generation, one pipeline per
 * master) and their buses (sharded pub/sub) on the cluster. The tag suite (`support/tagsSuite.ts`) runs on it
 * too: the tag ledger is one key, so one master, whatever the tags.
 *
 * Not run here: "A's Redis stalls and its breaker opens…", which freezes a TCP proxy that only instance A goes
 * through. A cluster client learns every node's address from the nodes themselves (`CLUSTER SLOTS`) and connects
 * there, past any proxy in front of a seed; freezing a master instead would stall B as well (and fail the
 * cluster), which is not the case under test.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { type Cluster, Redis } from "ioredis"
import * as RedisCache from "../src/RedisCache.js"
import { clusterForFile, onNode, rawCluster, type TestCluster } from "./support/cluster.js"
import { type Backend, coherenceSuites, notes, type RawRedis, scanNode, tasks, twoInstances } from "./support/coherence.js"
import { tagsSuite } from "./support/tagsSuite.js"
import { waitFor } from "./support/wait.js"

interface Shared {
  readonly cluster: TestCluster
  /** A plain ioredis cluster client, outside the library. */
  readonly raw: Cluster
}

const the = clusterForFile((cluster): Effect.Effect<Shared, never, Scope.Scope> =>
  Effect.map(rawCluster(cluster), (raw) => ({ cluster, raw }))
)

const onCluster: Backend = {
  name: "one Redis Cluster (3 masters)",
  connection: () => ({ clusterNodes: the().cluster.seeds.split(",") }),
  raw: Effect.sync((): RawRedis => {
    const raw = the().raw
    return {
      get: (key) => raw.get(key),
      del: (key) => raw.del(key),
      hget: (key, field) => raw.hget(key, field),
      keysMatching: async (pattern) => (await Promise.all(raw.nodes("master").map((node) => scanNode(node, pattern)))).flat()
    }
  }),
  // The tier's keys carry the namespace's generation on a cluster (0 until an `invalidateAll`).
  storedKey: (raw, namespace, key) =>
    Effect.map(
      Effect.promise(() => raw.get(RedisCache.generationKey(namespace))),
      (generation) => RedisCache.redisKey(namespace, key, generation ?? 0)
    ),
  // Every key goes with the cluster, at the end of the file.
  cleanNamespaceOnClose: () => Layer.empty
}

coherenceSuites(onCluster)
tagsSuite(onCluster)

/** How many keys matching `pattern` one node holds (a full `SCAN`). */
const keysOn = (port: number, pattern: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Redis({ port, host: "127.0.0.1", lazyConnect: false, maxRetriesPerRequest: 1 })),
    (node) =>
      Effect.promise(async () => {
        let count = 0
        let cursor = "0"
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000)
          count += keys.length
          cursor = next
        } while (cursor !== "0")
        return count
      }),
    (node) => Effect.sync(() => node.disconnect())
  )

describe.each([tasks, notes])("the two instances' tiers are on the cluster: $entity", (kit) => {
  it.scopedLive("the L2 spreads over every master, the bus over sharded channels on several", () =>
    Effect.gen(function*() {
      const { a, b, namespace } = yield* twoInstances(kit, onCluster)
      const ids = Array.from({ length: 30 }, (_, i) => `spread-${i}`)
      for (const id of ids) yield* a.save(id, "x")
      yield* waitFor(() => ids.every((id) => b.drops.some((d) => d.key === id)), 5_000)
      const masters = yield* Effect.suspend(() => the().cluster.masters)
      const keysPerMaster = yield* Effect.forEach(masters, (port) => keysOn(port, `${RedisCache.escapeKeyPart(namespace)}:0:*`))
      expect(keysPerMaster.reduce((x, y) => x + y, 0)).toBe(ids.length)
      expect(keysPerMaster.every((count) => count > 0)).toBe(true)
      // Each instance holds a sharded subscription to every channel of the bus, on the master that owns it.
      const channels = yield* Effect.forEach(masters, (port) =>
        Effect.map(onNode(port, "PUBSUB", "SHARDCHANNELS", `${RedisCache.escapeKeyPart(namespace)}:invalidations:*`), (reply) =>
          Array.isArray(reply) ? reply.length : 0))
      expect(channels.filter((count) => count > 0).length).toBeGreaterThan(1)
      expect(channels.reduce((x, y) => x + y, 0)).toBe(16) // the bus's default number of shards
      expect((yield* b.bus).received).toBeGreaterThanOrEqual(ids.length)
    }))
})
