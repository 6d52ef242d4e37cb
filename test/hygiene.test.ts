/**
 * Resource hygiene: a program built on one of the repository's ready layers exits on its own once the layer's
 * scope has closed: no pool, socket, subscription, timer or fiber is left to keep Node's event loop alive.
 * Each program runs in a child process (test/support/hygiene-program.ts), which never calls `process.exit`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { databaseUrl, dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { cleanNamespaceOnClose, redisUrl, uniqueNamespace } from "./support/redis.js"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const programPath = "test/support/hygiene-program.ts"
/** How long the program may live on after its scope closed. */
const exitBound = 1_000
/** How long the program may take to reach the end of its work (tsx start-up, PGlite start-up included). */
const markerBound = 20_000

interface Run {
  /** When the scope closed, by the child's clock (epoch ms, the same clock as ours). */
  readonly closedAt: number
  /** When the child exited, by our clock; undefined when it was still running `exitBound` ms after the marker. */
  readonly exitedAt: number | undefined
  readonly code: number | null
  readonly output: string
}

/**
 * Runs the program in `mode` and waits (bounded) for its marker, then up to `exitBound` ms for it to exit.
 * A child still running at the end is killed (by its pid) when the scope closes.
 */
const runProgram = (mode: "clients" | "embedded", env: Record<string, string>) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--import", "tsx", programPath, mode], {
          cwd: root,
          env: { ...process.env, ...env },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) =>
        Effect.sync(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        })
    )
    let output = ""
    let closedAt: number | undefined
    let exitedAt: number | undefined
    let code: number | null = null
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const marker = /HYGIENE-SCOPE-CLOSED (\d+)/.exec(output)
      if (marker !== null && closedAt === undefined) closedAt = Number(marker[1])
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    const exited = Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
      child.once("exit", (exitCode) => {
        exitedAt = Date.now()
        code = exitCode
        resume(Effect.void)
      })
    })
    const exitedFiber = yield* Effect.fork(exited)

    // Bounded waits: the marker (or an early exit), then the exit.
    for (let i = 0; i < markerBound / 20 && closedAt === undefined && exitedAt === undefined; i++) {
      yield* Effect.sleep("20 millis")
    }
    if (closedAt === undefined) {
      return yield* Effect.dieMessage(
        `the ${mode} program did not reach its marker within ${markerBound} ms (exit: ${code}):\n${output}`
      )
    }
    const deadline = closedAt + exitBound
    yield* exitedFiber.await.pipe(Effect.timeout(Math.max(0, deadline - Date.now()) + 20), Effect.ignore)
    // Let the last output arrive (the pipes may close a moment after "exit").
    yield* Effect.sleep("50 millis")
    return { closedAt, exitedAt, code, output } satisfies Run
  })

/** Checks a run: exit code 0, within `exitBound` ms of the marker, with the active resources in the message. */
const expectClean = (mode: string, run: Run) => {
  const lingered = run.exitedAt === undefined ? undefined : run.exitedAt - run.closedAt
  console.log(`[${mode}] exited ${lingered ?? `not within ${exitBound}`} ms after its scope closed`)
  expect(
    lingered,
    `the ${mode} program was still running ${exitBound} ms after its scope closed; what kept it alive:\n${run.output}`
  ).toBeDefined()
  expect(lingered!, `the ${mode} program exited ${lingered} ms after its scope closed:\n${run.output}`).toBeLessThan(
    exitBound
  )
  expect(run.code, `the ${mode} program's exit code:\n${run.output}`).toBe(0)
  expect(run.output).not.toContain("HYGIENE-FAILED")
}

describe("Resource hygiene", () => {
  it.scopedLive("TaskRepository.layer (Postgres, Redis L2, bus): the process exits once the scope closed", () =>
    Effect.gen(function*() {
      const schema = uniqueSchema("hygiene")
      const namespace = uniqueNamespace("hygiene")
      // The program's schema and keys are removed when the test ends, whatever the program did.
      yield* Layer.build(
        Layer.merge(dropSchemaOnClose(schema).pipe(Layer.provide(sqlLayer)), cleanNamespaceOnClose(namespace))
      )
      const run = yield* runProgram("clients", {
        DATABASE_URL: databaseUrl,
        REDIS_URL: redisUrl,
        TASK_STORE_SCHEMA: schema,
        TASK_CACHE_NAMESPACE: namespace
      })
      expectClean("clients", run)
    }), 30_000)

  it.scopedLive("TaskRepository.layerEmbedded (PGlite, in-memory L2): the process exits once the scope closed", () =>
    Effect.gen(function*() {
      const run = yield* runProgram("embedded", {})
      expectClean("embedded", run)
    }), 30_000)
})
