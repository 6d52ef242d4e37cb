/**
 * The batching singleflight behind `SingleFlight.makeBatched` and every multi-level load: concurrent loads of
 * distinct keys become one `resolve` call, concurrent loads of the same key share one execution, and a key
 * that changes is let go of (`detach`) synchronously, from the write protocol.
 *
 * Why callers do not fork or use `Deferred`s: a caller is one `Effect.async` registered on its batch, whose
 * canceller is the "leave" step. Registering is synchronous (nothing can interrupt it half-way), and a batch
 * completes its callers by calling them back, so the per-key cost is a few map operations on top of the one
 * suspension every waiting fiber pays.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as CacheMetrics from "../CacheMetrics.js"

/** What a batched flight runs: its options (see `SingleFlight.BatchedOptions`). */
export interface Options<K, A, E, R> {
  readonly resolve: (keys: ReadonlyArray<K>, isCurrent: (key: K) => boolean) => Effect.Effect<ReadonlyMap<K, A>, E, R>
  readonly maxBatchSize?: number
  readonly metrics?: CacheMetrics.CacheMetrics
}

/** Where its batches run: the scope they are forked in, the clock that times them, the context of `resolve`. */
export interface Environment<R> {
  readonly scope: Scope.Scope
  readonly clock: Clock.Clock
  readonly context: Context.Context<R>
}

/** A batched flight: effects for callers, synchronous `detach` for the write protocol. */
export interface BatchedFlight<K, A, E> {
  get(key: K): Effect.Effect<Option.Option<A>, E>
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, A>, E>
  /** Lets go of `key` in a batch that has begun resolving: it stores nothing of it; later callers load anew. */
  detach(key: K): void
  /** `detach` for every key in flight. */
  detachAll(): void
  /** The number of keys in flight (collecting or running). */
  size(): number
}

/** One caller waiting on a batch: called once with the batch's outcome, unless it left first. */
type Waiter<K, A, E> = (exit: Exit.Exit<ReadonlyMap<K, A>, E>) => void

/** Mutable by design: the keys of one batch, the callers waiting for it, and the keys invalidated meanwhile. */
class Batch<K, A, E> {
  readonly keys: Array<K> = []
  /** The callers waiting for the outcome; a leader running the batch in its own fiber is not one of them. */
  readonly waiters = new Set<Waiter<K, A, E>>()
  /** The fiber running the batch, when it runs in one of its own (not in its leader's). */
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  /**
   * Whether a caller leads the batch (from opening it until it hands it over or settles it): then the batch
   * is neither forgotten nor interrupted when its last waiter leaves, since the leader still runs it.
   */
  led = false
  /** Whether `resolve` has begun: until then it has read nothing that a write could make stale. */
  started = false
  superseded: Set<K> | undefined = undefined
  readonly isCurrent = (key: K): boolean => this.superseded === undefined || !this.superseded.has(key)
}

const lookup = <K, A>(found: ReadonlyMap<K, A>, key: K): Option.Option<A> =>
  found.has(key) ? Option.some(found.get(key)!) : Option.none()

/**
 * Builds a batched flight. A batch of one `get` runs in its caller's fiber (its leader), which saves a fiber
 * per load on the sequential path; a batch that more than one caller waits for when it starts, or that a
 * `getMany` opened, runs in a fiber of `environment.scope`.
 */
export const make = <K, A, E, R>(options: Options<K, A, E, R>, environment: Environment<R>): BatchedFlight<K, A, E> => {
  const { clock, context, scope } = environment
  const metrics = options.metrics
  const maxBatchSize = Math.max(1, options.maxBatchSize ?? 2048)
  const flights = new Map<K, Batch<K, A, E>>()
  let collecting: Batch<K, A, E> | undefined
  // The batch fiber's context is the opener's merged with this one; a leader's, when there is anything to add.
  const provide = context.unsafeMap.size === 0
    ? <X, Y>(effect: Effect.Effect<X, Y, R>) => effect as Effect.Effect<X, Y>
    : <X, Y>(effect: Effect.Effect<X, Y, R>) =>
      Effect.mapInputContext(effect, (current: Context.Context<never>) => Context.merge(current, context))

  /** Ends a batch: its keys leave the map, then every caller still waiting gets the outcome. */
  const settle = (batch: Batch<K, A, E>, exit: Exit.Exit<ReadonlyMap<K, A>, E>, started: number) => {
    for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
    const elapsed = clock.unsafeCurrentTimeMillis() - started
    if (Exit.isSuccess(exit)) metrics?.unsafeLoad(elapsed)
    else if (!Exit.isInterrupted(exit)) metrics?.unsafeLoadFailure(elapsed)
    for (const waiter of batch.waiters) waiter(exit)
    batch.waiters.clear()
  }

  /** Starts resolving: the batch stops collecting keys. */
  const begin = (batch: Batch<K, A, E>) => {
    if (collecting === batch) collecting = undefined
    batch.started = true
    return options.resolve(batch.keys, batch.isCurrent)
  }

  /** Forgets a batch nobody waits for any more. */
  const forget = (batch: Batch<K, A, E>) => {
    for (const key of batch.keys) if (flights.get(key) === batch) flights.delete(key)
    if (collecting === batch) collecting = undefined
  }

  // One scheduler turn before resolving (unless the opener took it), so the fibers already runnable get to
  // add their keys first.
  const dispatch = (batch: Batch<K, A, E>, turn: boolean): Effect.Effect<void, never, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const started = clock.unsafeCurrentTimeMillis()
        const run = Effect.suspend(() => begin(batch))
        return restore(turn ? Effect.zipRight(Effect.yieldNow(), run) : run).pipe(
          Effect.exit,
          Effect.flatMap((exit) => Effect.sync(() => settle(batch, exit, started)))
        )
      })
    )

  /**
   * Runs `batch` in a fiber of its own. It runs with the fiber refs and context of the caller that opened it
   * (its tracer and parent span, so the load shows up in that caller's trace) plus the context the flight was
   * built with.
   */
  const runInFiber = (batch: Batch<K, A, E>, opener: Fiber.RuntimeFiber<unknown, unknown>, turn: boolean): void => {
    // Started at once when it takes its turn first (it runs up to the turn); otherwise from the next turn.
    const runtime = Runtime.make({
      context: Context.merge(opener.currentContext, context),
      fiberRefs: opener.getFiberRefs(),
      runtimeFlags: Runtime.defaultRuntimeFlags
    })
    batch.fiber = Runtime.runFork(runtime)(dispatch(batch, turn), { scope, immediate: turn })
  }

  /** The batch a new key of `getMany` joins, opening one (run in a fiber) when none is collecting or it is full. */
  const collectingBatch = (opener: Fiber.RuntimeFiber<unknown, unknown>): Batch<K, A, E> => {
    if (collecting === undefined || collecting.keys.length >= maxBatchSize) {
      const batch = new Batch<K, A, E>()
      collecting = batch
      runInFiber(batch, opener, true)
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

  /**
   * Removes a waiter. When it was the last of a batch running in a fiber of its own, the batch is forgotten
   * and its fiber returned, to be interrupted; a led batch goes on for its leader.
   */
  const leave = (batch: Batch<K, A, E>, waiter: Waiter<K, A, E>): Fiber.RuntimeFiber<void> | undefined => {
    if (!batch.waiters.delete(waiter) || batch.waiters.size > 0 || batch.led) return undefined
    forget(batch)
    return batch.fiber
  }

  /** Waits for `batch`'s answer for `key`, as one registration; leaving is the canceller. */
  const wait = (batch: Batch<K, A, E>, key: K): Effect.Effect<Option.Option<A>, E> =>
    Effect.async<Option.Option<A>, E>((resume) => {
      const waiter: Waiter<K, A, E> = (exit) => resume(Exit.map(exit, (found) => lookup(found, key)))
      batch.waiters.add(waiter)
      return Effect.suspend(() => {
        const abandoned = leave(batch, waiter)
        return abandoned === undefined ? Effect.void : Fiber.interrupt(abandoned)
      })
    })

  /**
   * The leader of a batch it opened: it takes the scheduler turn, then runs the batch itself if nobody else
   * joined, or hands it to a fiber of its own and waits like the others. A leader interrupted while others
   * wait hands the batch over too; it starts again in the new fiber (the leader's half-done resolve is gone).
   */
  const lead = (batch: Batch<K, A, E>, key: K, leader: Fiber.RuntimeFiber<unknown, unknown>) =>
    Effect.uninterruptibleMask((restore) => {
      const handOver = () => {
        batch.led = false
        if (batch.waiters.size > 0) runInFiber(batch, leader, false)
        else forget(batch)
      }
      const run = () => {
        if (batch.waiters.size > 0) {
          // The fiber runs from the next scheduler turn: the leader registers as a waiter first.
          handOver()
          return restore(wait(batch, key))
        }
        const started = clock.unsafeCurrentTimeMillis()
        return Effect.matchCauseEffect(restore(provide(Effect.suspend(() => begin(batch)))), {
          onFailure: (cause): Effect.Effect<Option.Option<A>, E> => {
            if (Cause.isInterrupted(cause)) handOver()
            else {
              batch.led = false
              settle(batch, Exit.failCause(cause), started)
            }
            return Effect.failCause(cause)
          },
          onSuccess: (found) => {
            batch.led = false
            settle(batch, Exit.succeed(found), started)
            return Effect.succeed(lookup(found, key))
          }
        })
      }
      return Effect.matchCauseEffect(restore(Effect.yieldNow()), {
        onFailure: (cause) => {
          handOver()
          return Effect.failCause(cause)
        },
        onSuccess: run
      })
    })

  const get = (key: K): Effect.Effect<Option.Option<A>, E> =>
    Effect.withFiberRuntime((caller) => {
      const existing = flights.get(key)
      if (existing !== undefined) {
        metrics?.unsafeShared()
        return wait(existing, key)
      }
      if (collecting !== undefined && collecting.keys.length < maxBatchSize) {
        collecting.keys.push(key)
        flights.set(key, collecting)
        return wait(collecting, key)
      }
      const batch = new Batch<K, A, E>()
      batch.led = true
      collecting = batch
      batch.keys.push(key)
      flights.set(key, batch)
      return lead(batch, key, caller)
    })

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
    detach,
    detachAll: () => {
      for (const key of [...flights.keys()]) detach(key)
    },
    size: () => flights.size
  }
}
