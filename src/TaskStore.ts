/**
 * Tasks in Postgres through @effect/sql: migrations at layer start, `get`, `getMany` (one query for any
 * number of ids), `save` (insert or update, bumping `version`) and `delete`.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { checkPostgresUrl, postgresUrlProblem } from "./internal/postgresUrl.js"
import { StoreError, Task, TaskId, TaskInput, TaskNotFound } from "./Task.js"

/**
 * The task store's operations. Every failure of Postgres is a `StoreError`; a missing task is `TaskNotFound`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The task with this id. */
  get(id: TaskId): Effect.Effect<Task, TaskNotFound | StoreError>
  /** The tasks found among `ids`, in one query whatever their number; missing ids are absent. */
  getMany(ids: ReadonlyArray<TaskId>): Effect.Effect<ReadonlyMap<TaskId, Task>, StoreError>
  /**
   * Inserts the task at version 1, or updates it and bumps its version (also when it was deleted: versions
   * of an id only ever grow); returns what was stored.
   */
  save(input: TaskInput): Effect.Effect<Task, StoreError>
  /**
   * Deletes the task; fails with `TaskNotFound` if there was none. The row stays behind as a marker (marked
   * deleted, its version bumped) so that a task saved again under this id continues its versions; markers can
   * be purged with `DELETE … WHERE deleted` once no cache can hold the old task (after the L2 time-to-live).
   */
  delete(id: TaskId): Effect.Effect<void, TaskNotFound | StoreError>
}

/**
 * The task store service.
 *
 * @since 0.1.0
 * @category tags
 */
export class TaskStore extends Context.Tag("@rms/cache/TaskStore")<TaskStore, Service>() {}

/**
 * Options of the task store.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The Postgres schema holding the tasks table and its migrations table. Default: `"public"`. */
  readonly schema?: string
  /** The longest any one statement may take before it fails with `StoreError`. Default: 5 seconds. */
  readonly queryTimeout?: Duration.DurationInput
}

/** Tasks as rows: snake-case columns aliased to the model's names, `null` for a missing assignee. */
const TaskRow = Schema.Struct({
  ...Task.fields,
  assignee: Schema.NullOr(Task.fields.assignee.from),
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate
})

const TaskFromRow = Schema.transform(TaskRow, Schema.typeSchema(Task), {
  strict: true,
  // The row's fields were validated by `TaskRow` with the model's own field schemas.
  decode: ({ assignee, ...fields }) => new Task(assignee === null ? fields : { ...fields, assignee }, true),
  encode: (task) => ({ ...task, assignee: task.assignee ?? null })
})

const columns = (sql: SqlClient.SqlClient) =>
  sql`id, title, status, assignee, created_at AS "createdAt", updated_at AS "updatedAt", version`

/** One counter per operation, tagged in its key so that counting costs no registry lookup. */
const queryCounters = {
  get: Metric.fromMetricKey(MetricKey.counter("task_store_queries").pipe(MetricKey.tagged("operation", "get"))),
  getMany: Metric.fromMetricKey(MetricKey.counter("task_store_queries").pipe(MetricKey.tagged("operation", "getMany"))),
  save: Metric.fromMetricKey(MetricKey.counter("task_store_queries").pipe(MetricKey.tagged("operation", "save"))),
  delete: Metric.fromMetricKey(MetricKey.counter("task_store_queries").pipe(MetricKey.tagged("operation", "delete")))
}

/**
 * The number of statements every task store of this process has sent to Postgres (the metric
 * `task_store_queries`, tagged by operation: `get`, `getMany`, `save`, `delete`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const queryCount: Effect.Effect<number> = Effect.map(
  Effect.forEach(Object.values(queryCounters), Metric.value),
  (states) => states.reduce((sum, state) => sum + state.count, 0)
)

/**
 * Whether a failed statement may have been applied all the same. Postgres refusing it (an SQLSTATE outside the
 * connection classes) or no connection to send it on: no. A connection lost or terminated mid-statement: maybe.
 */
const mayHaveBeenApplied = (error: unknown): boolean => {
  const cause = Predicate.hasProperty(error, "cause") ? error.cause : undefined
  const code = Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return code.startsWith("08") || code.startsWith("57P")
  const message = Predicate.hasProperty(error, "message") ? String(error.message) : ""
  return !message.includes("Failed to acquire connection")
}

/** Runs the migrations of `schema` with @effect/sql's Migrator, keeping its own table inside `schema`. */
const migrate = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The migrations table lives in the schema, so the schema must exist before the Migrator starts.
    yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`
    yield* Migrator.make({})({
      table: `${schema}.rms_cache_migrations`,
      loader: Migrator.fromRecord({
        "0001_create_tasks": sql`
          CREATE TABLE IF NOT EXISTS ${sql(`${schema}.tasks`)} (
            id text PRIMARY KEY,
            title text NOT NULL,
            status text NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
            assignee text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL CHECK (version > 0)
          )`,
        // A deleted task keeps its row (and its version) as a marker, so that a task created again under the
        // same id continues the version sequence: caches order values by version, and a version that went back
        // to 1 would lose to the deleted task's.
        "0002_soft_delete": sql`
          ALTER TABLE ${sql(`${schema}.tasks`)} ADD COLUMN IF NOT EXISTS deleted boolean NOT NULL DEFAULT false`
      })
    })
  })

/**
 * Builds the task store over the `SqlClient` in context and brings its schema up to date first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, StoreError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const schema = options.schema ?? "public"
    const table = sql(`${schema}.tasks`)
    const timeout = Duration.decode(options.queryTimeout ?? "5 seconds")

    yield* migrate(schema).pipe(
      Effect.mapError((cause) => new StoreError({ operation: "migrate", cause })),
      Effect.withSpan("TaskStore.migrate", { captureStackTrace: false, attributes: { schema } })
    )

    /** Bounds a statement, turns every failure into `StoreError`, counts it and gives it a span. */
    const statement = (operation: keyof typeof queryCounters) => {
      const counter = queryCounters[operation]
      return <A, E, R>(effect: Effect.Effect<A, E, R>, attributes: Record<string, unknown>) =>
        effect.pipe(
          // On timeout the statement is interrupted in the background (@effect/sql-pg then asks Postgres to
          // cancel it, which can itself wait on an unresponsive server): the caller does not wait for that.
          Effect.disconnect,
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new StoreError({ operation, cause: `no answer within ${Duration.format(timeout)}`, unknownOutcome: true })
          }),
          Effect.mapError((cause) =>
            cause instanceof StoreError
              ? cause
              : mayHaveBeenApplied(cause)
              ? new StoreError({ operation, cause, unknownOutcome: true })
              : new StoreError({ operation, cause })
          ),
          Effect.ensuring(Metric.increment(counter)),
          Effect.withSpan(`TaskStore.${operation}`, { captureStackTrace: false, attributes })
        )
    }
    const getStatement = statement("get")
    const getManyStatement = statement("getMany")
    const saveStatement = statement("save")
    const deleteStatement = statement("delete")

    const findById = SqlSchema.findOne({
      Request: TaskId,
      Result: TaskFromRow,
      execute: (id) => sql`SELECT ${columns(sql)} FROM ${table} WHERE id = ${id} AND NOT deleted`
    })
    const findByIds = SqlSchema.findAll({
      Request: Schema.Array(TaskId),
      Result: TaskFromRow,
      execute: (ids) => sql`SELECT ${columns(sql)} FROM ${table} WHERE id = ANY(${ids}) AND NOT deleted`
    })
    const upsert = SqlSchema.single({
      Request: Schema.Struct({ input: TaskInput, now: Schema.DateTimeUtcFromDate }),
      Result: TaskFromRow,
      execute: ({ input, now }) =>
        sql`
          INSERT INTO ${table} AS t (id, title, status, assignee, created_at, updated_at, version)
          VALUES (${input.id}, ${input.title}, ${input.status}, ${input.assignee ?? null}, ${now}, ${now}, 1)
          ON CONFLICT (id) DO UPDATE SET
            title = EXCLUDED.title,
            status = EXCLUDED.status,
            assignee = EXCLUDED.assignee,
            created_at = CASE WHEN t.deleted THEN EXCLUDED.created_at ELSE t.created_at END,
            updated_at = EXCLUDED.updated_at,
            version = t.version + 1,
            deleted = false
          RETURNING ${columns(sql)}`
    })
    const deleteById = (id: TaskId, now: Date) =>
      sql<{ id: string }>`
        UPDATE ${table} SET deleted = true, version = version + 1, updated_at = ${now}
        WHERE id = ${id} AND NOT deleted
        RETURNING id`

    return {
      get: (id) =>
        getStatement(findById(id), { id }).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new TaskNotFound({ id })),
            onSome: Effect.succeed
          }))
        ),
      getMany: (ids) =>
        ids.length === 0
          ? Effect.succeed(new Map())
          : getManyStatement(findByIds(ids), { count: ids.length }).pipe(
            Effect.map((tasks) => new Map(tasks.map((task) => [task.id, task])))
          ),
      save: (input) =>
        Effect.flatMap(DateTime.now, (now) => saveStatement(upsert({ input, now }), { id: input.id })),
      delete: (id) =>
        Effect.flatMap(DateTime.now, (now) => deleteStatement(deleteById(id, DateTime.toDateUtc(now)), { id })).pipe(
          Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new TaskNotFound({ id })) : Effect.void)
        )
    } satisfies Service
  })

/**
 * The task store over the `SqlClient` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<TaskStore, StoreError, SqlClient.SqlClient> =>
  Layer.effect(TaskStore, make(options))

/**
 * Connection settings for Postgres.
 *
 * @since 0.1.0
 * @category models
 */
export interface PgOptions {
  /** A `postgres://` URL. */
  readonly url: Redacted.Redacted
  /** How long to wait for a connection before failing. Default: 5 seconds. */
  readonly connectTimeout?: Duration.DurationInput
  /** The most connections the pool opens. Default: 10. */
  readonly maxConnections?: number
}

/**
 * A `SqlClient` for Postgres through @effect/sql-pg, failing with `StoreError` when Postgres cannot be reached
 * within the connect timeout.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPg = (options: PgOptions): Layer.Layer<SqlClient.SqlClient, StoreError> => {
  // Checked here, not by the driver, whose parse errors may quote the URL (and its password).
  const problem = postgresUrlProblem(Redacted.value(options.url))
  if (problem !== undefined) {
    return Layer.fail(new StoreError({ operation: "connect", cause: `invalid Postgres URL: ${problem}` }))
  }
  return PgClient.layer({
    url: options.url,
    connectTimeout: options.connectTimeout ?? "5 seconds",
    maxConnections: options.maxConnections ?? 10,
    applicationName: "@rms/cache"
  }).pipe(
    Layer.map((context) => Context.make(SqlClient.SqlClient, Context.get(context, SqlClient.SqlClient))),
    Layer.mapError((cause) => new StoreError({ operation: "connect", cause }))
  )
}

/**
 * `DATABASE_URL` (default `postgres://root@127.0.0.1:5432/test`) as a redacted URL. One that is not a
 * `postgres://` URL is a `ConfigError` that says what is wrong with it without quoting it.
 *
 * @since 0.1.0
 * @category config
 */
export const databaseUrl: Config.Config<Redacted.Redacted> = Config.redacted("DATABASE_URL").pipe(
  Config.mapOrFail((url) =>
    Either.mapLeft(
      checkPostgresUrl(url, Redacted.value(url)),
      (problem) => ConfigError.InvalidData(["DATABASE_URL"], `not a valid Postgres URL: ${problem}`)
    )
  ),
  Config.withDefault(Redacted.make("postgres://root@127.0.0.1:5432/test"))
)

/**
 * `layerPg` configured from `DATABASE_URL`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPgConfig: Layer.Layer<SqlClient.SqlClient, StoreError | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(databaseUrl, (url) => layerPg({ url }))
)
