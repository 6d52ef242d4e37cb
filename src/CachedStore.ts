/**
 * A cached store for any entity: your store (`getMany`, `save`, `remove`) behind tiers (an in-memory L1, a
 * Redis L2, …), with read-through batching, fail-open tiers, write-through, and the write protocol that keeps
 * them in step across concurrent writers and instances — no stale write-back, ordered concurrent writes,
 * invalidation across instances, rechecks of writes whose outcome is unknown.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Cache, CacheMiss } from "./Cache.js"
import type * as CacheMetrics from "./CacheMetrics.js"
import * as Internal from "./internal/cachedStore.js"
import type { InvalidationBus, TagLedgerError } from "./InvalidationBus.js"
import type { Entry, FreshnessOptions, LoadTimeout } from "./LoadingCache.js"
import type { Tier } from "./MultiLevelCache.js"

/**
 * The store behind the cache: the source of truth. Reads and writes keep their own error types.
 *
 * For the guarantees to hold, a store keeps this contract:
 * - `getMany` returns what it holds now for the keys it has; a key it leaves out does not exist;
 * - `save` returns exactly what it stored, under `keyOf(input)`;
 * - when the tiers are versioned (shared tiers should be), the version of a key's value only ever grows, also
 *   across a delete and a later save of the same key (keep a deleted marker, or a sequence, rather than
 *   starting again at 1);
 * - a write that fails says how it left the store (`Options.classify`), and a write that may still be applied
 *   after it failed (a timed-out statement) lands within `unknownOutcomeRecheck`, and before a tombstone of the
 *   shared tier expires.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store<K, V, I, EGet, ESave, ERemove, R = never> {
  /** The values of the keys it has, in one call. */
  getMany(keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>, EGet, R>
  /** Writes `input` and returns what was stored. */
  save(input: I): Effect.Effect<V, ESave, R>
  /** Deletes `key`. */
  remove(key: K): Effect.Effect<void, ERemove, R>
}

/**
 * How a failed write left the store.
 *
 * - `"refused"`: nothing changed (a constraint, a bad value, no connection to send it on). The tiers are left
 *   alone and nothing is published.
 * - `"unknown"`: it may have been applied (a timeout, a connection lost mid-statement). The key is dropped from
 *   every tier, published, and dropped again after `unknownOutcomeRecheck`.
 * - `"absent"`: the key is not in the store (a delete or update of what does not exist). The key is dropped
 *   from every tier and published, so that no tier keeps serving it.
 *
 * @since 0.1.0
 * @category models
 */
export type WriteOutcome = "refused" | "unknown" | "absent"

/**
 * Options of a cached store. With `freshness` its tiers hold `LoadingCache.Entry<V>` and its reads follow the
 * freshness options (see `FreshOptions`); without, they hold `V`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K, V, I, EGet, ESave, ERemove, R> extends BaseOptions<K, V, I, EGet, ESave, ERemove, R> {
  /**
   * The tiers, nearest first: each a `Cache` or a `Tier` with a timeout and a breaker. Shared tiers (Redis)
   * should be versioned (`RedisCache`'s `version`); the nearest should be in memory.
   */
  readonly tiers: ReadonlyArray<Cache<K, V, unknown> | Tier<K, V>>
  readonly freshness?: never
}

/**
 * Options of a cached store whose entries go stale, with the freshness of a `LoadingCache`: negative caching,
 * stale-while-revalidate, fail-safe, load timeouts, early refresh. Saves store fresh entries; deletes, writes
 * and invalidations overtake every refresh and late load of their key, as they do loads.
 *
 * @since 0.1.0
 * @category models
 */
export interface FreshOptions<K, V, I, EGet, ESave, ERemove, R> extends BaseOptions<K, V, I, EGet, ESave, ERemove, R> {
  /** The tiers, nearest first, holding stamped entries (see `LoadingCache.entrySchema` for a Redis tier). */
  readonly tiers: ReadonlyArray<Cache<K, Entry<V>, unknown> | Tier<K, Entry<V>>>
  /** How fresh entries stay and what a read does with a stale one (see `LoadingCache.FreshnessOptions`). */
  readonly freshness: FreshnessOptions<K, V>
}

/**
 * What both kinds of options share.
 *
 * @since 0.1.0
 * @category models
 */
export interface BaseOptions<K, V, I, EGet, ESave, ERemove, R> {
  /** The name its metrics are tagged with (tier `"multilevel"`). */
  readonly name: string
  /** The store. */
  readonly store: Store<K, V, I, EGet, ESave, ERemove, R>
  /** The key a saved input is stored under. */
  readonly keyOf: (input: I) => K
  /**
   * The bus to the other instances: every write is published, and their writes drop keys from this nearest
   * tier. Without it the cache serves one instance only.
   */
  readonly invalidations?: InvalidationBus<K>
  /** How a failed write left the store (see `WriteOutcome`). Default: every failure is `"unknown"`. */
  readonly classify?: (error: ESave | ERemove) => WriteOutcome
  /** How long after a write with an unknown outcome its key is dropped once more. Default: 10 seconds. */
  readonly unknownOutcomeRecheck?: Duration.DurationInput
  /** The most keys one store read asks for. Default: 2048. */
  readonly maxBatchSize?: number
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * A cached store.
 *
 * - Reads answer from the nearest tier that has the key, else from the store; concurrent misses are batched
 *   into one `getMany`, shared by every caller of a key, and back-filled into the tiers above — except keys
 *   that a write or invalidation changed meanwhile. A failing tier is skipped (fail-open).
 * - `save` and `delete` write the store first, then every tier (farthest first), then tell the other instances
 *   — after a write that succeeded, found the key absent, was interrupted, or has an unknown outcome; never
 *   after a refused one. Each write is registered before the store sees it: one overtaken by another write or
 *   invalidation of its key, here or on another instance, leaves nothing older in any tier.
 *
 * @since 0.1.0
 * @category models
 */
export interface CachedStore<in out K, in out V, in out I, out EGet, out ESave, out ERemove> {
  /** The name its metrics are tagged with. */
  readonly name: string
  /** The value of `key`; `CacheMiss` when the store does not have it (map it to your not-found error). */
  get(key: K): Effect.Effect<V, CacheMiss | EGet>
  /** The value of `key` as an `Option`. */
  getOption(key: K): Effect.Effect<Option.Option<V>, EGet>
  /** The values found among `keys`: each tier is asked only for what the tiers above did not have. */
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, V>, EGet>
  /** Saves to the store, then to every tier; returns what was stored. */
  save(input: I): Effect.Effect<V, ESave>
  /** Deletes from the store, then from every tier. */
  delete(key: K): Effect.Effect<void, ERemove>
  /** Drops `key` from every tier here and on the other instances (the store is not touched). */
  invalidate(key: K): Effect.Effect<void>
  /** Drops every key from every tier here and on the other instances. */
  readonly invalidateAll: Effect.Effect<void>
  /**
   * Makes every entry tagged `tag` a miss in every tier, here and on the other instances (tags come with
   * `freshness`: see `LoadingCache.FreshnessOptions.tags`; without it this does nothing). One write of the tag
   * ledger and one message; fails with `TagLedgerError` when the ledger (the bus's Redis) cannot be written,
   * and then nothing was invalidated.
   */
  invalidateTag(tag: string): Effect.Effect<void, TagLedgerError>
  /** The metrics of loads and fall-throughs (tier `"multilevel"`). */
  readonly metrics: CacheMetrics.CacheMetrics
  /** The state of each tier's breaker, nearest first (`"closed"` for tiers without one). */
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
  /** The freshness counters (all zero without `freshness`). */
  readonly freshness: Effect.Effect<CacheMetrics.FreshnessStats>
}

/**
 * Builds a cached store; its loads, repairs and rechecks run in fibers of the current scope, and it listens to
 * the bus until the scope closes. Fails with `IllegalArgumentException` for no tiers, or a timeout, cooldown or
 * recheck delay that is not a positive duration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <K, V, I, EGet, ESave, ERemove, R>(
    options: FreshOptions<K, V, I, EGet, ESave, ERemove, R>
  ): Effect.Effect<CachedStore<K, V, I, EGet | LoadTimeout, ESave, ERemove>, Cause.IllegalArgumentException, Scope.Scope | R>
  <K, V, I, EGet, ESave, ERemove, R>(
    options: Options<K, V, I, EGet, ESave, ERemove, R>
  ): Effect.Effect<CachedStore<K, V, I, EGet, ESave, ERemove>, Cause.IllegalArgumentException, Scope.Scope | R>
} = Internal.make

/**
 * The cached store of a store service type: `CachedStore.Of<ProductStore>`.
 *
 * @since 0.1.0
 * @category models
 */
export type Of<S> = S extends {
  getMany(keys: ReadonlyArray<infer K>): Effect.Effect<ReadonlyMap<infer _K, infer V>, infer EGet, infer _R>
  save(input: infer I): Effect.Effect<infer _V, infer ESave, infer _R>
  remove(key: infer _K): Effect.Effect<void, infer ERemove, infer _R>
} ? CachedStore<K, V, I, EGet, ESave, ERemove>
  : never

/**
 * Declares a service tag for the cached store of a store service type:
 *
 * ```ts
 * class Products extends CachedStore.Tag("app/Products")<Products, ProductStore>() {}
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const Tag =
  <const Id extends string>(id: Id) =>
  <Self, S>(): Context.TagClass<Self, Id, Of<S>> =>
    Context.Tag(id)<Self, Of<S>>()

/**
 * A layer providing a cached store under `tag`, from options or from an effect that builds them (to take the
 * store, the tiers and the bus from the context).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, K, V, I, EGet, ESave, ERemove, R, E2 = never, R2 = never>(
  tag: Context.Tag<Id, CachedStore<K, V, I, EGet, ESave, ERemove>>,
  options:
    | Options<K, V, I, EGet, ESave, ERemove, R>
    | Effect.Effect<Options<K, V, I, EGet, ESave, ERemove, R>, E2, R2>
): Layer.Layer<Id, Cause.IllegalArgumentException | E2, Exclude<R | R2, Scope.Scope>> =>
  Layer.scoped(
    tag,
    Effect.flatMap(
      Effect.isEffect(options) ? options : Effect.succeed(options),
      (resolved: Options<K, V, I, EGet, ESave, ERemove, R>) => make(resolved)
    )
  )
