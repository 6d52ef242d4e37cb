/**
 * The composed task service: `TaskStore` behind an L1 `LruCache` and an L2 `RedisCache`, with batched
 * singleflight loads, write-through and metrics. Two ready layers: `layer` (Postgres and Redis from `Config`)
 * and `layerEmbedded` (nothing to install).
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Scope } from "effect/Scope"
import * as Cache from "./Cache.js"
import * as InvalidationBus from "./InvalidationBus.js"
import type * as CacheMetrics from "./CacheMetrics.js"
import * as LruCache from "./LruCache.js"
import * as MultiLevelCache from "./MultiLevelCache.js"
import * as RedisCache from "./RedisCache.js"
import { settle } from "./internal/settle.js"
import * as RedisClient from "./RedisClient.js"
import { StoreError, Task, TaskId, type TaskInput, TaskNotFound } from "./Task.js"
import * as TaskStore from "./TaskStore.js"
import * as WriteThrough from "./WriteThrough.js"

/** Whether a failed write may have been applied all the same. */
const isUnknownStoreOutcome = (error: unknown): boolean => error instanceof StoreError && error.unknownOutcome === true

/**
 * The L1 tier of tasks: in memory, per instance.
 *
 * @since 0.1.0
 * @category tags
 */
export class TaskL1 extends Cache.Tag("@rms/cache/TaskL1")<TaskL1, TaskId, Task>() {}

/**
 * The L2 tier of tasks: shared by instances (Redis), or in memory for the embedded layer.
 *
 * @since 0.1.0
 * @category tags
 */
export class TaskL2 extends Cache.Tag("@rms/cache/TaskL2")<TaskL2, TaskId, Task, Cache.CacheError>() {}

/**
 * The invalidation bus of tasks: present when the L2 is shared (Redis), absent for a single instance.
 *
 * @since 0.1.0
 * @category tags
 */
export class TaskInvalidations
  extends Context.Tag("@rms/cache/TaskInvalidations")<TaskInvalidations, InvalidationBus.InvalidationBus<TaskId>>()
{}

/**
 * The task repository's operations.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The task with this id, from the nearest tier that has it, else from the store. */
  get(id: TaskId): Effect.Effect<Task, TaskNotFound | StoreError>
  /** The tasks found among `ids`: each tier is asked only for what the tiers above did not have. */
  getMany(ids: ReadonlyArray<TaskId>): Effect.Effect<ReadonlyMap<TaskId, Task>, StoreError>
  /** Saves to the store, then to every tier. */
  save(input: TaskInput): Effect.Effect<Task, StoreError>
  /** Deletes from the store, then from every tier. */
  delete(id: TaskId): Effect.Effect<void, TaskNotFound | StoreError>
  /** The metrics of loads and fall-throughs (tier `"multilevel"`, cache `"tasks"`). */
  readonly metrics: CacheMetrics.CacheMetrics
  /** The state of the L2's circuit breaker. */
  readonly l2Breaker: Effect.Effect<"closed" | "open" | "half-open">
}

/**
 * The task repository service.
 *
 * @since 0.1.0
 * @category tags
 */
export class TaskRepository extends Context.Tag("@rms/cache/TaskRepository")<TaskRepository, Service>() {}

/**
 * Options of the repository itself (the tiers have their own).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The longest an L2 call may take before the repository skips L2 for that call. Default: 250 ms. */
  readonly l2Timeout?: Duration.DurationInput
  /** Whether the L2 in context keeps the newest version of a task whatever the order of writes. Default: false. */
  readonly l2Versioned?: boolean
  /** After this many consecutive failed L2 calls, L2 is skipped for `l2BreakerCooldown`. Default: 5. */
  readonly l2BreakerFailures?: number
  /** How long L2 is skipped once the breaker opens, before one call probes it. Default: 5 seconds. */
  readonly l2BreakerCooldown?: Duration.DurationInput
  /**
   * After a write whose outcome is unknown (interrupted, timed out, connection lost), its id is invalidated at
   * once and again after this delay, in case Postgres applied it late. Default: 10 seconds.
   */
  readonly unknownOutcomeRecheck?: Duration.DurationInput
  /** The most ids one store query asks for. Default: 2048. */
  readonly maxBatchSize?: number
}

/**
 * Builds the repository over the `TaskStore`, `TaskL1` and `TaskL2` in context. With `TaskInvalidations` in
 * context too, every write is published to the other instances, and their writes drop keys from this L1.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, Cause.IllegalArgumentException, TaskStore.TaskStore | TaskL1 | TaskL2 | Scope> =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const l1 = yield* TaskL1
    const l2 = yield* TaskL2
    const bus = yield* Effect.serviceOption(TaskInvalidations)
    const scope = yield* Effect.scope
    const recheckAfter = options.unknownOutcomeRecheck ?? "10 seconds"
    const publishAll = (ids: ReadonlyArray<TaskId>) => (Option.isSome(bus) ? bus.value.publish(ids) : Effect.void)
    const cache = yield* MultiLevelCache.make<TaskId, Task, StoreError, never>({
      // L2 was brought back in step for these ids after missing their writes: other instances may have read
      // the older tasks there meanwhile.
      onRepaired: publishAll,
      name: "tasks",
      tiers: [l1, {
        cache: l2,
        timeout: options.l2Timeout ?? "250 millis",
        versioned: options.l2Versioned ?? false,
        breaker: { failures: options.l2BreakerFailures ?? 5, cooldown: options.l2BreakerCooldown ?? "5 seconds" }
      }],
      load: (ids) =>
        store.getMany(ids).pipe(
          Effect.withSpan("TaskRepository.load", { captureStackTrace: false, attributes: { ids: ids.length } })
        ),
      ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize })
    })
    const writes = WriteThrough.make({
      cache,
      save: store.save,
      remove: (id: TaskId) =>
        store.delete(id).pipe(
          // Not in the store: make sure no tier still serves it either.
          Effect.tapError((error) => error._tag === "TaskNotFound" ? Effect.ignore(cache.invalidate(id)) : Effect.void)
        ),
      keyOfInput: (input: TaskInput) => input.id,
      isUnknownOutcome: isUnknownStoreOutcome
    })

    if (Option.isSome(bus)) {
      yield* bus.value.listen({
        onInvalidate: (ids) => cache.invalidateNearest(ids),
        onGap: cache.invalidateNearestAll
      })
    }
    /**
     * After a write has reached the tiers (or was interrupted with an unknown outcome, or found the task gone),
     * the other instances hear of the id. Publishing never fails the write.
     */
    const publish = (id: TaskId) => publishAll([id])
    /**
     * A write whose outcome is unknown may still land in Postgres after a load has cached the value it
     * replaces: the id is invalidated (and published) once more after `unknownOutcomeRecheck`.
     */
    const recheck = (id: TaskId) =>
      Effect.sleep(recheckAfter).pipe(
        Effect.zipRight(Effect.ignore(cache.invalidate(id))),
        Effect.zipRight(publish(id)),
        // Forked from a write's exit, which is uninterruptible: the recheck itself must not be.
        Effect.interruptible,
        Effect.forkIn(scope),
        Effect.asVoid
      )
    const announce = <A, E>(id: TaskId, write: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.onExit(write, (exit) => {
        if (Exit.isSuccess(exit)) return publish(id)
        const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
        if (error instanceof TaskNotFound) return publish(id)
        if (Exit.isInterrupted(exit) || isUnknownStoreOutcome(error)) return Effect.zipRight(publish(id), recheck(id))
        return Effect.void
      })

    return {
      // No span on reads: an L1 hit costs less than a span. Loads and writes have theirs.
      get: (id) => Effect.catchTag(cache.get(id), "CacheMiss", () => Effect.fail(new TaskNotFound({ id }))),
      getMany: (ids) => cache.getMany(ids),
      save: (input) =>
        announce(input.id, writes.save(input)).pipe(
          Effect.withSpan("TaskRepository.save", { captureStackTrace: false, attributes: { id: input.id } })
        ),
      delete: (id) =>
        announce(id, writes.delete(id)).pipe(
          Effect.withSpan("TaskRepository.delete", { captureStackTrace: false, attributes: { id } })
        ),
      metrics: cache.metrics,
      l2Breaker: Effect.map(cache.breakers, (states) => states[1]!)
    }
  })

/**
 * Sizes and lifetimes of the tiers, and where things live, all from `Config` with defaults:
 *
 * | variable | default |
 * |---|---|
 * | `TASK_CACHE_L1_CAPACITY` | 10000 |
 * | `TASK_CACHE_L1_TTL` | 5 minutes |
 * | `TASK_CACHE_L2_TTL` | 1 hour |
 * | `TASK_CACHE_L2_TIMEOUT` | 250 millis |
 * | `TASK_CACHE_L2_BREAKER_FAILURES` | 5 (consecutive L2 failures that open the breaker) |
 * | `TASK_CACHE_L2_BREAKER_COOLDOWN` | 5 seconds (how long an open breaker skips L2) |
 * | `TASK_CACHE_L2_TOMBSTONE_TTL` | 30 seconds (how long a deleted task refuses write-backs in L2) |
 * | `TASK_CACHE_MAX_VALUE_BYTES` | 1048576 (larger tasks are not stored in L2) |
 * | `TASK_CACHE_NAMESPACE` | `rms-cache/tasks` (the Redis key namespace and invalidation channel) |
 * | `TASK_STORE_SCHEMA` | `public` (the Postgres schema) |
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all({
  l1Capacity: Config.integer("TASK_CACHE_L1_CAPACITY").pipe(Config.withDefault(10_000)),
  l1TimeToLive: Config.duration("TASK_CACHE_L1_TTL").pipe(Config.withDefault(Duration.minutes(5))),
  l2TimeToLive: Config.duration("TASK_CACHE_L2_TTL").pipe(Config.withDefault(Duration.hours(1))),
  l2Timeout: Config.duration("TASK_CACHE_L2_TIMEOUT").pipe(Config.withDefault(Duration.millis(250))),
  l2BreakerFailures: Config.integer("TASK_CACHE_L2_BREAKER_FAILURES").pipe(Config.withDefault(5)),
  l2BreakerCooldown: Config.duration("TASK_CACHE_L2_BREAKER_COOLDOWN").pipe(Config.withDefault(Duration.seconds(5))),
  l2TombstoneTimeToLive: Config.duration("TASK_CACHE_L2_TOMBSTONE_TTL").pipe(Config.withDefault(Duration.seconds(30))),
  maxValueBytes: Config.integer("TASK_CACHE_MAX_VALUE_BYTES").pipe(Config.withDefault(1_048_576)),
  namespace: Config.string("TASK_CACHE_NAMESPACE").pipe(Config.withDefault("rms-cache/tasks")),
  schema: Config.string("TASK_STORE_SCHEMA").pipe(Config.withDefault("public"))
})

/**
 * The settings read by `config`.
 *
 * @since 0.1.0
 * @category config
 */
export type Settings = Config.Config.Success<typeof config>

/**
 * The repository and its store over the `SqlClient` in context, with the L1 from `config` and the L2 that
 * `l2` builds from the same settings (`versioned: true` when it keeps the newest version of a task whatever the
 * order of writes, as `l2Redis` does). The other layers are this one with a particular L2.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithL2 = <E, R>(
  l2: (settings: Settings) => Layer.Layer<TaskL2 | TaskInvalidations, E, R> | Layer.Layer<TaskL2, E, R>,
  options: { readonly versioned?: boolean } = {}
): Layer.Layer<
  TaskRepository | TaskStore.TaskStore,
  E | StoreError | ConfigError.ConfigError | Cause.IllegalArgumentException,
  SqlClient.SqlClient | R
> =>
  Layer.unwrapEffect(
    Effect.map(config, (settings) =>
      Layer.scoped(
        TaskRepository,
        make({
          l2Timeout: settings.l2Timeout,
          l2Versioned: options.versioned ?? false,
          l2BreakerFailures: settings.l2BreakerFailures,
          l2BreakerCooldown: settings.l2BreakerCooldown
        })
      ).pipe(
        Layer.provide(Layer.mergeAll(
          LruCache.layer(TaskL1, { capacity: settings.l1Capacity, timeToLive: settings.l1TimeToLive, name: "tasks-l1" }),
          l2(settings)
        )),
        Layer.provideMerge(TaskStore.layer({ schema: settings.schema }))
      ))
  )

/**
 * An L2 in Redis (the `RedisClient` in context) under `TASK_CACHE_NAMESPACE`, versioned by `Task.version`
 * (an older task never replaces a newer one, a deleted one leaves a tombstone), with the invalidation bus
 * that keeps the other instances' L1s in step.
 *
 * @since 0.1.0
 * @category layers
 */
export const l2Redis = (
  settings: Settings
): Layer.Layer<
  TaskL2 | TaskInvalidations,
  Cause.IllegalArgumentException | RedisClient.RedisConnectionError,
  RedisClient.RedisClient
> =>
  Layer.merge(
    RedisCache.layer(TaskL2, {
      namespace: settings.namespace,
      schema: Task,
      timeToLive: settings.l2TimeToLive,
      version: (task) => task.version,
      tombstoneTimeToLive: settings.l2TombstoneTimeToLive,
      maxValueBytes: settings.maxValueBytes,
      name: "tasks-l2"
    }),
    Layer.scoped(
      TaskInvalidations,
      InvalidationBus.make({
        namespace: settings.namespace,
        decodeKey: Schema.decodeUnknownOption(TaskId),
        publishTimeout: settings.l2Timeout
      })
    )
  )

/**
 * An L2 in memory (an `LruCache` ten times the L1's size): for a single instance, or no Redis at all.
 *
 * @since 0.1.0
 * @category layers
 */
export const l2Memory = (settings: Settings): Layer.Layer<TaskL2, Cause.IllegalArgumentException> =>
  LruCache.layer(TaskL2, {
    capacity: settings.l1Capacity * 10,
    timeToLive: settings.l2TimeToLive,
    name: "tasks-l2"
  })

/**
 * The repository (and its store) over the `SqlClient` and `RedisClient` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromClients = layerWithL2(l2Redis, { versioned: true })

/**
 * The repository (and its store) on real services: Postgres at `DATABASE_URL` and Redis at `REDIS_URL`, tiers
 * from `config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  TaskRepository | TaskStore.TaskStore,
  | StoreError
  | RedisClient.RedisConnectionError
  | ConfigError.ConfigError
  | Cause.IllegalArgumentException
> = layerFromClients.pipe(Layer.provide(Layer.merge(TaskStore.layerPgConfig, RedisClient.layerConfig)))

/**
 * Postgres without installing Postgres: PGlite (Postgres compiled to WebAssembly, in memory) served to
 * @effect/sql-pg over `@electric-sql/pglite-socket` on a loopback port, through one connection. Both packages
 * are optional peer dependencies, loaded only when this layer is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmbeddedSql: Layer.Layer<SqlClient.SqlClient, StoreError> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const fail = (operation: string) => (cause: unknown) => new StoreError({ operation, cause })
    const { PGlite } = yield* Effect.tryPromise({ try: () => import("@electric-sql/pglite"), catch: fail("load PGlite") })
    const { PGLiteSocketServer } = yield* Effect.tryPromise({
      try: () => import("@electric-sql/pglite-socket"),
      catch: fail("load pglite-socket")
    })
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => PGlite.create(), catch: fail("start PGlite") }),
      (db) => settle(() => db.close())
    )
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0 })
          await server.start()
          return server
        },
        catch: fail("start pglite-socket")
      }),
      (server) => settle(() => server.stop())
    )
    const url = `postgres://postgres@${server.getServerConn()}/postgres`
    return TaskStore.layerPg({ url: Redacted.make(url), maxConnections: 1 })
  })
)

/**
 * The repository (and its store) with nothing installed: Postgres embedded (`layerEmbeddedSql`) and an
 * in-memory L2 (`l2Memory`), with the same `config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmbedded: Layer.Layer<
  TaskRepository | TaskStore.TaskStore,
  StoreError | ConfigError.ConfigError | Cause.IllegalArgumentException
> = layerWithL2(l2Memory).pipe(Layer.provide(layerEmbeddedSql))
