/**
 * Write-through: the store is written first, and only then the cache — so a failed store write leaves every
 * tier as it was, and a successful one is never followed by a stale tier.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Cache } from "./Cache.js"

/**
 * The store operations a write-through cache wraps.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K, V, I, E1, E2, R1, R2> {
  /** The cache kept in step (usually a `MultiLevelCache`, which writes every tier). */
  readonly cache: Cache<K, V, unknown>
  /** Writes `input` to the store and returns what was stored. */
  readonly save: (input: I) => Effect.Effect<V, E1, R1>
  /** Deletes `key` from the store. */
  readonly remove: (key: K) => Effect.Effect<void, E2, R2>
  /** The key of a stored value. */
  readonly keyOf: (value: V) => K
  /** The key an input will be stored under. */
  readonly keyOfInput: (input: I) => K
  /**
   * Whether a failure of the store may hide a write that happened all the same (a timeout, a connection lost
   * mid-statement). Such a failure invalidates the key, like an interruption. Default: no failure does.
   */
  readonly isUnknownOutcome?: (error: E1 | E2) => boolean
}

/**
 * Store-first writes and deletes.
 *
 * @since 0.1.0
 * @category models
 */
export interface WriteThrough<K, V, I, E1, E2, R1, R2> {
  /** Writes the store; on success stores the result in the cache and returns it. */
  save(input: I): Effect.Effect<V, E1, R1>
  /** Deletes from the store; on success invalidates the key in the cache. */
  delete(key: K): Effect.Effect<void, E2, R2>
}

/**
 * Wraps store writes so the cache follows them.
 *
 * - `save`: the store first. On success the stored value goes into the cache; on failure the cache is left
 *   alone. If the caller is interrupted while the store write is in flight, or the failure is one whose
 *   outcome is unknown (`isUnknownOutcome`), the key is invalidated rather than left possibly stale.
 * - `delete`: the store first; on success, on interruption and on an unknown outcome, the key is invalidated.
 * - Once the store has answered, updating the cache runs to the end even if the caller is interrupted, and a
 *   failing cache write never fails the operation: the store is the source of truth (if setting the value
 *   fails, the key is invalidated instead).
 * - Writes of one key run one at a time (store, then cache), so the cache receives them in the order the store
 *   applied them: two concurrent saves of a key cannot leave the older one in the cache.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, I, E1, E2, R1, R2>(
  options: Options<K, V, I, E1, E2, R1, R2>
): WriteThrough<K, V, I, E1, E2, R1, R2> => {
  const { cache, keyOf } = options
  const invalidate = (key: K) => Effect.ignore(cache.invalidate(key))
  const isUnknownOutcome = options.isUnknownOutcome ?? (() => false)
  /** Whether the store may have been changed although it did not say so. */
  const maybeWritten = (exit: Exit.Exit<unknown, E1 | E2>): boolean =>
    Exit.isInterrupted(exit) ||
    (Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), isUnknownOutcome))
  const store = (value: V) => cache.set(keyOf(value), value).pipe(Effect.catchAll(() => invalidate(keyOf(value))))
  const oneAtATime = makeKeyedLock<K>()

  return {
    save: (input) =>
      oneAtATime(options.keyOfInput(input), (restore) =>
        restore(options.save(input)).pipe(
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return store(exit.value)
            // Interrupted mid-write, or an unknown outcome: the store may or may not have the new value, so the
            // cache must not keep the old one.
            return maybeWritten(exit) ? invalidate(options.keyOfInput(input)) : Effect.void
          })
        )
      ),
    delete: (key) =>
      oneAtATime(key, (restore) =>
        restore(options.remove(key)).pipe(
          Effect.onExit((exit) => (Exit.isSuccess(exit) || maybeWritten(exit) ? invalidate(key) : Effect.void))
        )
      )
  }
}

/** Mutable by design: one lock per key while it is used, forgotten when its last user leaves. */
interface KeyLock {
  readonly semaphore: Effect.Semaphore
  users: number
}

/**
 * Runs effects one at a time per key. The effect runs uninterruptibly once it holds the lock, except what it
 * passes to `restore`; waiting for the lock can be interrupted.
 */
const makeKeyedLock = <K>() => {
  const locks = new Map<K, KeyLock>()
  return <A, E, R>(
    key: K,
    f: (restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        let lock = locks.get(key)
        if (lock === undefined) {
          lock = { semaphore: Effect.unsafeMakeSemaphore(1), users: 0 }
          locks.set(key, lock)
        }
        lock.users++
        return lock
      }),
      (lock) => lock.semaphore.withPermits(1)(Effect.uninterruptibleMask(f)),
      (lock) =>
        Effect.sync(() => {
          if (--lock.users === 0 && locks.get(key) === lock) locks.delete(key)
        })
    )
}
