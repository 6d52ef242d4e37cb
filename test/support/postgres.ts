/**
 * Real Postgres for tests: each test file works in a schema of its own, dropped when its layer closes.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import * as TaskStore from "../../src/TaskStore.js"

export const databaseUrl = process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/test"

/** A `SqlClient` on the real Postgres. */
export const sqlLayer = TaskStore.layerPg({ url: Redacted.make(databaseUrl), maxConnections: 4 })

/** A schema name no other test file (or run) uses. */
export const uniqueSchema = (label: string): string =>
  `test_${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`.toLowerCase()

/** Drops `schema` (and everything in it) when the layer's scope closes. */
export const dropSchemaOnClose = (schema: string): Layer.Layer<never, never, SqlClient.SqlClient> =>
  Layer.scopedDiscard(
    Effect.addFinalizer(() =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`).pipe(Effect.orDie)
    )
  )

/**
 * A `TaskStore` in a fresh schema of the real Postgres, plus its `SqlClient`; the schema is dropped with the
 * layer. Returns the schema's name too, for tests that reach behind the store.
 */
export const storeLayer = (label: string) => {
  const schema = uniqueSchema(label)
  const layer = Layer.mergeAll(TaskStore.layer({ schema }), dropSchemaOnClose(schema)).pipe(
    Layer.provideMerge(sqlLayer)
  )
  return { schema, layer }
}

/**
 * Runs `effect` and counts the statements @effect/sql sent to the server (its `sql.execute` spans): a count
 * taken from the SQL client itself, not from our code.
 */
export const countingStatements = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.tracerWith((base) => {
    let statements = 0
    const counting = Tracer.make({
      span(name, parent, context, links, startTime, kind, options) {
        if (name === "sql.execute") statements++
        return base.span(name, parent, context, links, startTime, kind, options)
      },
      context: (f, fiber) => base.context(f, fiber)
    })
    return effect.pipe(
      Effect.withTracer(counting),
      Effect.map((result) => ({ result, statements }))
    )
  })
