/**
 * The `TaskRepository` the demo and the HTTP server run on: embedded defaults, or the real services named by
 * the environment.
 *
 * - `DATABASE_URL` set: that Postgres; otherwise PGlite embedded (nothing to install).
 * - `REDIS_CLUSTER_NODES` set: L2 and the bus on that Redis Cluster; else `REDIS_URL` set: L2 in that Redis;
 *   otherwise L2 in memory.
 */
import * as Layer from "effect/Layer"
import * as RedisClient from "../../src/RedisClient.js"
import * as TaskRepository from "../../src/TaskRepository.js"
import * as TaskStore from "../../src/TaskStore.js"

const usePostgres = process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== ""
const set = (name: string) => process.env[name] !== undefined && process.env[name] !== ""
const useCluster = set("REDIS_CLUSTER_NODES")
const useRedis = useCluster || set("REDIS_URL")

/** The metrics tier of the L2: `"redis"` or `"lru"`. */
export const l2Tier = useRedis ? "redis" : "lru"

/** Where the data lives, for the program to say so. */
export const description = `${usePostgres ? "Postgres at DATABASE_URL" : "embedded Postgres (PGlite)"}, ${
  useCluster ? "L2 on the Redis Cluster at REDIS_CLUSTER_NODES" : useRedis ? "L2 in Redis at REDIS_URL" : "L2 in memory"
}`

const sql = usePostgres ? TaskStore.layerPgConfig : TaskStore.layerEmbeddedSql

/** The repository and its store. */
export const RepositoryLive = useRedis
  ? TaskRepository.layerWithL2(TaskRepository.l2Redis).pipe(Layer.provide(Layer.merge(sql, RedisClient.layerConfig)))
  : TaskRepository.layerWithL2(TaskRepository.l2Memory).pipe(Layer.provide(sql))
