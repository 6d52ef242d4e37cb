/**
 * The task service: a `CachedStore` of tasks over `TaskStore`, with an L1 `LruCache` and an L2 `RedisCache`
 * (and the invalidation bus) or an in-memory L2. Two ready layers: `layer` (Postgres and Redis from `Config`)
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
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Scope } from "effect/Scope"
import * as Cache from "./Cache.js"
import * as CachedStore from "./CachedStore.js"
import * as InvalidationBus from "./InvalidationBus.js"
import type * as CacheMetrics from "./CacheMetrics.js"
import * as LruCache from "./LruCache.js"
import * as RedisCache from "./RedisCache.js"
import * as RedisClient from "./RedisClient.js"
import { StoreError, Task, TaskId, type TaskInput, TaskNotFound } from "./Task.js"
import * as TaskStore from "./TaskStore.js"
import { span } from "./internal/spans.js"

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

/** How a failed task write left Postgres. */
const classify = (error: StoreError | TaskNotFound): CachedStore.WriteOutcome =>
  error._tag === "TaskNotFound" ? "absent" : error.unknownOutcome === true ? "unknown" : "refused"

/**
 * Builds the repository: a `CachedStore` of tasks over the `TaskStore`, `TaskL1` and `TaskL2` in context, and
 * `TaskInvalidations` when present (every write is then published to the other instances, and theirs drop ids
 * from this L1).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, Cause.IllegalArgumentException, TaskStore.TaskStore | TaskL1 | TaskL2 | Scope> =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const bus = yield* Effect.serviceOption(TaskInvalidations)
    const tasks = yield* CachedStore.make({
      name: "tasks",
      store: { getMany: store.getMany, save: store.save, remove: store.delete },
      keyOf: (input: TaskInput) => input.id,
      tiers: [yield* TaskL1, {
        cache: yield* TaskL2,
        timeout: options.l2Timeout ?? "250 millis",
        breaker: { failures: options.l2BreakerFailures ?? 5, cooldown: options.l2BreakerCooldown ?? "5 seconds" }
      }],
      classify,
      ...(Option.isSome(bus) ? { invalidations: bus.value } : {}),
      ...(options.unknownOutcomeRecheck === undefined ? {} : { unknownOutcomeRecheck: options.unknownOutcomeRecheck }),
      ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize })
    })
    // The id is in the span only where keys were asked for (`CacheTracing.withKeys`).
    const traced = (name: string, id: TaskId) => <A, E, R>(effect: Effect.Effect<A, E, R>) => span(effect, `TaskRepository.${name}`, {}, [id])
    return {
      // No span on reads: an L1 hit costs less than a span. Loads (TaskStore.getMany) and writes have theirs.
      get: (id) => Effect.catchTag(tasks.get(id), "CacheMiss", () => Effect.fail(new TaskNotFound({ id }))),
      getMany: tasks.getMany,
      save: (input) => tasks.save(input).pipe(traced("save", input.id)),
      delete: (id) => tasks.delete(id).pipe(traced("delete", id)),
      metrics: tasks.metrics,
      l2Breaker: Effect.map(tasks.breakers, (states) => states[1]!)
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
 * `l2` builds from the same settings (with the bus, when it is shared). The other layers are this one with a
 * particular L2.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithL2 = <E, R>(
  l2: (settings: Settings) => Layer.Layer<TaskL2 | TaskInvalidations, E, R> | Layer.Layer<TaskL2, E, R>
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
export const layerFromClients = layerWithL2(l2Redis)

/**
 * The repository (and its store) on real services: Postgres at `DATABASE_URL` and Redis at `REDIS_URL` (or the
 * Redis Cluster at `REDIS_CLUSTER_NODES`, when set), tiers from `config`.
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
 * The repository (and its store) with nothing installed: Postgres embedded (`TaskStore.layerEmbeddedSql`) and an
 * in-memory L2 (`l2Memory`), with the same `config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmbedded: Layer.Layer<
  TaskRepository | TaskStore.TaskStore,
  StoreError | ConfigError.ConfigError | Cause.IllegalArgumentException
> = layerWithL2(l2Memory).pipe(Layer.provide(TaskStore.layerEmbeddedSql))
