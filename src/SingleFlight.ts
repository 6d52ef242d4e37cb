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
import * as BatchedFlight from "./internal/batchedFlight.js"

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

/**
 * Builds a batching singleflight whose batches run `resolve` in fibers of the current scope (closing it
 * interrupts them). `resolve` runs with the context the singleflight was built in. A caller is one
 * `Effect.async` registered on its batch, not a fiber: waiting costs a few map operations on top of the one
 * suspension every waiting fiber pays.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBatched = <K, A, E = never, R = never>(
  options: BatchedOptions<K, A, E, R>
): Effect.Effect<Batched<K, A, E>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const flight = BatchedFlight.make<K, A, E, R>(options, {
      scope: yield* Effect.scope,
      clock: yield* Effect.clock,
      context: yield* Effect.context<R>()
    })
    return {
      get: flight.get,
      getMany: flight.getMany,
      invalidate: (key) => Effect.sync(() => flight.detach(key)),
      invalidateAll: Effect.sync(() => flight.detachAll()),
      size: Effect.sync(() => flight.size())
    }
  })
