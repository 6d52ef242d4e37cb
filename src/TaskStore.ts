/**
 * Tasks in Postgres through @effect/sql: migrations at layer start (serialised across processes), `get`,
 * `getMany` (one query for any number of ids), `save` (insert or update, bumping `version`) and `delete`; and
 * the `SqlClient` layers it runs on: `layerPg` (a pool on a real Postgres) and `layerEmbeddedSql` (PGlite).
 *
 * Every statement waits for a pooled connection at most `acquireTimeout` and then runs at most `queryTimeout`:
 * a statement that got no connection was never sent, and fails with a `StoreError` without `unknownOutcome`.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as PooledStatement from "./internal/pooledStatement.js"
import { checkPostgresUrl, postgresUrlProblem } from "./internal/postgresUrl.js"
import { settle } from "./internal/settle.js"
import { span } from "./internal/spans.js"
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
  /**
   * The longest a statement may wait for a connection of the pool before it fails with a `StoreError` that is
   * not `unknownOutcome` (it was never sent). Default: the `AcquireTimeout` of the `SqlClient`'s layer (2
   * seconds from `layerPg`, 10 seconds from `layerEmbeddedSql`).
   */
  readonly acquireTimeout?: Duration.DurationInput
  /**
   * The longest any one statement may take, once it has a connection, before it fails with a `StoreError`
   * that is `unknownOutcome` (it was sent, and may yet be applied). Default: 5 seconds.
   */
  readonly queryTimeout?: Duration.DurationInput
}

/**
 * How long a statement of a task store waits for a pooled connection when the store's options do not say
 * (`Options.acquireTimeout`). The `SqlClient` layers of this module provide it for their pool: `layerPg` its
 * `acquireTimeout` option (2 seconds by default), `layerEmbeddedSql` 10 seconds, as its one connection serves
 * every statement in turn. Without either: 2 seconds.
 *
 * A short bound keeps a pool that is overloaded useful: the statements it cannot serve in time are refused
 * early, and those it serves are not ones whose callers already gave up.
 *
 * @since 0.1.0
 * @category references
 */
export class AcquireTimeout extends Context.Reference<AcquireTimeout>()("@rms/cache/TaskStore/AcquireTimeout", {
  defaultValue: (): Duration.Duration => Duration.seconds(2)
}) {}

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
 * Whether Postgres itself refused a statement that was sent: an SQLSTATE outside the connection classes (`08`,
 * `57P`), so the statement's transaction was rolled back. Anything else after the statement was sent (the
 * connection lost or terminated mid-statement, an answer that does not decode) may have been applied.
 */
const refusedByPostgres = (error: unknown): boolean => {
  const cause = Predicate.hasProperty(error, "cause") ? error.cause : undefined
  const code = Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith("08") && !code.startsWith("57P")
}

/** Whether a statement run by `PooledStatement.run` reached Postgres: everything but a `NotAcquired` failure. */
const wasSent = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isSuccess(exit) ||
  !Option.exists(Cause.failureOption(exit.cause), (error) => error instanceof PooledStatement.NotAcquired)

/** The migrations table, inside the schema it versions. */
const migrationsTable = (schema: string) => `${schema}.rms_cache_migrations`

/**
 * Runs the migrations of `schema` with @effect/sql's Migrator, keeping its own table inside `schema`, in one
 * transaction that first takes a transaction-scoped advisory lock for `schema`.
 *
 * Why the lock: two processes starting at once on a fresh database both ran `CREATE SCHEMA IF NOT EXISTS` and
 * the Migrator's `CREATE TABLE` for its table, and one failed (`duplicate key value violates unique constraint
 * "pg_type_typname_nsp_index"`: `IF NOT EXISTS` does not make concurrent creations safe, and the Migrator's own
 * `LOCK TABLE` comes only after it has created its table). With the lock, the second process waits for the
 * first to commit, then finds everything in place.
 *
 * Why transaction-scoped, on one connection: a session lock would need a connection of its own while the
 * Migrator runs on others, and the embedded pool has only one. Inside the transaction the Migrator's own
 * `withTransaction` nests as a savepoint on the same connection, and the lock is released by the commit or
 * rollback, whatever happens. The migrations table is created here (`IF NOT EXISTS`, under the lock, with the
 * Migrator's own definition), because the Migrator probes for it with a query that fails when it is missing,
 * and a failed statement would abort the surrounding transaction.
 */
const migrate = (schema: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function*() {
        yield* sql`SELECT pg_advisory_xact_lock(hashtext('@rms/cache/TaskStore migrations'), hashtext(${schema}))`
        // The migrations table lives in the schema, so the schema must exist before the Migrator starts.
        yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`
        yield* sql`
          CREATE TABLE IF NOT EXISTS ${sql(migrationsTable(schema))} (
            migration_id integer primary key,
            created_at timestamp with time zone not null default now(),
            name text not null
          )`
        yield* Migrator.make({})({
          table: migrationsTable(schema),
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
    ))

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
    const bounds: PooledStatement.Bounds = {
      acquireTimeout: Duration.decode(options.acquireTimeout ?? (yield* AcquireTimeout)),
      queryTimeout: Duration.decode(options.queryTimeout ?? "5 seconds")
    }

    yield* migrate(schema).pipe(
      Effect.mapError((cause) => new StoreError({ operation: "migrate", cause })),
      Effect.withSpan("TaskStore.migrate", { captureStackTrace: false, attributes: { schema } })
    )

    /**
     * Sends one statement on a connection of its own, within the two bounds. Only the statement itself holds
     * the connection: its parameters are encoded before (by `SqlSchema`), and its rows decoded after, the
     * connection is back in the pool.
     */
    const send = <A, E, R>(effect: Effect.Effect<A, E, R>) => PooledStatement.run(sql, bounds, effect)

    /**
     * Turns every failure of an operation into `StoreError`, counts its statement when it was sent and gives it
     * a span. Whether the statement got a connection decides what a failure means: refused when it got none
     * (it was never sent); after it was sent, refused only when Postgres answered with an error, else (no
     * answer in time, connection lost, an answer that does not decode) `unknownOutcome`.
     */
    const statement = (operation: keyof typeof queryCounters) => {
      const counter = queryCounters[operation]
      // The ids are in the span only where keys were asked for (`CacheTracing.withKeys`): they may be personal.
      return <A, E, R>(effect: Effect.Effect<A, E, R>, ids: ReadonlyArray<TaskId>) =>
        effect.pipe(
          Effect.onExit((exit) => wasSent(exit) ? Metric.increment(counter) : Effect.void),
          Effect.mapError((cause) =>
            cause instanceof PooledStatement.NotAcquired || refusedByPostgres(cause)
              ? new StoreError({ operation, cause })
              : new StoreError({ operation, cause, unknownOutcome: true })
          ),
          (effect) => span(effect, `TaskStore.${operation}`, { count: ids.length }, ids)
        )
    }
    const getStatement = statement("get")
    const getManyStatement = statement("getMany")
    const saveStatement = statement("save")
    const deleteStatement = statement("delete")

    const findById = SqlSchema.findOne({
      Request: TaskId,
      Result: TaskFromRow,
      execute: (id) => send(sql`SELECT ${columns(sql)} FROM ${table} WHERE id = ${id} AND NOT deleted`)
    })
    const findByIds = SqlSchema.findAll({
      Request: Schema.Array(TaskId),
      Result: TaskFromRow,
      execute: (ids) => send(sql`SELECT ${columns(sql)} FROM ${table} WHERE id = ANY(${ids}) AND NOT deleted`)
    })
    const upsert = SqlSchema.single({
      Request: Schema.Struct({ input: TaskInput, now: Schema.DateTimeUtcFromDate }),
      Result: TaskFromRow,
      execute: ({ input, now }) =>
        send(sql`
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
          RETURNING ${columns(sql)}`)
    })
    const deleteById = (id: TaskId, now: Date) =>
      send(sql<{ id: string }>`
        UPDATE ${table} SET deleted = true, version = version + 1, updated_at = ${now}
        WHERE id = ${id} AND NOT deleted
        RETURNING id`)

    return {
      get: (id) =>
        getStatement(findById(id), [id]).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new TaskNotFound({ id })),
            onSome: Effect.succeed
          }))
        ),
      getMany: (ids) =>
        ids.length === 0
          ? Effect.succeed(new Map())
          : getManyStatement(findByIds(ids), ids).pipe(
            Effect.map((tasks) => new Map(tasks.map((task) => [task.id, task])))
          ),
      save: (input) =>
        Effect.flatMap(DateTime.now, (now) => saveStatement(upsert({ input, now }), [input.id])),
      delete: (id) =>
        Effect.flatMap(DateTime.now, (now) => deleteStatement(deleteById(id, DateTime.toDateUtc(now)), [id])).pipe(
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
  /**
   * How long to wait for a new connection to Postgres before failing. The driver's pool applies the same bound
   * to a wait in its queue, so a statement never waits for a connection longer than this either. Default: 5
   * seconds.
   */
  readonly connectTimeout?: Duration.DurationInput
  /** The most connections the pool opens. Default: 10. */
  readonly maxConnections?: number
  /**
   * How long a task store's statement waits for a connection of this pool before it is refused (the
   * `AcquireTimeout` this layer provides; a store's own `acquireTimeout` option wins). Default: 2 seconds.
   */
  readonly acquireTimeout?: Duration.DurationInput
}

/**
 * A `SqlClient` for Postgres through @effect/sql-pg, failing with `StoreError` when Postgres cannot be reached
 * within the connect timeout; with the `AcquireTimeout` that task stores over it use.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPg = (options: PgOptions): Layer.Layer<SqlClient.SqlClient | AcquireTimeout, StoreError> => {
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
    Layer.map((context) =>
      Context.make(SqlClient.SqlClient, Context.get(context, SqlClient.SqlClient)).pipe(
        Context.add(AcquireTimeout, Duration.decode(options.acquireTimeout ?? "2 seconds"))
      )
    ),
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
export const layerPgConfig: Layer.Layer<
  SqlClient.SqlClient | AcquireTimeout,
  StoreError | ConfigError.ConfigError
> = Layer.unwrapEffect(
  Effect.map(databaseUrl, (url) => layerPg({ url }))
)

/**
 * Postgres without installing Postgres: PGlite (Postgres compiled to WebAssembly, in memory) served to
 * @effect/sql-pg over `@electric-sql/pglite-socket` on a loopback port, through one connection. Both packages
 * are optional peer dependencies, loaded only when this layer is built.
 *
 * Its one connection serves every statement in turn, so a statement may queue behind many others: the
 * `AcquireTimeout` it provides is 10 seconds (and so is the driver's connect timeout, which also bounds a wait
 * in the pool's queue).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmbeddedSql: Layer.Layer<SqlClient.SqlClient | AcquireTimeout, StoreError> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const fail = (operation: string) => (cause: unknown) => new StoreError({ operation, cause })
    const { PGlite } = yield* Effect.tryPromise({
      try: () => import("@electric-sql/pglite"),
      catch: fail("load PGlite")
    })
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
    return layerPg({
      url: Redacted.make(url),
      maxConnections: 1,
      acquireTimeout: "10 seconds",
      connectTimeout: "10 seconds"
    })
  })
)
