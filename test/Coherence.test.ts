/**
 * Two instances — separate L1s, connections and buses — over one Postgres schema and one Redis namespace: writes
 * on one reach the other through the invalidation bus, no load writes back a value that a write replaced, and
 * concurrent writes leave nothing older anywhere. The same suite runs for tasks (`TaskRepository`) and for a
 * second entity with its own store (`Note` through `CachedStore`): nothing of it is specific to tasks. Here on
 * the shared Redis server (the suite is `support/coherence.ts`; `CoherenceCluster.test.ts` runs it on a cluster).
 */
import * as Effect from "effect/Effect"
import * as RedisCache from "../src/RedisCache.js"
import { coherenceSuites } from "./support/coherence.js"
import { cleanNamespaceOnClose, rawRedis, redisUrl } from "./support/redis.js"

const target = new URL(redisUrl)

coherenceSuites({
  name: "one Redis",
  connection: () => ({ url: redisUrl }),
  raw: rawRedis(),
  storedKey: (_raw, namespace, key) => Effect.succeed(RedisCache.redisKey(namespace, key)),
  cleanNamespaceOnClose,
  proxyTarget: { host: target.hostname, port: Number(target.port || 6379) }
})
