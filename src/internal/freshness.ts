/**
 * Freshness over the multi-level core: its tiers hold stamped entries (`Entry`: the value, or "absent", and
 * when it stops being fresh and when it stops being servable), and this layer decides, per read, between
 * answering, answering stale and refreshing in the background, loading, and falling back to a stale value
 * when the load fails or is slow.
 *
 * Every refresh and late load goes through the core's batched flight or its back-fill, so the write protocol
 * judges it like any load: a write, invalidation or bus message of its key that comes while it runs lets go
 * of it, and it stores nothing. A stale value is only ever served, never written anywhere but where it
 * already was (a farther tier's copy back-filled above, with its own stamps).
 *
 * The states of an entry (times from the `Clock`):
 *
 *   fresh  [stored, freshUntil)     answered; past `freshUntil − δ·β·ln(rand)` one reader refreshes early
 *   stale  [freshUntil, staleUntil) answered at once and refreshed in the background (stale-while-revalidate),
 *                                   or refreshed first with the stale value as fail-safe and soft-timeout answer;
 *                                   while a fail-safe throttle holds, or a load past its soft timeout still runs,
 *                                   answered without calling the source
 *   gone   [staleUntil, …)          a miss: loaded as if never cached (the tiers expire it then too)
 *
 * A negative entry ("absent") is fresh for `notFoundTimeToLive` and never stale.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Random from "effect/Random"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { SetOptions } from "../Cache.js"
import { CacheMiss } from "../Cache.js"
import type * as CacheMetrics from "../CacheMetrics.js"
import type { Entry } from "../LoadingCache.js"
import { LoadTimeout } from "../LoadingCache.js"
import { Answer } from "./answer.js"
import * as MultiLevel from "./multiLevel.js"
import { notFound } from "./syncRead.js"
import { type Ledger, type Stamp, TagClock, tagsOf, unseen } from "./tags.js"
import type { Change, Pending } from "./writeProtocol.js"

/** The freshness options, validated, in milliseconds. */
export interface Settings<K, A> {
  readonly timeToLive: number
  readonly timeToLiveOf: ((value: A, key: K) => Duration.DurationInput | undefined) | undefined
  readonly grace: number
  readonly staleWhileRevalidate: boolean
  readonly failSafe: boolean
  readonly failSafeThrottle: number
  readonly softTimeout: number | undefined
  readonly hardTimeout: number | undefined
  readonly notFoundTimeToLive: number | undefined
  /** XFetch's β; undefined: no early refresh. */
  readonly earlyRefresh: number | undefined
  readonly jitter: number
  /** The tags of a value; undefined: entries carry none. */
  readonly tags: ((value: A) => Iterable<string>) | undefined
}

/** What the layer is built from: the core's options over values (not entries), and the settings. */
export interface Options<K, A, E, R> extends Omit<MultiLevel.Options<K, Entry<A>, E, R>, "load" | "usable" | "timeToLiveOf"> {
  readonly load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E, R>
  readonly settings: Settings<K, A>
  readonly freshness: CacheMetrics.FreshnessMetrics
  /** Where tag invalidations are ordered: the bus, or a ledger of this instance alone. */
  readonly ledger: Ledger
}

/** Options of a write into the tiers: with tags, what was known of the ledger when the write began. */
export interface WriteOptions extends SetOptions {
  readonly stamp?: Stamp
}

/** What a cached store needs of its core, plain or with freshness: reads, and the write primitives. */
export type ValueCore<K, A, E> =
  & Omit<
    MultiLevel.MultiLevel<K, A, E>,
    "nearest" | "nearestMany" | "nearestSync" | "load" | "loadMany" | "backfill" | "store"
  >
  & {
    store(entries: ReadonlyArray<readonly [K, A]>, options?: WriteOptions, write?: Pending<K>): Effect.Effect<void>
    /** What this instance knows of the tag ledger, when its entries are tagged. */
    readonly tags: TagClock | undefined
  }

/**
 * The core a cached store or a loading cache is built on, over values: reads decide by freshness, writes
 * stamp what they store.
 */
export type Core<K, A, E> = ValueCore<K, A, E> & {
  /** Refreshes `key` in the background now (one refresh per key at a time). */
  refresh(key: K): Effect.Effect<void>
}

/**
 * A bound on the XFetch exponent: `−ln(rand)` exceeds 20 with probability e^−20 (2·10^−9), so a read further
 * than `20·δ·β` from expiry skips the draw of a random number.
 */
const earlyWindow = 20

/** Builds the layer and the core under it. */
export const make = <K, A, E, R>(
  options: Options<K, A, E, R>
): Effect.Effect<Core<K, A, E | LoadTimeout>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const random = yield* Effect.random
    const scope = yield* Effect.scope
    const context = yield* Effect.context<R>()
    // Background refreshes run on the runtime the cache was built in: its clock, random and services.
    const runtime = yield* Effect.runtime<never>()
    const tags = options.settings.tags === undefined ? undefined : new TagClock(options.ledger, clock)
    const layer = new Freshness<K, A, E>(options, clock, random, scope, runtime, options.freshness, tags)
    const core = yield* MultiLevel.make<K, Entry<A>, E | LoadTimeout, never>({
      ...options,
      load: (keys, loadContext) => layer.load(keys, loadContext, (missing) => Effect.provide(options.load(missing), context)),
      usable: (key, entry) => layer.usable(key, entry),
      timeToLiveOf: (entry) => entry.staleUntil - clock.unsafeCurrentTimeMillis()
    })
    layer.attach(core)
    return layer.overValues()
  })

/** Mutable by design: the per-key state of refreshes and fail-safe throttles. */
class Freshness<K, A, E> {
  private core!: MultiLevel.MultiLevel<K, Entry<A>, E | LoadTimeout>
  /** Keys whose source failed under fail-safe: served stale without calling it until the time given. */
  private readonly throttled = new Map<K, number>()
  /** Background refreshes in flight: the `freshUntil` of the entry each replaces (a tier's copy must beat it). */
  private readonly refreshing = new Map<K, number>()
  /** Stale entries callers hold while their key loads: the fallback of a slow or failing load. */
  private readonly held = new Map<K, Entry<A>>()
  /** Keys whose load passed the soft timeout and still runs: their stale entries answer without another load. */
  private readonly late = new Map<K, Pending<K>>()

  constructor(
    private readonly options: Options<K, A, E, unknown>,
    private readonly clock: Clock.Clock,
    private readonly random: Random.Random,
    private readonly scope: Scope.Scope,
    private readonly runtime: Runtime.Runtime<never>,
    private readonly metrics: CacheMetrics.FreshnessMetrics,
    private readonly tags: TagClock | undefined
  ) {}

  attach(core: MultiLevel.MultiLevel<K, Entry<A>, E | LoadTimeout>): void {
    this.core = core
    // A change of a key ends its throttle and lets go of the stale entries held for it: what the source said
    // before no longer describes it, and a load that begins after the change must not answer with (or store)
    // what a reader held before it.
    core.protocol.follow((change) => {
      if (change === "all") {
        this.throttled.clear()
        this.held.clear()
        this.late.clear()
      } else {
        for (const key of change) {
          this.throttled.delete(key)
          this.held.delete(key)
          this.late.delete(key)
        }
      }
    })
  }

  private get settings(): Settings<K, A> {
    return this.options.settings
  }

  private now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  /** Whether the source of `key` is left alone now: a fail-safe throttle, or a load past its soft timeout. */
  private isThrottled(key: K, now: number): boolean {
    if (this.late.has(key)) return true
    const until = this.throttled.get(key)
    if (until === undefined) return false
    if (now < until) return true
    this.throttled.delete(key)
    return false
  }

  /**
   * Whether a farther tier's entry may answer: fresh, and newer than the one a refresh replaces; a stale one
   * while its key's source is throttled, or under stale-while-revalidate (the reader then refreshes it), but
   * never the load of a refresh of its key.
   */
  usable(key: K, entry: Entry<A>): boolean {
    if (entry.tags !== undefined && !this.tagsHold(entry)) return false
    const now = this.now()
    if (now >= entry.freshUntil) {
      if (!this.servable(entry, now)) return false
      return this.isThrottled(key, now) || (this.settings.staleWhileRevalidate && !this.refreshing.has(key))
    }
    const replaces = this.refreshing.get(key)
    const usable = replaces === undefined || entry.freshUntil > replaces
    if (usable && entry.absent === true) this.metrics.unsafeNegativeHit()
    return usable
  }

  /** A stale entry that may still be served at `now`: never one whose tag was invalidated since its load. */
  private servable(entry: Entry<A> | undefined, now: number): entry is Entry<A> {
    return entry !== undefined && entry.absent !== true && now < entry.staleUntil && (entry.tags === undefined || this.tagsHold(entry))
  }

  /** Whether no tag of `entry` is known to have been invalidated since its load began ("unknown" is not). */
  private tagsHold(entry: Entry<A>): boolean {
    return this.tags === undefined || this.tags.check(entry.tags!, entry.seen) === "valid"
  }

  /** The tags of `entries` whose positions are not known here, to be read from the ledger (none: empty). */
  private unknownTags(entries: Iterable<Entry<A> | undefined>): ReadonlyArray<string> {
    const tags = this.tags
    if (tags === undefined) return noTags
    let unknown: Set<string> | undefined
    for (const entry of entries) {
      if (entry?.tags === undefined || tags.check(entry.tags, entry.seen) !== "unknown") continue
      unknown ??= new Set()
      for (const tag of entry.tags) unknown.add(tag)
    }
    return unknown === undefined ? noTags : Array.from(unknown)
  }

  /** The tag fields of an entry of `value`, loaded or written with `stamp`. */
  private tagFields(value: A, stamp: Stamp | undefined): { tags?: ReadonlyArray<string>; seen?: number } {
    const tags = tagsOf(this.settings.tags, value)
    if (tags === undefined) return {}
    return { tags, seen: stamp === undefined || this.tags === undefined ? unseen : this.tags.seenOf(stamp) }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Loading: stamping, timeouts, fail-safe

  /** Stamps what a load found (and, with negative caching, what it did not) at `now`. */
  private stamp(
    keys: ReadonlyArray<K>,
    found: ReadonlyMap<K, A>,
    started: number,
    jitters: ReadonlyArray<number>,
    tagStamp: Stamp | undefined
  ) {
    const now = this.now()
    const { grace, notFoundTimeToLive, timeToLive, timeToLiveOf } = this.settings
    const loadMillis = now - started
    const entries = new Map<K, Entry<A>>()
    keys.forEach((key, i) => {
      if (found.has(key)) {
        const value = found.get(key)!
        const own = timeToLiveOf?.(value, key)
        const millis = own === undefined ? timeToLive : Duration.toMillis(own)
        if (millis <= 0) {
          // Not to be cached: answered, never stored (its time-to-live is over at once).
          entries.set(key, { value, freshUntil: now, staleUntil: now, loadMillis })
          return
        }
        const freshUntil = now + millis + (jitters[i] ?? 0)
        entries.set(key, { value, freshUntil, staleUntil: freshUntil + grace, loadMillis, ...this.tagFields(value, tagStamp) })
      } else if (notFoundTimeToLive !== undefined) {
        const until = now + notFoundTimeToLive
        entries.set(key, { absent: true, freshUntil: until, staleUntil: until, loadMillis })
      }
    })
    return entries
  }

  /**
   * The loader, timed and stamped; with jitter, one random draw per key. With tags, what is known of the tag
   * ledger is taken before the source is called (read first when nothing is known: after a start or a gap).
   */
  private timedLoad(keys: ReadonlyArray<K>, load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E>) {
    const run = Effect.suspend(() => {
      const started = this.now()
      const tagStamp = this.tags?.take()
      const { jitter } = this.settings
      const jitters = jitter > 0
        ? Effect.forEach(keys, () => Effect.map(this.random.next, (r) => Math.floor(r * jitter)))
        : Effect.succeed([])
      return Effect.flatMap(jitters, (draws) => Effect.map(load(keys), (found) => this.stamp(keys, found, started, draws, tagStamp)))
    })
    return this.tags === undefined ? run : Effect.zipRight(this.tags.ready, run)
  }

  /**
   * The core's loader: throttled keys with a servable stale entry are answered with it, the others loaded
   * within the soft and hard timeouts; a failure (or a hard timeout) with a servable stale entry for every key
   * answers them (fail-safe) and throttles their source.
   */
  load(
    keys: ReadonlyArray<K>,
    context: MultiLevel.LoadContext<K, Entry<A>>,
    load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E>
  ): Effect.Effect<ReadonlyMap<K, Entry<A>>, E | LoadTimeout> {
    const unknown = this.unknownTags(context.stale.values())
    if (unknown.length === 0) return this.loadKnown(keys, context, load)
    // A farther tier's entries stamped before this instance knew the ledger: their tags are read once, and those
    // that hold answer without calling the source.
    return Effect.flatMap(this.tags!.read(unknown), () => {
      const answered = new Map<K, Entry<A>>()
      const rest: Array<K> = []
      for (const key of keys) {
        const entry = context.stale.get(key)
        if (entry !== undefined && entry.tags !== undefined && this.usable(key, entry)) answered.set(key, entry)
        else rest.push(key)
      }
      if (rest.length === 0) return Effect.succeed(answered)
      return Effect.map(this.loadKnown(rest, context, load), (loaded) => {
        for (const [key, entry] of loaded) answered.set(key, entry)
        return answered
      })
    })
  }

  private loadKnown(
    keys: ReadonlyArray<K>,
    context: MultiLevel.LoadContext<K, Entry<A>>,
    load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E>
  ): Effect.Effect<ReadonlyMap<K, Entry<A>>, E | LoadTimeout> {
    return Effect.suspend(() => {
      const now = this.now()
      const fallback = new Map<K, Entry<A>>()
      for (const key of keys) {
        const entry = context.stale.get(key) ?? this.held.get(key)
        if (this.servable(entry, now)) fallback.set(key, entry)
      }
      const { hardTimeout, softTimeout } = this.settings
      const loaded = hardTimeout === undefined && softTimeout === undefined
        ? this.timedLoad(keys, load)
        : this.boundedLoad(keys, fallback.size === keys.length ? softTimeout : undefined, fallback, load)
      if (!this.settings.failSafe || fallback.size < keys.length) return loaded
      return Effect.catchAll(loaded, () =>
        Effect.sync(() => {
          this.activateFailSafe(keys)
          return fallback
        }))
    })
  }

  private activateFailSafe(keys: Iterable<K>): void {
    const until = this.now() + this.settings.failSafeThrottle
    for (const key of keys) {
      this.throttled.set(key, until)
      this.metrics.unsafeFailSafe()
    }
  }

  /**
   * The loader in a fiber of the cache's scope, waited for up to the soft timeout (when every key has a stale
   * entry to answer with) or the hard one. Past either the load goes on, and what it finally loads is
   * back-filled unless a change of its key came first (its keys are registered with the write protocol).
   */
  private boundedLoad(
    keys: ReadonlyArray<K>,
    soft: number | undefined,
    fallback: ReadonlyMap<K, Entry<A>>,
    load: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, A>, E>
  ): Effect.Effect<ReadonlyMap<K, Entry<A>>, E | LoadTimeout> {
    const { hardTimeout } = this.settings
    const bound = soft === undefined ? hardTimeout : hardTimeout === undefined ? soft : Math.min(soft, hardTimeout)
    if (bound === undefined) return this.timedLoad(keys, load)
    const byKey = new Map<K, Pending<K>>()
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(this, function*() {
        for (const key of keys) byKey.set(key, this.core.protocol.begin(key))
        const end = () => byKey.forEach((pending) => this.core.protocol.end(pending))
        const fiber = yield* Effect.forkIn(Effect.interruptible(this.timedLoad(keys, load)), this.scope)
        const exit = yield* Effect.exit(restore(Effect.timeoutOption(Fiber.join(fiber), Duration.millis(bound))))
        if (Exit.isFailure(exit) || Option.isSome(exit.value)) {
          end()
          if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) yield* Fiber.interrupt(fiber)
          return yield* Exit.map(exit, (done) => (done as Option.Some<ReadonlyMap<K, Entry<A>>>).value)
        }
        // Timed out: the load goes on, and back-fills what it finds unless overtaken. Interruptible (it is
        // forked from an uninterruptible region): closing the scope must not wait for a source that hangs.
        // Past the soft timeout, its keys' stale entries answer meanwhile: a slow source gets no second call.
        const softly = soft !== undefined && bound === soft
        if (softly) byKey.forEach((pending, key) => this.late.set(key, pending))
        yield* Fiber.await(fiber).pipe(
          Effect.flatMap((late) =>
            Exit.isSuccess(late)
              ? this.core.backfill([...late.value], (key) => byKey.get(key)?.overtaken !== true)
              : Effect.void
          ),
          Effect.ensuring(Effect.sync(() => {
            end()
            byKey.forEach((pending, key) => {
              if (this.late.get(key) === pending) this.late.delete(key)
            })
          })),
          Effect.interruptible,
          Effect.forkIn(this.scope)
        )
        if (softly) {
          for (const _ of keys) this.metrics.unsafeSoftTimeout()
          return fallback
        }
        for (const _ of keys) this.metrics.unsafeHardTimeout()
        return yield* new LoadTimeout({ cache: this.options.name, after: Duration.millis(bound) })
      })
    )
  }

  // ---------------------------------------------------------------------------------------------------------
  // Reading

  /** The entry to answer `key` with, after whatever its freshness calls for. */
  entry(key: K): Effect.Effect<Option.Option<Entry<A>>, E | LoadTimeout> {
    const sync = this.core.nearestSync
    if (sync !== undefined) {
      return Effect.suspend(() => {
        const found = sync(key)
        return this.decide(key, found === notFound ? undefined : found)
      })
    }
    return Effect.flatMap(this.core.nearest(key), (found) => this.decide(key, Option.getOrUndefined(found)))
  }

  /**
   * The entries to answer `keys` with, as `entry` decides for each: the nearest tier read once, the keys it
   * cannot answer loaded in one call (early refresh is left to single reads).
   */
  entries(keys: ReadonlyArray<K>): Effect.Effect<ReadonlyMap<K, Entry<A>>, E | LoadTimeout> {
    return Effect.flatMap(this.core.nearestMany(keys), (near) => {
      const unknown = this.unknownTags(near.values())
      return unknown.length === 0
        ? this.entriesFrom(keys, near)
        : Effect.zipRight(this.tags!.read(unknown), Effect.suspend(() => this.entriesFrom(keys, near)))
    })
  }

  /** `entries`, once the nearest tier was read (and the positions of its entries' tags known, if they can be). */
  private entriesFrom(keys: ReadonlyArray<K>, near: ReadonlyMap<K, Entry<A>>): Effect.Effect<ReadonlyMap<K, Entry<A>>, E | LoadTimeout> {
    const now = this.now()
    const answers = new Map<K, Entry<A>>()
    const missing: Array<K> = []
    const holding = new Map<K, Entry<A>>()
    for (const key of keys) {
      const entry = near.get(key)
      if (entry === undefined || (entry.tags !== undefined && !this.tagsHold(entry))) missing.push(key)
      else if (now < entry.freshUntil) {
        if (entry.absent === true) this.metrics.unsafeNegativeHit()
        answers.set(key, entry)
      } else if (!this.servable(entry, now)) missing.push(key)
      else if (this.answersStale(key, entry, now)) answers.set(key, entry)
      else {
        missing.push(key)
        holding.set(key, entry)
      }
    }
    if (missing.length === 0) return Effect.succeed(answers)
    for (const [key, entry] of holding) this.held.set(key, entry)
    const release = Effect.sync(() => {
      for (const [key, entry] of holding) if (this.held.get(key) === entry) this.held.delete(key)
    })
    const loaded = this.core.loadMany(missing).pipe(
      Effect.matchEffect({
        onFailure: (error) => {
          const now = this.now()
          if (!this.settings.failSafe || missing.some((key) => !this.servable(holding.get(key), now))) {
            return Effect.fail(error)
          }
          return Effect.sync(() => {
            this.activateFailSafe(missing.filter((key) => !this.isThrottled(key, now)))
            for (const [key, entry] of holding) answers.set(key, this.servedStale(entry).pipe(Option.getOrThrow))
            return answers
          })
        },
        onSuccess: (found) => {
          const gone: Array<K> = []
          for (const key of missing) {
            const entry = found.get(key)
            if (entry !== undefined) answers.set(key, this.counted(Option.some(entry), key).pipe(Option.getOrThrow))
            else if (holding.has(key)) gone.push(key)
          }
          // Gone from the source while stale copies of them are held: those must go.
          return gone.length === 0 ? Effect.succeed(answers) : Effect.as(this.core.drop(gone), answers)
        }
      }),
      Effect.ensuring(release)
    )
    return loaded
  }

  private decide(key: K, entry: Entry<A> | undefined): Effect.Effect<Option.Option<Entry<A>>, E | LoadTimeout> {
    if (entry === undefined) return this.fromLoad(key, undefined)
    if (entry.tags !== undefined && this.tags !== undefined) {
      const verdict = this.tags.check(entry.tags, entry.seen)
      // A tag invalidated since its load: gone. Stamped before the ledger was known here: its tags read once.
      if (verdict === "invalid") return this.fromLoad(key, undefined)
      if (verdict === "unknown") {
        const tags = this.tags
        return Effect.zipRight(
          tags.read(entry.tags),
          Effect.suspend(() => this.decide(key, tags.check(entry.tags!, entry.seen) === "valid" ? entry : undefined))
        )
      }
    }
    const now = this.now()
    if (now < entry.freshUntil) {
      const beta = this.settings.earlyRefresh
      if (beta !== undefined && entry.absent !== true && now >= entry.freshUntil - earlyWindow * beta * entry.loadMillis) {
        return Effect.map(this.random.next, (r) => {
          // XFetch: refresh when now − δ·β·ln(rand) ≥ expiry.
          if (now - entry.loadMillis * beta * Math.log(r) >= entry.freshUntil) this.startRefresh(key, entry)
          return Option.some(entry)
        })
      }
      if (entry.absent === true) this.metrics.unsafeNegativeHit()
      return Effect.succeed(Option.some(entry))
    }
    if (!this.servable(entry, now)) return this.fromLoad(key, undefined)
    return this.answersStale(key, entry, now) ? Effect.succeed(Option.some(entry)) : this.fromLoad(key, entry)
  }

  /**
   * Whether a read of `entry`, stale and servable, answers with it at once (counted as stale served): while its
   * source is throttled, or under stale-while-revalidate, which starts the refresh. Otherwise the read loads,
   * holding it as the fallback.
   */
  private answersStale(key: K, entry: Entry<A>, now: number): boolean {
    if (!this.isThrottled(key, now)) {
      if (!this.settings.staleWhileRevalidate) return false
      this.startRefresh(key, entry)
    }
    this.metrics.unsafeStaleServed()
    return true
  }

  private servedStale(entry: Entry<A>): Option.Option<Entry<A>> {
    this.metrics.unsafeStaleServed()
    return Option.some(entry)
  }

  /**
   * Loads `key`; a stale entry the caller holds answers a failure under fail-safe. A load that says the key is
   * gone, while a stale entry of it is held, drops that entry everywhere.
   */
  private fromLoad(key: K, stale: Entry<A> | undefined): Effect.Effect<Option.Option<Entry<A>>, E | LoadTimeout> {
    if (stale === undefined) return this.answered(key, this.core.load(key))
    return Effect.suspend(() => {
      this.held.set(key, stale)
      const release = Effect.sync(() => {
        if (this.held.get(key) === stale) this.held.delete(key)
      })
      return this.core.load(key).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            this.settings.failSafe && this.servable(stale, this.now())
              ? Effect.sync(() => {
                if (!this.isThrottled(key, this.now())) this.activateFailSafe([key])
                return this.servedStale(stale)
              })
              : Effect.fail(error),
          onSuccess: (found) =>
            Option.isNone(found) ? Effect.as(this.core.drop([key]), found) : Effect.succeed(this.counted(found, key))
        }),
        Effect.ensuring(release)
      )
    })
  }

  private answered(
    key: K,
    loading: Effect.Effect<Option.Option<Entry<A>>, E | LoadTimeout>
  ): Effect.Effect<Option.Option<Entry<A>>, E | LoadTimeout> {
    return Effect.map(loading, (found) => this.counted(found, key))
  }

  /**
   * Counts a loaded answer that is stale (a farther tier's, fail-safe or soft timeout in the batch). Under
   * stale-while-revalidate a stale answer that no throttle explains (a farther tier's) is refreshed in the
   * background, as a stale entry of the nearest tier is.
   */
  private counted(found: Option.Option<Entry<A>>, key: K): Option.Option<Entry<A>> {
    if (Option.isSome(found)) {
      const entry = found.value
      const now = this.now()
      // Stale from `freshUntil` on, as `decide` sees it.
      if (entry.absent !== true && entry.freshUntil <= now && entry.staleUntil > entry.freshUntil) {
        this.metrics.unsafeStaleServed()
        if (this.settings.staleWhileRevalidate && !this.isThrottled(key, now)) this.startRefresh(key, entry)
      }
    }
    return found
  }

  /**
   * Starts one background refresh of `key` (none if one is running): a load through the farther tiers (which
   * must hold a newer entry to answer it) and the source, shared and batched with the other loads.
   */
  startRefresh(key: K, replaces: Entry<A>, fromSource = false): void {
    if (this.refreshing.has(key)) return
    // From the source: no tier's copy may answer it, however fresh.
    this.refreshing.set(key, fromSource ? Infinity : replaces.freshUntil)
    if (this.servable(replaces, this.now())) this.held.set(key, replaces)
    this.metrics.unsafeRefreshStarted()
    const protocol = this.core.protocol
    const pending = protocol.begin(key)
    const refresh = this.core.load(key).pipe(
      Effect.matchEffect({
        onFailure: () =>
          Effect.sync(() => {
            if (this.settings.failSafe && this.servable(replaces, this.now())) this.activateFailSafe([key])
          }),
        onSuccess: (found) => {
          if (pending.overtaken) {
            this.metrics.unsafeRefreshDiscarded()
            return Effect.void
          }
          // Answered stale (fail-safe, or a soft timeout whose load goes on): the source gave nothing yet.
          const entry = Option.getOrUndefined(found)
          if (entry !== undefined && entry.absent !== true && entry.freshUntil <= this.now() && entry.staleUntil > entry.freshUntil) {
            return Effect.void
          }
          this.metrics.unsafeRefreshCompleted()
          // Gone from the source, and no negative entry to say so: the stale copies must go.
          return Option.isNone(found) ? this.core.drop([key]) : Effect.void
        }
      }),
      Effect.ensuring(Effect.sync(() => {
        protocol.end(pending)
        this.refreshing.delete(key)
        if (this.held.get(key) === replaces) this.held.delete(key)
      }))
    )
    Runtime.runFork(this.runtime)(refresh, { scope: this.scope })
  }

  // ---------------------------------------------------------------------------------------------------------
  // The core over values

  overValues(): Core<K, A, E | LoadTimeout> {
    const core = this.core
    const value = (key: K) => (found: Option.Option<Entry<A>>): Effect.Effect<A, CacheMiss> =>
      Option.isSome(found) && found.value.absent !== true
        ? Effect.succeed(found.value.value as A)
        : Effect.fail(new CacheMiss({ key, cache: this.options.name }))
    const option = (found: Option.Option<Entry<A>>): Option.Option<A> =>
      Option.isSome(found) && found.value.absent !== true ? Option.some(found.value.value as A) : Option.none()
    // The fast path, for an in-memory nearest tier: a fresh hit outside the early-refresh window is one primitive.
    const sync = core.nearestSync
    const beta = this.settings.earlyRefresh
    const getAnswer = (key: K): Effect.Effect<A, CacheMiss | E | LoadTimeout> => {
      const found = sync!(key)
      if (found === notFound) return Effect.flatMap(this.decide(key, undefined), value(key))
      if (found.absent !== true && (found.tags === undefined || this.tagsHold(found))) {
        // Fresh, and outside the early-refresh window: nothing to decide.
        const until = beta === undefined ? found.freshUntil : found.freshUntil - earlyWindow * beta * found.loadMillis
        if (this.clock.unsafeCurrentTimeMillis() < until) return Effect.succeed(found.value as A)
      }
      return Effect.flatMap(this.decide(key, found), value(key))
    }
    const stampWrite = (entries: ReadonlyArray<readonly [K, A]>, options: WriteOptions | undefined) => {
      const now = this.now()
      const { grace, timeToLive, timeToLiveOf } = this.settings
      return entries.map(([key, value]): readonly [K, Entry<A>] => {
        const own = options?.timeToLive ?? timeToLiveOf?.(value, key)
        const millis = own === undefined ? timeToLive : Duration.toMillis(own)
        // Written with no life: stored as already gone, which drops the key in every tier.
        const freshUntil = now + Math.max(0, millis)
        const stamp = options?.stamp ?? this.tags?.take()
        return [key, { value, freshUntil, staleUntil: millis <= 0 ? now : freshUntil + grace, loadMillis: 0, ...this.tagFields(value, stamp) }]
      })
    }
    return {
      name: core.name,
      metrics: core.metrics,
      protocol: core.protocol,
      get: (key) => (sync === undefined ? Effect.flatMap(this.entry(key), value(key)) : new Answer(getAnswer, key)),
      getOption: (key) => Effect.map(this.entry(key), option),
      getMany: (keys) =>
        Effect.map(this.entries(Array.from(new Set(keys))), (entries) => {
          const found = new Map<K, A>()
          for (const [key, entry] of entries) if (entry.absent !== true) found.set(key, entry.value as A)
          return found
        }),
      store: (entries, options, write) =>
        Effect.suspend(() => {
          // Grouped by how long they live (one group unless the values say otherwise); dead ones are dropped.
          const now = this.now()
          const byLife = new Map<number, Array<readonly [K, Entry<A>]>>()
          for (const entry of stampWrite(entries, options)) {
            const live = Math.max(0, entry[1].staleUntil - now)
            const group = byLife.get(live)
            if (group === undefined) byLife.set(live, [entry])
            else group.push(entry)
          }
          return Effect.forEach(byLife, ([live, group]) =>
            live === 0
              ? core.drop(group.map(([key]) => key), write)
              : core.store(group, { timeToLive: Duration.millis(live) }, write), { discard: true })
        }),
      drop: (keys: Change<K>, write) => core.drop(keys, write),
      dropNearest: core.dropNearest,
      fartherStale: core.fartherStale,
      breakers: core.breakers,
      size: core.size,
      tags: this.tags,
      refresh: (key) =>
        Effect.flatMap(core.nearest(key), (found) =>
          Effect.sync(() => {
            this.startRefresh(key, Option.getOrElse(found, () => gone), true)
          }))
    }
  }
}

const noTags: ReadonlyArray<string> = []

/** What a refresh of a key the nearest tier does not hold replaces: nothing. */
const gone: Entry<never> = { absent: true, freshUntil: -Infinity, staleUntil: -Infinity, loadMillis: 0 }
