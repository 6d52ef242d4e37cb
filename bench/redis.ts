/**
 * An L2 hit, one get at a time: `RedisCache.get` of a `Task` (JSON, decoded with the `Task` schema) against
 * raw ioredis `get` + `JSON.parse` of the same keys on a connection of its own, on the real Redis. Beside them,
 * `RedisCache.getMany` of one key (how a multi-level cache reads its L2).
 */
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import type { Cache, CacheError } from "../src/Cache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { Task, type TaskId } from "../src/Task.js"
import { type Case, measure, type Result } from "./harness.js"
import { deleteNamespace, rawRedis, realisticTask, redisLayer, redisUrl, uniqueNamespace } from "./services.js"

/** Gets per round and case. */
export const GETS = 4_000
/** Distinct tasks stored; the gets cycle through them. */
export const TASKS = 100

export interface RedisHitResults {
  /** `RedisCache.get` with the `Task` schema, and raw ioredis `get` + `JSON.parse`. */
  readonly main: Array<Result>
  /**
   * Informational: `RedisCache.get` with `Schema.Unknown` (JSON.parse only), raw ioredis with RedisClient's
   * options, and `RedisCache.getMany` of one key with the `Task` schema.
   */
  readonly side: Array<Result>
  /** The stored JSON of one task, for the report. */
  readonly sampleBytes: number
}

/** One fiber doing `GETS` sequential gets: one `runPromise` per round, so none is charged per get. */
const sequentialGets = <V>(cache: Cache<TaskId, V, CacheError>, ids: ReadonlyArray<TaskId>, check: (v: V) => number) =>
  Effect.gen(function*() {
    let sum = 0
    for (let i = 0; i < GETS; i++) sum += check(yield* cache.get(ids[i % ids.length]!))
    return sum
  })

/** The same with `getMany` of one key at a time. */
const sequentialGetManyOfOne = <V>(
  cache: Cache<TaskId, V, CacheError>,
  ids: ReadonlyArray<TaskId>,
  check: (v: V) => number
) =>
  Effect.gen(function*() {
    let sum = 0
    for (let i = 0; i < GETS; i++) {
      const id = ids[i % ids.length]!
      const found = (yield* cache.getMany([id])).get(id)
      if (found === undefined) return yield* Effect.dieMessage(`getMany: ${id} not found`)
      sum += check(found)
    }
    return sum
  })

export const runRedisHit = async (): Promise<RedisHitResults> => {
  const namespace = uniqueNamespace()
  const runtime = ManagedRuntime.make(redisLayer)
  const raws: Array<Redis> = []
  try {
    const { client } = await runtime.runPromise(RedisClient.RedisClient)
    const tasks = Array.from({ length: TASKS }, (_, i) => realisticTask(i))
    const ids = tasks.map((task) => task.id)
    const keys = ids.map((id) => RedisCache.redisKey(namespace, id))
    const taskCache = await runtime.runPromise(
      RedisCache.make<TaskId, Task, typeof Task.Encoded>({ namespace, schema: Task, name: "bench-l2" })
    )
    const jsonCache = await runtime.runPromise(
      RedisCache.make<TaskId, unknown, unknown>({ namespace, schema: Schema.Unknown, name: "bench-l2-json" })
    )
    await runtime.runPromise(taskCache.setMany(tasks.map((task) => [task.id, task] as const)))

    // Our own connections: ioredis's defaults, and the options RedisClient opens its connection with.
    const raw = await rawRedis()
    raws.push(raw)
    const rawLikeClient = new Redis(redisUrl, {
      lazyConnect: true,
      commandTimeout: 1000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0
    })
    raws.push(rawLikeClient)
    await rawLikeClient.connect()

    const sample = await raw.get(keys[0]!)
    if (sample === null) throw new Error("the stored task is not in Redis")
    const expectedSum = Array.from({ length: GETS }, (_, i) => tasks[i % TASKS]!.version).reduce((a, b) => a + b, 0)
    const verify = (name: string, sum: number) => {
      if (sum !== expectedSum) throw new Error(`${name}: read ${sum}, expected ${expectedSum}`)
      return GETS
    }

    const rawCase = (name: string, connection: Redis): Case => ({
      name,
      run: async () => {
        let sum = 0
        for (let i = 0; i < GETS; i++) {
          const stored = await connection.get(keys[i % TASKS]!)
          if (stored === null) throw new Error(`${name}: miss`)
          sum += (JSON.parse(stored) as { version: number }).version
        }
        return verify(name, sum)
      }
    })
    const ours: Case = {
      name: "RedisCache.get (Task schema)",
      run: async () => verify("RedisCache.get", await Effect.runPromise(sequentialGets(taskCache, ids, (t) => t.version)))
    }
    const oursJson: Case = {
      name: "RedisCache.get (Schema.Unknown: JSON.parse only)",
      run: async () =>
        verify(
          "RedisCache.get json",
          await Effect.runPromise(sequentialGets(jsonCache, ids, (v) => (v as { version: number }).version))
        )
    }
    const oursMany: Case = {
      name: "RedisCache.getMany of 1 key (Task schema)",
      run: async () =>
        verify("RedisCache.getMany", await Effect.runPromise(sequentialGetManyOfOne(taskCache, ids, (t) => t.version)))
    }
    const rawDefault = rawCase("ioredis get + JSON.parse", raw)
    const rawLike = rawCase("ioredis get + JSON.parse, RedisClient's options", rawLikeClient)

    // All the cases interleave in the same rounds; the first two make the headline ratio.
    const results = await measure([ours, rawDefault, oursJson, rawLike, oursMany])
    await deleteNamespace(client, namespace)
    return { main: results.slice(0, 2), side: results.slice(2), sampleBytes: Buffer.byteLength(sample) }
  } finally {
    // The keys go even if a case threw (deleting twice is harmless); then every connection closes.
    await runtime.runPromise(
      Effect.flatMap(RedisClient.RedisClient, ({ client }) => Effect.promise(() => deleteNamespace(client, namespace)))
    ).catch((error) => console.error(`could not delete ${namespace}:`, error))
    for (const connection of raws) await connection.quit().catch(() => connection.disconnect())
    await runtime.dispose()
  }
}
