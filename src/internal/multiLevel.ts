/**
 * The multi-level core shared by `MultiLevelCache` and `CachedStore`: tiers in order behind their guards, the
 * read path (nearest tier, then one batched load through the farther tiers and the loader, back-filling what
 * it finds), and the write primitives that keep the tiers in step through the write protocol.
 *
 * How a change reaches the tiers (`store`, `drop`): the key changes in the protocol (loads let go of it,
 * writes in progress are overtaken), the farther tiers are written farthest first, the key changes again (a
 * load that read a farther tier just before it was written must not fill the nearest tier), then the nearest
 * tier. A write registered before its store call (a `Pending`) that was overtaken meanwhile puts nothing older
 * anywhere: a versioned farther tier still gets its value (the tier refuses it if it is older), every other
 * tier drops the key. A tier that is not versioned is written, then checked: if the write was overtaken while
 * its value was on the way, the key is dropped there — the overtaking change marks it before it writes or
 * drops the key itself, so whatever the interleaving, nothing older stays. Back-fills are checked the same
 * way: a load let go of while it was filling a tier drops what it put there.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Clock from "effect/Clock"
import type * as Scope from "effect/Scope"
import type { Cache, SetOptions } from "../Cache.js"
import { CacheMiss } from "../Cache.js"
import * as CacheMetrics from "../CacheMetrics.js"
import type * as MultiLevelCache from "../MultiLevelCache.js"
import type { Tier } from "../MultiLevelCache.js"
import { Answer } from "./answer.js"
import * as BatchedFlight from "./batchedFlight.js"
import { GuardedTier, makeBreaker, type Refresh } from "./guardedTier.js"
import { attributeNames, span, spanNames } from "./spans.js"
import { notFound, syncReaderOf } from "./syncRead.js"
import { validateTimeToLive } from "./options.js"
import { type Change, type Pending, WriteProtocol } from "./writeProtocol.js"

export type { Pending } from "./writeProtocol.js"

/** A tier with its guard options. */
export type TierOptions<K, V> = Tier<K, V>

/** What a load is told besides its keys. */
export interface LoadContext<K, V> {
  /** Values the farther tiers hold for some of the keys but that may not answer a read (see `usable`). */
  readonly stale: ReadonlyMap<K, V>
  /** Whether a key is still the load's: false once a change of it let go of the load. */
  readonly isCurrent: (key: K) => boolean
}

/** What the core is built from: `MultiLevelCache`'s options, and what a layer above it needs. */
export interface Options<K, V, E, R> extends Omit<MultiLevelCache.Options<K, V, E, R>, "load"> {
  /** Loads the keys no tier has (or has a usable value of); keys it does not return do not exist. */
  readonly load: (keys: ReadonlyArray<K>, context: LoadContext<K, V>) => Effect.Effect<ReadonlyMap<K, V>, E, R>
  /** Keys whose values were brought back in step in a farther tier after it missed their writes. */
  readonly onRepaired?: (keys: ReadonlyArray<K>) => Effect.Effect<void>
  /**
   * Whether a value a farther tier holds may answer a read of `key`; one that may not (a stale entry of a
   * loading cache) is a miss there, handed to the load as `stale`. Default: every value may.
   */
  readonly usable?: (key: K, value: V) => boolean
  /**
   * How many milliseconds a value read from a farther tier or loaded is stored for in the tiers it is
   * back-filled into (0 or less: not stored). Default: each tier's own time-to-live.
   */
  readonly timeToLiveOf?: (value: V) => number
}

/** The core: reads, and the write primitives the public modules compose. */
export interface MultiLevel<K, V, E> {
  readonly name: string
  readonly metrics: CacheMetrics.CacheMetrics
  readonly protocol: WriteProtocol<K>
  get(key: K): Effect.Effect<V, CacheMiss | E>
  getOption(key: K): Effect.Effect<Option.Option<V>, E>
  getMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, V>, E>
  /** Stores what the store now holds in every tier; `write` is the write's own operation, if registered. */
  store(entries: ReadonlyArray<readonly [K, V]>, options?: SetOptions, write?: Pending<K>): Effect.Effect<void>
  /** Drops `keys` from every tier (a delete, an invalidation, a write whose outcome is unknown). */
  drop(keys: Change<K>, write?: Pending<K>): Effect.Effect<void>
  /**
   * Drops `keys` from the nearest tier only: a change made elsewhere, which updated the farther tiers itself —
   * or could not (`fartherStale`): then they are dirty here too, misses until repaired from the store.
   */
  dropNearest(keys: Change<K>, fartherStale: boolean): Effect.Effect<void>
  /** Whether a farther tier may hold an older value of `key` (a write missed it and it is not repaired yet). */
  fartherStale(key: K): boolean
  readonly breakers: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
  readonly size: Effect.Effect<number>
  /** The nearest tier's value of `key`, when it may answer it (it missed no write of it); `None` else. */
  nearest(key: K): Effect.Effect<Option.Option<V>>
  /** The nearest tier's values of `keys` it may answer. */
  nearestMany(keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>>
  /** The same, synchronously: present when the nearest tier is in memory, without timeout or breaker. */
  readonly nearestSync: ((key: K) => V | typeof notFound) | undefined
  /** Loads `key` through the farther tiers and the loader, shared and batched; the nearest is not read. */
  load(key: K): Effect.Effect<Option.Option<V>, E>
  /** Loads `keys` the same way. */
  loadMany(keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, V>, E>
  /** Stores what a load read into every tier, skipping the keys that are no longer current (as a back-fill). */
  backfill(entries: ReadonlyArray<readonly [K, V]>, isCurrent: (key: K) => boolean): Effect.Effect<void>
}

const isTierOptions = <K, V>(tier: Cache<K, V, unknown> | TierOptions<K, V>): tier is TierOptions<K, V> =>
  "cache" in tier

const isCacheMiss = (error: unknown): error is CacheMiss => error instanceof CacheMiss

const dropFrom = <K, V>(cache: Cache<K, V, unknown>, keys: Change<K>): Effect.Effect<void, unknown> =>
  keys === "all" ? cache.invalidateAll : Effect.forEach(keys, (key) => cache.invalidate(key), { discard: true })

/**
 * The tiers in order behind their guards, and how a change reaches them: the write primitives of the module's
 * doc, and back-fills. Every method follows the write protocol.
 */
class TierChain<K, V> {
  readonly nearest: GuardedTier<K, V>
  /** Every tier but the nearest, farthest first. */
  readonly farther: ReadonlyArray<GuardedTier<K, V>>

  constructor(
    readonly tiers: ReadonlyArray<GuardedTier<K, V>>,
    readonly protocol: WriteProtocol<K>,
    private readonly timeToLiveOf: ((value: V) => number) | undefined
  ) {
    this.nearest = tiers[0]!
    this.farther = tiers.slice(1).reverse()
  }

  /** Writes back-filled entries to `cache`: with their own time-to-live when the values say it. */
  private setMany(cache: Cache<K, V, unknown>, entries: ReadonlyArray<readonly [K, V]>): Effect.Effect<void, unknown> {
    const timeToLiveOf = this.timeToLiveOf
    if (timeToLiveOf === undefined) return cache.setMany(entries)
    const byTimeToLive = new Map<number, Array<readonly [K, V]>>()
    for (const entry of entries) {
      const millis = timeToLiveOf(entry[1])
      if (millis <= 0) continue
      const group = byTimeToLive.get(millis)
      if (group === undefined) byTimeToLive.set(millis, [entry])
      else group.push(entry)
    }
    return Effect.forEach(
      byTimeToLive,
      ([millis, group]) => cache.setMany(group, { timeToLive: Duration.millis(millis) }),
      { discard: true }
    )
  }

  /**
   * Stores `entries` in the tier, skipping keys a change has let go of, then drops there the keys let go of
   * while it was being written (a tier that is not versioned cannot refuse them by itself).
   */
  backfillTier(tier: GuardedTier<K, V>, entries: ReadonlyArray<readonly [K, V]>, isCurrent: (key: K) => boolean) {
    return Effect.suspend(() => {
      // Checked and ticked in one step: these entries are newer than every write detached before the tick.
      const current = entries.filter(([key]) => isCurrent(key))
      if (current.length === 0) return Effect.void
      const write = tier.backfill(current.map(([key]) => key), this.setMany(tier.cache, current), this.protocol.tick())
      if (tier.cache.versioned === true) return write
      return Effect.zipRight(
        write,
        Effect.suspend(() => {
          const overtaken = current.filter(([key]) => !isCurrent(key)).map(([key]) => key)
          return overtaken.length === 0 ? Effect.void : tier.write(overtaken, dropFrom(tier.cache, overtaken), this.protocol.tick())
        })
      )
    })
  }

  /** Stores `entries` in every tier above level `below` (nearest first). */
  backfill(below: number, entries: ReadonlyArray<readonly [K, V]>, isCurrent: (key: K) => boolean): Effect.Effect<void> {
    // Chained by hand: one tier above (an L2 hit) is the common case, and `forEach` costs several steps more.
    let all = this.backfillTier(this.tiers[0]!, entries, isCurrent)
    for (let level = 1; level < below; level++) {
      const tier = this.tiers[level]!
      all = Effect.zipRight(all, this.backfillTier(tier, entries, isCurrent))
    }
    return all
  }

  /**
   * Applies a change to the farther tiers (farthest first), then to the nearest, with the key changing in the
   * protocol before and in between. `asOf` is the change's tick, taken at its first step; a write overtaken
   * before it has none (its value may be older than the write that overtook it: it clears no dirty mark).
   */
  private everyTier(
    keys: Change<K>,
    write: Pending<K> | undefined,
    asOf: number | undefined,
    far: (tier: GuardedTier<K, V>) => Effect.Effect<void, unknown>,
    near: Effect.Effect<void>
  ): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.protocol.change(keys, write)
      return Effect.forEach(this.farther, (tier) => Effect.suspend(() => tier.write(keys, far(tier), asOf)), { discard: true })
    }).pipe(
      Effect.zipRight(Effect.sync(() => this.protocol.change(keys, write))),
      Effect.zipRight(near)
    )
  }

  /** Stores what the store now holds in every tier; `write` is the write's own operation, if registered. */
  store(entries: ReadonlyArray<readonly [K, V]>, options: SetOptions | undefined, write: Pending<K> | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (entries.length === 0) return Effect.void
      const keys = entries.map(([key]) => key)
      const { nearest } = this
      const overtaken = () => write?.overtaken === true
      const drop = (tier: GuardedTier<K, V>) => dropFrom(tier.cache, keys)
      return this.everyTier(
        keys,
        write,
        overtaken() ? undefined : this.protocol.tick(),
        // Overtaken: a versioned tier decides by version; another must not keep this value — also when the
        // write is overtaken while its value is on the way there (written, then checked, as in the nearest).
        (tier) =>
          tier.cache.versioned === true
            ? tier.cache.setMany(entries, options)
            : overtaken()
            ? drop(tier)
            : Effect.zipRight(tier.cache.setMany(entries, options), Effect.suspend(() => (overtaken() ? drop(tier) : Effect.void))),
        Effect.suspend(() => {
          if (overtaken()) return nearest.write(keys, drop(nearest), undefined)
          // Written, then checked: an overtaking change marked this write before it dropped the key itself.
          return Effect.zipRight(
            nearest.write(keys, nearest.cache.setMany(entries, options), this.protocol.tick()),
            Effect.suspend(() => (overtaken() ? nearest.write(keys, drop(nearest), undefined) : Effect.void))
          )
        })
      )
    })
  }

  /** Drops `keys` from every tier. Dropping is right whatever the order of writes: it always has a tick. */
  drop(keys: Change<K>, write: Pending<K> | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      const asOf = this.protocol.tick()
      return this.everyTier(keys, write, asOf, (tier) => dropFrom(tier.cache, keys), this.nearest.write(keys, dropFrom(this.nearest.cache, keys), asOf))
    })
  }

  /** Drops `keys` from the nearest tier only (see `MultiLevel.dropNearest`). */
  dropNearest(keys: Change<K>, fartherStale: boolean): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.protocol.change(keys)
      if (fartherStale && keys !== "all") for (const tier of this.farther) tier.markStale(keys)
      return this.nearest.write(keys, dropFrom(this.nearest.cache, keys), this.protocol.tick())
    })
  }

  fartherStale(key: K): boolean {
    return this.farther.some((tier) => tier.isDirty && tier.isDirtyKey(key))
  }

  /** Whether the nearest tier may answer `key` (it did not miss a write of it). */
  fromNearest(key: K): boolean {
    return !this.nearest.isDirty || !this.nearest.isDirtyKey(key)
  }
}

/** A repair's read of the store: its keys registered first, so that the keys changed meanwhile are skipped. */
const refresher = <K, V, E>(protocol: WriteProtocol<K>, load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, V>, E>) =>
  (keys: ReadonlyArray<K>): Effect.Effect<Refresh<K, V>, E> =>
    Effect.suspend(() => {
      const started = keys.map((key) => protocol.begin(key))
      const byKey = new Map(started.map((operation) => [operation.key, operation]))
      const done = () => started.forEach((operation) => protocol.end(operation))
      return load(keys).pipe(
        Effect.onError(() => Effect.sync(done)),
        Effect.map((current) => ({ current, isCurrent: (key: K) => byKey.get(key)?.overtaken !== true, done }))
      )
    })

const noValues: ReadonlyMap<any, never> = new Map<any, never>()

/** The values of `read` that may answer a read; the others are put in `stale`. */
const usableOf = <K, V>(read: ReadonlyMap<K, V>, usable: (key: K, value: V) => boolean, stale: Map<K, V>) => {
  const hits = new Map<K, V>()
  for (const [key, value] of read) {
    if (usable(key, value)) hits.set(key, value)
    else stale.set(key, value)
  }
  return hits
}

/** What a batch of keys that missed the nearest tier resolves with: the next tiers in turn, then the loader. */
const resolver = <K, V, E, R>(
  chain: TierChain<K, V>,
  load: Options<K, V, E, R>["load"],
  metrics: CacheMetrics.CacheMetrics,
  usable: ((key: K, value: V) => boolean) | undefined,
  loader: Loader
) =>
  (keys: ReadonlyArray<K>, isCurrent: (key: K) => boolean): Effect.Effect<ReadonlyMap<K, V>, E, R> =>
    // Steps chained by hand rather than a generator: this runs on every miss, and each step counts on an L2 hit.
    Effect.suspend(() => {
      const { tiers } = chain
      const found = new Map<K, V>()
      // Created by the first farther value that may not answer (only with `usable`).
      let stale: Map<K, V> | undefined
      const fromLoader = (missing: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>, E, R> => {
        metrics.unsafeHit(keys.length - missing.length)
        if (missing.length === 0) return Effect.succeed(found)
        metrics.unsafeMiss(missing.length)
        return Effect.flatMap(loader.observe(load(missing, { stale: stale ?? noValues, isCurrent }), missing), (loaded) => {
          for (const [key, value] of loaded) found.set(key, value)
          return Effect.as(chain.backfill(tiers.length, [...loaded], isCurrent), found)
        })
      }
      const fromTier = (level: number, missing: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>, E, R> => {
        if (level >= tiers.length || missing.length === 0) return fromLoader(missing)
        return Effect.flatMap(tiers[level]!.readMany(missing), (read) => {
          const hits = usable === undefined ? read : usableOf(read, usable, stale ??= new Map())
          if (hits.size === 0) return fromTier(level + 1, missing)
          for (const [key, value] of hits) found.set(key, value)
          const rest = missing.filter((key) => !hits.has(key))
          return Effect.zipRight(chain.backfill(level, [...hits], isCurrent), fromTier(level + 1, rest))
        })
      }
      return fromTier(1, keys)
    })

/** Observes the source's calls: the `cache.load` span and `cache_tier_duration_ms{tier="loader"}`. */
class Loader {
  private readonly attributes: Record<string, unknown>
  constructor(private readonly metrics: CacheMetrics.TierMetrics, private readonly clock: Clock.Clock) {
    this.attributes = { [attributeNames.cache]: metrics.labels.cache }
  }

  observe<A, E, R>(load: Effect.Effect<A, E, R>, keys: ReadonlyArray<unknown>): Effect.Effect<A, E, R> {
    const traced = span(load, spanNames.load, { ...this.attributes, [attributeNames.batchSize]: keys.length }, keys)
    if (!this.metrics.enabled) return traced
    return Effect.suspend(() => {
      const start = this.clock.unsafeCurrentTimeNanos()
      const done = (outcome: "ok" | "error") =>
        this.metrics.unsafeDuration("load", outcome, Number(this.clock.unsafeCurrentTimeNanos() - start) / 1e6)
      return Effect.onExit(traced, (exit) =>
        Effect.sync(() => {
          // An interrupted load says nothing of the source.
          if (exit._tag === "Success") done("ok")
          else if (!Cause.isInterruptedOnly(exit.cause)) done("error")
        }))
    })
  }
}

/** The read path: the nearest tier, then the batched flight below it. */
const readPath = <K, V, E>(
  name: string,
  chain: TierChain<K, V>,
  flight: BatchedFlight.BatchedFlight<K, V, E>,
  metrics: CacheMetrics.CacheMetrics
) => {
  const { nearest } = chain
  const getOption = (key: K): Effect.Effect<Option.Option<V>, E> =>
    Effect.flatMap(
      nearest.read(nearest.cache.getOption(key), Option.none()),
      (hit) => (Option.isSome(hit) && chain.fromNearest(key) ? Effect.succeed(hit) : flight.get(key))
    )
  const getMany = (keys: Iterable<K>): Effect.Effect<ReadonlyMap<K, V>, E> =>
    Effect.gen(function*() {
      const asked = Array.from(keys)
      const near = yield* nearest.readMany(asked)
      const missing = asked.filter((key) => !near.has(key))
      if (missing.length === 0) return near
      const far = yield* flight.getMany(missing)
      const all = new Map(near)
      for (const [key, value] of far) all.set(key, value)
      return all
    })
  const miss = (key: K) => Effect.fail(new CacheMiss({ key, cache: name }))
  const value = (key: K) => (found: Option.Option<V>) => Option.isSome(found) ? Effect.succeed(found.value) : miss(key)
  const load = (key: K) => Effect.flatMap(flight.get(key), value(key))
  /**
   * The fast path, for a nearest tier without timeout or breaker that reads synchronously (an in-memory L1): a
   * hit costs that tier's lookup and one `Effect.succeed`; a miss builds no `CacheMiss` on its way to the load.
   */
  const plainNearest = nearest.timeout === undefined && nearest.breaker === undefined
  const plainRead = plainNearest ? syncReaderOf(nearest.cache) : undefined
  if (plainRead !== undefined) {
    // One read in `nearest.fastPathPeriod` is timed, counted down here (see there).
    const period = nearest.fastPathPeriod
    let countdown = period
    const timed = (key: K): V | typeof notFound => {
      countdown = period
      return nearest.timedRead(plainRead, key, notFound)
    }
    // One primitive per get, as the in-memory tier's own (see `Answer`): a hit costs what that tier's does.
    const answer = (key: K): Effect.Effect<V, CacheMiss | E> => {
      if (chain.fromNearest(key)) {
        const hit = --countdown > 0 ? plainRead(key) : timed(key)
        if (hit !== notFound) return Effect.succeed(hit)
      }
      return load(key)
    }
    return {
      get: (key: K): Effect.Effect<V, CacheMiss | E> => new Answer(answer, key),
      getOption: (key: K): Effect.Effect<Option.Option<V>, E> =>
        Effect.suspend(() => {
          if (chain.fromNearest(key)) {
            const hit = --countdown > 0 ? plainRead(key) : timed(key)
            if (hit !== notFound) return Effect.succeed(Option.some(hit))
          }
          return flight.get(key)
        }),
      getMany
    }
  }
  /** Another plain nearest tier: its own `get` under one error handler; any failure of it sends the key on. */
  const get = (key: K): Effect.Effect<V, CacheMiss | E> =>
    plainNearest && chain.fromNearest(key)
      ? Effect.catchAll(nearest.cache.get(key), (error) => {
        if (!isCacheMiss(error)) metrics.unsafeError()
        return load(key)
      })
      : Effect.flatMap(getOption(key), value(key))
  return { get, getOption, getMany }
}

/** Builds the guard of each tier, validating its options. */
const guardTiers = <K, V>(
  options: Options<K, V, unknown, unknown>,
  parts: {
    readonly protocol: WriteProtocol<K>
    readonly metrics: CacheMetrics.CacheMetrics
    readonly refresh: (keys: ReadonlyArray<K>) => Effect.Effect<Refresh<K, V>, unknown>
    readonly onRepaired: (keys: ReadonlyArray<K>) => Effect.Effect<void>
  }
) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    const tiers: Array<GuardedTier<K, V>> = []
    for (const tier of options.tiers) {
      const level = tiers.length
      const { breaker, cache, timeout } = isTierOptions(tier)
        ? tier
        : { cache: tier, timeout: undefined, breaker: undefined }
      const timeoutMillis = timeout === undefined ? undefined : yield* validateTimeToLive(timeout, options.name, "timeout")
      const cooldownMillis = yield* validateTimeToLive(breaker?.cooldown ?? "5 seconds", options.name, "breaker cooldown")
      tiers.push(
        new GuardedTier(
          cache,
          timeoutMillis === undefined ? undefined : Duration.millis(timeoutMillis),
          makeBreaker(breaker, cooldownMillis),
          clock,
          parts.metrics,
          scope,
          parts.refresh,
          parts.onRepaired,
          parts.protocol,
          CacheMetrics.tier({ cache: options.name, tier: `l${level + 1}` }, options.metrics !== false),
          level === 0
        )
      )
    }
    return tiers
  })

/**
 * Builds the core; its loads and repairs run in fibers of the current scope. Fails with
 * `IllegalArgumentException` for no tiers, or a timeout or cooldown that is not a positive duration.
 */
export const make = <K, V, E, R>(
  options: Options<K, V, E, R>
): Effect.Effect<MultiLevel<K, V, E>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    const name = options.name
    if (options.tiers.length === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": at least one tier is needed`)
    }
    const context = yield* Effect.context<R>()
    const clock = yield* Effect.clock
    const labels = { cache: name, tier: "multilevel" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const protocol = new WriteProtocol<K>()
    const load = (keys: ReadonlyArray<K>) =>
      Effect.provide(options.load(keys, { stale: new Map(), isCurrent: () => true }), context)
    const chain = new TierChain(
      yield* guardTiers(options, {
        protocol,
        metrics,
        refresh: refresher(protocol, load),
        onRepaired: options.onRepaired ?? (() => Effect.void)
      }),
      protocol,
      options.timeToLiveOf
    )
    const flight = BatchedFlight.make<K, V, E, R>(
      {
        resolve: resolver(
          chain,
          options.load,
          metrics,
          options.usable,
          new Loader(CacheMetrics.tier({ cache: name, tier: "loader" }, options.metrics !== false), clock)
        ),
        metrics,
        ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize })
      },
      { scope: yield* Effect.scope, clock, context }
    )
    // Loads let go of a key as soon as it changes.
    protocol.follow((change) => {
      if (change === "all") flight.detachAll()
      else for (const key of change) flight.detach(key)
    })
    return {
      name,
      metrics,
      protocol,
      ...readPath(name, chain, flight, metrics),
      store: (entries, setOptions, write) => chain.store(entries, setOptions, write),
      drop: (keys, write) => chain.drop(keys, write),
      dropNearest: (keys, fartherStale) => chain.dropNearest(keys, fartherStale),
      fartherStale: (key) => chain.fartherStale(key),
      breakers: Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        return chain.tiers.map((tier) => tier.breaker?.state(now) ?? "closed")
      }),
      size: chain.nearest.read(chain.nearest.cache.size, 0),
      nearest: (key) =>
        Effect.suspend(() =>
          chain.fromNearest(key) ? chain.nearest.read(chain.nearest.cache.getOption(key), Option.none()) : Effect.succeedNone
        ),
      nearestMany: (keys) => chain.nearest.readMany(keys),
      nearestSync: nearestSyncOf(chain),
      load: flight.get,
      loadMany: flight.getMany,
      backfill: (entries, isCurrent) => chain.backfill(chain.tiers.length, entries, isCurrent)
    }
  })

/** The synchronous read of the nearest tier, for a plain in-memory one, respecting its dirty marks. */
const nearestSyncOf = <K, V>(chain: TierChain<K, V>): ((key: K) => V | typeof notFound) | undefined => {
  const { nearest } = chain
  const plain = nearest.timeout === undefined && nearest.breaker === undefined ? syncReaderOf(nearest.cache) : undefined
  if (plain === undefined) return undefined
  // One read in `nearest.fastPathPeriod` is timed, counted down here (see there).
  const period = nearest.fastPathPeriod
  let countdown = period
  const timed = (key: K): V | typeof notFound => {
    countdown = period
    return nearest.timedRead(plain, key, notFound)
  }
  return (key) => (chain.fromNearest(key) ? (--countdown > 0 ? plain(key) : timed(key)) : notFound)
}
