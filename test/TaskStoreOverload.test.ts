/**
 * The task store under overload, on the real Postgres with a small pool: far more concurrent saves than the pool
 * can serve within the acquire timeout. What must hold is behaviour, not timing:
 *
 * - every save succeeds or fails with a refused `StoreError` (no `unknownOutcome`): a save that never got a
 *   connection was never sent, and Postgres answers every statement that was sent long before the statement
 *   timeout; the table agrees (every success is there, every refusal is not);
 * - the pool keeps doing useful work: the successes are a fair share of what the pool does unloaded in the
 *   same time (measured here, first), instead of collapsing;
 * - the pool is healthy afterwards: a normal save succeeds at once.
 *
 * The measured figures are printed (`[overload] …`).
 */
import { expect, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { StoreError, TaskId, TaskInput } from "../src/Task.js"
import * as TaskStore from "../src/TaskStore.js"
import { databaseUrl, dropSchemaOnClose, uniqueSchema } from "./support/postgres.js"

/** The pool: small, so that a few thousand saves overload it many times over. */
const pool = 4
/** How long a save may wait for a connection (the default, stated here because the assertions depend on it). */
const acquireTimeout = Duration.seconds(2)

const schema = uniqueSchema("overload")
const stack = Layer.mergeAll(TaskStore.layer({ schema, acquireTimeout }), dropSchemaOnClose(schema)).pipe(
  Layer.provideMerge(TaskStore.layerPg({ url: Redacted.make(databaseUrl), maxConnections: pool }))
)

const input = (id: string, title = `task ${id}`) => new TaskInput({ id: TaskId.make(id), title, status: "todo" })

interface Tally {
  readonly successes: number
  readonly refused: number
  readonly unknown: number
  /** Failures that are not a `StoreError` at all (must be none). */
  readonly other: ReadonlyArray<string>
  readonly seconds: number
}

/** Runs every effect at once and sorts how each ended. */
const burst = <A>(effects: ReadonlyArray<Effect.Effect<A, unknown>>) =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.map(
      Effect.forEach(effects, Effect.exit, { concurrency: "unbounded" }),
      (exits): Tally => {
        let successes = 0
        let refused = 0
        let unknown = 0
        const other: Array<string> = []
        for (const exit of exits) {
          if (Exit.isSuccess(exit)) successes++
          else if (exit.cause._tag === "Fail" && exit.cause.error instanceof StoreError) {
            if (exit.cause.error.unknownOutcome === true) unknown++
            else refused++
          } else other.push(String(exit.cause))
        }
        return { successes, refused, unknown, other, seconds: (performance.now() - started) / 1000 }
      }
    )
  })

/** Saves per second of the pool when it is not overloaded: as many saves in flight as it has connections. */
const baseline = (label: string) =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const count = 600
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => `${label}-baseline-${i}`),
      (id) => store.save(input(id)),
      { concurrency: pool, discard: true }
    )
    return count / ((performance.now() - started) / 1000)
  })

const report = (label: string, rate: number, tally: Tally) =>
  console.log(
    `[overload] ${label}: baseline ${rate.toFixed(0)} saves/s; burst: ${tally.successes} succeeded, ` +
      `${tally.refused} refused, ${tally.unknown} unknown outcome, ${tally.other.length} other, in ` +
      `${tally.seconds.toFixed(2)} s = ${(tally.successes / tally.seconds).toFixed(0)} successes/s`
  )

/** A normal save right after the burst succeeds, and quickly: the pool is not wedged. */
const healthyAfterwards = (id: string) =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const started = performance.now()
    const saved = yield* store.save(input(id, "after the burst"))
    const ms = performance.now() - started
    console.log(`[overload] a save right after the burst took ${ms.toFixed(0)} ms`)
    expect(saved.title).toBe("after the burst")
    // Far below the acquire timeout: it did not queue behind the burst's abandoned waiters.
    expect(ms).toBeLessThan(1_000)
  })

layer(stack, { timeout: "60 seconds", excludeTestServices: true })("TaskStore under overload (real Postgres)", (it) => {
  it.effect("10,000 concurrent saves of distinct tasks: refused or saved, never unknown; throughput holds", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore.TaskStore
      const sql = yield* SqlClient.SqlClient
      const rate = yield* baseline("distinct")

      const ids = Array.from({ length: 10_000 }, (_, i) => `distinct-${i}`)
      const tally = yield* burst(ids.map((id) => store.save(input(id))))
      report("10,000 saves of distinct ids", rate, tally)

      expect(tally.other, "every failure is a StoreError").toStrictEqual([])
      expect(tally.successes + tally.refused + tally.unknown).toBe(ids.length)
      // Postgres answers in milliseconds: a save that got a connection was answered; the others were refused.
      expect(tally.unknown, "no save of the burst has an unknown outcome").toBe(0)
      // The table agrees: exactly the successes were applied, no refused save was.
      const rows = yield* sql<{ count: number }>`
        SELECT count(*)::int AS count FROM ${sql(`${schema}.tasks`)}
        WHERE id LIKE 'distinct-%' AND id NOT LIKE '%baseline%'`
      expect(rows[0]?.count).toBe(tally.successes)
      // Useful work goes on: at least a fifth of what the pool does unloaded during the acquire timeout (the
      // time every waiting save gets), and never a collapse to a handful.
      const floor = Math.max(200, 0.2 * rate * Duration.toSeconds(acquireTimeout))
      expect(tally.successes, `successes ≥ ${floor.toFixed(0)}`).toBeGreaterThanOrEqual(floor)
      yield* healthyAfterwards("distinct-after")
    }), 40_000)

  it.effect("4,000 concurrent saves of one id: refused or saved, never unknown; every success is one version", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore.TaskStore
      const rate = yield* baseline("same")
      const first = yield* store.save(input("same", "first"))

      const tally = yield* burst(Array.from({ length: 4_000 }, (_, i) => store.save(input("same", `burst ${i}`))))
      report("4,000 saves of one id", rate, tally)

      expect(tally.other, "every failure is a StoreError").toStrictEqual([])
      expect(tally.unknown, "no save of the burst has an unknown outcome").toBe(0)
      // Each success bumped the version once, and no refused save did.
      const last = yield* store.get(TaskId.make("same"))
      expect(last.version).toBe(first.version + tally.successes)
      // One row takes its saves one at a time (row lock), so the floor is lower than for distinct ids.
      const floor = Math.max(100, 0.1 * rate * Duration.toSeconds(acquireTimeout))
      expect(tally.successes, `successes ≥ ${floor.toFixed(0)}`).toBeGreaterThanOrEqual(floor)
      yield* healthyAfterwards("same-after")
    }), 40_000)
})
