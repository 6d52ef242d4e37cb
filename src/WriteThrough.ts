/**
 * Write-through: the store is written first, and only then the cache — so a failed store write leaves every
 * tier as it was, and a successful one is never followed by a stale tier.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
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
 *   alone. If the caller is interrupted while the store write is in flight, its outcome is unknown, so the key
 *   is invalidated rather than left possibly stale.
 * - `delete`: the store first; on success, and on interruption, the key is invalidated.
 * - Once the store has answered, updating the cache runs to the end even if the caller is interrupted, and a
 *   failing cache write never fails the operation: the store is the source of truth (if setting the value
 *   fails, the key is invalidated instead).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, I, E1, E2, R1, R2>(
  options: Options<K, V, I, E1, E2, R1, R2>
): WriteThrough<K, V, I, E1, E2, R1, R2> => {
  const { cache, keyOf } = options
  const invalidate = (key: K) => Effect.ignore(cache.invalidate(key))
  const store = (value: V) => cache.set(keyOf(value), value).pipe(Effect.catchAll(() => invalidate(keyOf(value))))

  return {
    save: (input) =>
      Effect.uninterruptibleMask((restore) =>
        restore(options.save(input)).pipe(
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return store(exit.value)
            // Interrupted mid-write: the store may or may not have the new value, so the cache must not keep
            // the old one.
            if (Exit.isInterrupted(exit)) return invalidate(options.keyOfInput(input))
            return Effect.void
          })
        )
      ),
    delete: (key) =>
      Effect.uninterruptibleMask((restore) =>
        restore(options.remove(key)).pipe(
          Effect.onExit((exit) => (Exit.isSuccess(exit) || Exit.isInterrupted(exit) ? invalidate(key) : Effect.void))
        )
      )
  }
}
