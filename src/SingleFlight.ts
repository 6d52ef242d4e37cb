/**
 * One execution per key among concurrent callers: a map from key to the `Deferred` its callers wait on.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as CacheMetrics from "./CacheMetrics.js"

/**
 * Runs one shared effect per key.
 *
 * - Callers of `run` with the same key while an execution is in flight join it instead of starting another.
 * - Every caller receives the same result: the same value, or the same typed error (or defect).
 * - The execution runs in its own fiber, so interrupting a caller only removes that caller: the others keep
 *   waiting and get the result. The execution is interrupted only when every caller has been interrupted.
 * - Once the execution ends (success, failure or interruption) the key is gone from the map; the next caller
 *   starts a fresh execution. Results are not cached: pair it with a cache tier for that.
 *
 * The execution runs with the context and fiber refs of the caller that started it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SingleFlight<in out K, in out A, in out E = never> {
  /** Runs `effect` for `key`, or joins the execution of `key` already in flight. */
  run<R>(key: K, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R>
  /** The number of keys with an execution in flight. */
  readonly size: Effect.Effect<number>
}

/**
 * Options of a `SingleFlight`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Where to record loads (`cache_loads`, `cache_load_failures`, `cache_load_duration_ms`) and callers that
   * joined one (`cache_singleflight_shared`).
   */
  readonly metrics?: CacheMetrics.CacheMetrics
}

/** Mutable by design: one in-flight execution and the number of callers still waiting for it. */
interface Flight<A, E> {
  readonly deferred: Deferred.Deferred<A, E>
  fiber: Fiber.RuntimeFiber<boolean> | undefined
  callers: number
}

/**
 * Builds a `SingleFlight`. Executions are forked into the current scope, so closing it interrupts whatever is
 * still in flight (its callers see the interruption).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, A, E = never>(options: Options = {}): Effect.Effect<SingleFlight<K, A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const metrics = options.metrics
    const flights = new Map<K, Flight<A, E>>()

    /** Waits for `flight` as one of its callers; the last caller to be interrupted interrupts the execution. */
    const join = (
      key: K,
      flight: Flight<A, E>,
      restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
    ): Effect.Effect<A, E> =>
      restore(Deferred.await(flight.deferred)).pipe(
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            flight.callers--
            if (flight.callers > 0 || flights.get(key) !== flight) return Effect.void
            // Nobody is left to receive the result: forget the key at once, so a new caller starts afresh.
            flights.delete(key)
            return flight.fiber === undefined ? Effect.void : Fiber.interrupt(flight.fiber)
          })
        )
      )

    const run = <R>(key: K, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      // Registering a caller and forking the execution must not be torn apart by an interruption.
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const existing = flights.get(key)
          if (existing !== undefined) {
            existing.callers++
            metrics?.unsafeShared()
            return join(key, existing, restore)
          }
          const flight: Flight<A, E> = { deferred: Deferred.unsafeMake(FiberId.none), fiber: undefined, callers: 1 }
          flights.set(key, flight)
          const started = clock.unsafeCurrentTimeMillis()
          const execution = Effect.interruptible(effect).pipe(
            Effect.exit,
            Effect.flatMap((exit) => {
              if (flights.get(key) === flight) flights.delete(key)
              const elapsed = clock.unsafeCurrentTimeMillis() - started
              if (Exit.isSuccess(exit)) metrics?.unsafeLoad(elapsed)
              else if (!Exit.isInterrupted(exit)) metrics?.unsafeLoadFailure(elapsed)
              return Deferred.done(flight.deferred, exit)
            })
          )
          return Effect.forkIn(execution, scope).pipe(
            Effect.flatMap((fiber) => {
              flight.fiber = fiber
              return join(key, flight, restore)
            })
          )
        })
      )

    return { run, size: Effect.sync(() => flights.size) }
  })

/**
 * A batching singleflight: concurrent loads of distinct keys become one `resolve` call, concurrent loads of
 * the same key share one execution.
 *
 * - Keys asked for while no batch is collecting open a new batch; every key asked for before that batch is
 *   dispatched (one scheduler turn later, or when it reaches `maxBatchSize`) joins it.
 * - A key already in a collecting or running batch is joined, not loaded again.
 * - Interrupting a caller only removes that caller; a batch is interrupted when every caller waiting on it has
 *   gone. When a batch ends, its keys leave the map.
 * - `invalidate(key)` detaches a key from a batch that has begun resolving: later callers start a new load,
 *   and the running one sees `isCurrent(key) === false`, so it can skip storing a value that a write has
 *   replaced. A batch still collecting has read nothing yet, so it keeps the key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Batched<in out K, in out A, in out E = never> {
  /** The value of `key` (`None` when `resolve` did not find it), loaded with whatever else is asked meanwhile. */
  get(key: K): Effect.Effect<Option.Option<A>, E>
  /** The values of `keys` found by `resolve`; the keys not yet in flight join the collecting batch together. */
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, A>, E>
  /** Detaches `key` from the load in flight, if any; see `isCurrent` in `BatchedOptions.resolve`. */
  invalidate(key: K): Effect.Effect<void>
  /** Detaches every key in flight. */
  readonly invalidateAll: Effect.Effect<void>
  /** The number of keys in flight (collecting or running). */
  readonly size: Effect.Effect<number>
}

/**
 * Options of a batching singleflight.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchedOptions<K, A, E, R> {
  /**
   * Loads a batch of distinct keys; keys missing from the result are "not found". `isCurrent(key)` turns
   * false once the key has been invalidated during the load: store nothing derived from it after that.
   */
  readonly resolve: (keys: ReadonlyArray<K>, isCurrent: (key: K) => boolean) => Effect.Effect<ReadonlyMap<K, A>, E, R>
  /** The most keys in one batch. Default: 2048. */
  readonly maxBatchSize?: number
  /** Where to record loads (one per batch), their failures and duration, and keys that joined a load. */
  readonly metrics?: CacheMetrics.CacheMetrics
}

/** One caller waiting on a batch: called once with the batch's outcome, unless it left first. */
type Waiter<K, A, E> = (exit: Exit.Exit<ReadonlyMap<K, A>, E>) => void

/** Mutable by design: the keys of one batch, the callers waiting for it, and the keys invalidated meanwhile. */
class Batch<K, A, E> {
  readonly keys: Array<K> = []
  readonly waiters = new Set<Waiter<K, A, E>>()
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  /** Whether `resolve` has begun: until then it has read nothing that a write could make stale. */
  started = false
  superseded: Set<K> | undefined = undefined
  readonly isCurrent = (key: K): boolean => this.superseded === undefined || !this.superseded.has(key)
}

const lookup = <K, A>(found: ReadonlyMap<K, A>, key: K): Option.Option<A> =>
  found.has(key) ? Option.some(found.get(key)!) : Option.none()

/**
 * Builds a batching singleflight whose batches run `resolve` in fibers of the current scope (closing it
 * interrupts them). `resolve` runs with the context the singleflight was built in.
 *
 * Why callers do not fork or use `Deferred`s: a caller is one `Effect.async` registered on its batch, whose
 * canceller is the "leave" step. Registering is synchronous (nothing can interrupt it half-way), and a batch
 * completes its callers by calling them back, so the per-key cost is a few map operations on top of the one
 * suspension every waiting fiber pays.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBatched = <K, A, E = never, R = never>(
  options: BatchedOptions<K, A, E, R>
): Effect.Effect<Batched<K, A, E>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const context = yield* Effect.context<R>()
    const metrics = options.metrics
    const maxBatchSize = Math.max(1, options.maxBatchSize ?? 2048)
    const flights = new Map<K, Batch<K, A, E>>()
    let collecting: Batch<K, A, E> | undefined

    /** Ends a batch: its keys leave the map, then every caller still waiting gets the outcome. */
    const settle = (batch: Batch<K, A, E>, exit: Exit.Exit<ReadonlyMap<K, A>, E>, started: number) =>
      Effect.sync(() => {
        for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
        const elapsed = clock.unsafeCurrentTimeMillis() - started
        if (Exit.isSuccess(exit)) metrics?.unsafeLoad(elapsed)
        else if (!Exit.isInterrupted(exit)) metrics?.unsafeLoadFailure(elapsed)
        for (const waiter of batch.waiters) waiter(exit)
        batch.waiters.clear()
      })

    // One scheduler turn before resolving, so the fibers already runnable get to add their keys first.
    const dispatch = (batch: Batch<K, A, E>): Effect.Effect<void, never, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const started = clock.unsafeCurrentTimeMillis()
          return restore(Effect.zipRight(
            Effect.yieldNow(),
            Effect.suspend(() => {
              if (collecting === batch) collecting = undefined
              batch.started = true
              return options.resolve(batch.keys, batch.isCurrent)
            })
          )).pipe(Effect.exit, Effect.flatMap((exit) => settle(batch, exit, started)))
        })
      )

    /**
     * The batch a new key joins, opening one when none is collecting or it is full. A new batch's fiber runs
     * with the fiber refs and context of the caller that opened it (its tracer and parent span, so the load shows
     * up in that caller's trace) plus the context the singleflight was built with.
     */
    const collectingBatch = (opener: Fiber.RuntimeFiber<unknown, unknown>): Batch<K, A, E> => {
      if (collecting === undefined || collecting.keys.length >= maxBatchSize) {
        const batch = new Batch<K, A, E>()
        collecting = batch
        const runtime = Runtime.make({
          context: Context.merge(opener.currentContext, context),
          fiberRefs: opener.getFiberRefs(),
          runtimeFlags: Runtime.defaultRuntimeFlags
        })
        batch.fiber = Runtime.runFork(runtime)(dispatch(batch), { scope })
      }
      return collecting
    }

    /** The batch answering `key`: the one it is already in, or the collecting one. */
    const enter = (key: K, caller: Fiber.RuntimeFiber<unknown, unknown>): Batch<K, A, E> => {
      const existing = flights.get(key)
      if (existing !== undefined) {
        metrics?.unsafeShared()
        return existing
      }
      const batch = collectingBatch(caller)
      batch.keys.push(key)
      flights.set(key, batch)
      return batch
    }

    /** Removes a waiter; when it was the batch's last, the batch is forgotten and its fiber interrupted. */
    const leave = (batch: Batch<K, A, E>, waiter: Waiter<K, A, E>): Fiber.RuntimeFiber<void> | undefined => {
      if (!batch.waiters.delete(waiter) || batch.waiters.size > 0) return undefined
      for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
      if (collecting === batch) collecting = undefined
      return batch.fiber
    }

    const get = (key: K): Effect.Effect<Option.Option<A>, E> =>
      Effect.withFiberRuntime((caller) => Effect.async<Option.Option<A>, E>((resume) => {
        const batch = enter(key, caller)
        const waiter: Waiter<K, A, E> = (exit) => resume(Exit.map(exit, (found) => lookup(found, key)))
        batch.waiters.add(waiter)
        return Effect.suspend(() => {
          const abandoned = leave(batch, waiter)
          return abandoned === undefined ? Effect.void : Fiber.interrupt(abandoned)
        })
      }))

    const getMany = (keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, A>, E> =>
      Effect.withFiberRuntime((caller) => Effect.async<ReadonlyMap<K, A>, E>((resume) => {
        const answers = new Map<K, Batch<K, A, E>>()
        for (const key of keys) if (!answers.has(key)) answers.set(key, enter(key, caller))
        if (answers.size === 0) return resume(Exit.succeed(new Map()))
        const pending = new Map<Batch<K, A, E>, Waiter<K, A, E>>()
        const results = new Map<Batch<K, A, E>, ReadonlyMap<K, A>>()
        const finish = () => {
          const found = new Map<K, A>()
          for (const [key, batch] of answers) {
            const values = results.get(batch)!
            if (values.has(key)) found.set(key, values.get(key)!)
          }
          resume(Exit.succeed(found))
        }
        for (const batch of new Set(answers.values())) {
          const waiter: Waiter<K, A, E> = (exit) => {
            pending.delete(batch)
            if (Exit.isSuccess(exit)) {
              results.set(batch, exit.value)
              if (pending.size === 0) finish()
              return
            }
            // The first failure answers the call; the other batches lose this caller.
            for (const [other, otherWaiter] of pending) leave(other, otherWaiter)?.unsafeInterruptAsFork(FiberId.none)
            pending.clear()
            resume(exit)
          }
          pending.set(batch, waiter)
          batch.waiters.add(waiter)
        }
        return Effect.suspend(() => {
          const abandoned: Array<Fiber.RuntimeFiber<void>> = []
          for (const [batch, waiter] of pending) {
            const fiber = leave(batch, waiter)
            if (fiber !== undefined) abandoned.push(fiber)
          }
          pending.clear()
          return abandoned.length === 0 ? Effect.void : Fiber.interruptAll(abandoned)
        })
      }))

    const detach = (key: K): void => {
      const batch = flights.get(key)
      // A batch still collecting has read nothing yet: it will read after the write, so it may keep the key.
      if (batch === undefined || !batch.started) return
      flights.delete(key)
      ;(batch.superseded ??= new Set()).add(key)
    }

    return {
      get,
      getMany,
      invalidate: (key) => Effect.sync(() => detach(key)),
      invalidateAll: Effect.sync(() => {
        for (const key of [...flights.keys()]) detach(key)
      }),
      size: Effect.sync(() => flights.size)
    }
  })
