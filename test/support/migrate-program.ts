/**
 * One instance starting up, for the migration race test: it connects to Postgres (`DATABASE_URL`), prints
 * `READY`, waits for a line on stdin, then builds `TaskStore.layer({ schema })` (which runs the migrations of
 * the schema named by its argument) and exits 0. On any failure it prints the failure to stderr and exits 1.
 *
 * Waiting for the line lets the test start the migrations of two processes at the same instant, whatever each
 * process's start-up took. Run from the repository's root:
 * `node --import tsx test/support/migrate-program.ts <schema>`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TaskStore from "../../src/TaskStore.js"

const databaseUrl = process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/test"
const schema = process.argv[2]
if (schema === undefined || schema === "") throw new Error("usage: migrate-program.ts <schema>")

/** The first line on stdin. */
const go = Effect.async<void>((resume) => {
  let input = ""
  const onData = (chunk: Buffer) => {
    input += chunk.toString("utf8")
    if (input.includes("\n")) {
      process.stdin.off("data", onData)
      process.stdin.pause()
      resume(Effect.void)
    }
  }
  process.stdin.on("data", onData)
})

const program = Effect.gen(function*() {
  // The pool is connected (layerPg checks it), so that only the migrations remain to race.
  yield* SqlClient.SqlClient
  process.stdout.write("READY\n")
  yield* go
  yield* Layer.build(TaskStore.layer({ schema }))
}).pipe(
  Effect.scoped,
  Effect.provide(TaskStore.layerPg({ url: Redacted.make(databaseUrl) }))
)

/** The messages of `error` and of its causes, outermost first: the driver's own message is the innermost. */
const causes = (error: unknown): Array<string> => {
  const messages: Array<string> = []
  for (let at = error, depth = 0; at instanceof Error && depth < 8; at = at.cause, depth++) messages.push(at.message)
  return messages
}

Effect.runPromiseExit(program).then((exit) => {
  if (Exit.isFailure(exit)) {
    const reasons = Cause.failures(exit.cause).pipe((chunk) => Array.from(chunk).flatMap(causes))
    process.stderr.write(`MIGRATE-FAILED ${reasons.join(" <- ")}\n${Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
  process.exit(0)
})
