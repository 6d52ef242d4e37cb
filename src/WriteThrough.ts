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
import type { MultiLevelCache } from "./MultiLevelCache.js"

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
 * - With a `MultiLevelCache`, each write is registered before the store write begins: if another write or
 *   invalidation of the key (from this instance or another) comes before this one reaches the cache, this
 *   one's value does not go into the nearest tier, so concurrent writers cannot leave an older value there.
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
  const tracked = isMultiLevel(cache) ? cache : undefined

  /** Runs a store write of `key` and brings the cache in step with its outcome (`stored` of its value). */
  const write = <A, E, R>(
    key: K,
    storeWrite: Effect.Effect<A, E, R>,
    stored: (exit: Exit.Exit<A, E>) => Option.Option<Option.Option<V>>
  ): Effect.Effect<A, E, R> => {
    // `stored(exit)`: None → the store did not change; Some(None) → invalidate; Some(Some(v)) → store v.
    if (tracked === undefined) {
      return Effect.uninterruptibleMask((restore) =>
        restore(storeWrite).pipe(Effect.onExit((exit) =>
          Option.match(stored(exit), {
            onNone: () => Effect.void,
            onSome: Option.match({
              onNone: () => Effect.ignore(cache.invalidate(key)),
              onSome: (value) => cache.set(key, value).pipe(Effect.catchAll(() => Effect.ignore(cache.invalidate(key))))
            })
          })
        ))
      )
    }
    return Effect.acquireUseRelease(
      tracked.beginWrite(key),
      () => storeWrite,
      (pending, exit) =>
        Option.match(stored(exit), {
          onNone: () => tracked.cancelWrite(pending),
          onSome: (value) => tracked.completeWrite(pending, value)
        })
    )
  }

  return {
    save: (input) =>
      write(options.keyOfInput(input), options.save(input), (exit) => {
        if (Exit.isSuccess(exit)) return Option.some(Option.some(exit.value))
        // Interrupted mid-write, or an unknown outcome: the store may or may not have the new value, so the
        // cache must not keep the old one.
        return maybeWritten(exit) ? Option.some(Option.none()) : Option.none()
      }),
    delete: (key) =>
      write(key, options.remove(key), (exit) =>
        Exit.isSuccess(exit) || maybeWritten(exit) ? Option.some(Option.none()) : Option.none())
  }
}

const isMultiLevel = <K, V>(cache: Cache<K, V, unknown>): cache is MultiLevelCache<K, V, unknown> =>
  "beginWrite" in cache && "completeWrite" in cache && "cancelWrite" in cache
