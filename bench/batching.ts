/**
 * 1,000 distinct cold ids at once. In memory (no I/O): the CPU cost per key of a `MultiLevelCache` miss with
 * its batched load, against the same fibers hitting L1, effect's own `RequestResolver.makeBatched`, and a
 * per-key loader. On the real servers: `TaskRepository.get` of 1,000 ids missing from both tiers, concurrent
 * against one by one, with the SQL statements and Redis `MGET`s they cost.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Request from "effect/Request"
import * as RequestResolver from "effect/RequestResolver"
import * as Scope from "effect/Scope"
import type { Cache } from "../src/Cache.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as SingleFlight from "../src/SingleFlight.js"
import * as RedisCache from "../src/RedisCache.js"
import type { Task, TaskId } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { type Case, measure, type Result, rounds } from "./harness.js"
import {
  countingStatements,
  monitorRedis,
  realisticTask,
  repositoryLayer,
  seedStore,
  uniqueNamespace,
  uniqueSchema
} from "./services.js"

/** Distinct keys asked for at once. */
export const KEYS = 1_000
/** Batches of `KEYS` per round in memory (each on a fresh cache), so a round is long enough to time. */
export const REPS = 5

export interface InMemoryResults {
  /**
   * MultiLevelCache cold, MultiLevelCache L1 hit, effect RequestResolver, per-key loader, makeBatched alone, and
   * fibers awaiting one answer.
   */
  readonly results: Array<Result>
  /** Loader calls per batch of `KEYS` gets, by case name (the largest seen over all rounds). */
  readonly loaderCalls: ReadonlyMap<string, number>
}

const keys = Array.from({ length: KEYS }, (_, i) => `task-${String(i).padStart(6, "0")}`)
const data = new Map(keys.map((key, i) => [key, realisticTask(i)]))

class GetTask extends Request.TaggedClass("GetTask")<Task, never, { readonly id: string }> {}

export const runInMemoryBatching = async (): Promise<InMemoryResults> => {
  const loaderCalls = new Map<string, number>()
  const record = (name: string, calls: number) => loaderCalls.set(name, Math.max(loaderCalls.get(name) ?? 0, calls))
  let calls = 0

  /** The batch loader of the multi-level cache: a map lookup of every key asked. */
  const load = (asked: ReadonlyArray<string>) =>
    Effect.sync(() => {
      calls++
      const found = new Map<string, Task>()
      for (const key of asked) {
        const value = data.get(key)
        if (value !== undefined) found.set(key, value)
      }
      return found as ReadonlyMap<string, Task>
    })

  interface Built {
    readonly scope: Scope.CloseableScope
    readonly caches: ReadonlyArray<{ readonly l1: Cache<string, Task>; readonly cache: Cache<string, Task> }>
  }
  /** `REPS` fresh caches (L1 and L2 both `LruCache`), metrics on as by default, in a scope of their own. */
  const build = (): Built => {
    const scope = Effect.runSync(Scope.make())
    const one = Effect.gen(function*() {
      const l1 = yield* LruCache.make<string, Task>({ capacity: 10_000, name: "bench-batch-l1" })
      const l2 = yield* LruCache.make<string, Task>({ capacity: 10_000, name: "bench-batch-l2" })
      const cache = yield* MultiLevelCache.make({ name: "bench-batch", tiers: [l1, l2], load })
      return { l1, cache }
    })
    return { scope, caches: Effect.runSync(Scope.extend(Effect.replicateEffect(one, REPS), scope)) }
  }
  const close = (built: Built) => Effect.runPromise(Scope.close(built.scope, Exit.void))

  const check = (name: string, values: ReadonlyArray<Task>) => {
    if (values.length !== KEYS || values[KEYS - 1] !== data.get(keys[KEYS - 1]!)) throw new Error(`${name}: wrong values`)
  }

  const cold: Case = {
    name: "MultiLevelCache.get, 1,000 cold keys",
    setup: build,
    run: (built: Built) =>
      Effect.runPromise(Effect.gen(function*() {
        for (const { cache } of built.caches) {
          const before = calls
          check("cold", yield* Effect.forEach(keys, (key) => cache.get(key), { concurrency: "unbounded" }))
          const made = calls - before
          // The point of the batching: one loader call for the 1,000 keys.
          if (made !== 1) throw new Error(`MultiLevelCache: ${made} loader calls for ${KEYS} cold keys, expected 1`)
          record(cold.name, made)
        }
        return KEYS * REPS
      })),
    teardown: close
  }

  const hit: Case = {
    name: "MultiLevelCache.get, 1,000 L1 hits",
    setup: () => {
      const built = build()
      for (const { l1 } of built.caches) Effect.runSync(l1.setMany([...data]))
      return built
    },
    run: (built: Built) =>
      Effect.runPromise(Effect.gen(function*() {
        for (const { cache } of built.caches) {
          const before = calls
          check("hit", yield* Effect.forEach(keys, (key) => cache.get(key), { concurrency: "unbounded" }))
          record(hit.name, calls - before)
        }
        return KEYS * REPS
      })),
    teardown: close
  }

  const resolver = RequestResolver.makeBatched((requests: Array<GetTask>) =>
    Effect.suspend(() => {
      calls++
      return Effect.forEach(requests, (request) => Request.succeed(request, data.get(request.id)!), { discard: true })
    })
  )
  const effectBatched: Case = {
    name: "effect RequestResolver.makeBatched, 1,000 Effect.request",
    run: () =>
      Effect.runPromise(Effect.gen(function*() {
        for (let rep = 0; rep < REPS; rep++) {
          const before = calls
          check(
            "RequestResolver",
            yield* Effect.forEach(keys, (id) => Effect.request(new GetTask({ id }), resolver), {
              concurrency: "unbounded",
              batching: true
            })
          )
          record(effectBatched.name, calls - before)
        }
        return KEYS * REPS
      }))
  }

  const loadOne = (key: string) =>
    Effect.sync(() => {
      calls++
      return data.get(key)!
    })
  const perKey: Case = {
    name: "per-key loader, no cache, no batching",
    run: () =>
      Effect.runPromise(Effect.gen(function*() {
        for (let rep = 0; rep < REPS; rep++) {
          const before = calls
          check("per-key", yield* Effect.forEach(keys, loadOne, { concurrency: "unbounded" }))
          record(perKey.name, calls - before)
        }
        return KEYS * REPS
      }))
  }

  /** The batched singleflight alone, with the same loader and no tier: what the batching costs by itself. */
  const flightAlone: Case = {
    name: "SingleFlight.makeBatched alone",
    setup: () => {
      const scope = Effect.runSync(Scope.make())
      const flights = Effect.runSync(
        Scope.extend(Effect.replicateEffect(SingleFlight.makeBatched({ resolve: load }), REPS), scope)
      )
      return { scope, flights }
    },
    run: (built: { readonly flights: ReadonlyArray<SingleFlight.Batched<string, Task>> }) =>
      Effect.runPromise(Effect.gen(function*() {
        for (const flight of built.flights) {
          const before = calls
          const found = yield* Effect.forEach(keys, (key) => flight.get(key), { concurrency: "unbounded" })
          check("makeBatched", found.map((value) => Option.getOrThrow(value)))
          const made = calls - before
          if (made !== 1) throw new Error(`makeBatched: ${made} loader calls for ${KEYS} keys, expected 1`)
          record(flightAlone.name, made)
        }
        return KEYS * REPS
      })),
    teardown: (built: { readonly scope: Scope.CloseableScope }) => Effect.runPromise(Scope.close(built.scope, Exit.void))
  }

  /**
   * The floor of any batching: the same fibers, each suspended until one answer is handed to all of them (a
   * `Deferred` completed by the last fiber), with no cache and no batching logic.
   */
  const wait: Case = {
    name: "1,000 fibers awaiting one answer",
    run: () =>
      Effect.runPromise(Effect.gen(function*() {
        for (let rep = 0; rep < REPS; rep++) {
          const answer = yield* Deferred.make<ReadonlyMap<string, Task>>()
          const values = yield* Effect.forEach(keys, (key, i) =>
            i === KEYS - 1
              ? Effect.zipRight(Effect.yieldNow(), Deferred.succeed(answer, data)).pipe(Effect.as(data.get(key)!))
              : Effect.map(Deferred.await(answer), (found) => found.get(key)!), { concurrency: "unbounded" })
          check("wait", values)
        }
        return KEYS * REPS
      }))
  }

  // The quantity of interest is a difference of a few µs between figures of about 40 µs on a noisy machine:
  // three times the rounds, shorter ones.
  const results = await measure([cold, hit, effectBatched, perKey, flightAlone, wait], { clock: "cpu", rounds: rounds * 3 })
  return { results, loaderCalls }
}

export interface RoundTripResults {
  /** Concurrent through the repository, one by one through the repository, one by one to the store. */
  readonly results: Array<Result>
  /** Per case name: SQL statements and Redis `MGET`s for `KEYS` cold gets, counted in an untimed pass. */
  readonly counts: ReadonlyMap<string, { readonly statements: number; readonly mgets: number }>
}

export const runRoundTrips = async (): Promise<RoundTripResults> => {
  const schema = uniqueSchema()
  const namespace = uniqueNamespace()
  const runtime = ManagedRuntime.make(repositoryLayer(schema, namespace))
  try {
    const { ids, l1, l2, repo, store } = await runtime.runPromise(Effect.gen(function*() {
      const ids = yield* seedStore(KEYS)
      return {
        ids,
        repo: yield* TaskRepository.TaskRepository,
        store: yield* TaskStore.TaskStore,
        l1: yield* TaskRepository.TaskL1,
        l2: yield* TaskRepository.TaskL2
      }
    }))
    const clear = () => Effect.runPromise(Effect.zipRight(l1.invalidateAll, l2.invalidateAll))
    const check = (name: string, tasks: ReadonlyArray<Task>) => {
      if (tasks.length !== KEYS || tasks.some((task, i) => task.id !== ids[i])) throw new Error(`${name}: wrong tasks`)
    }

    const run = {
      concurrent: Effect.forEach(ids, (id: TaskId) => repo.get(id), { concurrency: "unbounded" }),
      oneByOne: Effect.forEach(ids, (id: TaskId) => repo.get(id), { concurrency: 1 }),
      store: Effect.forEach(ids, (id: TaskId) => store.get(id), { concurrency: 1 })
    }
    const cases: Array<Case & { readonly effect: Effect.Effect<Array<Task>, unknown> }> = [
      { name: "TaskRepository.get, 1,000 concurrent", effect: run.concurrent, setup: clear, run: () => 0 },
      { name: "TaskRepository.get, one by one", effect: run.oneByOne, setup: clear, run: () => 0 },
      { name: "TaskStore.get, one by one", effect: run.store, setup: clear, run: () => 0 }
    ].map((c) => ({
      ...c,
      run: async () => {
        check(c.name, await Effect.runPromise(c.effect))
        return KEYS
      }
    }))

    const results = await measure(cases)

    // Round trips, counted once per case outside the timed rounds: MONITOR slows the server down.
    const counts = new Map<string, { statements: number; mgets: number }>()
    const monitor = await monitorRedis(RedisCache.escapeKeyPart(namespace))
    try {
      for (const c of cases) {
        await clear()
        await monitor.reset()
        const { result, statements } = await Effect.runPromise(countingStatements(c.effect))
        check(c.name, result)
        counts.set(c.name, { statements, mgets: (await monitor.count("mget")) + (await monitor.count("get")) })
      }
    } finally {
      await monitor.close()
    }
    return { results, counts }
  } finally {
    // Drops the schema and the namespace's keys, then closes the pool and the Redis connection.
    await runtime.dispose()
  }
}
