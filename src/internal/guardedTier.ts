/**
 * One tier of a `MultiLevelCache`, called fail-open: a bounded call, a circuit breaker, and the keys whose
 * writes did not reach the tier ("dirty" keys), repaired there once it answers again.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Scope from "effect/Scope"
import type { Cache } from "../Cache.js"
import type { CacheMetrics, TierMetrics, TierOperation } from "../CacheMetrics.js"
import { CircuitBreaker } from "./circuitBreaker.js"
import { bounded, currentDeadline, honours, Watchdog } from "./deadline.js"
import { attributeNames, span, spanNames } from "./spans.js"
import type { WriteProtocol } from "./writeProtocol.js"

/** The most dirty keys remembered one by one; past it, the whole tier is invalidated on recovery. */
const maxDirtyKeys = 10_000

/** The most dirty keys repaired in one go (one load, one write). */
const repairBatch = 1_000

/**
 * The nearest tier times one call in this many: an in-memory read takes about a hundred nanoseconds, and a
 * timed one (two clock readings, a histogram update) about three hundred more. One in 64 still cost 6 % of an
 * L1 hit, one in 256 costs about 1 % (measured with `npm run bench`, "Metrics on the hit path"). Farther tiers
 * time every call.
 */
export const nearestSampling = 256

/** Whether a read found something. */
const found = (value: unknown): boolean =>
  value === undefined ? false : typeof value === "object" && value !== null
  ? ("size" in value ? (value as ReadonlyMap<unknown, unknown>).size > 0 : (value as { _tag?: string })._tag !== "None")
  : true

/**
 * What a repair needs from the cache above the tier: the current values of some keys, read from the store,
 * and whether each key is still current (not written or invalidated since the read began). `done` ends the
 * watch on the keys.
 */
export interface Refresh<K, V> {
  readonly current: ReadonlyMap<K, V>
  readonly isCurrent: (key: K) => boolean
  readonly done: () => void
}

/**
 * Mutable by design: the breaker and the dirty keys change with every call.
 *
 * A failed or skipped write leaves the tier holding what it held before, which may be older than the store:
 * the key is remembered as dirty. Dirty keys are misses on reads from this tier, and when a call succeeds
 * again they are repaired in the background: `refresh` reads their current values from the store, which are
 * stored in the tier (and the keys the store no longer has are invalidated there); then they are forgotten.
 * A successful write of a key forgets it too — but only a write whose value is known to be at least as new
 * as the one that was missed. The cache above the tier orders its writes with ticks: a write is "as of" the
 * tick at which it detached its keys (after the store applied it), a back-fill as of the tick at which its
 * entries were checked to be current, a repair as of the tick its store read began; a mark records the tick
 * of the write that missed. A write that was overtaken by another has no tick (`undefined`): it never clears
 * a mark. A back-fill that misses the tier marks nothing: it only carried what the store has.
 */
export class GuardedTier<K, V> {
  /** Each dirty key with the tick of the write that missed. */
  private readonly dirty = new Map<K, number>()
  /** When set, every key is dirty since that tick. */
  private dirtyAllSince: number | undefined = undefined
  private replaying = false
  /** Bounds the calls when there is a timeout; each call runs in its caller's fiber if the tier honours that. */
  private readonly watchdog: Watchdog | undefined
  private readonly callsInFiber: boolean
  /** Guarded calls until the next timed one (see `nearestSampling`; the fast path counts its own). */
  private countdown: number
  /** The span attributes of this tier's calls; `undefined` for the nearest tier, which opens no spans. */
  private readonly spanAttributes: Record<string, unknown> | undefined

  constructor(
    readonly cache: Cache<K, V, unknown>,
    readonly timeout: Duration.Duration | undefined,
    readonly breaker: CircuitBreaker | undefined,
    private readonly clock: Clock.Clock,
    private readonly metrics: CacheMetrics,
    private readonly scope: Scope.Scope,
    private readonly refresh: (keys: ReadonlyArray<K>) => Effect.Effect<Refresh<K, V>, unknown>,
    private readonly onRepaired: (keys: ReadonlyArray<K>) => Effect.Effect<void>,
    /** The write protocol of the cache above: its ticks order writes, back-fills and repairs (see above). */
    private readonly protocol: WriteProtocol<K>,
    /** Durations and breaker state, labelled with the cache above and this tier's position. */
    readonly tierMetrics: TierMetrics,
    /** Whether this is the nearest tier (timed one call in `nearestSampling`, no spans). */
    readonly isNearest: boolean
  ) {
    this.countdown = isNearest ? nearestSampling : 1
    this.spanAttributes = isNearest ? undefined : {
      [attributeNames.cache]: tierMetrics.labels.cache,
      [attributeNames.tier]: tierMetrics.labels.tier
    }
    this.watchdog = timeout === undefined ? undefined : new Watchdog(
      clock,
      scope,
      Duration.toMillis(timeout),
      () => `tier "${cache.name}" took longer than ${Duration.format(timeout)}`
    )
    this.callsInFiber = !honours(cache)
  }

  /** The next tick of the cache above. */
  private nextTick(): number {
    return this.protocol.tick()
  }

  /**
   * Marks `keys` dirty here as of now: a write made elsewhere missed this tier (another instance said so), so
   * what it holds for them may be older than the store. They are misses on reads here until repaired.
   */
  markStale(keys: ReadonlyArray<K>): void {
    this.markDirty(keys, this.nextTick())
  }

  /** Whether some keys of this tier may be stale. */
  get isDirty(): boolean {
    return this.dirtyAllSince !== undefined || this.dirty.size > 0
  }

  /** Whether `key` may be stale in this tier. */
  isDirtyKey(key: K): boolean {
    return this.dirtyAllSince !== undefined || this.dirty.has(key)
  }

  /** Runs a read (of `keys`, for its span); a failure, a timeout or an open breaker yields `fallback`. */
  read<A>(call: Effect.Effect<A, unknown>, fallback: A, keys?: ReadonlyArray<K>): Effect.Effect<A> {
    return this.attempt(call, fallback, undefined, undefined, true, true, keys)
  }

  /**
   * Whether to time this call: every call of a farther tier, one in `nearestSampling` of the nearest. Off
   * with metrics.
   */
  private timesNext(): boolean {
    if (!this.tierMetrics.enabled || --this.countdown > 0) return false
    this.countdown = this.isNearest ? nearestSampling : 1
    return true
  }

  /** Records a timed call that began at `start` (the clock's nanoseconds). */
  private recordDuration(operation: TierOperation, outcome: "hit" | "miss" | "ok" | "error", start: bigint): void {
    this.tierMetrics.unsafeDuration(operation, outcome, Number(this.clock.unsafeCurrentTimeNanos() - start) / 1e6)
  }

  /**
   * How many reads of the nearest tier's fast path (the synchronous read, which does not go through `attempt`)
   * go by per timed one: `nearestSampling`, or with metrics off `2 ** 30` (practically none, and the caller's
   * countdown needs no check of its own). The caller counts them down in a local of its own closure and calls
   * `timedRead` when it reaches 0: a wrapper around the read that counted down here, on the guard, cost about
   * 3 % more of an L1 hit (measured with `npm run bench`, "Metrics on the hit path").
   */
  get fastPathPeriod(): number {
    return this.tierMetrics.enabled ? nearestSampling : 2 ** 30
  }

  /** `read(key)` on the nearest tier's fast path, timed (see `fastPathPeriod`). */
  timedRead<V2, Absent>(read: (key: K) => V2 | Absent, key: K, absent: Absent): V2 | Absent {
    if (!this.tierMetrics.enabled) return read(key)
    const start = this.clock.unsafeCurrentTimeNanos()
    const value = read(key)
    this.recordDuration("read", value === absent ? "miss" : "hit", start)
    return value
  }

  /**
   * `getMany` on the tier, with its dirty keys left out (their values may be stale): the keys dirty when the
   * read began as well as those dirty when it ended — a repair finishing meanwhile does not make what the read
   * saw before it current.
   */
  readMany(keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>> {
    return Effect.suspend(() => {
      const allDirtyAtStart = this.dirtyAllSince !== undefined
      const dirtyAtStart = allDirtyAtStart || this.dirty.size === 0
        ? undefined
        : new Set(keys.filter((key) => this.dirty.has(key)))
      return Effect.map(this.read(this.cache.getMany(keys), new Map<K, V>(), keys), (found) => {
        if (found.size === 0) return found
        if (allDirtyAtStart || this.dirtyAllSince !== undefined) return new Map<K, V>()
        const stale = (key: K) => this.dirty.has(key) || (dirtyAtStart !== undefined && dirtyAtStart.has(key))
        if (this.dirty.size === 0 && (dirtyAtStart === undefined || dirtyAtStart.size === 0)) return found
        let clean: Map<K, V> | undefined
        for (const key of found.keys()) {
          if (!stale(key)) continue
          clean ??= new Map(found)
          clean.delete(key)
        }
        return clean ?? found
      })
    })
  }

  /**
   * Runs a write of `keys` (`"all"` for `invalidateAll`) as of tick `asOf` (`undefined` for an overtaken
   * write); when it does not reach the tier, the keys turn dirty.
   */
  write(keys: ReadonlyArray<K> | "all", call: Effect.Effect<void, unknown>, asOf: number | undefined): Effect.Effect<void> {
    return this.attempt(call, undefined, keys, asOf, true, true)
  }

  /** Runs a back-fill of `keys` as of tick `asOf`: its success clears older marks, its failure marks nothing. */
  backfill(keys: ReadonlyArray<K>, call: Effect.Effect<void, unknown>, asOf: number): Effect.Effect<void> {
    return this.attempt(call, undefined, keys, asOf, false, true)
  }

  /**
   * The guarded call. The timeout applies to the call itself, so that it holds even inside an uninterruptible
   * region (a write-through's cache update): a tier that honours deadlines gives up its waits, another's call
   * runs in a fiber of its own, interrupted (see `deadline.ts`). Replays run without it (`bounded: false`):
   * they are background work, bounded by the backend's own command timeout.
   */
  private attempt<A>(
    call: Effect.Effect<A, unknown>,
    fallback: A,
    writes: ReadonlyArray<K> | "all" | undefined,
    asOf: number | undefined,
    failureMarksDirty: boolean,
    isBounded: boolean,
    readKeys?: ReadonlyArray<K>
  ): Effect.Effect<A> {
    return Effect.suspend(() => {
      const breaker = this.breaker
      if (breaker !== undefined && !breaker.allow(this.clock.unsafeCurrentTimeMillis())) {
        this.metrics.unsafeSkip()
        if (failureMarksDirty) this.markDirty(writes, asOf)
        return Effect.succeed(fallback)
      }
      const watchdog = isBounded ? this.watchdog : undefined
      // In the caller's fiber, the deadline is the fiber's current one for the call's waits; it is over with it.
      const deadline = watchdog !== undefined && !this.callsInFiber ? watchdog.arm() : undefined
      const bound: Effect.Effect<A, unknown> = deadline !== undefined
        ? Effect.zipRight(FiberRef.set(currentDeadline, deadline), call)
        : watchdog !== undefined
        ? bounded(call, watchdog, true)
        : call
      const operation: TierOperation = writes === undefined ? "read" : "write"
      const attributes = this.spanAttributes
      const guarded = attributes === undefined ? bound : span(
        bound,
        operation === "read" ? spanNames.tierRead : spanNames.tierWrite,
        { ...attributes, [attributeNames.batchSize]: writes === "all" ? "all" : (writes ?? readKeys)?.length ?? 1 },
        writes ?? readKeys
      )
      const start = this.timesNext() ? this.clock.unsafeCurrentTimeNanos() : undefined
      // One handler for every outcome (fewer steps than a match and an exit hook, on every L2 call).
      return Effect.uninterruptibleMask((restore) =>
        Effect.matchCauseEffect(restore(guarded), {
          onFailure: (cause) => {
            if (deadline !== undefined) deadline.done = true
            if (failureMarksDirty) this.markDirty(writes, asOf)
            // An interrupted (or dying) call says nothing about the tier: the probe is given back.
            if (Cause.isInterruptedOnly(cause) || Cause.isDie(cause)) {
              breaker?.release()
              // A typed failure beside a defect is part of the defect, as for `Effect.matchEffect`.
              return Cause.isFailure(cause) ? Effect.die(Cause.squash(cause)) : Effect.failCause(cause as Cause.Cause<never>)
            }
            this.metrics.unsafeError()
            if (start !== undefined) this.recordDuration(operation, "error", start)
            if (breaker !== undefined) {
              breaker.failure(this.clock.unsafeCurrentTimeMillis())
              if (breaker.tripped) this.tierMetrics.unsafeBreaker(true)
            }
            return Effect.succeed(fallback)
          },
          onSuccess: (value) => {
            if (deadline !== undefined) deadline.done = true
            if (start !== undefined) this.recordDuration(operation, operation === "write" ? "ok" : found(value) ? "hit" : "miss", start)
            if (breaker?.success() === true) this.tierMetrics.unsafeBreaker(false)
            if (asOf !== undefined) this.markClean(writes, asOf)
            return this.isDirty && !this.replaying ? Effect.as(this.replay, value) : Effect.succeed(value)
          }
        })
      )
    })
  }

  /** Marks `writes` dirty as of the tick of the write that missed (a fresh tick for an overtaken one). */
  private markDirty(writes: ReadonlyArray<K> | "all" | undefined, asOf: number | undefined): void {
    if (writes === undefined) return
    const mark = asOf ?? this.nextTick()
    if (writes === "all" || this.dirtyAllSince !== undefined || this.dirty.size + writes.length > maxDirtyKeys) {
      this.dirtyAllSince = Math.max(mark, this.dirtyAllSince ?? mark)
      this.dirty.clear()
      return
    }
    for (const key of writes) this.dirty.set(key, Math.max(mark, this.dirty.get(key) ?? mark))
  }

  /** Forgets the marks that `writes`, as of tick `asOf`, has made obsolete: those of older writes. */
  private markClean(writes: ReadonlyArray<K> | "all" | undefined, asOf: number): void {
    if (writes === undefined || !this.isDirty) return
    if (writes === "all") {
      if (this.dirtyAllSince !== undefined && this.dirtyAllSince < asOf) this.dirtyAllSince = undefined
      for (const [key, markedAt] of this.dirty) if (markedAt < asOf) this.dirty.delete(key)
    } else if (this.dirtyAllSince === undefined) {
      for (const key of writes) {
        const markedAt = this.dirty.get(key)
        if (markedAt !== undefined && markedAt < asOf) this.dirty.delete(key)
      }
    }
  }

  /** Repairs one batch of dirty keys; `true` when every key of it is clean afterwards. */
  private get repairOnce(): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.dirtyAllSince !== undefined) {
        return Effect.map(
          this.attempt(this.cache.invalidateAll, undefined, "all", this.nextTick(), true, false),
          () => this.dirtyAllSince === undefined
        )
      }
      const keys = Array.from(this.dirty.keys()).slice(0, repairBatch)
      if (keys.length === 0) return Effect.succeed(true)
      // The store is read outside the tier's guard: its failure is not the tier's. The repair is as of the
      // tick before the read: what it stores is at least as new as every write detached before it.
      const asOf = this.nextTick()
      return Effect.acquireUseRelease(
        this.refresh(keys),
        ({ current, isCurrent }) => {
          // A key written or invalidated since the read began has a newer value than this one: leave it dirty.
          const keep = keys.filter(isCurrent)
          const present = keep.flatMap((key) => (current.has(key) ? [[key, current.get(key)!] as const] : []))
          const gone = keep.filter((key) => !current.has(key))
          const store = Effect.zipRight(
            present.length === 0 ? Effect.void : this.cache.setMany(present),
            Effect.forEach(gone, (key) => this.cache.invalidate(key), { discard: true })
          )
          return Effect.zipRight(
            this.attempt(store, undefined, keep, asOf, true, false),
            Effect.suspend(() => {
              const repaired = keep.filter((key) => !this.dirty.has(key))
              return Effect.as(repaired.length === 0 ? Effect.void : this.onRepaired(repaired), repaired.length === keys.length)
            })
          )
        },
        ({ done }) => Effect.sync(done)
      ).pipe(Effect.orElseSucceed(() => false))
    })
  }

  /** Repairs the dirty keys in the background, batch after batch, until none is left or a batch fails. */
  private get replay(): Effect.Effect<void> {
    const loop: Effect.Effect<void> = Effect.flatMap(this.repairOnce, (progressed) =>
      progressed && this.isDirty ? loop : Effect.void)
    return Effect.suspend(() => {
      this.replaying = true
      return loop.pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("repairing a tier failed", cause)),
        Effect.ensuring(Effect.sync(() => (this.replaying = false))),
        // Forked from a write's cache update, which is uninterruptible: the repair itself must not be.
        Effect.interruptible,
        Effect.forkIn(this.scope),
        Effect.asVoid
      )
    })
  }
}

/** Builds the breaker described by a tier's options, if any. */
export const makeBreaker = (
  options: { readonly failures?: number; readonly cooldown?: Duration.DurationInput } | undefined,
  cooldownMillis: number
): CircuitBreaker | undefined =>
  options === undefined ? undefined : new CircuitBreaker(Math.max(1, options.failures ?? 5), cooldownMillis)
