/**
 * The real servers for the benchmarks (loopback only): unique names for what a suite writes, clean-up of those
 * names when the suite ends (however it ends), realistic tasks, and counters of the round trips taken, read
 * from the SQL client's own spans and from Redis's MONITOR rather than from our code.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { type Cluster, Redis } from "ioredis"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { type StoreError, Task, TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"

export const redisUrl = "redis://127.0.0.1:6379"
export const databaseUrl = "postgres://root@127.0.0.1:5432/test"

const suffix = () => `${process.pid}_${Math.random().toString(36).slice(2, 8)}`

/** A Redis namespace no other run uses: `bench:<pid>:<random>`. */
export const uniqueNamespace = (): string => `bench:${suffix().replace("_", ":")}`

/** A Postgres schema no other run uses: `bench_<pid>_<random>`. */
export const uniqueSchema = (): string => `bench_${suffix()}`.toLowerCase()

/** Deletes every key of `namespace` (as `RedisCache` lays keys out), by `SCAN` and `UNLINK`. */
export const deleteNamespace = async (connection: Redis | Cluster, namespace: string): Promise<void> => {
  // The bench runs on one node; a cluster would need a scan per master.
  if ((connection as { readonly isCluster?: boolean }).isCluster === true) throw new Error("deleteNamespace: single node only")
  const client = connection as Redis
  const pattern = `${RedisCache.redisKey(namespace, "")}*`
  let cursor = "0"
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    if (keys.length > 0) await client.unlink(...keys)
    cursor = next
  } while (cursor !== "0")
}

/** A plain ioredis connection of our own, outside the library, with ioredis's default options. */
export const rawRedis = async (): Promise<Redis> => {
  const client = new Redis(redisUrl, { lazyConnect: true })
  await client.connect()
  return client
}

/** The Redis connection of the library, as the services use it. */
export const redisLayer = RedisClient.layer({ url: redisUrl })

/** A `SqlClient` on the real Postgres. */
export const sqlLayer = TaskStore.layerPg({ url: Redacted.make(databaseUrl), maxConnections: 4 })

/**
 * The SQL and Redis clients, plus a finalizer (registered as soon as both are up, so it runs before they
 * close and whether or not what is built on them succeeds) that drops `schema` and deletes `namespace`.
 */
export const clientsWithCleanup = (
  schema: string,
  namespace: string
): Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, StoreError | RedisClient.RedisConnectionError> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { client } = yield* RedisClient.RedisClient
      yield* Effect.addFinalizer(() =>
        Effect.all([
          sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.pipe(
            Effect.tapErrorCause((cause) => Effect.logError(`could not drop schema ${schema}`, cause)),
            Effect.ignore
          ),
          Effect.tryPromise(() => deleteNamespace(client, namespace)).pipe(
            Effect.tapErrorCause((cause) => Effect.logError(`could not delete namespace ${namespace}`, cause)),
            Effect.ignore
          )
        ], { discard: true })
      )
    })
  ).pipe(Layer.provideMerge(Layer.merge(sqlLayer, redisLayer)))

/**
 * The task repository on the real servers, built with `TaskRepository.make()` over a `TaskStore`, an `LruCache`
 * L1 and a `RedisCache` L2 with the default sizes and lifetimes of `TaskRepository.config` (L1: 10,000 entries,
 * 5 minutes; L2: 1 hour). Its parts are exposed beside it; its schema and namespace are its own and are dropped
 * when the layer closes.
 */
export const repositoryLayer = (schema: string, namespace: string) => {
  const parts = Layer.mergeAll(
    TaskStore.layer({ schema }),
    LruCache.layer(TaskRepository.TaskL1, { capacity: 10_000, timeToLive: "5 minutes", name: "bench-tasks-l1" }),
    RedisCache.layer(TaskRepository.TaskL2, {
      namespace,
      schema: Task,
      timeToLive: "1 hour",
      version: (task) => task.version,
      name: "bench-tasks-l2"
    })
  )
  return Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make()).pipe(
    Layer.provideMerge(parts),
    Layer.provideMerge(clientsWithCleanup(schema, namespace))
  )
}

/** Saves `count` realistic tasks straight into the store (not the cache); returns their ids. */
export const seedStore = (count: number) =>
  Effect.flatMap(TaskStore.TaskStore, (store) =>
    Effect.forEach(Array.from({ length: count }, (_, i) => realisticInput(i)), (input) => store.save(input), {
      concurrency: 8
    })).pipe(Effect.map((tasks) => tasks.map((task) => task.id)))

/** A task as an application holds it: a title of about 40 characters, an assignee, both instants. */
export const realisticTask = (i: number): Task => {
  const now = DateTime.unsafeMake(Date.UTC(2026, 10, 24, 9, 30, 0) + i * 1000)
  return new Task({
    id: TaskId.make(`task-${String(i).padStart(6, "0")}`),
    title: `Review the quarterly budget draft #${String(i).padStart(5, "0")}`,
    status: i % 3 === 0 ? "done" : i % 3 === 1 ? "in_progress" : "todo",
    assignee: `engineer-${i % 17}@example.com`,
    createdAt: now,
    updatedAt: now,
    version: 1 + (i % 5)
  })
}

/** The input that saves `realisticTask(i)` (the store stamps the instants and the version). */
export const realisticInput = (i: number): TaskInput => {
  const { assignee, id, status, title } = realisticTask(i)
  return new TaskInput(assignee === undefined ? { id, title, status } : { id, title, status, assignee })
}

/** Runs an effect and counts the statements @effect/sql sent (its `sql.execute` spans), as the tests do. */
export { countingStatements } from "../test/support/postgres.js"

/**
 * Records the commands the Redis server runs whose arguments mention `needle`, through `MONITOR` on a
 * connection of its own. `count(name)` first waits for the server's echo of a marker sent after everything
 * the caller did, so nothing still in flight is missed.
 */
export const monitorRedis = async (needle: string) => {
  const seen: Array<ReadonlyArray<string>> = []
  const client = await rawRedis()
  const monitor = await client.monitor()
  monitor.on("monitor", (_time: string, args: Array<string>, source: string) => {
    // Commands a Lua script runs (the versioned tier's conditional set reads the key) are not round trips.
    if (source === "lua") return
    if (args.some((arg) => arg.includes(needle))) seen.push(args)
  })
  const sync = async () => {
    const marker = `${needle}:monitor-marker-${Math.random()}`
    await client.get(marker)
    for (let i = 0; i < 300 && !seen.some((args) => args.includes(marker)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    if (!seen.some((args) => args.includes(marker))) throw new Error("MONITOR did not echo its marker")
  }
  await sync()
  return {
    /** Forgets what was seen so far. */
    reset: async () => {
      await sync()
      seen.length = 0
    },
    /** The number of commands named `name` seen since the last reset (markers excluded). */
    count: async (name: string) => {
      await sync()
      return seen.filter((args) => args[0]!.toLowerCase() === name && !args.some((a) => a.includes("monitor-marker"))).length
    },
    close: async () => {
      monitor.disconnect()
      await client.quit().catch(() => client.disconnect())
    }
  }
}
