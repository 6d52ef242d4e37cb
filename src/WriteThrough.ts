/**
 * Write-through over one cache: the store is written first, and only then the cache — so a failed store write
 * leaves the cache as it was, and a successful one is never followed by a stale cache.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
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
  /** The cache kept in step (any tier, a `MultiLevelCache` included). */
  readonly cache: Cache<K, V, unknown>
  /** Writes `input` to the store and returns what was stored. */
  readonly save: (input: I) => Effect.Effect<V, E1, R1>
  /** Deletes `key` from the store. */
  readonly remove: (key: K) => Effect.Effect<void, E2, R2>
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
 *
 * It is the simple combinator: the cache follows each write as it ends, so two concurrent writes of one key
 * may reach the cache in the opposite order to the store's. For concurrent writers, several instances, or a
 * multi-level cache whose loads may race the writes, use `CachedStore`, which orders them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, I, E1, E2, R1, R2>(
  options: Options<K, V, I, E1, E2, R1, R2>
): WriteThrough<K, V, I, E1, E2, R1, R2> => {
  const { cache } = options
  const isUnknownOutcome = options.isUnknownOutcome ?? (() => false)
  /** Whether the store may have been changed although it did not say so. */
  const maybeWritten = (exit: Exit.Exit<unknown, E1 | E2>): boolean =>
    Exit.isInterrupted(exit) ||
    (Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), isUnknownOutcome))

  /** Runs a store write of `key`, then brings the cache in step with its outcome. */
  const write = <A, E extends E1 | E2, R>(key: K, storeWrite: Effect.Effect<A, E, R>, onSuccess: (value: A) => Effect.Effect<void>) =>
    Effect.uninterruptibleMask((restore) =>
      restore(storeWrite).pipe(Effect.onExit((exit) => {
        if (Exit.isSuccess(exit)) return onSuccess(exit.value)
        return maybeWritten(exit) ? Effect.ignore(cache.invalidate(key)) : Effect.void
      }))
    )

  return {
    save: (input) => {
      const key = options.keyOfInput(input)
      return write(key, options.save(input), (value) =>
        cache.set(key, value).pipe(Effect.catchAll(() => Effect.ignore(cache.invalidate(key)))))
    },
    delete: (key) => write(key, options.remove(key), () => Effect.ignore(cache.invalidate(key)))
  }
}
