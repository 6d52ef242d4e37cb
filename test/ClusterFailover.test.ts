/**
 * Failover under load on a real Redis Cluster: 3 masters and 3 replicas (started by the test, stopped by pid) and
 * two instances of the task repository over one Postgres schema, each with its own cluster client, its L2 the
 * versioned `RedisCache` of `TaskRepository.l2Redis` (behind the repository's timeout and breaker) and its bus
 * the sharded `InvalidationBus` of the same layer. A mixed workload of reads and saves runs on both while the
 * master that owns most of the workload's keys is killed (SIGKILL) and its replica takes over. No request fails,
 * each is bounded by the tier timeout plus a margin for Postgres, no read is older than a write whose
 * invalidation had reached the reader, L2 answers reads of the lost master's keys again soon after, the bus
 * delivers on every channel again, and both instances end with every task at its latest version.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Cache, CacheError } from "../src/Cache.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import { honoursDeadlines, markOf } from "../src/internal/deadline.js"
import { slotOf } from "../src/internal/redisCluster.js"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { type Task, TaskId, TaskInput, type TaskStatus } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { onNode, type TestCluster, testCluster } from "./support/cluster.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { uniqueNamespace } from "./support/redis.js"
import { waitFor } from "./support/wait.js"

/** TaskRepository's default L2 timeout: an L2 call, and a save's publication on the bus, wait at most this long. */
const l2Timeout = Duration.millis(250)
/** TaskRepository's default. */
const breakerFailures = 5
/** Shorter than the default (5 s), which would only add its length to the time until L2 is used again. */
const breakerCooldown = Duration.seconds(1)
/** Room for Postgres on a busy 2-core machine, beyond what the tiers are bounded by. */
const storeMargin = 1_000
/** A read waits on L2 once (bounded by the tier timeout), then maybe on Postgres. */
const readBound = Duration.toMillis(l2Timeout) + storeMargin
/** A save waits on Postgres, then on L2 and on the bus, each bounded by the tier timeout. */
const saveBound = 2 * Duration.toMillis(l2Timeout) + storeMargin
/** How long after the kill both instances' L2 must answer reads of the lost master's keys again. */
const recoveryBound = 15_000
const taskCount = 150
const workersPerInstance = 3

type Name = "a" | "b"
type Phase = "before" | "failover" | "after"

/** The settings `TaskRepository.l2Redis` reads, with a small L1 so that most reads reach L2 (and Postgres). */
const settingsFor = (): TaskRepository.Settings => ({
  l1Capacity: 20,
  l1TimeToLive: Duration.minutes(5),
  l2TimeToLive: Duration.minutes(10),
  l2Timeout,
  l2BreakerFailures: breakerFailures,
  l2BreakerCooldown: breakerCooldown,
  l2TombstoneTimeToLive: Duration.seconds(30),
  maxValueBytes: 1_048_576,
  namespace: uniqueNamespace("failover"),
  schema: uniqueSchema("failover")
})

/**
 * The tier, with the keys each read found reported (and when that read started). The calls are the tier's own,
 * wrapped in nothing that waits, so the tier's deadline mark is renewed for them: the repository's guard treats
 * the wrapper as it treats the tier.
 */
const reportingHits = (
  tier: Cache<TaskId, Task, CacheError>,
  onHits: (keys: ReadonlyArray<TaskId>, startedAt: number) => void
): Cache<TaskId, Task, CacheError> => {
  const read = <A, E>(effect: Effect.Effect<A, E>, found: (answer: A) => ReadonlyArray<TaskId>) =>
    Effect.suspend(() => {
      const startedAt = performance.now()
      return Effect.tap(effect, (answer) => Effect.sync(() => onHits(found(answer), startedAt)))
    })
  const reporting: Cache<TaskId, Task, CacheError> = {
    ...tier,
    get: (key) => read(tier.get(key), () => [key]),
    getOption: (key) => read(tier.getOption(key), (answer) => (Option.isSome(answer) ? [key] : [])),
    getMany: (keys) => read(tier.getMany(keys), (answer) => [...answer.keys()])
  }
  return Object.assign(reporting, { [honoursDeadlines]: markOf(reporting) })
}

/**
 * One instance of the service: its own cluster client and Postgres pool, an `LruCache` L1, and the L2 and bus of
 * `TaskRepository.l2Redis`. It records the invalidations its bus delivered, its gaps, and its L2 hits.
 */
const instance = (name: Name, seeds: string, settings: TaskRepository.Settings) =>
  Effect.gen(function*() {
    const client = yield* RedisClient.make({
      clusterNodes: seeds.split(","),
      commandTimeout: "1 second",
      connectTimeout: "2 seconds"
    })
    const store = yield* TaskStore.make({ schema: settings.schema }).pipe(Effect.provide(yield* Layer.build(sqlLayer)))
    const tiers = yield* Layer.build(TaskRepository.l2Redis(settings)).pipe(
      Effect.provideService(RedisClient.RedisClient, client)
    )
    const bus = Context.get(tiers, TaskRepository.TaskInvalidations)
    const l2Hits: Array<{ readonly key: TaskId; readonly startedAt: number; readonly at: number }> = []
    const l2 = reportingHits(Context.get(tiers, TaskRepository.TaskL2), (keys, startedAt) => {
      const at = performance.now()
      for (const key of keys) l2Hits.push({ key, startedAt, at })
    })
    const l1 = yield* LruCache.make<TaskId, Task>({
      capacity: settings.l1Capacity,
      timeToLive: settings.l1TimeToLive,
      name: `failover-l1-${name}`
    })
    const repo = yield* TaskRepository.make({
      l2Timeout: settings.l2Timeout,
      l2BreakerFailures: settings.l2BreakerFailures,
      l2BreakerCooldown: settings.l2BreakerCooldown
    }).pipe(
      Effect.provideService(TaskStore.TaskStore, store),
      Effect.provideService(TaskRepository.TaskL1, l1),
      Effect.provideService(TaskRepository.TaskL2, l2),
      Effect.provideService(TaskRepository.TaskInvalidations, bus)
    )
    // Listeners are told in the order they registered: the repository's (which drops the keys from its L1) first,
    // so a read that starts after a delivery recorded here starts after its L1 drop was set off.
    const delivered = new Map<string, Array<number>>()
    const gaps: Array<number> = []
    yield* bus.listen({
      onInvalidate: (keys) =>
        Effect.sync(() => {
          const at = performance.now()
          for (const key of keys) {
            const times = delivered.get(key)
            if (times === undefined) delivered.set(key, [at])
            else times.push(at)
          }
        }),
      onGap: Effect.sync(() => void gaps.push(performance.now()))
    })
    return { name, client: client.client, store, repo, bus, l2Hits, delivered, gaps }
  })

type Instance = Effect.Effect.Success<ReturnType<typeof instance>>

/** A cluster of 3 masters and 3 replicas in sync, and two instances over one fresh schema and namespace. */
const setUp = Effect.gen(function*() {
  const cluster = yield* testCluster({ masters: 3, replicas: 1, serverArgs: ["--repl-diskless-sync-delay", "0"] })
  yield* cluster.waitReplicasInSync
  const settings = settingsFor()
  yield* Layer.build(dropSchemaOnClose(settings.schema).pipe(Layer.provide(sqlLayer)))
  const a = yield* instance("a", cluster.seeds, settings)
  const b = yield* instance("b", cluster.seeds, settings)
  /** The node that owns `id`'s Redis key now, by `a`'s slot map (generation 0: no `invalidateAll` ran). */
  const ownerOf = (id: string) => {
    const client = a.client
    const slot = slotOf(RedisCache.redisKey(settings.namespace, id, "0"))
    const owner = RedisClient.isCluster(client) ? client.slots[slot]?.[0] : undefined
    return cluster.nodes.find((node) => `127.0.0.1:${node.port}` === owner)
  }
  const instances: Record<Name, Instance> = { a, b }
  return { cluster, settings, a, b, instances, ownerOf }
})

/** The replica of the master at `port` (`ROLE`: `["master", offset, [[host, port, offset], …]]`). */
const replicaOf = (cluster: TestCluster, port: number) =>
  Effect.gen(function*() {
    const role = yield* onNode(port, "ROLE")
    const replicas = Array.isArray(role) && Array.isArray(role[2]) ? role[2] : []
    const replicaPort = replicas.map((entry) => (Array.isArray(entry) ? Number(entry[1]) : 0))[0]
    const replica = cluster.nodes.find((node) => node.port === replicaPort)
    if (replica === undefined) return yield* Effect.dieMessage(`the master at ${port} has no replica`)
    return replica
  })

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))]!

const round = (n: number) => Math.round(n * 10) / 10

describe("Redis Cluster failover under load", () => {
  it.scopedLive("a master killed mid-workload: no failure, bounded latency, no stale read, L2 answers again", () =>
    Effect.gen(function*() {
      const { a, b, cluster, instances, ownerOf } = yield* setUp
      const ids = Array.from({ length: taskCount }, (_, i) => TaskId.make(`failover-${i}`))

      /** Every acknowledged write of each id: by which instance (or the seeding), its version, title and ack time. */
      type Write = { readonly by: Name | "seed"; readonly version: number; readonly title: string; readonly ackedAt: number }
      const writes = new Map<string, Array<Write>>()
      const acknowledge = (by: Write["by"], task: Task) => {
        const write: Write = { by, version: task.version, title: task.title, ackedAt: performance.now() }
        const list = writes.get(task.id)
        if (list === undefined) writes.set(task.id, [write])
        else list.push(write)
      }
      const seeded = yield* Effect.forEach(
        ids,
        (id) => a.store.save(new TaskInput({ id, title: `seed ${id}`, status: "todo" })),
        { concurrency: 8 }
      )
      for (const task of seeded) acknowledge("seed", task)

      type Read = {
        readonly on: Name
        readonly id: string
        readonly version: number
        readonly title: string
        readonly startedAt: number
      }
      type Sample = {
        readonly on: Name
        readonly op: "get" | "getMany" | "save"
        readonly startedAt: number
        readonly ms: number
      }
      const reads: Array<Read> = []
      const samples: Array<Sample> = []
      const failures: Array<string> = []
      let running = true
      let saves = 0

      /** Runs one request, timing it and recording its failure; returns its exit. */
      const timed = <A, E>(on: Name, op: Sample["op"], effect: Effect.Effect<A, E>) =>
        Effect.suspend(() => {
          const startedAt = performance.now()
          return Effect.map(Effect.exit(effect), (exit) => {
            samples.push({ on, op, startedAt, ms: performance.now() - startedAt })
            if (Exit.isFailure(exit)) failures.push(`${on} ${op}: ${Cause.pretty(exit.cause)}`)
            return exit
          })
        })

      const pick = () => ids[Math.floor(Math.random() * ids.length)]!
      const statuses: ReadonlyArray<TaskStatus> = ["todo", "in_progress", "done"]
      const worker = (on: Name) =>
        Effect.gen(function*() {
          const repo = instances[on].repo
          // Bounded: the workload runs for seconds, and each iteration sleeps.
          for (let i = 0; i < 20_000 && running; i++) {
            const dice = Math.random()
            if (dice < 0.2) {
              const title = `${on} write ${++saves}`
              const input = new TaskInput({ id: pick(), title, status: statuses[saves % 3]! })
              const exit = yield* timed(on, "save", repo.save(input))
              if (Exit.isSuccess(exit)) {
                if (exit.value.title !== title) failures.push(`${on} save of "${title}" returned "${exit.value.title}"`)
                acknowledge(on, exit.value)
              }
            } else if (dice < 0.3) {
              const asked = Array.from({ length: 4 }, pick)
              const startedAt = performance.now()
              const exit = yield* timed(on, "getMany", repo.getMany(asked))
              if (Exit.isSuccess(exit)) {
                for (const id of asked) {
                  const task = exit.value.get(id)
                  if (task === undefined) failures.push(`${on} getMany: ${id} missing`)
                  else reads.push({ on, id, version: task.version, title: task.title, startedAt })
                }
              }
            } else {
              const id = pick()
              const startedAt = performance.now()
              const exit = yield* timed(on, "get", repo.get(id))
              if (Exit.isSuccess(exit)) {
                reads.push({ on, id, version: exit.value.version, title: exit.value.title, startedAt })
              }
            }
            yield* Effect.sleep("4 millis")
          }
        })

      // The breakers, sampled: when each instance's opened and closed.
      const breakerLog: Record<Name, Array<{ readonly state: string; readonly at: number }>> = { a: [], b: [] }
      const breakerWatch = Effect.gen(function*() {
        for (let i = 0; i < 5_000 && running; i++) {
          for (const on of ["a", "b"] as const) {
            const state = yield* instances[on].repo.l2Breaker
            const log = breakerLog[on]
            if (log.at(-1)?.state !== state) log.push({ state, at: performance.now() })
          }
          yield* Effect.sleep("20 millis")
        }
      })

      const startedAt = performance.now()
      const fibers = yield* Effect.forEach(
        [
          ...(["a", "b"] as const).flatMap((on) => Array.from({ length: workersPerInstance }, () => worker(on))),
          breakerWatch
        ],
        (fiber) => Effect.fork(fiber)
      )
      yield* Effect.sleep("1500 millis")

      // The victim: the master that owns the slots of most of the workload's Redis keys.
      const byOwner = new Map<number, Array<string>>()
      for (const id of ids) {
        const owner = ownerOf(id)?.port ?? 0
        byOwner.set(owner, [...(byOwner.get(owner) ?? []), id])
      }
      const [victimPort, victimIds] = [...byOwner].sort((x, y) => y[1].length - x[1].length)[0]!
      const victim = cluster.nodes.find((node) => node.port === victimPort)
      if (victim === undefined) return yield* Effect.dieMessage("no master owns the workload's keys")
      const victimKeys = new Set(victimIds)
      const mastersBefore = yield* cluster.masters
      expect(mastersBefore).toContain(victim.port)
      const metricsAtKill = yield* CacheMetrics.stats({ cache: "tasks-l2", tier: "redis" })

      const killedAt = performance.now()
      yield* victim.kill

      // The replica takes over: three masters again, the victim not among them.
      let promotedAt: number | undefined
      yield* waitFor(
        () =>
          Effect.map(cluster.masters, (masters) => {
            if (masters.length === 3 && !masters.includes(victim.port)) promotedAt = performance.now()
            return promotedAt !== undefined
          }),
        recoveryBound
      )
      yield* cluster.waitHealthy

      /** When `on`'s L2 first found a key of the lost master in a read that started after the kill. */
      const l2Back = (on: Name) =>
        instances[on].l2Hits.find((hit) => hit.startedAt > killedAt && victimKeys.has(hit.key))?.at
      while (performance.now() - killedAt < recoveryBound && (l2Back("a") === undefined || l2Back("b") === undefined)) {
        yield* Effect.sleep("50 millis")
      }
      const backAt = Math.max(l2Back("a") ?? Infinity, l2Back("b") ?? Infinity)
      const recoveredAt = Number.isFinite(backAt) ? backAt : performance.now()
      const metricsAtRecovery = yield* CacheMetrics.stats({ cache: "tasks-l2", tier: "redis" })
      const phaseOf = (at: number): Phase => (at < killedAt ? "before" : at <= recoveredAt ? "failover" : "after")
      yield* Effect.sleep("1000 millis")
      running = false
      yield* Effect.forEach(fibers, (fiber) => fiber.await, { discard: true })
      const stoppedAt = performance.now()
      const metricsAtEnd = yield* CacheMetrics.stats({ cache: "tasks-l2", tier: "redis" })

      // The bus delivers on every channel again: 32 saves in a row on each instance go out on the 16 channels in
      // turn (twice each, whichever master owns them now), and each reaches the other instance.
      yield* waitFor(
        () => Effect.map(Effect.all([a.bus.stats, b.bus.stats]), ([x, y]) => x.pending === 0 && y.pending === 0),
        5_000
      )
      const undelivered: Array<string> = []
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const checks: Array<{ readonly id: string; readonly version: number; readonly ackedAt: number }> = []
        for (let i = 0; i < 32; i++) {
          const id = ids[(i * 7 + (from.name === "a" ? 0 : 3)) % ids.length]!
          const input = new TaskInput({ id: TaskId.make(id), title: `${from.name} check ${i}`, status: "done" })
          const saved = yield* from.repo.save(input)
          acknowledge(from.name, saved)
          checks.push({ id, version: saved.version, ackedAt: performance.now() })
        }
        const arrived = (check: (typeof checks)[number]) =>
          (to.delivered.get(check.id) ?? []).some((at) => at >= check.ackedAt)
        yield* Effect.exit(waitFor(() => checks.every(arrived), 3_000)) // what did not arrive is listed below
        for (const check of checks) {
          if (!arrived(check)) undelivered.push(`${from.name} → ${to.name}: ${check.id} v${check.version}`)
        }
      }

      // No read older than a write it had to see: its own instance's writes acknowledged before it started, and
      // the other instance's acknowledged before an invalidation of that id was delivered here, itself before the
      // read started.
      const stale: Array<string> = []
      const wrongTitles: Array<string> = []
      let checkedAcross = 0
      let checkedAcrossInFailover = 0
      for (const read of reads) {
        const delivered = instances[read.on].delivered.get(read.id) ?? []
        let newest = 0
        let across = false
        for (const write of writes.get(read.id) ?? []) {
          if (write.ackedAt > read.startedAt) continue
          const own = write.by === read.on || write.by === "seed"
          if (!own && !delivered.some((at) => at >= write.ackedAt && at <= read.startedAt)) continue
          if (write.version > newest) {
            newest = write.version
            across = !own
          }
        }
        if (across) {
          checkedAcross++
          if (read.startedAt >= killedAt && read.startedAt <= recoveredAt) checkedAcrossInFailover++
        }
        if (read.version < newest) {
          const at = round(read.startedAt - killedAt)
          stale.push(`${read.on} read ${read.id} v${read.version} at ${at} ms from the kill; v${newest} was due`)
        }
        const written = (writes.get(read.id) ?? []).find((write) => write.version === read.version)
        if (written?.title !== read.title) wrongTitles.push(`${read.on} read ${read.id} v${read.version} "${read.title}"`)
      }

      // Once everything is delivered, both instances answer every task at its latest version.
      const latest = (id: string) => Math.max(...(writes.get(id) ?? []).map((write) => write.version))
      const notLatest: Array<string> = []
      for (const on of ["a", "b"] as const) {
        const answers = yield* Effect.forEach(ids, (id) => Effect.either(instances[on].repo.get(id)), { concurrency: 8 })
        answers.forEach((answer, i) => {
          const id = ids[i]!
          if (answer._tag === "Left") notLatest.push(`${on} ${id}: ${answer.left._tag}`)
          else if (answer.right.version !== latest(id)) {
            notLatest.push(`${on} ${id}: v${answer.right.version}, latest v${latest(id)}`)
          }
        })
      }

      const latencies = (selected: ReadonlyArray<Sample>) => {
        const ms = selected.map((sample) => sample.ms).sort((x, y) => x - y)
        return {
          count: ms.length,
          p50: round(percentile(ms, 0.5)),
          p99: round(percentile(ms, 0.99)),
          max: round(ms.at(-1) ?? 0)
        }
      }
      const inPhase = (p: Phase) => samples.filter((sample) => phaseOf(sample.startedAt) === p)
      const sinceKill = (at: number | undefined) => (at === undefined ? undefined : Math.round(at - killedAt))
      const busStats = yield* Effect.all({ a: a.bus.stats, b: b.bus.stats })
      const figures = {
        requests: samples.length,
        saves: samples.filter((sample) => sample.op === "save").length,
        failures: failures.length,
        latencyMs: {
          before: latencies(inPhase("before")),
          failover: latencies(inPhase("failover")),
          after: latencies(inPhase("after"))
        },
        failoverMaxMs: Object.fromEntries((["get", "getMany", "save"] as const).map((op) => [
          op,
          latencies(inPhase("failover").filter((sample) => sample.op === op)).max
        ])),
        staleReads: stale.length,
        readsChecked: reads.length,
        readsCheckedAcrossInstances: { all: checkedAcross, failover: checkedAcrossInFailover },
        victimKeys: victimKeys.size,
        promotedMs: sinceKill(promotedAt),
        l2BackMs: { a: sinceKill(l2Back("a")), b: sinceKill(l2Back("b")) },
        breaker: Object.fromEntries((["a", "b"] as const).map((on) => [
          on,
          breakerLog[on]
            .filter((entry) => entry.at >= killedAt)
            .map((entry) => `${entry.state}@${sinceKill(entry.at)}`)
            .join(" ")
        ])),
        l2Hits: {
          failover: metricsAtRecovery.hits - metricsAtKill.hits,
          failoverErrors: metricsAtRecovery.errors - metricsAtKill.errors,
          after: metricsAtEnd.hits - metricsAtRecovery.hits
        },
        bus: {
          gaps: Object.fromEntries((["a", "b"] as const).map((on) => [on, {
            failover: instances[on].gaps.filter((at) => phaseOf(at) === "failover").length,
            after: instances[on].gaps.filter((at) => phaseOf(at) === "after").length
          }])),
          publishFailures: { a: busStats.a.publishFailures, b: busStats.b.publishFailures },
          undelivered: undelivered.length
        },
        notLatest: notLatest.length,
        workloadSeconds: round((stoppedAt - startedAt) / 1000)
      }
      console.log(`[cluster-failover] ${JSON.stringify(figures)}`)

      expect(failures, "no request fails").toStrictEqual([])
      const tooSlow = samples
        .filter((sample) => sample.ms > (sample.op === "save" ? saveBound : readBound))
        .map((sample) => `${sample.on} ${sample.op}: ${round(sample.ms)} ms, from ${round(sample.startedAt - killedAt)} ms`)
      expect(tooSlow, `reads within ${readBound} ms, saves within ${saveBound} ms`).toStrictEqual([])
      expect(inPhase("failover").length, "the workload ran through the failover").toBeGreaterThan(50)
      expect(stale, "no read older than an invalidation already delivered").toStrictEqual([])
      expect(wrongTitles, "every read has the title written at its version").toStrictEqual([])
      expect(checkedAcross, "the rule was exercised across instances").toBeGreaterThan(50)
      expect(promotedAt, "the replica took over").toBeDefined()
      expect(figures.l2BackMs.a, `A's L2 answers the lost master's keys within ${recoveryBound} ms`).toBeDefined()
      expect(figures.l2BackMs.b, `B's L2 answers the lost master's keys within ${recoveryBound} ms`).toBeDefined()
      expect(figures.l2Hits.after, "L2 hits after the failover").toBeGreaterThan(0)
      expect(undelivered, "after the failover the bus delivers on every channel").toStrictEqual([])
      expect(notLatest, "in the end both instances answer every task at its latest version").toStrictEqual([])
    }), 60_000)

  // Redis replication is asynchronous, so a master may acknowledge an L2 write and die before its replica has
  // it. The promoted replica then holds the older value; nothing else marks it (no gap, no bus message: the bus
  // delivered the write's invalidation before the crash). Before the fix both instances read the older version
  // from L2 — the writer its own acknowledged write included — until the entry's time-to-live; now a lost node
  // moves the namespace to a new generation (RedisCache, `afterNodeLoss`). Made deterministic by freezing the
  // replica and dropping its link before the write; in production the same happens with the last writes before
  // a crash, or every write a partitioned master accepts for `cluster-node-timeout`.
  it.scopedLive("an L2 write acknowledged by a master that died before its replica had it is not read afterwards", () =>
    Effect.gen(function*() {
      const { a, b, cluster, instances, ownerOf, settings } = yield* setUp
      const id = TaskId.make("rolled-back")
      const save = (title: string) => a.repo.save(new TaskInput({ id, title, status: "todo" }))
      /** Waits until B's bus delivered an invalidation of the task after `ackedAt`. */
      const deliveredToB = (ackedAt: number) => waitFor(() => (b.delivered.get(id) ?? []).some((at) => at >= ackedAt), 3_000)

      const v1 = yield* save("v1")
      yield* deliveredToB(0)
      expect((yield* b.repo.get(id)).version).toBe(v1.version)
      const master = ownerOf(id)
      if (master === undefined) return yield* Effect.dieMessage("no master owns the task's key")
      const replica = yield* replicaOf(cluster, master.port)
      yield* onNode(master.port, "WAIT", "1", "2000") // v1 is on the replica too

      // The replica stops reading and the master drops its link: what the master acknowledges from now on, the
      // replica never receives (as with any write in the last moments before a crash, or during a partition).
      yield* replica.freeze
      yield* onNode(master.port, "CLIENT", "KILL", "TYPE", "replica")
      const v2 = yield* save("v2") // Postgres, then L2 on the master (acknowledged), then the bus
      const ackedAt = performance.now()
      yield* deliveredToB(ackedAt)
      expect((yield* b.repo.get(id)).version, "B read v2 after its invalidation").toBe(v2.version)

      yield* master.kill
      yield* replica.thaw
      yield* waitFor(() => Effect.map(cluster.masters, (masters) => masters.includes(replica.port)), recoveryBound)
      yield* cluster.waitHealthy
      yield* waitFor(
        () => Effect.map(Effect.all([a.repo.l2Breaker, b.repo.l2Breaker]), (states) => states.every((s) => s === "closed")),
        recoveryBound
      )
      const key = RedisCache.redisKey(settings.namespace, id, "0")
      const held = yield* onNode(replica.port, "GET", key)
      const heldForMs = yield* onNode(replica.port, "PTTL", key)
      // Other tasks push the task out of both L1s (capacity 20): the next reads ask L2.
      const others = Array.from({ length: 40 }, (_, i) => TaskId.make(`other-${i}`))
      yield* Effect.forEach(others, (other) => a.store.save(new TaskInput({ id: other, title: "x", status: "todo" })), {
        discard: true
      })
      const after: Record<string, number> = {}
      for (const on of ["a", "b"] as const) {
        yield* instances[on].repo.getMany(others)
        after[on] = (yield* instances[on].repo.get(id)).version
      }
      const figures = {
        acknowledged: v2.version,
        l2HoldsAfterFailover: String(held).split(":")[0],
        forMs: heldForMs,
        readAfterFailover: after
      }
      console.log(`[cluster-rollback] ${JSON.stringify(figures)}`)
      expect(after, "after the failover both instances read v2 or newer, never the rolled-back v1").toStrictEqual({
        a: v2.version,
        b: v2.version
      })
    }), 60_000)
})
