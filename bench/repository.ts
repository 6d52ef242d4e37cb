/**
 * `TaskRepository.get` and `MultiLevelCache.get` when L1 has the task, against `LruCache.get` on the same L1 tier
 * service: what the multi-level read path adds to an in-memory hit. The repository runs on the real servers, but
 * an L1 hit never leaves the process. Then the same hit with one `Effect.runPromise` per call (what a Promise
 * user pays), against `Effect.runPromise(Effect.succeed(task))`.
 */
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import type { Task, TaskId } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import { type Case, measure, random, type Result } from "./harness.js"
import { countingStatements, repositoryLayer, seedStore, uniqueNamespace, uniqueSchema } from "./services.js"

/** Tasks in the store, all held by L1 while measuring. */
export const TASKS = 1_000
/** Sequential gets per round and case. */
export const GETS = 100_000

/** Calls per round of the `runPromise`-per-call cases. */
export const PROMISE_CALLS = 20_000

export const runRepositoryHit = async (): Promise<{ readonly fiber: Array<Result>; readonly promise: Array<Result> }> => {
  const schema = uniqueSchema()
  const namespace = uniqueNamespace()
  const runtime = ManagedRuntime.make(repositoryLayer(schema, namespace))
  try {
    const { ids, l1, multi, repo } = await runtime.runPromise(Effect.gen(function*() {
      const ids = yield* seedStore(TASKS)
      const repo = yield* TaskRepository.TaskRepository
      // Through the repository once: every task is loaded and back-filled into L2 and L1.
      yield* Effect.forEach(ids, (id) => repo.get(id), { concurrency: "unbounded", discard: true })
      const l1 = yield* TaskRepository.TaskL1
      // A multi-level cache over the same L1 (its loader is never reached: every get below is an L1 hit).
      const multi = yield* MultiLevelCache.make({
        name: "bench-multilevel",
        tiers: [l1],
        load: () => Effect.dieMessage("an L1 hit was expected")
      }).pipe(Effect.provideService(Scope.Scope, yield* Scope.make()))
      return { ids, repo, l1, multi }
    }))
    const next = random(13)
    const order: ReadonlyArray<TaskId> = Array.from({ length: GETS }, () => ids[Math.floor(next() * TASKS)]!)

    // Before timing: the repository answers every id with L1's own object, and sends no statement.
    const check = await Effect.runPromise(countingStatements(Effect.forEach(ids, (id) =>
      Effect.zipWith(repo.get(id), l1.get(id), (a, b) => a === b))))
    if (check.statements !== 0 || check.result.some((same) => !same)) {
      throw new Error("TaskRepository.get did not answer from L1")
    }

    const loop = (get: (id: TaskId) => Effect.Effect<Task, unknown>) =>
      Effect.gen(function*() {
        let sum = 0
        for (let i = 0; i < GETS; i++) sum += (yield* get(order[i]!)).version
        return sum
      })
    let expected: number | undefined
    const timed = (name: string, get: (id: TaskId) => Effect.Effect<Task, unknown>): Case => ({
      name,
      run: async () => {
        const sum = await Effect.runPromise(loop(get))
        expected ??= sum
        if (sum !== expected) throw new Error(`${name}: read ${sum}, expected ${expected}`)
        return GETS
      }
    })
    const fiber = await measure([
      timed("TaskRepository.get", repo.get),
      timed("MultiLevelCache.get", multi.get),
      timed("LruCache.get (the L1 tier)", l1.get)
    ])
    // One `Effect.runPromise` per call, awaited in turn, as a Promise-based caller does.
    const task = await Effect.runPromise(l1.get(ids[0]!))
    const perCall = (name: string, get: (id: TaskId) => Effect.Effect<Task, unknown>): Case => ({
      name,
      run: async () => {
        for (let i = 0; i < PROMISE_CALLS; i++) await Effect.runPromise(get(order[i]!))
        return PROMISE_CALLS
      }
    })
    const promise = await measure([
      perCall("runPromise(TaskRepository.get)", repo.get),
      perCall("runPromise(MultiLevelCache.get)", multi.get),
      perCall("runPromise(Effect.succeed(task))", () => Effect.succeed(task))
    ])
    return { fiber, promise }
  } finally {
    // Drops the schema and the namespace's keys, then closes the pool and the Redis connection.
    await runtime.dispose()
  }
}
