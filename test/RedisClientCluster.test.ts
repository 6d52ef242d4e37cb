/**
 * `RedisClient` in cluster mode: seeds from options or `REDIS_CLUSTER_NODES`, a typed error without secrets for
 * bad seeds or unreachable nodes within the connect timeout, and a client the user already has.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { Cluster } from "ioredis"
import * as RedisClient from "../src/RedisClient.js"
import { testCluster } from "./support/cluster.js"
import { freePort } from "./support/redis.js"

describe("RedisClient in cluster mode", () => {
  it.scopedLive("REDIS_CLUSTER_NODES selects cluster mode; commands reach every master", () =>
    Effect.gen(function*() {
      const cluster = yield* testCluster()
      const options = yield* RedisClient.config.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["REDIS_CLUSTER_NODES", cluster.seeds]])))
      )
      const service = yield* RedisClient.make(options)
      expect(service.mode).toBe("cluster")
      expect(RedisClient.isCluster(service.client)).toBe(true)
      expect(service.address).not.toContain("undefined")
      // Keys in many slots, written and read one by one: ioredis routes each to its master.
      for (let i = 0; i < 30; i++) yield* Effect.promise(() => service.client.set(`rc:${i}`, String(i)))
      for (let i = 0; i < 30; i++) expect(yield* Effect.promise(() => service.client.get(`rc:${i}`))).toBe(String(i))
      const masters = yield* cluster.masters
      expect(masters.length).toBe(3)
    }), 60_000)

  it.scoped("bad seeds are a typed error that names the seed by position, never its text", () =>
    Effect.gen(function*() {
      for (const nodes of [[], ["127.0.0.1:notaport"], ["redis://:hunter2-secret@127.0.0.1:99999"], ["http://x:1"]]) {
        const exit = yield* Effect.exit(RedisClient.make({ clusterNodes: nodes }))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const text = JSON.stringify(exit.cause) + String(exit.cause)
          expect(text).toContain("RedisConnectionError")
          expect(text).not.toContain("hunter2")
          expect(text).not.toContain("notaport")
        }
      }
      // Redacted seeds (as the Config gives them) are read the same way.
      const exit = yield* Effect.exit(RedisClient.make({ clusterNodes: Redacted.make(" , ") }))
      expect(Exit.isFailure(exit)).toBe(true)
    }))

  it.scopedLive("unreachable seeds fail within the connect timeout, with the reason and no password", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const started = Date.now()
      const exit = yield* Effect.exit(RedisClient.make({
        clusterNodes: [`redis://:hunter2-secret@127.0.0.1:${port}`],
        connectTimeout: "300 millis"
      }))
      expect(Date.now() - started).toBeLessThan(3_000)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause) + String(exit.cause)).not.toContain("hunter2")
    }), 20_000)

  it.scopedLive("a client the user already has is used as it is and left open", () =>
    Effect.gen(function*() {
      const cluster = yield* testCluster()
      const own = new Cluster(cluster.nodes.map((node) => ({ host: "127.0.0.1", port: node.port })))
      yield* Effect.addFinalizer(() => Effect.sync(() => own.disconnect()))
      yield* Effect.promise(() => own.set("mine", "1"))
      const scope = yield* Scope.make()
      const service = yield* Layer.buildWithScope(RedisClient.layerFromClient(own), scope).pipe(
        Effect.map((context) => context.unsafeMap.get(RedisClient.RedisClient.key) as RedisClient.Service)
      )
      expect(service.mode).toBe("cluster")
      expect(service.client).toBe(own)
      yield* Scope.close(scope, Exit.void)
      expect(yield* Effect.promise(() => own.get("mine"))).toBe("1")
    }), 60_000)
})
