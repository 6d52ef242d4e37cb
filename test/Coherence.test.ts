/**
 * Two instances — separate L1s, connections and buses — over one Postgres schema and one Redis namespace: writes
 * on one reach the other through the invalidation bus, no load writes back a value that a write replaced, and
 * concurrent writes leave nothing older anywhere. The same suite runs for tasks (`TaskRepository`) and for a
 * second entity with its own store (`Note` through `CachedStore`): nothing of it is specific to tasks. Here on
 * the shared Redis server (the suite is `support/coherence.ts`; `CoherenceCluster.test.ts` runs it on a cluster),
 * with the tag suite (`support/tagsSuite.ts`): `invalidateTag` across instances, through the ledger in Redis.
 */
import * as Effect from "effect/Effect"
import * as RedisCache from "../src/RedisCache.js"
import { type Backend, coherenceSuites, type RawRedis, scanNode } from "./support/coherence.js"
import { cleanNamespaceOnClose, rawRedis, redisUrl } from "./support/redis.js"
import { tagsSuite } from "./support/tagsSuite.js"

const target = new URL(redisUrl)

const oneRedis: Backend = {
  name: "one Redis",
  connection: () => ({ url: redisUrl }),
  raw: Effect.map(rawRedis(), (client): RawRedis => ({
    get: (key) => client.get(key),
    del: (key) => client.del(key),
    hget: (key, field) => client.hget(key, field),
    keysMatching: (pattern) => scanNode(client, pattern)
  })),
  storedKey: (_raw, namespace, key) => Effect.succeed(RedisCache.redisKey(namespace, key)),
  cleanNamespaceOnClose,
  proxyTarget: { host: target.hostname, port: Number(target.port || 6379) }
}

coherenceSuites(oneRedis)
tagsSuite(oneRedis)
