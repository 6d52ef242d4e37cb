/**
 * A loading cache: tiers over a source you give as a batch `load` or a one-key `lookup`, with the freshness
 * a serving system needs — negative caching, stale-while-revalidate, fail-safe with a throttle, soft and hard
 * load timeouts, early refresh before expiry (XFetch), adaptive time-to-live and jitter — and every guarantee
 * of `MultiLevelCache`: batched shared loads, fail-open tiers, and no refresh, late load or stale answer ever
 * putting an older value into a tier after a write or invalidation of its key, on any instance.
 *
 * Its tiers hold `Entry` values (the value and its freshness stamps): build them for `LoadingCache.Entry<A>`
 * (`RedisCache` with `schema: LoadingCache.entrySchema(schema)`, and `version:
 * LoadingCache.entryVersion(version)` to make it versioned).
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Cache, CacheMiss, SetOptions } from "./Cache.js"
import type * as CacheMetrics from "./CacheMetrics.js"
import * as Internal from "./internal/loadingCache.js"
import type { InvalidationBus, TagLedgerError } from "./InvalidationBus.js"
import type { Tier } from "./MultiLevelCache.js"

/**
 * What a loading cache's tiers hold for a key: its value (or that the source does not have it) and its
 * freshness stamps, in milliseconds of the `Clock` of the instance that loaded it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry<A> {
  /** The value; absent in a negative entry. */
  readonly value?: A
  /** Set in a negative entry: the source did not have the key. */
  readonly absent?: true
  /** Until when it answers as it is. */
  readonly freshUntil: number
  /** Until when it may still be served stale (fail-safe, stale-while-revalidate); the tiers drop it then. */
  readonly staleUntil: number
  /** How long the load that produced it took: XFetch's δ. */
  readonly loadMillis: number
  /** Its tags (see `FreshnessOptions.tags`); absent when it has none. */
  readonly tags?: ReadonlyArray<string>
  /**
   * With tags: the tag ledger's position its load (or write) saw when it began. It is a miss once one of its
   * tags is invalidated at a later position.
   */
  readonly seen?: number
}

/**
 * The schema of a tier's entries, from the schema of the values: for a `RedisCache` tier of a loading cache.
 *
 * @since 0.1.0
 * @category schemas
 */
export const entrySchema = <A, I>(value: Schema.Schema<A, I>): Schema.Schema<Entry<A>, EntryEncoded<I>> =>
  Schema.Struct({
    value: Schema.optional(value),
    absent: Schema.optional(Schema.Literal(true)),
    freshUntil: Schema.Number,
    staleUntil: Schema.Number,
    loadMillis: Schema.Number,
    tags: Schema.optional(Schema.Array(Schema.String)),
    seen: Schema.optional(Schema.Number)
  }) as unknown as Schema.Schema<Entry<A>, EntryEncoded<I>>

/**
 * The stored form of an entry.
 *
 * @since 0.1.0
 * @category schemas
 */
export interface EntryEncoded<I> {
  readonly value?: I
  readonly absent?: true
  readonly freshUntil: number
  readonly staleUntil: number
  readonly loadMillis: number
  readonly tags?: ReadonlyArray<string>
  readonly seen?: number
}

/**
 * The version of an entry, from the version of its value, for a versioned tier (`RedisCache`'s or `LruCache`'s
 * `version`). A negative entry has version 0: a tier holding any version of the key refuses it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const entryVersion = <A>(version: (value: A) => number) => (entry: Entry<A>): number =>
  entry.absent === true ? 0 : version(entry.value as A)

/**
 * A load took longer than the hard timeout (and no stale value could answer instead). The load goes on in
 * the background and fills the tiers when it finishes, unless a write or invalidation of its keys came first.
 *
 * @since 0.1.0
 * @category errors
 */
export class LoadTimeout extends Data.TaggedError("LoadTimeout")<{
  /** The cache whose load timed out. */
  readonly cache: string
  /** The hard timeout. */
  readonly after: Duration.Duration
}> {
  override get message(): string {
    return `cache "${this.cache}": load took longer than ${Duration.format(this.after)}`
  }
}

/**
 * How fresh a loading cache keeps its entries, and what it does when its source is slow or failing. The
 * option names follow bentocache and FusionCache where they agree (see the README's table).
 *
 * @since 0.1.0
 * @category models
 */
export interface FreshnessOptions<K, A> {
  /** How long a loaded or written value is fresh. */
  readonly timeToLive: Duration.DurationInput
  /**
   * The time-to-live of one value, when it depends on it (adaptive time-to-live); `undefined` keeps
   * `timeToLive`, `Duration.zero` answers the value without caching it.
   */
  readonly timeToLiveOf?: (value: A, key: K) => Duration.DurationInput | undefined
  /**
   * How long past its time-to-live an entry may still be served stale: by stale-while-revalidate, by
   * fail-safe, after a soft timeout. Default: none (an entry is gone when it stops being fresh).
   */
  readonly grace?: Duration.DurationInput
  /**
   * A read of a stale entry (from any tier: a new instance answers from L2's) answers at once with it and
   * starts one background refresh, shared by every reader and batched with the other loads. Needs `grace`.
   * Default: false (the read loads, the stale value serving only as fail-safe or soft-timeout answer).
   */
  readonly staleWhileRevalidate?: boolean
  /**
   * A load that fails or hits the hard timeout answers with the stale value, when one within its grace is
   * there, instead of the error; the key's source is then not called again for `failSafeThrottle`.
   * Default: true when `grace` is set.
   */
  readonly failSafe?: boolean
  /** How long after a fail-safe activation the key's source is left alone (stale served). Default: 30 seconds. */
  readonly failSafeThrottle?: Duration.DurationInput
  /**
   * Past this, a caller holding a stale value gets it while the load goes on to update the tiers; until that
   * load ends (or the key changes), further reads of the key get the stale value too, without another call.
   * Without a stale value the caller waits up to `hardTimeout`.
   */
  readonly softTimeout?: Duration.DurationInput
  /**
   * Past this, a caller gets `LoadTimeout` (or the stale value under fail-safe); the load goes on and fills the
   * tiers unless a change of the key came first. A reader arriving meanwhile without a stale value starts a
   * load of its own.
   */
  readonly hardTimeout?: Duration.DurationInput
  /** How long a key the source does not have is remembered as absent, in every tier. Default: not at all. */
  readonly notFoundTimeToLive?: Duration.DurationInput
  /**
   * Probabilistic early refresh (XFetch): a read of a fresh entry refreshes it in the background when
   * `now − δ·β·ln(rand) ≥ freshUntil` (δ: how long its load took), so hot keys are reloaded by one reader
   * shortly before they expire and none waits at expiry. `true` is β = 1; a larger β refreshes earlier.
   * Default: off.
   */
  readonly earlyRefresh?: boolean | { readonly beta?: number }
  /** Adds a random extra time-to-live from zero to this, per loaded value, so keys loaded together do not expire together. */
  readonly jitter?: Duration.DurationInput
  /**
   * The tags of a value (a task's project, a product's category), stored with its entry: `invalidateTag(tag)`
   * then makes every entry carrying `tag` a miss, in every tier, on every instance of the bus. A tagged read
   * costs no round trip (the positions of invalidated tags travel with the bus); a load or write overtaken by an
   * invalidation of one of its tags is never served. Default: no tags.
   */
  readonly tags?: (value: A) => Iterable<string>
}

/**
 * Options of a loading cache: tiers, a source (`load` or `lookup`), freshness.
 *
 * @since 0.1.0
 * @category models
 */
export type Options<K, A, E, R> = FreshnessOptions<K, A> & {
  /** The name its metrics are tagged with (tier `"multilevel"`). */
  readonly name: string
  /** The tiers, nearest first, holding `Entry<A>`; each a `Cache` or a `Tier` with a timeout and a breaker. */
  readonly tiers: ReadonlyArray<Cache<K, Entry<A>, unknown> | Tier<K, Entry<A>>>
  /** Tells the other instances of writes and invalidations, and applies theirs. Default: one instance. */
  readonly invalidations?: InvalidationBus<K>
  /** The most keys one load asks for. Default: 2048. */
  readonly maxBatchSize?: number
  /** Whether to record metrics. Default: true. */
  readonly metrics?: boolean
} & (
  | {
    /** Loads many keys in one call; a key it leaves out does not exist. */
    readonly load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E, R>
    readonly lookup?: never
  }
  | {
    /** Loads one key, for sources without a batch call; the keys of one batch are looked up concurrently. */
    readonly lookup: (key: K) => Effect.Effect<Option.Option<A>, E, R>
    readonly load?: never
  }
)

/**
 * A loading cache.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoadingCache<in out K, in out A, out E> {
  /** The name its metrics are tagged with. */
  readonly name: string
  /** The value of `key`; `CacheMiss` when the source does not have it. */
  get(key: K): Effect.Effect<A, CacheMiss | E | LoadTimeout>
  /** The value of `key` as an `Option`. */
  getOption(key: K): Effect.Effect<Option.Option<A>, E | LoadTimeout>
  /** The values found among `keys` (each key read as by `get`; their loads batched together). */
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, A>, E | LoadTimeout>
  /** Stores `value` as fresh in every tier (after you wrote it to the source), and tells the other instances. */
  set(key: K, value: A, options?: SetOptions): Effect.Effect<void>
  /** Drops `key` from every tier here and on the other instances. */
  invalidate(key: K): Effect.Effect<void>
  /** Drops every key from every tier here and on the other instances. */
  readonly invalidateAll: Effect.Effect<void>
  /**
   * Makes every entry tagged `tag` a miss in every tier, here and on the other instances (see
   * `FreshnessOptions.tags`): one write of the tag ledger and one message. Fails with `TagLedgerError` when the
   * ledger (the bus's Redis) cannot be written: then nothing was invalidated.
   */
  invalidateTag(tag: string): Effect.Effect<void, TagLedgerError>
  /** Reloads `key` from the source in the background, whatever the tiers hold; readers keep their answers meanwhile. */
  refresh(key: K): Effect.Effect<void>
  /** The metrics of loads and fall-throughs (tier `"multilevel"`). */
  readonly metrics: CacheMetrics.CacheMetrics
  /** The freshness counters: stale answers, refreshes, fail-safe, timeouts, negative hits. */
  readonly freshness: Effect.Effect<CacheMetrics.FreshnessStats>
  /** The state of each tier's breaker, nearest first. */
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
}

/**
 * Builds a loading cache; its loads and refreshes run in fibers of the current scope, and it listens to the
 * bus until the scope closes. Expiry and early refresh read the `Clock` and the `Random` of the context it is
 * built in (`TestClock` and `TestRandom` drive them in tests). Fails with `IllegalArgumentException` for no
 * tiers, or a duration that is not positive, or a β that is not a positive number.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K, A, E = never, R = never>(
  options: Options<K, A, E, R>
) => Effect.Effect<LoadingCache<K, A, E>, Cause.IllegalArgumentException, Scope.Scope | R> = Internal.make

/**
 * Options of `cachedFunction`: the freshness options (but tags: a memoised function has no `invalidateTag`), a
 * name, and the tiers (default: one in-memory `LruCache` of `capacity` entries).
 *
 * @since 0.1.0
 * @category models
 */
export type FunctionOptions<K, A> = Omit<FreshnessOptions<K, A>, "tags"> & {
  /** The name its metrics are tagged with. Default: `"function"`. */
  readonly name?: string
  /** The tiers, nearest first. Default: an `LruCache` of `capacity` entries. */
  readonly tiers?: ReadonlyArray<Cache<K, Entry<A>, unknown> | Tier<K, Entry<A>>>
  /** The capacity of the default in-memory tier. Default: 10,000. */
  readonly capacity?: number
}

/**
 * Memoises an effectful function by key, as `Effect.cachedFunction` does, with this library's tiers and
 * freshness: concurrent calls share one evaluation (and are batched into concurrent ones), values live for
 * `timeToLive`, failures are not cached.
 *
 * ```ts
 * const price = yield* LoadingCache.cachedFunction((sku: string) => fetchPrice(sku), { timeToLive: "1 minute" })
 * const p = yield* price("sku-1")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const cachedFunction: <K, A, E, R>(
  f: (key: K) => Effect.Effect<A, E, R>,
  options: FunctionOptions<K, A>
) => Effect.Effect<(key: K) => Effect.Effect<A, E | LoadTimeout>, Cause.IllegalArgumentException, Scope.Scope | R> =
  Internal.cachedFunction
