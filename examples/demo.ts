/**
 * `npm start`: seeds a few thousand tasks, runs a Zipf read/write workload through `TaskRepository` (L1 in memory
 * → L2 → Postgres) and then straight against the store — first as fast as 32 clients can go (throughput), then at
 * a fixed rate that the store alone can bear (latency under the same load) — and explains what it measured.
 *
 * Embedded defaults: PGlite and an in-memory L2, nothing to install. `DATABASE_URL` / `REDIS_URL` switch to real
 * Postgres and Redis. `DEMO_TASKS` (default 3000), `DEMO_REQUESTS` (default 10000) and `DEMO_CONCURRENCY`
 * (default 32) size the run. The L1 holds a sixth of the tasks unless `TASK_CACHE_L1_CAPACITY` says otherwise:
 * fewer than the workload reads, so that L2 answers too.
 */
import { ConfigProvider, Console, Effect, Fiber, Layer, Schedule } from "effect"
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

/** Requests of the open-loop phase at `rate`: about three seconds' worth, at most a quarter of the workload. */
const openRequests = (rate: number) => Math.max(50, Math.min(Math.floor(REQUESTS / 4), rate * 3))

/**
 * Runs the first requests of the workload at `rate` per second, whether earlier ones have
 * answered or not (an open loop, as a service receives them), timing each from when it was due: the time it
 * waited for the ones before it counts.
 */
const runAtRate = (
  label: string,
  rate: number,
  get: (id: TaskId) => Effect.Effect<Task, unknown>,
  save: (input: TaskInput) => Effect.Effect<Task, unknown>
) =>
  Effect.gen(function*() {
    const count = openRequests(rate)
    const latencies = new Float64Array(count)
    const started = performance.now()
    const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    for (let i = 0; i < count; i++) {
      const due = started + (1000 * i) / rate
      const wait = due - performance.now()
      if (wait >= 1) yield* Effect.sleep(`${Math.floor(wait)} millis`)
      const { id, write } = workload[i]!
      fibers.push(
        yield* Effect.fork(
          Effect.tap(write ? save(input(id, i)) : get(id), () => void (latencies[i] = performance.now() - due))
        )
      )
    }
    yield* Fiber.joinAll(fibers)
    yield* Console.log(`  ${label}: ${count.toLocaleString("en")} requests at ${rate} per second`)
    return { millis: performance.now() - started, latencies } satisfies Run
  })

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
  const writes = REQUESTS - reads
  const l1Hits = after.l1.hits - before.l1.hits
  const l2Hits = after.l2.hits - before.l2.hits
  const loads = after.loads.loads - before.loads.loads
  const shared = after.loads.sharedLoads - before.loads.sharedLoads
  const report = (run: Run) => {
    const sorted = Float64Array.from(run.latencies).sort()
    return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), rate: run.latencies.length / (run.millis / 1000) }
  }
  const c = report(cached)
  const d = report(direct)

  // The same load offered to both, at half what the store alone sustained: latency, not throughput.
  const rate = Math.max(50, Math.round(d.rate / 2))
  yield* Console.log("")
  const cachedAtRate = report(yield* runAtRate("through TaskRepository", rate, repo.get, repo.save))
  const directAtRate = report(yield* runAtRate("straight to the store", rate, store.get, store.save))

  const row = (name: string, a: string, b: string) => Console.log(`  ${name.padEnd(26)}${a.padStart(18)}${b.padStart(18)}`)
  const share = (n: number) => `${n} (${((100 * n) / reads).toFixed(1)} %)`
  yield* Console.log("")
  yield* row("", "TaskRepository", "store only")
  yield* row("requests", REQUESTS.toLocaleString("en"), REQUESTS.toLocaleString("en"))
  yield* row("reads answered by L1", share(l1Hits), "—")
  yield* row("reads answered by L2", share(l2Hits), "—")
  yield* row("reads answered by the store", share(reads - l1Hits - l2Hits), share(reads))
  yield* row("store queries", cachedQueries.toLocaleString("en"), directQueries.toLocaleString("en"))
  yield* row("batched lookups past L1", String(loads), "—")
  yield* row("lookups joined", String(shared), "—")
  yield* row("32 clients: throughput", `${c.rate.toFixed(0)} req/s`, `${d.rate.toFixed(0)} req/s`)
  yield* row("32 clients: latency p50", ms(c.p50), ms(d.p50))
  yield* row("32 clients: latency p99", ms(c.p99), ms(d.p99))
  yield* row(`${rate} req/s: latency p50`, ms(cachedAtRate.p50), ms(directAtRate.p50))
  yield* row(`${rate} req/s: latency p99`, ms(cachedAtRate.p99), ms(directAtRate.p99))
  yield* Console.log("")
  yield* Console.log(
    `  speed-up ${(c.rate / d.rate).toFixed(1)}×, ${(directQueries - cachedQueries).toLocaleString("en")} store queries saved (${
      ((100 * (directQueries - cachedQueries)) / directQueries).toFixed(1)
    } %)`
  )
  const explain = (lines: ReadonlyArray<string>) => Console.log(`  - ${lines.join("\n    ")}`)
  yield* Console.log("")
  yield* Console.log("  What the figures say:")
  yield* explain([
    `L1, in memory in this process, holds the ${l1Capacity} most recently used tasks and answered ${
      ((100 * l1Hits) / reads).toFixed(1)
    } % of reads in microseconds.`,
    `L2 (${l2Tier === "redis" ? "Redis, shared by every instance" : "in memory here; Redis in production"}) answered the ${
      ((100 * l2Hits) / reads).toFixed(1)
    } % that had fallen out of L1: one lookup for all the`,
    `misses of a moment, no query.`
  ])
  yield* explain([
    `The store answered the rest, ${reads - l1Hits - l2Hits} reads in ${cachedQueries - writes} queries: the misses of a moment go below L1`,
    `together (${loads} batched lookups, each one L2 lookup and at most one query), and ${shared} requests joined a`,
    `lookup already running for their task instead of starting another.`
  ])
  yield* explain([
    `Every write goes to the store first and then to both tiers (write-through): ${writes} of the ${cachedQueries} queries`,
    `through the cache are writes, which no cache can save.`
  ])
  yield* explain([
    `With 32 clients sending their next request as soon as the last is answered, the cache answers ${(c.rate / d.rate).toFixed(1)}× as`,
    `many requests per second. Its p99 is not lower, though: a client whose read hits L1 moves on at once, so the`,
    `clients spend their time on the few requests that reach the store, which wait for its single connection${
      l2Tier === "redis" ? "" : " (embedded"
    }`,
    `${l2Tier === "redis" ? "pool" : "Postgres runs one query at a time, in this process)"} behind as many others as when every request goes there.`
  ])
  yield* explain([
    `At a rate the store alone can bear (${rate} requests per second, arriving whether or not the earlier ones`,
    `have been answered, as a service receives them), the cache sends it a fifth of the queries, so they rarely`,
    `wait: p99 ${ms(cachedAtRate.p99)} through the cache against ${ms(directAtRate.p99)} straight to the store.`
  ])
})

/** A sixth of the tasks (500 of the default 3,000): fewer than the workload reads, so that L2 answers too. */
const l1Capacity = Number(process.env.TASK_CACHE_L1_CAPACITY ?? Math.max(10, Math.round(TASKS / 6)))

/** `TaskRepository.config` from the environment, with the demo's smaller L1 unless the environment sets one. */
const demoConfig = ConfigProvider.fromEnv().pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromMap(new Map([["TASK_CACHE_L1_CAPACITY", String(l1Capacity)]])))
)

program.pipe(Effect.provide(RepositoryLive.pipe(Layer.provide(Layer.setConfigProvider(demoConfig)))), Effect.runPromise)
