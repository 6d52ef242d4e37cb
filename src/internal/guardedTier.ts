/**
 * One tier of a `MultiLevelCache`, called fail-open: a bounded call, a circuit breaker, and the keys whose
 * writes did not reach the tier ("dirty" keys), invalidated there once it answers again.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Cache } from "../Cache.js"
import type { CacheMetrics } from "../CacheMetrics.js"
import { CircuitBreaker } from "./circuitBreaker.js"

/** The most dirty keys remembered one by one; past it, the whole tier is invalidated on recovery. */
const maxDirtyKeys = 10_000

/**
 * Mutable by design: the breaker and the dirty keys change with every call.
 *
 * A failed or skipped write leaves the tier holding what it held before, which may be older than the store:
 * the key is remembered as dirty. Dirty keys are misses on reads from this tier, and when a call succeeds
 * again they are repaired in the background (then forgotten): `repair` stores their current values, read
 * from the store — or, without one, they are invalidated. A successful write of a key forgets it too —
 * but only a write that started after the key was marked: an earlier write still in flight (a breaker's probe
 * on a slow tier) carries an older value. Back-fills are not writes in this sense: one that misses the tier
 * leaves it holding whatever it held, which no write of this instance made stale.
 */
export class GuardedTier<K, V> {
  /** Each dirty key with the tick it was marked at. */
  private readonly dirty = new Map<K, number>()
  /** When set, every key is dirty since that tick. */
  private dirtyAllSince: number | undefined = undefined
  /** Ticks order marks and the starts of writes. */
  private tick = 0
  private replaying = false

  constructor(
    readonly cache: Cache<K, V, unknown>,
    readonly timeout: Duration.Duration | undefined,
    readonly breaker: CircuitBreaker | undefined,
    private readonly clock: Clock.Clock,
    private readonly metrics: CacheMetrics,
    private readonly scope: Scope.Scope,
    private readonly repair?: (keys: ReadonlyArray<K>) => Effect.Effect<void, unknown>
  ) {}

  /** Whether some keys of this tier may be stale. */
  get isDirty(): boolean {
    return this.dirtyAllSince !== undefined || this.dirty.size > 0
  }

  /** Runs a read; a failure, a timeout or an open breaker yields `fallback`. */
  read<A>(call: Effect.Effect<A, unknown>, fallback: A): Effect.Effect<A> {
    return this.attempt(call, fallback, undefined)
  }

  /** `getMany` on the tier, with its dirty keys left out (their values may be stale). */
  readMany(keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, V>> {
    return Effect.map(this.read(this.cache.getMany(keys), new Map<K, V>()), (found) => {
      if (!this.isDirty || found.size === 0) return found
      if (this.dirtyAllSince !== undefined) return new Map<K, V>()
      const clean = new Map(found)
      for (const key of this.dirty.keys()) clean.delete(key)
      return clean
    })
  }

  /** Runs a write of `keys` (`"all"` for `invalidateAll`); when it does not reach the tier, the keys turn dirty. */
  write(keys: ReadonlyArray<K> | "all", call: Effect.Effect<void, unknown>): Effect.Effect<void> {
    return this.attempt(call, undefined, keys)
  }

  /** Runs a back-fill of `keys`: its success clears their marks like a write's, its failure marks nothing. */
  backfill(keys: ReadonlyArray<K>, call: Effect.Effect<void, unknown>): Effect.Effect<void> {
    return this.attempt(call, undefined, keys, false)
  }

  private attempt<A>(
    call: Effect.Effect<A, unknown>,
    fallback: A,
    writes: ReadonlyArray<K> | "all" | undefined,
    failureMarksDirty = true
  ) {
    return Effect.suspend(() => {
      const startedAt = ++this.tick
      const breaker = this.breaker
      if (breaker !== undefined && !breaker.allow(this.clock.unsafeCurrentTimeMillis())) {
        this.metrics.unsafeSkip()
        if (failureMarksDirty) this.markDirty(writes)
        return Effect.succeed(fallback)
      }
      const bounded = this.timeout === undefined ? call : Effect.timeoutFail(call, {
        duration: this.timeout,
        onTimeout: () =>
          new Cause.TimeoutException(`tier "${this.cache.name}" took longer than ${Duration.format(this.timeout!)}`)
      })
      return Effect.matchEffect(bounded, {
        onFailure: () =>
          Effect.sync(() => {
            this.metrics.unsafeError()
            breaker?.failure(this.clock.unsafeCurrentTimeMillis())
            if (failureMarksDirty) this.markDirty(writes)
            return fallback
          }),
        onSuccess: (value) => {
          breaker?.success()
          this.markClean(writes, startedAt)
          return this.isDirty && !this.replaying ? Effect.as(this.replay, value) : Effect.succeed(value)
        }
      })
    })
  }

  private markDirty(writes: ReadonlyArray<K> | "all" | undefined): void {
    if (writes === undefined) return
    const now = ++this.tick
    if (writes === "all" || this.dirtyAllSince !== undefined || this.dirty.size + writes.length > maxDirtyKeys) {
      this.dirtyAllSince = now
      this.dirty.clear()
      return
    }
    for (const key of writes) this.dirty.set(key, now)
  }

  /** Forgets the marks that `writes`, started at tick `startedAt`, has made obsolete. */
  private markClean(writes: ReadonlyArray<K> | "all" | undefined, startedAt: number): void {
    if (writes === undefined || !this.isDirty) return
    if (writes === "all") {
      if (this.dirtyAllSince !== undefined && this.dirtyAllSince < startedAt) this.dirtyAllSince = undefined
      for (const [key, markedAt] of this.dirty) if (markedAt < startedAt) this.dirty.delete(key)
    } else if (this.dirtyAllSince === undefined) {
      for (const key of writes) {
        const markedAt = this.dirty.get(key)
        if (markedAt !== undefined && markedAt < startedAt) this.dirty.delete(key)
      }
    }
  }

  /** Invalidates the dirty keys in the background, one batch at a time, until none is left or a call fails. */
  private get replay(): Effect.Effect<void> {
    const once: Effect.Effect<boolean> = Effect.suspend(() => {
      if (this.dirtyAllSince !== undefined) {
        return Effect.map(this.write("all", this.cache.invalidateAll), () => this.dirtyAllSince === undefined)
      }
      const keys = Array.from(this.dirty.keys()).slice(0, 1000)
      if (keys.length === 0) return Effect.succeed(true)
      const repaired = this.repair === undefined
        ? Effect.forEach(keys, (key) => this.write([key], this.cache.invalidate(key)), { concurrency: 16, discard: true })
        : this.write(keys, this.repair(keys))
      return Effect.map(repaired, () => keys.every((key) => !this.dirty.has(key)))
    })
    const loop: Effect.Effect<void> = Effect.flatMap(once, (progressed) =>
      progressed && this.isDirty ? loop : Effect.void)
    return Effect.suspend(() => {
      this.replaying = true
      return loop.pipe(
        Effect.ensuring(Effect.sync(() => (this.replaying = false))),
        Effect.forkIn(this.scope),
        Effect.asVoid
      )
    })
  }
}

/** Builds the breaker described by a tier's options, if any. */
export const makeBreaker = (
  options: { readonly failures?: number; readonly cooldown?: Duration.DurationInput } | undefined
): CircuitBreaker | undefined =>
  options === undefined
    ? undefined
    : new CircuitBreaker(Math.max(1, options.failures ?? 5), Duration.toMillis(options.cooldown ?? "5 seconds"))
