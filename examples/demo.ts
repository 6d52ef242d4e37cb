/**
 * `npm start`: seeds a few thousand tasks, runs a concurrent Zipf read/write workload through `TaskRepository`
 * (L1 in memory → L2 → Postgres), then the same workload straight against the store, and compares.
 *
 * Embedded defaults: PGlite and an in-memory L2, nothing to install. `DATABASE_URL` / `REDIS_URL` switch to real
 * Postgres and Redis. `DEMO_TASKS` (default 3000), `DEMO_REQUESTS` (default 10000) and `DEMO_CONCURRENCY`
 * (default 32) size the run.
 */
import { Console, Effect, Fiber, Schedule } from "effect"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { type Task, TaskId, TaskInput } from "../src/Task.js"
import { TaskRepository } from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { description, l2Tier, RepositoryLive } from "./support/repository.js"

const TASKS = Number(process.env.DEMO_TASKS ?? 3000)
const REQUESTS = Number(process.env.DEMO_REQUESTS ?? 10_000)
const CONCURRENCY = Number(process.env.DEMO_CONCURRENCY ?? 32)
const WRITE_SHARE = 0.05

/** A deterministic workload: Zipf-distributed ids (s = 1), one request in twenty a write. */
const workload = (() => {
  let seed = 7
  const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32
  const cdf: Array<number> = []
  let sum = 0
  for (let i = 1; i <= TASKS; i++) cdf.push((sum += 1 / i))
  return Array.from({ length: REQUESTS }, () => {
    const u = random() * sum
    let lo = 0
    let hi = TASKS - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid]! < u) lo = mid + 1
      else hi = mid
    }
    return { id: TaskId.make(`demo-${lo}`), write: random() < WRITE_SHARE }
  })
})()

const input = (id: TaskId, n: number) => new TaskInput({ id, title: `task ${id}, revision ${n}`, status: "todo" })

const tty = process.stdout.isTTY === true
/** On a terminal, rewrites the line above; elsewhere (a pipe, a log) prints nothing until the final line. */
const overwrite = (line: string) => Console.log(tty ? `\x1b[1A\x1b[2K${line}` : line)

const progress = (label: string, done: () => number, total: number) =>
  Effect.suspend(() =>
    tty ? overwrite(`  ${label}: ${done().toLocaleString("en")} / ${total.toLocaleString("en")}`) : Effect.void
  ).pipe(Effect.repeat(Schedule.spaced("200 millis")))

interface Run {
  readonly millis: number
  readonly latencies: Float64Array
}

/** Runs the workload through `get` and `save`, `CONCURRENCY` requests at a time, timing each request. */
const runWorkload = (
  label: string,
  get: (id: TaskId) => Effect.Effect<Task, unknown>,
  save: (input: TaskInput) => Effect.Effect<Task, unknown>
) =>
  Effect.gen(function*() {
    const latencies = new Float64Array(REQUESTS)
    let done = 0
    if (tty) yield* Console.log("")
    const reporter = yield* Effect.fork(progress(label, () => done, REQUESTS))
    const started = performance.now()
    yield* Effect.forEach(
      workload,
      ({ id, write }, i) =>
        Effect.suspend(() => {
          const t0 = performance.now()
          return (write ? save(input(id, i)) : get(id)).pipe(
            Effect.tap(() => {
              latencies[i] = performance.now() - t0
              done++
            })
          )
        }),
      { concurrency: CONCURRENCY, discard: true }
    )
    const millis = performance.now() - started
    yield* Fiber.interrupt(reporter)
    yield* overwrite(`  ${label}: ${REQUESTS.toLocaleString("en")} requests in ${millis.toFixed(0)} ms`)
    return { millis, latencies } satisfies Run
  })

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const ms = (x: number) => (x >= 1 ? `${x.toFixed(2)} ms` : `${(x * 1000).toFixed(0)} µs`)

const program = Effect.gen(function*() {
  yield* Console.log(`@rms/cache demo — ${description}`)
  yield* Console.log(
    `${TASKS.toLocaleString("en")} tasks, ${REQUESTS.toLocaleString("en")} requests (Zipf ids, ${
      WRITE_SHARE * 100
    } % writes), ${CONCURRENCY} at a time`
  )
  const store = yield* TaskStore.TaskStore
  const repo = yield* TaskRepository

  const ids = Array.from({ length: TASKS }, (_, i) => TaskId.make(`demo-${i}`))
  let seeded = 0
  if (tty) yield* Console.log("")
  const seeder = yield* Effect.fork(progress("seeding the store", () => seeded, TASKS))
  yield* Effect.forEach(ids, (id) => Effect.tap(store.save(input(id, 0)), () => void seeded++), {
    concurrency: 8,
    discard: true
  })
  yield* Fiber.interrupt(seeder)
  yield* overwrite(`  seeded ${TASKS.toLocaleString("en")} tasks`)

  const before = {
    queries: yield* TaskStore.queryCount,
    l1: yield* CacheMetrics.stats({ cache: "tasks-l1", tier: "lru" }),
    l2: yield* CacheMetrics.stats({ cache: "tasks-l2", tier: l2Tier }),
    loads: yield* repo.metrics.stats
  }
  const cached = yield* runWorkload("through TaskRepository", repo.get, repo.save)
  const after = {
    queries: yield* TaskStore.queryCount,
    l1: yield* CacheMetrics.stats({ cache: "tasks-l1", tier: "lru" }),
    l2: yield* CacheMetrics.stats({ cache: "tasks-l2", tier: l2Tier }),
    loads: yield* repo.metrics.stats
  }
  const direct = yield* runWorkload("straight to the store", store.get, store.save)
  const directQueries = (yield* TaskStore.queryCount) - after.queries

  const cachedQueries = after.queries - before.queries
  const reads = workload.filter((r) => !r.write).length
  const l1Hits = after.l1.hits - before.l1.hits
  const l2Hits = after.l2.hits - before.l2.hits
  const report = (run: Run) => {
    const sorted = Float64Array.from(run.latencies).sort()
    return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), rate: REQUESTS / (run.millis / 1000) }
  }
  const c = report(cached)
  const d = report(direct)
  const row = (name: string, a: string, b: string) => Console.log(`  ${name.padEnd(22)}${a.padStart(18)}${b.padStart(18)}`)

  yield* Console.log("")
  yield* row("", "TaskRepository", "store only")
  yield* row("requests", REQUESTS.toLocaleString("en"), REQUESTS.toLocaleString("en"))
  yield* row("reads answered by L1", `${l1Hits} (${((100 * l1Hits) / reads).toFixed(1)} %)`, "—")
  yield* row("reads answered by L2", `${l2Hits} (${((100 * l2Hits) / reads).toFixed(1)} %)`, "—")
  yield* row("store queries", cachedQueries.toLocaleString("en"), directQueries.toLocaleString("en"))
  yield* row("loads (batches)", String(after.loads.loads - before.loads.loads), "—")
  yield* row("loads shared", String(after.loads.sharedLoads - before.loads.sharedLoads), "—")
  yield* row("latency p50", ms(c.p50), ms(d.p50))
  yield* row("latency p99", ms(c.p99), ms(d.p99))
  yield* row("throughput", `${c.rate.toFixed(0)} req/s`, `${d.rate.toFixed(0)} req/s`)
  yield* Console.log("")
  yield* Console.log(
    `  speed-up ${(c.rate / d.rate).toFixed(1)}×, ${(directQueries - cachedQueries).toLocaleString("en")} store queries saved (${
      ((100 * (directQueries - cachedQueries)) / directQueries).toFixed(1)
    } %)`
  )
})

program.pipe(Effect.provide(RepositoryLive), Effect.runPromise)
