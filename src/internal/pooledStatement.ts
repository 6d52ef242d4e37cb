/**
 * One statement on a connection of an @effect/sql pool, under two separate bounds: how long it may wait for a
 * connection (`acquireTimeout`) and how long it may run once it has one (`queryTimeout`). Whether it failed
 * before or after it got its connection is part of its failure (`NotAcquired` or not), so that a write refused
 * for want of a connection is never taken for one whose outcome is unknown.
 *
 * Why not `Effect.timeout` around a plain `sql` statement, as before: its one bound also counted the wait for a
 * connection in the pool's queue, so that under overload every statement aged in the queue and timed out
 * whether or not it had been sent; and an interrupted statement is cancelled by @effect/sql-pg with
 * `pg_cancel_backend` run through `pool.query`, i.e. through the very pool that is exhausted. That cancel waits
 * in the queue behind everyone else and, on the per-statement path, the connection has usually been released
 * meanwhile, so that the cancel lands on whatever statement the backend runs by then, another caller's.
 *
 * Instead, a worker fiber per statement:
 *
 * - reserves a connection with `SqlClient.reserve` (for @effect/sql-pg: `pool.connect`). The reservation is
 *   never interrupted: @effect/sql-pg's reserve has no interruption handler, so a reservation interrupted in
 *   the pool's queue would still receive its connection later and never give it back. The caller waits for it
 *   at most `acquireTimeout`; a caller that stops waiting marks the statement abandoned, and the worker then
 *   gives the connection back as soon as it arrives, without sending anything;
 * - else sends the statement on that connection at once (provided as `SqlClient.TransactionConnection`, the
 *   tag through which every `sql` statement finds the connection it must use; the statements run here never
 *   open a transaction of their own, which would take it for a nested one). Sending from the worker, not from
 *   the caller, keeps a connection handed over by the pool busy without waiting for the caller's fiber;
 * - is not interruptible: it ends when Postgres answers or the connection fails, and only then is the
 *   connection returned. The caller stops waiting after `queryTimeout` (the outcome is then unknown), but
 *   nothing is cancelled through the pool and no connection goes back to the pool while its statement may
 *   still be running. A statement that Postgres never finishes keeps its connection until Postgres or the
 *   network ends it: bound that on the server (`statement_timeout`) when it matters.
 *
 * Whether the statement was sent is decided in one place, synchronously, by whichever comes first: the worker
 * taking the connection (`waiting` → `sent`) or the caller giving up (`waiting` → `abandoned`).
 *
 * Inside a caller's transaction (a `TransactionConnection` already in context) the statement runs on that
 * transaction's connection, which is held already; only the statement timeout applies.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"

/** The statement was never sent: no connection within the acquire timeout, or the pool could not give one. */
export class NotAcquired extends Data.TaggedError("NotAcquired")<{
  /** The pool's failure, or `undefined` when the acquire timeout ran out first. */
  readonly cause?: unknown
  readonly timeout: Duration.Duration
}> {
  override get message(): string {
    if (this.cause === undefined) {
      return `no connection to send the statement on within ${Duration.format(this.timeout)}`
    }
    const reason = Predicate.hasProperty(this.cause, "message") ? String(this.cause.message) : String(this.cause)
    return `no connection to send the statement on: ${reason}`
  }
}

/** The statement was sent and Postgres did not answer within the statement timeout: it may yet be applied. */
export class NoAnswer extends Data.TaggedError("NoAnswer")<{ readonly timeout: Duration.Duration }> {
  override get message(): string {
    return `no answer within ${Duration.format(this.timeout)}`
  }
}

/** The two bounds of a statement. */
export interface Bounds {
  readonly acquireTimeout: Duration.Duration
  readonly queryTimeout: Duration.Duration
}

/** Where a statement stands: its worker waits for a connection, has sent it, or must not send it any more. */
type Phase = "waiting" | "sent" | "abandoned"

/**
 * How a statement ended, settled once by whichever comes first (the worker, a timer), awaited by its caller. A
 * `Deferred` would do, but this runs for every statement and a `Deferred` is costly to make.
 */
class Outcome<A, E> {
  private exit: Exit.Exit<A, E> | undefined = undefined
  private resume: ((exit: Exit.Exit<A, E>) => void) | undefined = undefined

  /** Settles the outcome, unless it is settled already. */
  settle(exit: Exit.Exit<A, E>): void {
    if (this.exit !== undefined) return
    this.exit = exit
    const resume = this.resume
    this.resume = undefined
    resume?.(exit)
  }

  /** Waits for the outcome. */
  readonly await: Effect.Effect<A, E> = Effect.async<A, E>((resume) => {
    if (this.exit !== undefined) return resume(this.exit)
    this.resume = resume
    return Effect.sync(() => {
      this.resume = undefined
    })
  })
}

/**
 * Runs `statement` on a connection of `sql`'s pool: fails with `NotAcquired` when it got none within
 * `acquireTimeout` (the statement was not sent), with `NoAnswer` when the statement got no answer within
 * `queryTimeout` after it was sent, and with the statement's own failure otherwise.
 */
export const run = <A, E, R>(
  sql: SqlClient.SqlClient,
  bounds: Bounds,
  statement: Effect.Effect<A, E, R>
): Effect.Effect<A, E | NotAcquired | NoAnswer, R> =>
  Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (transaction) =>
    Option.isSome(transaction)
      ? statement.pipe(
        Effect.disconnect,
        Effect.timeoutFail({
          duration: bounds.queryTimeout,
          onTimeout: () => new NoAnswer({ timeout: bounds.queryTimeout })
        })
      )
      : pooled(sql, bounds, statement))

/** A timer: runs `effect` after `duration`, unless interrupted first (it is forked interruptible for that). */
const after = (duration: Duration.Duration, effect: Effect.Effect<void>) =>
  Effect.forkDaemon(Effect.interruptible(Effect.zipRight(Effect.sleep(duration), effect)))

/**
 * The worker and two timers (fibers of their own, so that nothing is raced) settle the outcome, which the
 * caller awaits. Written with plain combinators, not generators: this runs for every statement.
 */
const pooled = <A, E, R>(
  sql: SqlClient.SqlClient,
  { acquireTimeout, queryTimeout }: Bounds,
  statement: Effect.Effect<A, E, R>
): Effect.Effect<A, E | NotAcquired | NoAnswer, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      const outcome = new Outcome<A, E | NotAcquired | NoAnswer>()
      let phase: Phase = "waiting"
      const notAcquired = (cause?: unknown) =>
        Effect.sync(() =>
          outcome.settle(Exit.fail(
            new NotAcquired(cause === undefined ? { timeout: acquireTimeout } : { cause, timeout: acquireTimeout })
          ))
        )
      const noAnswer = Effect.sync(() => outcome.settle(Exit.fail(new NoAnswer({ timeout: queryTimeout }))))
      const abandon = Effect.suspend(() => {
        if (phase !== "waiting") return Effect.void
        phase = "abandoned"
        return notAcquired()
      })

      return Effect.flatMap(after(acquireTimeout, abandon), (acquireTimer) => {
        const stop = (timer: Fiber.RuntimeFiber<void>) => Fiber.interruptAsFork(timer, acquireTimer.id())
        // Sends the statement on `connection`, unless the caller gave up: then only closing the scope (which
        // gives the connection back) remains.
        const send = (connection: SqlConnection.Connection) =>
          Effect.suspend(() => {
            if (phase !== "waiting") return Effect.void
            phase = "sent"
            const onConnection = Effect.provideService(statement, SqlClient.TransactionConnection, [connection, 0])
            return Effect.zipRight(stop(acquireTimer), after(queryTimeout, noAnswer)).pipe(
              Effect.flatMap((queryTimer) =>
                Effect.flatMap(
                  Effect.exit(onConnection),
                  (exit) => Effect.zipRight(stop(queryTimer), Effect.sync(() => outcome.settle(exit)))
                )
              )
            )
          })
        // The pool could not give a connection: nothing was sent.
        const refused = (cause: unknown) =>
          Effect.suspend(() => {
            phase = "abandoned"
            return Effect.zipRight(stop(acquireTimer), notAcquired(cause))
          })
        // The connection is given back when this scope closes: after the statement has ended.
        const worker = Effect.scoped(Effect.flatMap(Effect.tapError(sql.reserve, refused), send))
        return Effect.zipRight(
          Effect.forkDaemon(Effect.uninterruptible(Effect.ignore(worker))),
          Effect.onInterrupt(restore(outcome.await), () =>
            Effect.suspend(() => {
              if (phase !== "waiting") return Effect.void
              phase = "abandoned"
              return stop(acquireTimer)
            }))
        )
      })
    })
  )
