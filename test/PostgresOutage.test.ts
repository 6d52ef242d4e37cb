/**
 * Postgres outage: the repository reaches the real Postgres through a loopback TCP proxy that the tests stop
 * (connections refused, open ones cut) or freeze (connections open, nothing answered). Failures are typed and
 * bounded in time, nothing derived from them is cached, and the service resumes when Postgres is back.
 */
import { expect, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as LruCache from "../src/LruCache.js"
import { TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { type TcpProxy, tcpProxy } from "./support/outage.js"
import { databaseUrl, dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"

/** How long a failing call may take: the connect timeout is 2 s, the statement timeout 5 s (the default). */
const failureBound = 6_000

/** The proxy between the repository and Postgres. */
class Proxy extends Context.Tag("test/PostgresOutage/Proxy")<Proxy, TcpProxy>() {}
/** A connection straight to Postgres (not through the proxy), to look at the table behind the repository. */
class Direct extends Context.Tag("test/PostgresOutage/Direct")<Direct, SqlClient.SqlClient>() {}

const target = new URL(databaseUrl)

/**
 * The repository with in-memory tiers over a store in a schema of its own, reached through a proxy; plus a
 * direct connection, through which the schema is dropped at the end whatever the proxy's state.
 */
const stack = (options: {
  readonly schema: string
  readonly maxConnections: number
  readonly queryTimeout?: Duration.DurationInput
}) => {
  const proxy = Layer.scoped(Proxy, tcpProxy({ host: target.hostname, port: Number(target.port || "5432") }))
  const sqlViaProxy = Layer.unwrapEffect(
    Effect.map(Proxy, (proxy) => {
      const url = new URL(databaseUrl)
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      return TaskStore.layerPg({
        url: Redacted.make(url.toString()),
        connectTimeout: "2 seconds",
        maxConnections: options.maxConnections
      })
    })
  )
  const repository = Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make()).pipe(
    Layer.provideMerge(Layer.mergeAll(
      TaskStore.layer({
        schema: options.schema,
        ...(options.queryTimeout === undefined ? {} : { queryTimeout: options.queryTimeout })
      }),
      LruCache.layer(TaskRepository.TaskL1, { capacity: 1_000, timeToLive: "5 minutes", name: "pg-outage-l1" }),
      LruCache.layer(TaskRepository.TaskL2, { capacity: 10_000, timeToLive: "10 minutes", name: "pg-outage-l2" })
    )),
    Layer.provideMerge(sqlViaProxy),
    Layer.provideMerge(proxy)
  )
  const direct = Layer.merge(Layer.effect(Direct, SqlClient.SqlClient), dropSchemaOnClose(options.schema)).pipe(
    Layer.provide(sqlLayer)
  )
  return Layer.merge(repository, direct)
}

const id = (s: string) => TaskId.make(s)
const input = (s: string, title: string) => new TaskInput({ id: id(s), title, status: "todo" })

/** Runs `effect` with the proxy stopped (or frozen), and brings it back afterwards, whatever happens. */
const during = <A, E, R>(outage: "stopped" | "frozen", effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Proxy, (proxy) =>
    Effect.acquireUseRelease(
      // A real outage lasts long enough for the pool to see its connections close: give it a moment.
      outage === "stopped" ? Effect.zipRight(proxy.stop, Effect.sleep("100 millis")) : proxy.freeze,
      () => effect,
      () => (outage === "stopped" ? proxy.start : proxy.thaw)
    ))

/** The effect's failure and how long it took to fail (real time). */
const timedFailure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.map(Effect.flip(effect), (error) => ({ error, ms: Math.round(performance.now() - started) }))
  })

/** Retries `effect` every 100 ms, at most 50 times (5 s); returns its value and the attempts it took. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    let attempts = 0
    const started = performance.now()
    return Effect.suspend(() => {
      attempts++
      return effect
    }).pipe(
      Effect.retry({ times: 49, schedule: Schedule.spaced("100 millis") }),
      Effect.map((value) => ({ value, attempts, ms: Math.round(performance.now() - started) }))
    )
  })

/** The row behind the repository, read straight from Postgres. */
const row = (schema: string, key: string) =>
  Effect.flatMap(Direct, (sql) =>
    sql<{ title: string; version: number }>`SELECT title, version FROM ${sql(`${schema}.tasks`)} WHERE id = ${key}`
  ).pipe(Effect.map((rows) => rows[0]))

const schema = uniqueSchema("pg_outage")

layer(
  stack({ schema, maxConnections: 4 }),
  { timeout: "60 seconds", excludeTestServices: true }
)("Postgres outage", (it) => {
  it.effect("connection refused: an uncached get fails with StoreError, quickly, and nothing of it is cached", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const store = yield* TaskStore.TaskStore
      const l1 = yield* TaskRepository.TaskL1
      const l2 = yield* TaskRepository.TaskL2
      // In the store only: no tier has it.
      yield* store.save(input("refused-get", "in the store"))

      const failures = yield* during(
        "stopped",
        Effect.gen(function*() {
          const get = yield* timedFailure(repo.get(id("refused-get")))
          const again = yield* timedFailure(repo.get(id("refused-get")))
          const many = yield* timedFailure(repo.getMany([id("refused-get")]))
          expect(Option.isNone(yield* l1.getOption(id("refused-get"))), "not in L1").toBe(true)
          expect(Option.isNone(yield* l2.getOption(id("refused-get"))), "not in L2").toBe(true)
          return { get, again, many }
        })
      )
      console.log(`[refused] get ${failures.get.ms} ms, again ${failures.again.ms} ms, getMany ${failures.many.ms} ms`)
      for (const failure of [failures.get, failures.again, failures.many]) {
        expect(failure.error._tag).toBe("StoreError")
        expect(failure.ms).toBeLessThan(failureBound)
      }

      // Back: the same get answers with the task (the failure was not remembered as "not found").
      const back = yield* eventually(repo.get(id("refused-get")))
      console.log(`[refused] get answered ${back.ms} ms after the proxy was back (${back.attempts} attempts)`)
      expect(back.value.title).toBe("in the store")
      expect(back.attempts).toBeLessThanOrEqual(3)
    }))

  it.effect("connection refused: ids cached before the outage still answer, from L1 and from L2", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const inL1 = yield* repo.save(input("cached-l1", "in both tiers"))
      const inL2 = yield* repo.save(input("cached-l2", "in L2 only"))
      yield* l1.invalidate(id("cached-l2"))

      yield* during(
        "stopped",
        Effect.gen(function*() {
          expect(yield* repo.get(id("cached-l1"))).toStrictEqual(inL1)
          expect(yield* repo.get(id("cached-l2"))).toStrictEqual(inL2)
          const many = yield* repo.getMany([id("cached-l1"), id("cached-l2")])
          expect(many).toStrictEqual(new Map([[inL1.id, inL1], [inL2.id, inL2]]))
        })
      )
    }))

  it.effect("connection refused: save and delete fail with StoreError, quickly, and leave every tier as it was", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const l1 = yield* TaskRepository.TaskL1
      const l2 = yield* TaskRepository.TaskL2
      const saved = yield* repo.save(input("refused-write", "before"))

      const failures = yield* during(
        "stopped",
        Effect.gen(function*() {
          const save = yield* timedFailure(repo.save(input("refused-write", "during")))
          const remove = yield* timedFailure(repo.delete(id("refused-write")))
          expect(yield* l1.get(id("refused-write"))).toStrictEqual(saved)
          expect(yield* l2.get(id("refused-write"))).toStrictEqual(saved)
          expect(yield* repo.get(id("refused-write"))).toStrictEqual(saved)
          return { save, remove }
        })
      )
      console.log(`[refused] save ${failures.save.ms} ms, delete ${failures.remove.ms} ms`)
      for (const failure of [failures.save, failures.remove]) {
        expect(failure.error._tag).toBe("StoreError")
        expect(failure.ms).toBeLessThan(failureBound)
      }
      // Postgres never saw them.
      expect(yield* row(schema, "refused-write")).toStrictEqual({ title: "before", version: 1 })
    }))

  it.effect("the service resumes when Postgres is back: reads and writes succeed again within a few attempts", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const store = yield* TaskStore.TaskStore
      yield* repo.save(input("resume", "v1"))
      yield* store.save(input("resume-cold", "cold"))
      yield* during(
        "stopped",
        Effect.gen(function*() {
          expect((yield* Effect.flip(repo.save(input("resume", "lost"))))._tag).toBe("StoreError")
          expect((yield* Effect.flip(repo.get(id("resume-cold"))))._tag).toBe("StoreError")
        })
      )
      const write = yield* eventually(repo.save(input("resume", "v2")))
      const read = yield* eventually(repo.get(id("resume-cold")))
      console.log(`[resume] save: ${write.attempts} attempt(s), ${write.ms} ms; get: ${read.attempts}, ${read.ms} ms`)
      expect(write.value.version).toBe(2)
      expect(write.attempts).toBeLessThanOrEqual(3)
      expect(read.value.title).toBe("cold")
      expect(read.attempts).toBeLessThanOrEqual(3)
      expect(yield* repo.get(id("resume"))).toStrictEqual(write.value)
      expect(yield* row(schema, "resume")).toStrictEqual({ title: "v2", version: 2 })
    }))

  it.effect("Postgres unresponsive (connected, no answer): get, save, delete fail with StoreError within 6 s", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const store = yield* TaskStore.TaskStore
      yield* repo.save(input("frozen-write", "before"))
      yield* store.save(input("frozen-get", "in the store"))

      const failures = yield* during(
        "frozen",
        Effect.all({
          get: timedFailure(repo.get(id("frozen-get"))),
          save: timedFailure(repo.save(input("frozen-write", "during"))),
          remove: timedFailure(repo.delete(id("frozen-write")))
        }, { concurrency: "unbounded" })
      )
      console.log(`[frozen] get ${failures.get.ms} ms, save ${failures.save.ms} ms, delete ${failures.remove.ms} ms`)
      const back = yield* eventually(repo.get(id("frozen-get")))
      console.log(`[frozen] get answered ${back.ms} ms after the proxy thawed (${back.attempts} attempts)`)
      expect(back.value.title).toBe("in the store")
      for (const [operation, failure] of Object.entries(failures)) {
        expect(failure.error._tag, operation).toBe("StoreError")
        expect(failure.ms, `${operation} failed within ${failureBound} ms`).toBeLessThan(failureBound)
      }
    }))
})

const unknownSchema = uniqueSchema("pg_outage_unknown")

// One connection, so that nothing else can reach Postgres while it is frozen (not even a cancel request), and
// a short statement timeout.
layer(
  stack({ schema: unknownSchema, maxConnections: 1, queryTimeout: "1 second" }),
  { timeout: "30 seconds", excludeTestServices: true }
)("Postgres outage: a save whose outcome is unknown", (it) => {
  it.effect("a save that timed out, then was applied by Postgres, leaves no replaced version in the tiers", () =>
    Effect.gen(function*() {
      const repo = yield* TaskRepository.TaskRepository
      const saved = yield* repo.save(input("unknown", "before"))
      expect(saved.version).toBe(1)

      // The statement reaches the proxy and waits there; the caller gives up after the statement timeout.
      const failure = yield* during("frozen", timedFailure(repo.save(input("unknown", "during"))))
      console.log(`[unknown] save failed after ${failure.ms} ms with ${failure.error._tag}: ${failure.error.message}`)
      expect(failure.error._tag).toBe("StoreError")

      // Postgres answers again and runs what it was sent: the save did happen.
      const applied = yield* eventually(
        Effect.filterOrFail(row(unknownSchema, "unknown"), (stored) => stored?.version === 2)
      )
      expect(applied.value).toStrictEqual({ title: "during", version: 2 })
      // The repository must not keep serving the version that Postgres has replaced.
      const answered = yield* repo.get(id("unknown"))
      expect({ title: answered.title, version: answered.version }).toStrictEqual({ title: "during", version: 2 })
    }))
})
