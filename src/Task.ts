/**
 * The task domain: a branded `TaskId`, the `Task` model, the input of a save, and the domain errors.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { hasLoneSurrogate } from "./internal/text.js"

/**
 * Text that survives a round trip through Postgres and Redis unchanged: no lone UTF-16 surrogates, which UTF-8
 * cannot carry (they would come back as U+FFFD, a different string).
 */
const wellFormed = <S extends Schema.Schema.Any>(self: S) =>
  self.pipe(
    Schema.filter((s) => typeof s !== "string" || !hasLoneSurrogate(s), {
      message: () => "text must be well-formed Unicode (no lone surrogates)"
    })
  )

/**
 * A task's id: 1 to 200 characters, no control characters, well-formed Unicode. Spaces, colons and any other
 * character are fine.
 *
 * @since 0.1.0
 * @category models
 */
export const TaskId = Schema.String.pipe(
  Schema.minLength(1, { message: () => "a task id must not be empty" }),
  Schema.maxLength(200, { message: () => "a task id must be at most 200 characters" }),
  Schema.pattern(/^[^\u0000-\u001f\u007f]*$/, { message: () => "a task id must not contain control characters" }),
  wellFormed,
  Schema.brand("TaskId")
)

/**
 * A task's id, validated by the `TaskId` schema (build one with `TaskId.make` or by decoding).
 *
 * @since 0.1.0
 * @category models
 */
export type TaskId = typeof TaskId.Type

/**
 * Where a task stands.
 *
 * @since 0.1.0
 * @category models
 */
export const TaskStatus = Schema.Literal("todo", "in_progress", "done").annotations({
  message: () => ({ message: `a status must be one of "todo", "in_progress", "done"`, override: true })
})

/**
 * `"todo"`, `"in_progress"` or `"done"`.
 *
 * @since 0.1.0
 * @category models
 */
export type TaskStatus = typeof TaskStatus.Type

const Title = Schema.NonEmptyTrimmedString.pipe(
  Schema.maxLength(500, { message: () => "a title must be at most 500 characters" }),
  wellFormed
)

const Assignee = Schema.NonEmptyTrimmedString.pipe(
  Schema.maxLength(100, { message: () => "an assignee must be at most 100 characters" }),
  wellFormed
)

/**
 * A task as stored: `version` starts at 1 and grows by one with every save.
 *
 * @since 0.1.0
 * @category models
 */
export class Task extends Schema.Class<Task>("Task")({
  id: TaskId,
  title: Title,
  status: TaskStatus,
  assignee: Schema.optionalWith(Assignee, { exact: true }),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc,
  version: Schema.Int.pipe(Schema.positive())
}) {}

/**
 * What a caller saves: the store stamps the times and the version.
 *
 * @since 0.1.0
 * @category models
 */
export class TaskInput extends Schema.Class<TaskInput>("TaskInput")({
  id: TaskId,
  title: Title,
  status: TaskStatus,
  assignee: Schema.optionalWith(Assignee, { exact: true })
}) {}

/**
 * The body of a save over HTTP: a `TaskInput` without the id, which comes from the path.
 *
 * @since 0.1.0
 * @category models
 */
export const TaskBody = Schema.Struct(TaskInput.fields).pipe(Schema.omit("id"))

/**
 * No task has this id.
 *
 * @since 0.1.0
 * @category errors
 */
export class TaskNotFound extends Schema.TaggedError<TaskNotFound>()("TaskNotFound", { id: TaskId }) {
  override get message(): string {
    return `task ${JSON.stringify(this.id)} not found`
  }
}

/**
 * The task store failed: Postgres unreachable, a timeout, or a row that does not decode. `cause` keeps the
 * original failure for diagnosis; it never leaks as a raw `SqlError`.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Data.TaggedError("StoreError")<{
  /** The store operation that failed: `get`, `getMany`, `save`, `delete`, `migrate`, `connect`… */
  readonly operation: string
  /** The underlying failure (a `SqlError`, a timeout, a `ParseError` of a row), kept for diagnosis. */
  readonly cause: unknown
  /**
   * For a write: `true` when it may have been applied all the same (a timeout, a connection lost after the
   * statement was sent), so that a cache must not keep the value it replaced. Absent when it was not applied.
   */
  readonly unknownOutcome?: true
}> {
  override get message(): string {
    const reason = Predicate.hasProperty(this.cause, "message") ? String(this.cause.message) : String(this.cause)
    return `task store failed on ${this.operation}: ${reason}`
  }
}
