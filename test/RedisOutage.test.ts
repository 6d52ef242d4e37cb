/**
 * Redis outage: the repository keeps answering, correctly and quickly, while its L2 (a private redis-server)
 * is killed or frozen under a concurrent workload, and uses L2 again once it is back.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { TaskId, TaskInput, type TaskStatus } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { freezableRedis } from "./support/outage.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { privateRedis, rawRedis, uniqueNamespace } from "./support/redis.js"

const l2Timeout = Duration.millis(300)
const commandTimeout = "200 millis"
const breakerCooldown = Duration.millis(500)
/** The longest one request may take, Redis down or not: l2Timeout plus a generous margin for a busy machine. */
const latencyBound = Duration.toMillis(l2Timeout) + 1200
const taskCount = 200
const workers = 8

/** The settings `TaskRepository.l2Redis` reads, with a small L1 so that reads keep reaching L2 and Postgres. */
const settingsFor = (label: string): TaskRepository.Settings => ({
  l1Capacity: 20,
  l1TimeToLive: Duration.minutes(5),
  l2TimeToLive: Duration.minutes(10),
  l2Timeout,
  l2BreakerFailures: 3,
  l2BreakerCooldown: breakerCooldown,
  l2TombstoneTimeToLive: Duration.seconds(30), // the default of TASK_CACHE_L2_TOMBSTONE_TTL
  maxValueBytes: 1_048_576,
  namespace: uniqueNamespace(label),
  schema: uniqueSchema(label.replace(/-/g, "_"))
})

/**
 * The repository over a `TaskStore` in its own schema (dropped at the end), an `LruCache` L1, and the L2 and
 * invalidation bus of `TaskRepository.l2Redis` on the Redis at `url`. The Redis is a private server killed
 * at the end of the test, so the namespace's keys go with it.
 */
const repositoryOn = (
  url: string,
  settings: TaskRepository.Settings,
  timeout: Duration.DurationInput = commandTimeout
) =>
  Layer.mergeAll(
    Layer.scoped(
      TaskRepository.TaskRepository,
      TaskRepository.make({
        l2Timeout: settings.l2Timeout,
        l2BreakerFailures: settings.l2BreakerFailures,
        l2BreakerCooldown: settings.l2BreakerCooldown
      })
    ).pipe(
      Layer.provideMerge(Layer.mergeAll(
        TaskStore.layer({ schema: settings.schema }),
        LruCache.layer(TaskRepository.TaskL1, {
          capacity: settings.l1Capacity,
          timeToLive: settings.l1TimeToLive,
          name: `${settings.namespace}-l1`
        }),
        TaskRepository.l2Redis(settings)
      ))
    ),
    dropSchemaOnClose(settings.schema)
  ).pipe(Layer.provideMerge(Layer.merge(sqlLayer, RedisClient.layer({ url, commandTimeout: timeout }))))

type Phase = "up" | "down" | "back"

interface Sample {
  readonly op: "get" | "getMany" | "save"
  readonly phase: Phase
  readonly ms: number
}

interface Read {
  readonly id: string
  readonly version: number
  readonly title: string
  /** The highest version of this id acknowledged to the workload when the read started. */
  readonly atLeast: number
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))]!
}

const round = (n: number) => Math.round(n * 10) / 10

/**
 * Seeds `taskCount` tasks, runs the workload, calls `outage` after a while, `restore` after a while more,
 * waits (bounded) until L2 is used again, and checks every answer.
 */
const scenario = (
  label: string,
  redis: { readonly url: string; readonly outage: Effect.Effect<void>; readonly restore: Effect.Effect<void> }
) => {
  const settings = settingsFor(label)
  const l2Labels = { cache: "tasks-l2", tier: "redis" }
  return Effect.gen(function*() {
    const repo = yield* TaskRepository.TaskRepository
    const store = yield* TaskStore.TaskStore
    const ids = Array.from({ length: taskCount }, (_, i) => TaskId.make(`${label}-${i}`))

    /** Every version of every id that the store acknowledged, with its title. */
    const titles = new Map<string, Map<number, string>>()
    /** The highest acknowledged version of each id. */
    const acknowledged = new Map<string, number>()
    const acknowledge = (id: string, version: number, title: string) => {
      let versions = titles.get(id)
      if (versions === undefined) titles.set(id, versions = new Map())
      versions.set(version, title)
      if ((acknowledged.get(id) ?? 0) < version) acknowledged.set(id, version)
    }
    const seeded = yield* Effect.forEach(
      ids,
      (id) => store.save(new TaskInput({ id, title: `seed ${id}`, status: "todo" })),
      { concurrency: 8 }
    )
    for (const task of seeded) acknowledge(task.id, task.version, task.title)

    let phase: Phase = "up"
    let running = true
    let writes = 0
    const samples: Array<Sample> = []
    const reads: Array<Read> = []
    const failures: Array<string> = []
    const stale: Array<string> = []

    const timed = <A, E>(op: Sample["op"], effect: Effect.Effect<A, E>) =>
      Effect.suspend(() => {
        const started = performance.now()
        const startedIn = phase
        return Effect.map(Effect.exit(effect), (exit) => {
          samples.push({ op, phase: startedIn, ms: performance.now() - started })
          if (Exit.isFailure(exit)) failures.push(`${op} (${startedIn}): ${Cause.pretty(exit.cause)}`)
          return exit
        })
      })

    const checkRead = (id: string, atLeast: number, task: { version: number; title: string } | undefined) => {
      if (task === undefined) return void stale.push(`${id}: missing (at least v${atLeast} acknowledged)`)
      if (task.version < atLeast) stale.push(`${id}: read v${task.version}, v${atLeast} was acknowledged before`)
      reads.push({ id, version: task.version, title: task.title, atLeast })
    }

    const pick = () => ids[Math.floor(Math.random() * ids.length)]!
    const statuses: ReadonlyArray<TaskStatus> = ["todo", "in_progress", "done"]

    const worker = Effect.gen(function*() {
      // Bounded: the workload runs for seconds, each iteration sleeps 2 ms.
      for (let i = 0; i < 20_000 && running; i++) {
        const dice = Math.random()
        if (dice < 0.15) {
          const id = pick()
          const title = `${id} write ${++writes}`
          const exit = yield* timed("save", repo.save(new TaskInput({ id, title, status: statuses[writes % 3]! })))
          if (Exit.isSuccess(exit)) {
            if (exit.value.title !== title) stale.push(`${id}: save returned "${exit.value.title}", wrote "${title}"`)
            acknowledge(id, exit.value.version, exit.value.title)
          }
        } else if (dice < 0.25) {
          const asked = Array.from({ length: 5 }, pick)
          const atLeast = asked.map((id) => acknowledged.get(id) ?? 0)
          const exit = yield* timed("getMany", repo.getMany(asked))
          if (Exit.isSuccess(exit)) asked.forEach((id, j) => checkRead(id, atLeast[j]!, exit.value.get(id)))
        } else {
          const id = pick()
          const atLeast = acknowledged.get(id) ?? 0
          const exit = yield* timed("get", repo.get(id))
          if (Exit.isSuccess(exit)) checkRead(id, atLeast, exit.value)
        }
        yield* Effect.sleep("2 millis")
      }
    })

    const breakerStates = new Set<string>()
    const breakerWatch = Effect.gen(function*() {
      for (let i = 0; i < 5_000 && running; i++) {
        const state = yield* repo.l2Breaker
        breakerStates.add(`${phase}:${state}`)
        yield* Effect.sleep("10 millis")
      }
    })

    const fibers = yield* Effect.forEach(
      [...Array.from({ length: workers }, () => worker), breakerWatch],
      (fiber) => Effect.fork(fiber)
    )

    /**
     * So far: the L2 tier's own hits and misses; the keys that missed L1 and that L2 answered for the repository
     * (`answered`, the multilevel hits: dirty keys left out) or that went to Postgres (`loaded`); the statements
     * sent to Postgres.
     */
    const counts = Effect.gen(function*() {
      const l2 = yield* CacheMetrics.stats(l2Labels)
      const multilevel = yield* repo.metrics.stats
      return {
        l2Hits: l2.hits,
        l2Misses: l2.misses,
        answered: multilevel.hits,
        loaded: multilevel.misses,
        queries: yield* TaskStore.queryCount,
        at: performance.now()
      }
    })
    type Counts = Effect.Effect.Success<typeof counts>
    /** The share of the keys missing from L1 that L2 answered between `a` and `b`. */
    const ratio = (a: Counts, b: Counts) => {
      const answered = b.answered - a.answered
      const reads = answered + b.loaded - a.loaded
      return { reads, ratio: reads === 0 ? 0 : answered / reads }
    }
    const between = (a: Counts, b: Counts) => ({
      l2Hits: b.l2Hits - a.l2Hits,
      l2Misses: b.l2Misses - a.l2Misses,
      answeredByL2: Math.round(ratio(a, b).ratio * 100) / 100,
      storeQueriesPerSecond: Math.round((b.queries - a.queries) / ((b.at - a.at) / 1000))
    })

    const atStart = yield* counts
    yield* Effect.sleep("1200 millis")
    const beforeOutage = yield* counts
    const skipsBeforeOutage = (yield* repo.metrics.stats).skips
    phase = "down"
    yield* redis.outage
    yield* Effect.sleep("2000 millis")
    const skipsDuringOutage = (yield* repo.metrics.stats).skips - skipsBeforeOutage
    yield* redis.restore
    phase = "back"
    const backAt = performance.now()
    const atRestore = yield* counts
    const ratioBefore = ratio(atStart, beforeOutage).ratio

    // Bounded wait (6 s) for L2 to be used again: breaker closed and, over two quarters of a second in a row,
    // L2 answers at least half as large a share of the L1 misses as before the outage.
    let recoveredMs: number | undefined
    let bestRatioAfter = 0
    let goodWindows = 0
    let windowStart = atRestore
    for (let i = 0; i < 24 && recoveredMs === undefined; i++) {
      yield* Effect.sleep("250 millis")
      const state = yield* repo.l2Breaker
      const windowEnd = yield* counts
      const window = ratio(windowStart, windowEnd)
      windowStart = windowEnd
      if (window.reads >= 20) bestRatioAfter = Math.max(bestRatioAfter, window.ratio)
      goodWindows = state === "closed" && window.reads >= 20 && window.ratio >= ratioBefore / 2 ? goodWindows + 1 : 0
      if (goodWindows === 2) recoveredMs = performance.now() - backAt
    }
    const atRecovery = yield* counts
    yield* Effect.sleep("500 millis")
    running = false
    yield* Effect.forEach(fibers, (fiber) => fiber.await, { discard: true })
    const atEnd = yield* counts
    const breakerAtEnd = yield* repo.l2Breaker

    // Every read's title is the one written at the version it returned.
    const wrongTitles = reads
      .filter((read) => titles.get(read.id)?.get(read.version) !== read.title)
      .map((read) => `${read.id} v${read.version}: "${read.title}", not "${titles.get(read.id)?.get(read.version)}"`)
    // Once everything is settled, every id answers at its latest acknowledged version.
    const finalReads = yield* Effect.forEach(ids, (id) => Effect.either(repo.get(id)), { concurrency: 16 })
    const notLatest = finalReads.flatMap((result, i) => {
      const want = acknowledged.get(ids[i]!)
      if (result._tag === "Left") return [`${ids[i]}: ${result.left._tag}`]
      return result.right.version === want ? [] : [`${ids[i]}: v${result.right.version}, latest v${want}`]
    })

    // What L2 holds for the workload's ids now: values, or tombstones (which refuse every write for a while).
    const raw = yield* rawRedis(redis.url)
    const stored = yield* Effect.promise(() => raw.mget(ids.map((id) => RedisCache.redisKey(settings.namespace, id))))
    const tombstones = stored.filter((value) => value === "-:").length

    /** Latencies (ms) of the requests started in phase `p`. */
    const latencies = (p: Phase) => {
      const ms = samples.filter((s) => s.phase === p).map((s) => s.ms)
      return {
        count: ms.length,
        p50: round(percentile(ms, 0.5)),
        p99: round(percentile(ms, 0.99)),
        max: round(Math.max(0, ...ms))
      }
    }
    const figures = {
      requests: samples.length,
      writes: samples.filter((s) => s.op === "save").length,
      up: latencies("up"),
      down: latencies("down"),
      back: latencies("back"),
      skipsDuringOutage,
      beforeOutage: between(atStart, beforeOutage),
      duringOutage: between(beforeOutage, atRestore),
      untilRecovered: between(atRestore, atRecovery),
      afterRecovery: between(atRecovery, atEnd),
      l2AtEnd: { tombstones, values: stored.filter((value) => value !== null && value !== "-:").length },
      answeredByL2Before: Math.round(ratioBefore * 100) / 100,
      bestAnsweredByL2After: Math.round(bestRatioAfter * 100) / 100,
      recoveredMs: recoveredMs === undefined ? undefined : Math.round(recoveredMs),
      breaker: [...breakerStates].sort()
    }
    console.log(`[${label}] ${JSON.stringify(figures)}`)

    expect(failures, "no error reaches a caller").toStrictEqual([])
    expect(stale, "no read older than an acknowledged write").toStrictEqual([])
    expect(wrongTitles, "every read has the title written at its version").toStrictEqual([])
    expect(notLatest, "after recovery every id answers at its latest version").toStrictEqual([])
    expect(figures.down.count, "the workload ran while Redis was down").toBeGreaterThan(100)
    // Requests that started just before the outage may meet it too: the bound holds for every request.
    const slowest = samples.reduce((worst, sample) => (sample.ms > worst.ms ? sample : worst), samples[0]!)
    expect(slowest.ms, `every request took < ${latencyBound} ms (slowest: ${JSON.stringify(slowest)})`).toBeLessThan(
      latencyBound
    )
    expect(breakerStates.has("down:open"), "the breaker opened while Redis was down").toBe(true)
    expect(skipsDuringOutage, "L2 calls were skipped while the breaker was open").toBeGreaterThan(0)
    expect(
      recoveredMs,
      `within 6 s of Redis coming back the breaker is closed and L2 answers at least half as large a share of ` +
        `the L1 misses as before (before the outage ${figures.answeredByL2Before}, ` +
        `best quarter second after ${figures.bestAnsweredByL2After}; L2 holds ${tombstones} tombstones)`
    ).toBeDefined()
    expect(atEnd.l2Hits - atRestore.l2Hits, "L2 hits after Redis came back").toBeGreaterThan(0)
    expect(breakerAtEnd).toBe("closed")
  }).pipe(Effect.provide(repositoryOn(redis.url, settings)))
}

describe("Redis outage", () => {
  it.scopedLive("redis-server killed and restarted under load: answers stay correct and quick, L2 comes back", () =>
    Effect.gen(function*() {
      const server = yield* privateRedis
      yield* scenario("redis-killed", { url: server.url, outage: server.stop, restore: server.start })
    }), 30_000)

  it.scopedLive("redis-server frozen (SIGSTOP) and thawed under load: answers stay correct and quick, L2 back", () =>
    Effect.gen(function*() {
      const server = yield* freezableRedis
      yield* scenario("redis-frozen", { url: server.url, outage: server.freeze, restore: server.thaw })
    }), 30_000)

  it.scopedLive("a save racing the breaker's probe on a frozen Redis: the next read after both is the newer", () =>
    Effect.gen(function*() {
      const server = yield* freezableRedis
      // A wide window: an L2 call may wait a second for the frozen server, the breaker opens at one failure.
      const settings: TaskRepository.Settings = {
        ...settingsFor("redis-probe"),
        l2Timeout: Duration.millis(1500),
        l2BreakerFailures: 1,
        l2BreakerCooldown: Duration.millis(200)
      }
      yield* Effect.gen(function*() {
        const repo = yield* TaskRepository.TaskRepository
        const l1 = yield* TaskRepository.TaskL1
        const id = TaskId.make("probe-race")
        const write = (title: string) => repo.save(new TaskInput({ id, title, status: "todo" }))
        const v1 = yield* write("v1")
        expect((yield* repo.get(id)).version).toBe(1)
        // Twenty other tasks, in the store only: reading them later pushes the task out of L1 (capacity 20).
        const store = yield* TaskStore.TaskStore
        const others = Array.from({ length: settings.l1Capacity }, (_, i) => TaskId.make(`probe-other-${i}`))
        yield* Effect.forEach(others, (other) => store.save(new TaskInput({ id: other, title: "x", status: "todo" })))

        // Redis freezes; one L2 read fails (its second runs out) and opens the breaker.
        yield* server.freeze
        expect((yield* Effect.flip(repo.get(TaskId.make("probe-absent"))))._tag).toBe("TaskNotFound")
        expect(yield* repo.l2Breaker).toBe("open")
        yield* Effect.sleep("300 millis")
        expect(yield* repo.l2Breaker).toBe("half-open")

        // v2's L2 write is the probe: it waits for the frozen server.
        const second = yield* Effect.fork(write("v2"))
        let probing = false
        for (let i = 0; i < 250 && !probing; i++) {
          probing = (yield* repo.l2Breaker) === "open"
          if (!probing) yield* Effect.sleep("2 millis")
        }
        expect(probing, "v2's L2 write claimed the probe").toBe(true)
        // v3 comes while the probe is in flight. Saves of one task run one at a time, so it waits for v2 to have
        // reached every tier (the dirty-mark race of two writes of one key in flight at once is covered by
        // test/MultiLevelCache.test.ts).
        const third = yield* Effect.fork(write("v3"))
        yield* Effect.sleep("20 millis")
        expect(Option.isNone(yield* third.poll), "v3 waits for v2").toBe(true)

        // The server answers again within the probe's second: the probe (v2) succeeds.
        yield* server.thaw
        const v2 = yield* second.await
        const v3 = yield* third.await
        expect(Exit.isSuccess(v2) && Exit.isSuccess(v3)).toBe(true)
        expect(Exit.isSuccess(v3) && v3.value.version).toBe(v1.version + 2)
        expect(yield* repo.l2Breaker).toBe("closed")

        // Other reads push the task out of L1; the next read of it must not be older than v3.
        expect((yield* repo.getMany(others)).size).toBe(others.length)
        expect(Option.isNone(yield* l1.getOption(id)), "the task left L1").toBe(true)
        const read = yield* repo.get(id)
        expect({ version: read.version, title: read.title }).toStrictEqual({ version: 3, title: "v3" })
      }).pipe(Effect.provide(repositoryOn(server.url, settings, "1 second")))
    }), 30_000)
})
