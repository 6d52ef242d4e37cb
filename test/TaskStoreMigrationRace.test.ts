/**
 * Two instances starting at the same instant on a fresh schema both run the store's migrations: both must start.
 * Each instance is a process of its own (test/support/migrate-program.ts), as in production: the program
 * connects, says READY, and runs the migrations (`TaskStore.layer`) when the test writes a line to its stdin,
 * which the test does for both processes of a pair at once. Several pairs, each on a fresh schema (dropped at
 * the end); every process is killed (SIGKILL) when its pair ends, whatever happened, and again after each test.
 */
import { afterEach, expect, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { databaseUrl, sqlLayer, uniqueSchema } from "./support/postgres.js"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const programPath = "test/support/migrate-program.ts"
/** Pairs started, and how many run at once (each process is a Node with tsx: heavy on a small machine). */
const pairs = 6
const pairsAtOnce = 3
/** How long a process may take to connect (tsx start-up included), then to migrate and exit. */
const readyBound = "30 seconds"
const exitBound = "20 seconds"

/** Every process started and not yet known to have exited: killed after each test, whatever happened. */
const running = new Set<ChildProcess>()
const kill = (child: ChildProcess) => {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  running.delete(child)
}
afterEach(() => {
  for (const child of Array.from(running)) kill(child)
})

interface Instance {
  readonly child: ChildProcess
  readonly output: () => string
  /** Succeeds once the program has printed READY; fails if it exits first. */
  readonly ready: Effect.Effect<void, string>
  /** The exit code, once the program has exited. */
  readonly exited: Effect.Effect<number | null>
}

/** Starts the program on `schema`; it is killed when the scope closes. */
const start = (schema: string) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, ["--import", "tsx", programPath, schema], {
          cwd: root,
          env: { ...process.env, DATABASE_URL: databaseUrl },
          stdio: ["pipe", "pipe", "pipe"]
        })
        running.add(child)
        return child
      }),
      (child) => Effect.sync(() => kill(child))
    )
    let output = ""
    child.stdout!.on("data", (chunk: Buffer) => void (output += chunk.toString("utf8")))
    child.stderr!.on("data", (chunk: Buffer) => void (output += chunk.toString("utf8")))
    const exited = Effect.async<number | null>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
      child.once("exit", (code) => resume(Effect.succeed(code)))
    })
    const ready = Effect.async<void, string>((resume) => {
      let done = false
      const settle = (effect: Effect.Effect<void, string>) => {
        if (done) return
        done = true
        child.stdout!.off("data", check)
        child.off("exit", onExit)
        resume(effect)
      }
      const check = () => {
        if (output.includes("READY\n")) settle(Effect.void)
      }
      const onExit = (code: number | null) => settle(Effect.fail(`exited (${code}) before READY:\n${output}`))
      child.stdout!.on("data", check)
      child.once("exit", onExit)
      check()
    })
    return { child, output: () => output, ready, exited } satisfies Instance
  })

/** Two instances on a fresh schema, migrating at the same instant; the exit code and output of each. */
const racePair = (schema: string) =>
  Effect.scoped(Effect.gen(function*() {
    const instances = [yield* start(schema), yield* start(schema)]
    yield* Effect.all(instances.map((instance) => instance.ready), { concurrency: "unbounded" }).pipe(
      Effect.timeoutFail({ duration: readyBound, onTimeout: () => `not READY within ${readyBound}` }),
      Effect.orDieWith((reason) => new Error(reason))
    )
    for (const instance of instances) instance.child.stdin!.write("go\n")
    const codes = yield* Effect.all(instances.map((instance) => instance.exited), { concurrency: "unbounded" }).pipe(
      Effect.timeoutFail({ duration: exitBound, onTimeout: () => new Error(`not exited within ${exitBound}`) }),
      Effect.orDie
    )
    return instances.map((instance, i) => ({ code: codes[i], output: instance.output() }))
  }))

layer(sqlLayer, { excludeTestServices: true })("TaskStore migrations across processes", (it) => {
  it.scoped(`${pairs} pairs of instances starting at once on a fresh schema: every instance starts`, () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const schemas = Array.from({ length: pairs }, (_, i) => uniqueSchema(`migrace${i}`))
      // Dropped last (finalizers run in reverse), after every process of the test is gone.
      yield* Effect.addFinalizer(() =>
        Effect.forEach(schemas, (schema) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`, { discard: true }).pipe(
          Effect.orDie
        )
      )
      const results = yield* Effect.forEach(schemas, racePair, { concurrency: pairsAtOnce })

      const failed = results.flatMap((pair, i) =>
        pair.filter((run) => run.code !== 0).map((run) => `pair ${i} (exit ${run.code}):\n${run.output}`)
      )
      console.log(`[migration race] ${failed.length} of ${pairs * 2} instances failed to start`)
      expect(failed, failed.join("\n")).toStrictEqual([])
      // The migrations did run, once each, in every schema.
      for (const schema of schemas) {
        const migrations = yield* sql<{ migration_id: number }>`
          SELECT migration_id FROM ${sql(`${schema}.rms_cache_migrations`)} ORDER BY migration_id`
        expect(migrations.map((row) => row.migration_id)).toStrictEqual([1, 2])
      }
    }), 90_000)
})
