/**
 * The contract every cache tier implements, its errors, and the way to declare a typed cache tag.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"

/**
 * A cache tier: operations are Effects, a miss on `get` is the typed error `CacheMiss`, and `E` is the tier's
 * backend failure (`never` for the in-memory tiers, `CacheError` for Redis).
 *
 * @since 0.1.0
 * @category models
 */
export interface Cache<in out K, in out V, out E = never> {
  /** The name the tier's metrics are tagged with. */
  readonly name: string
  /**
   * Whether the tier keeps the newest value whatever the order writes reach it: it knows each value's version,
   * refuses a write older than what it holds, and `invalidate` leaves a tombstone that refuses write-backs for
   * a while (a `RedisCache` or an `LruCache` built with `version`). A multi-level cache relies on it for tiers
   * shared by several writers. Absent: not versioned.
   */
  readonly versioned?: boolean
  /** The value under `key`, or `CacheMiss` when there is none (or it has expired). */
  get(key: K): Effect.Effect<V, CacheMiss | E>
  /** The value under `key` as an `Option`: a miss is `None`, not an error. */
  getOption(key: K): Effect.Effect<Option.Option<V>, E>
  /** The entries found among `keys`; missing keys are simply absent from the result. */
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, V>, E>
  /** Stores `value` under `key`, replacing what was there, with an optional per-entry time-to-live. */
  set(key: K, value: V, options?: SetOptions): Effect.Effect<void, E>
  /** Stores every entry, with one optional time-to-live for all of them. */
  setMany(entries: Iterable<readonly [K, V]>, options?: SetOptions): Effect.Effect<void, E>
  /** Removes the entry under `key`, if any. */
  invalidate(key: K): Effect.Effect<void, E>
  /** Removes every entry of this tier. */
  readonly invalidateAll: Effect.Effect<void, E>
  /**
   * The number of entries the tier holds. Tiers that expire lazily may count entries that have expired but
   * were not removed yet; they are never returned by a read.
   */
  readonly size: Effect.Effect<number, E>
}

/**
 * Options of a single write.
 *
 * @since 0.1.0
 * @category models
 */
export interface SetOptions {
  /** How long the entry lives; overrides the tier's default. `Duration.infinity` never expires. */
  readonly timeToLive?: Duration.DurationInput
}

/**
 * A read found nothing under `key`.
 *
 * @since 0.1.0
 * @category errors
 */
export class CacheMiss extends Data.TaggedError("CacheMiss")<{
  /** The key that was asked for. */
  readonly key: unknown
  /** The name of the cache that missed. */
  readonly cache: string
}> {
  override get message(): string {
    return `no entry for key ${formatKey(this.key)} in cache "${this.cache}"`
  }
}

/**
 * A tier's backend failed (connection lost, timeout, protocol error). `cause` keeps the original failure.
 *
 * @since 0.1.0
 * @category errors
 */
export class CacheError extends Data.TaggedError("CacheError")<{
  /** The name of the cache whose backend failed. */
  readonly cache: string
  /** The operation that failed, such as `"get"` or `"setMany"`. */
  readonly operation: string
  /**
   * The underlying failure, kept for diagnosis. The Redis tier keeps only the client error's kind, message and
   * code here, never the failed command's arguments (which may hold values, or a password).
   */
  readonly cause: unknown
}> {
  override get message(): string {
    const reason = Predicate.hasProperty(this.cause, "message") ? String(this.cause.message) : String(this.cause)
    return `cache "${this.cache}" failed on ${this.operation}: ${reason}`
  }
}

/**
 * Declares a service tag for one cache, typed by key, value and backend error:
 *
 * ```ts
 * class TaskL1 extends Cache.Tag("app/TaskL1")<TaskL1, TaskId, Task>() {}
 * const TaskL1Live = LruCache.layer(TaskL1, { capacity: 10_000, timeToLive: "5 minutes" })
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const Tag =
  <const Id extends string>(id: Id) =>
  <Self, K, V, E = never>(): Context.TagClass<Self, Id, Cache<K, V, E>> =>
    Context.Tag(id)<Self, Cache<K, V, E>>()

const formatKey = (key: unknown): string => {
  if (typeof key === "string") {
    // Keys can be user input of any length: keep messages readable.
    return JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}…` : key)
  }
  return String(key)
}
