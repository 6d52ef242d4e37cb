/**
 * One execution per key among concurrent callers: a map from key to the `Deferred` its callers wait on.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
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
 * - `invalidate(key)` detaches a key from its batch: later callers start a new load, and the running one sees
 *   `isCurrent(key) === false`, so it can skip storing a value that a write has replaced.
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

/** Mutable by design: the keys of one batch, the callers waiting for it, and the keys invalidated meanwhile. */
class Batch<K, A, E> {
  readonly keys: Array<K> = []
  readonly deferred = Deferred.unsafeMake<ReadonlyMap<K, A>, E>(FiberId.none)
  callers = 0
  fiber: Fiber.RuntimeFiber<boolean> | undefined = undefined
  superseded: Set<K> | undefined = undefined
  readonly isCurrent = (key: K): boolean => this.superseded === undefined || !this.superseded.has(key)
}

/**
 * Builds a batching singleflight whose batches run `resolve` in fibers forked into the current scope (closing
 * it interrupts them). `resolve` runs with the context the singleflight was built in.
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

    const resolveBatch = (batch: Batch<K, A, E>) =>
      Effect.suspend(() => {
        if (collecting === batch) collecting = undefined
        const started = clock.unsafeCurrentTimeMillis()
        return Effect.interruptible(options.resolve(batch.keys, batch.isCurrent)).pipe(
          Effect.provide(context),
          Effect.exit,
          Effect.flatMap((exit) => {
            for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
            const elapsed = clock.unsafeCurrentTimeMillis() - started
            if (Exit.isSuccess(exit)) metrics?.unsafeLoad(elapsed)
            else if (!Exit.isInterrupted(exit)) metrics?.unsafeLoadFailure(elapsed)
            return Deferred.done(batch.deferred, exit)
          })
        )
      })

    // Dispatch one scheduler turn later, so the fibers already runnable get to add their keys first.
    const dispatch = (batch: Batch<K, A, E>) => Effect.zipRight(Effect.yieldNow(), resolveBatch(batch))

    /** The batch a new key joins, opening one when none is collecting or the collecting one is full. */
    const collectingBatch = (opened: Array<Batch<K, A, E>>): Batch<K, A, E> => {
      if (collecting === undefined || collecting.keys.length >= maxBatchSize) {
        // A full batch keeps its dispatch turn; later keys go to a new one.
        collecting = new Batch<K, A, E>()
        opened.push(collecting)
      }
      return collecting
    }

    const startBatches = (opened: ReadonlyArray<Batch<K, A, E>>) =>
      Effect.forEach(opened, (batch) =>
        Effect.forkIn(dispatch(batch), scope).pipe(Effect.map((fiber) => {
          batch.fiber = fiber
        })), { discard: true })

    /** Gives up one caller's place in each of `batches`; the last caller of a batch interrupts it. */
    const leave = (batches: Iterable<Batch<K, A, E>>) =>
      Effect.suspend(() => {
        const abandoned: Array<Fiber.RuntimeFiber<boolean>> = []
        for (const batch of batches) {
          batch.callers--
          if (batch.callers > 0) continue
          for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
          if (collecting === batch) collecting = undefined
          if (batch.fiber !== undefined) abandoned.push(batch.fiber)
        }
        return abandoned.length === 0 ? Effect.void : Fiber.interruptAll(abandoned)
      })

    /** Registers interest in `key`, opening batches as needed; returns the batch that will answer it. */
    const enter = (key: K, joined: Set<Batch<K, A, E>>, opened: Array<Batch<K, A, E>>): Batch<K, A, E> => {
      let batch = flights.get(key)
      if (batch !== undefined) {
        metrics?.unsafeShared()
      } else {
        batch = collectingBatch(opened)
        batch.keys.push(key)
        flights.set(key, batch)
      }
      if (!joined.has(batch)) {
        joined.add(batch)
        batch.callers++
      }
      return batch
    }

    const detach = (key: K): void => {
      const batch = flights.get(key)
      if (batch === undefined) return
      flights.delete(key)
      ;(batch.superseded ??= new Set()).add(key)
    }

    const getMany = (keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, A>, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const joined = new Set<Batch<K, A, E>>()
          const opened: Array<Batch<K, A, E>> = []
          const answers = new Map<K, Batch<K, A, E>>()
          for (const key of keys) if (!answers.has(key)) answers.set(key, enter(key, joined, opened))
          if (answers.size === 0) return Effect.succeed(new Map<K, A>())
          const wait = restore(
            Effect.forEach(joined, (batch) => Effect.map(Deferred.await(batch.deferred), (found) => [batch, found] as const))
          )
          return startBatches(opened).pipe(
            Effect.zipRight(wait),
            Effect.onInterrupt(() => leave(joined)),
            Effect.map((results) => {
              const byBatch = new Map(results)
              const found = new Map<K, A>()
              for (const [key, batch] of answers) {
                const values = byBatch.get(batch)!
                if (values.has(key)) found.set(key, values.get(key)!)
              }
              return found
            })
          )
        })
      )

    const get = (key: K): Effect.Effect<Option.Option<A>, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const joined = new Set<Batch<K, A, E>>()
          const opened: Array<Batch<K, A, E>> = []
          const batch = enter(key, joined, opened)
          const wait = restore(Deferred.await(batch.deferred)).pipe(
            Effect.onInterrupt(() => leave(joined)),
            Effect.map((found) => (found.has(key) ? Option.some(found.get(key)!) : Option.none()))
          )
          return opened.length === 0 ? wait : Effect.zipRight(startBatches(opened), wait)
        })
      )

    return {
      get,
      getMany,
      invalidate: (key) => Effect.sync(() => detach(key)),
      invalidateAll: Effect.sync(() => {
        for (const key of [...flights.keys()]) detach(key)
        // A collecting batch would otherwise take new keys into a load whose other keys are all stale.
        collecting = undefined
      }),
      size: Effect.sync(() => flights.size)
    }
  })
