/**
 * The libraries of the side-by-side benchmark, each built as its README shows for an L1 in memory and an L2 in
 * Redis with a one-hour time-to-live, behind one Promise-shaped interface, plus ours (`MultiLevelCache` over an
 * `LruCache` and a `RedisCache`, configured as `TaskRepository` configures its tiers).
 *
 * Every library writes under a Redis prefix of its own that starts with the run's prefix, so that one
 * `SCAN MATCH <run>*` finds everything a run wrote, and nothing else.
 */
import KeyvRedis, { createKeyv as createKeyvRedis } from "@keyv/redis"
import { createCache as createDedupeCache } from "async-cache-dedupe"
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisDriver } from "bentocache/drivers/redis"
import { createCache as createCacheManager } from "cache-manager"
import { Cacheable, createKeyv as createMemoryKeyv } from "cacheable"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import type { CacheMiss } from "../src/Cache.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { redisUrl } from "./services.js"

/** What every library stores: a small JSON object, the size of a typical row (about 100 bytes of JSON). */
export interface Value {
  readonly id: string
  readonly title: string
  readonly status: string
  readonly version: number
}

/** Our L2 validates what it reads: the same four fields as a `Schema.Struct`. */
export const ValueSchema = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  status: Schema.String,
  version: Schema.Number
})

const statuses = ["todo", "in_progress", "done"] as const

/** The value the loader answers for `key` (and, with a higher version, what writes store). */
export const valueOf = (key: string, version = 1): Value => ({
  id: key,
  title: `Review the quarterly budget draft for ${key}`,
  status: statuses[key.length % 3]!,
  version
})

/** How the loader answers: at once, or after `delayMillis` on a `setTimeout`. */
export interface LoaderOptions {
  readonly delayMillis: number
}

/** Loader calls and keys loaded, summed over every library of the process (cases never overlap). */
export const loads = { calls: 0, keys: 0 }

export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))

/** A per-key loader, as the peers take it: a `factory` of one key. */
const loadOne = (options: LoaderOptions) => async (key: string): Promise<Value> => {
  loads.calls++
  loads.keys++
  if (options.delayMillis > 0) await sleep(options.delayMillis)
  return valueOf(key)
}

/** Every library, as a Promise user calls it. */
export interface Library {
  readonly name: string
  /** Read-through: L1, then L2, then the loader (whose answer is stored in both). */
  readonly get: (key: string) => Promise<Value>
  /** A write of both tiers. */
  readonly set: (key: string, value: Value) => Promise<void>
  /** The Redis prefix its keys start with (for the report and the clean-up). */
  readonly prefix: string
  readonly close: () => Promise<void>
}

export interface BuildOptions {
  /** The run's prefix; the library's own prefix starts with it. */
  readonly run: string
  readonly l1Capacity: number
  readonly loader: LoaderOptions
}

/** `ttl` of one hour, in each library's unit. */
const HOUR_MS = 3_600_000
const HOUR_S = 3_600

/**
 * bentocache: `bentostore().useL1Layer(memoryDriver(…)).useL2Layer(redisDriver(…))`, `getOrSet({ key, factory })`.
 * No bus (one instance). Its memory driver keeps values serialized (JSON) by default, so an L1 hit parses.
 */
export const bentocache = (options: BuildOptions): Library => {
  const prefix = `${options.run}-bento`
  const bento = new BentoCache({
    default: "multitier",
    prefix,
    ttl: "1h",
    stores: {
      multitier: bentostore()
        .useL1Layer(memoryDriver({ maxItems: options.l1Capacity }))
        .useL2Layer(redisDriver({ connection: { host: "127.0.0.1", port: 6379 } }))
    }
  })
  const load = loadOne(options.loader)
  return {
    name: "bentocache",
    prefix,
    get: (key) => bento.getOrSet({ key, factory: () => load(key) }),
    set: async (key, value) => {
      await bento.set({ key, value })
    },
    close: () => bento.disconnectAll()
  }
}

/**
 * cacheable: `new Cacheable({ primary, secondary: new KeyvRedis(url), ttl })` with the in-memory primary of
 * `createKeyv` bounded to the L1 capacity (the default primary is unbounded), `getOrSet(key, fn)`.
 */
export const cacheable = (options: BuildOptions): Library => {
  const prefix = `${options.run}-cacheable`
  const cache = new Cacheable({
    primary: createMemoryKeyv({ lruSize: options.l1Capacity, ttl: "1h" }),
    secondary: new KeyvRedis(redisUrl),
    namespace: prefix,
    ttl: "1h"
  })
  const load = loadOne(options.loader)
  return {
    name: "cacheable",
    prefix,
    get: async (key) => (await cache.getOrSet(key, () => load(key)))!,
    set: async (key, value) => {
      await cache.set(key, value)
    },
    close: () => cache.disconnect()
  }
}

/**
 * cache-manager: `createCache({ stores: [createKeyv({ lruSize }) from cacheable, createKeyv(url) from
 * @keyv/redis] })` as its README's multiple-stores example, `wrap(key, fn)`.
 */
export const cacheManager = (options: BuildOptions): Library => {
  const prefix = `${options.run}-cm`
  const cache = createCacheManager({
    stores: [createMemoryKeyv({ lruSize: options.l1Capacity, ttl: "1h" }), createKeyvRedis(redisUrl, { namespace: prefix })],
    ttl: HOUR_MS
  })
  const load = loadOne(options.loader)
  return {
    name: "cache-manager",
    prefix,
    get: (key) => cache.wrap(key, () => load(key)),
    set: async (key, value) => {
      await cache.set(key, value)
    },
    close: async () => {
      await cache.disconnect()
    }
  }
}

/**
 * async-cache-dedupe: `createCache({ ttl, storage: { type: "redis", options: { client } } })` and
 * `define(name, fn)`. It has one storage only: with Redis there is no memory tier, every get is a Redis `GET`.
 * The per-run prefix is ioredis's `keyPrefix`; keys are `<prefix>fetchValue~<key>`.
 */
export const asyncCacheDedupe = (options: BuildOptions): Library => {
  const prefix = `${options.run}-acd:`
  const client = new Redis(redisUrl, { keyPrefix: prefix })
  const cache = createDedupeCache({ ttl: HOUR_S, storage: { type: "redis", options: { client } } })
    .define("fetchValue", loadOne(options.loader))
  return {
    name: "async-cache-dedupe",
    prefix,
    get: (key) => cache.fetchValue(key),
    // `cache.set` takes the storage key, which `define` builds as `<name>~<key>`.
    set: (key, value) => cache.set("fetchValue", `fetchValue~${key}`, value, HOUR_S),
    close: async () => {
      await client.quit().catch(() => client.disconnect())
    }
  }
}

/** The peers, by the name their rows carry. */
export const peers: Readonly<Record<string, (options: BuildOptions) => Library>> = {
  bentocache,
  cacheable,
  "cache-manager": cacheManager,
  "async-cache-dedupe": asyncCacheDedupe
}

/** Ours, with the Effect side exposed for the fibers calling style. */
export interface Ours {
  /** `MultiLevelCache.get` (the loader always answers: a `CacheMiss` would be a bug, and fails the run). */
  readonly get: (key: string) => Effect.Effect<Value, CacheMiss>
  /** `MultiLevelCache.set`: L2, then L1. */
  readonly set: (key: string, value: Value) => Effect.Effect<void>
  /** `MultiLevelCache.getMany`: a whole burst in one call. */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, Value>>
  /**
   * The same cache as a Promise user calls it: `runtime.runPromise(cache.get(key))` for every call, with the
   * `ManagedRuntime` the cache was built in (built once, as an application keeps it).
   */
  readonly library: Library
  /** The runtime the cache was built in, and that `library` runs every call with. */
  readonly runtime: ManagedRuntime.ManagedRuntime<RedisClient.RedisClient, RedisClient.RedisConnectionError>
}

/**
 * Ours: `MultiLevelCache.make` with tiers `[LruCache (1 hour), { cache: RedisCache (1 hour, unversioned like
 * the peers), timeout: "250 millis", breaker: { failures: 5, cooldown: "5 seconds" } }]`, as `TaskRepository`
 * configures them, and a batch loader that answers every key asked after the loader's delay. Metrics on, as
 * by default. `tag` tells apart two instances of one run (one per calling style).
 */
export const ours = async (options: BuildOptions & { readonly tag: string }): Promise<Ours> => {
  const namespace = `${options.run}-${options.tag}`
  const runtime = ManagedRuntime.make(RedisClient.layer({ url: redisUrl }))
  const scope = Effect.runSync(Scope.make())
  const delay = options.loader.delayMillis
  const load = (keys: ReadonlyArray<string>) => {
    const answer = Effect.sync((): ReadonlyMap<string, Value> => {
      loads.calls++
      loads.keys += keys.length
      return new Map(keys.map((key) => [key, valueOf(key)] as const))
    })
    return delay > 0 ? Effect.zipRight(Effect.promise(() => sleep(delay)), answer) : answer
  }
  const cache = await runtime.runPromise(Scope.extend(
    Effect.gen(function*() {
      const l1 = yield* LruCache.make<string, Value>({
        capacity: options.l1Capacity,
        timeToLive: "1 hour",
        name: `${namespace}-l1`
      })
      const l2 = yield* RedisCache.make<string, Value, Schema.Schema.Encoded<typeof ValueSchema>>({
        namespace,
        schema: ValueSchema,
        timeToLive: "1 hour",
        name: `${namespace}-l2`
      })
      return yield* MultiLevelCache.make({
        name: namespace,
        tiers: [l1, { cache: l2, timeout: "250 millis", breaker: { failures: 5, cooldown: "5 seconds" } }],
        load
      })
    }),
    scope
  ))
  const get = (key: string) => cache.get(key)
  const set = (key: string, value: Value) => cache.set(key, value)
  const getMany = (keys: ReadonlyArray<string>) => cache.getMany(keys)
  const prefix = RedisCache.redisKey(namespace, "")
  return {
    get,
    set,
    getMany,
    runtime,
    library: {
      name: "@rms/cache",
      prefix,
      get: (key) => runtime.runPromise(get(key)),
      set: (key, value) => runtime.runPromise(set(key, value)),
      close: async () => {
        await Effect.runPromise(Scope.close(scope, Exit.void))
        await runtime.dispose()
      }
    }
  }
}

/** A plain ioredis connection with ioredis's defaults, for counting, floors and the clean-up. */
export const plainRedis = async (): Promise<Redis> => {
  const client = new Redis(redisUrl, { lazyConnect: true })
  await client.connect()
  return client
}

/** Deletes every key starting with `prefix` (`SCAN MATCH` + `UNLINK`); never `FLUSHALL`, others share the server. */
export const deletePrefix = async (client: Redis, prefix: string): Promise<number> => {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`
  let cursor = "0"
  let deleted = 0
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    if (keys.length > 0) deleted += await client.unlink(...keys)
    cursor = next
  } while (cursor !== "0")
  return deleted
}

/** The server's count of calls per command (`INFO commandstats`), `info` itself left out. */
export const commandStats = async (client: Redis): Promise<Map<string, number>> => {
  const text = await client.info("commandstats")
  const calls = new Map<string, number>()
  for (const line of text.split("\n")) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim())
    if (match !== null && match[1] !== "info") calls.set(match[1]!, Number(match[2]))
  }
  return calls
}
