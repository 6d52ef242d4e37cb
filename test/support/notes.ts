/**
 * A second entity for the tests, written as a user of the library would write their own: a `Note` schema, a
 * store of its own over Postgres (@effect/sql), and a `CachedStore` of notes with an `LruCache` L1, a versioned
 * `RedisCache` L2 and the invalidation bus — nothing of the task domain.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as CachedStore from "../../src/CachedStore.js"

/** A note as stored. */
export class Note extends Schema.Class<Note>("Note")({
  id: Schema.String,
  text: Schema.String,
  version: Schema.Int
}) {}

/** What a caller saves. */
export interface NoteInput {
  readonly id: string
  readonly text: string
}

/** No note with this id. */
export class NoteNotFound extends Data.TaggedError("NoteNotFound")<{ readonly id: string }> {}

/** The database failed; `maybeApplied` when the statement may have run all the same. */
export class NoteStoreError extends Data.TaggedError("NoteStoreError")<{
  readonly cause: unknown
  readonly maybeApplied: boolean
}> {}

/** How a failed note write left the table. */
export const classifyNoteWrite = (error: NoteStoreError | NoteNotFound): CachedStore.WriteOutcome =>
  error._tag === "NoteNotFound" ? "absent" : error.maybeApplied ? "unknown" : "refused"

/**
 * Notes in a table of `schema`: versions grow with every write, also across a delete (a deleted note keeps its
 * row, marked), as the contract of `CachedStore.Store` asks.
 */
export const noteStore = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = sql(`${schema}.notes`)
    yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`.pipe(Effect.orDie)
    yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
      id text PRIMARY KEY, text text NOT NULL, version integer NOT NULL, deleted boolean NOT NULL DEFAULT false
    )`.pipe(Effect.orDie)
    const failed = (cause: unknown) => new NoteStoreError({ cause, maybeApplied: true })
    const store: CachedStore.Store<string, Note, NoteInput, NoteStoreError, NoteStoreError, NoteStoreError | NoteNotFound> = {
      getMany: (ids) =>
        sql<{ id: string; text: string; version: number }>`
          SELECT id, text, version FROM ${table} WHERE id = ANY(${ids}) AND NOT deleted`.pipe(
          Effect.map((rows) => new Map(rows.map((row) => [row.id, new Note(row)]))),
          Effect.mapError((cause) => new NoteStoreError({ cause, maybeApplied: false }))
        ),
      save: (input) =>
        sql<{ id: string; text: string; version: number }>`
          INSERT INTO ${table} AS n (id, text, version) VALUES (${input.id}, ${input.text}, 1)
          ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, version = n.version + 1, deleted = false
          RETURNING id, text, version`.pipe(
          Effect.map((rows) => new Note(rows[0]!)),
          Effect.mapError(failed)
        ),
      remove: (id) =>
        sql`UPDATE ${table} SET deleted = true, version = version + 1 WHERE id = ${id} AND NOT deleted RETURNING id`.pipe(
          Effect.mapError(failed),
          Effect.flatMap((rows) => (rows.length === 0 ? Effect.fail(new NoteNotFound({ id })) : Effect.void))
        )
    }
    return store
  })

/** Ids as they travel on the bus: any string. */
export const decodeNoteId = (raw: string): Option.Option<string> => Option.some(raw)
