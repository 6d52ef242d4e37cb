/**
 * `CachedStore` put together: the multi-level core over the store's `getMany`, the writes (store first, then
 * the tiers as the outcome says, then the bus), the bus's messages applied to the nearest tier, and the
 * rechecks of writes whose outcome is unknown.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { CachedStore, FreshOptions, Options, WriteOutcome } from "../CachedStore.js"
import * as CacheMetrics from "../CacheMetrics.js"
import type { LoadTimeout } from "../LoadingCache.js"
import * as BusLink from "./busLink.js"
import * as Freshness from "./freshness.js"
import { settingsOf } from "./loadingCache.js"
import type { InvalidationBus } from "../InvalidationBus.js"
import * as MultiLevel from "./multiLevel.js"
import { validateTimeToLive } from "./options.js"
import { writeSpan } from "./spans.js"
import { LocalLedger } from "./tags.js"

/**
 * Drops keys once more some time after a write whose outcome is unknown: the store may apply it late, after a
 * load has cached the value it replaces. One fiber per key however many such writes it has; the last write
 * sets the time. Mutable by design.
 */
class Rechecks<K> {
  private readonly due = new Map<K, number>()

  constructor(
    private readonly delayMillis: number,
    private readonly clock: Clock.Clock,
    private readonly scope: Scope.Scope,
    private readonly recheck: (key: K) => Effect.Effect<void>
  ) {}

  schedule(key: K): Effect.Effect<void> {
    return Effect.suspend(() => {
      const scheduled = this.due.has(key)
      this.due.set(key, this.clock.unsafeCurrentTimeMillis() + this.delayMillis)
      if (scheduled) return Effect.void // its fiber waits until the new time
      return this.waitThenRecheck(key).pipe(
        // Forked from a write's exit, which is uninterruptible: the wait itself must not be.
        Effect.interruptible,
        Effect.forkIn(this.scope),
        Effect.asVoid
      )
    })
  }

  private waitThenRecheck(key: K): Effect.Effect<void> {
    return Effect.suspend(() => {
      const left = (this.due.get(key) ?? 0) - this.clock.unsafeCurrentTimeMillis()
      if (left > 0) return Effect.zipRight(Effect.sleep(Duration.millis(left)), this.waitThenRecheck(key))
      this.due.delete(key)
      return this.recheck(key)
    })
  }
}

/** How a write's exit left the store: `"applied"` when it succeeded. */
const outcomeOf = <A, E>(exit: Exit.Exit<A, E>, classify: (error: E) => WriteOutcome): WriteOutcome | "applied" => {
  if (Exit.isSuccess(exit)) return "applied"
  // Interrupted mid-write, or a defect: the store may or may not have applied it.
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) ? classify(failure.value) : "unknown"
}

/** The core a store is cached through: plain, or with freshness (whose loads may also time out). */
const coreOf = <K, V, I, EGet, ESave, ERemove, R>(
  options: Options<K, V, I, EGet, ESave, ERemove, R> | FreshOptions<K, V, I, EGet, ESave, ERemove, R>,
  onRepaired: (keys: ReadonlyArray<K>) => Effect.Effect<void>,
  freshness: CacheMetrics.FreshnessMetrics
): Effect.Effect<Freshness.ValueCore<K, V, EGet | LoadTimeout>, Cause.IllegalArgumentException, Scope.Scope | R> => {
  const common = {
    name: options.name,
    onRepaired,
    ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics })
  }
  if (options.freshness === undefined) {
    return Effect.map(
      MultiLevel.make<K, V, EGet, R>({ ...common, tiers: options.tiers, load: options.store.getMany }),
      (core) => ({ ...core, tags: undefined })
    )
  }
  const fresh = options as FreshOptions<K, V, I, EGet, ESave, ERemove, R>
  const ledger = options.invalidations ?? new LocalLedger()
  return Effect.flatMap(settingsOf(fresh.freshness, options.name), (settings) =>
    Freshness.make<K, V, EGet, R>({ ...common, tiers: fresh.tiers, load: options.store.getMany, settings, freshness, ledger }))
}

/** Builds a `CachedStore` (see `CachedStore.make`). */
export const make = <K, V, I, EGet, ESave, ERemove, R>(
  options: Options<K, V, I, EGet, ESave, ERemove, R> | FreshOptions<K, V, I, EGet, ESave, ERemove, R>
): Effect.Effect<CachedStore<K, V, I, EGet | LoadTimeout, ESave, ERemove>, Cause.IllegalArgumentException, Scope.Scope | R> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<R>()
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    const { keyOf, store } = options
    const provided = <A, E>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, context)
    const recheckMillis = yield* validateTimeToLive(options.unknownOutcomeRecheck ?? "10 seconds", options.name, "unknownOutcomeRecheck")
    const classify: (error: ESave | ERemove) => WriteOutcome = options.classify ?? (() => "unknown")
    const bus: InvalidationBus<K> | undefined = options.invalidations

    const freshness = CacheMetrics.freshness({ cache: options.name, tier: "multilevel" }, options.freshness !== undefined && options.metrics !== false)
    const core = yield* coreOf(
      options,
      // A farther tier was brought back in step for these keys after missing their writes: other instances
      // may have read the older values there meanwhile.
      (keys) => (bus === undefined ? Effect.void : bus.publish(keys)),
      freshness
    )

    const { announce, invalidate, invalidateAll, invalidateTag } = yield* BusLink.link(core, bus)
    const rechecks = new Rechecks<K>(recheckMillis, clock, scope, (key) => Effect.zipRight(core.drop([key]), announce(key)))


    /**
     * Runs a store write of `key`, registered before the store sees it, and brings the tiers in step with its
     * outcome; that part runs to its end even if the caller is interrupted.
     */
    const write = <A, E extends ESave | ERemove>(
      key: K,
      storeWrite: Effect.Effect<A, E, R>,
      applied: (value: A, pending: MultiLevel.Pending<K>) => Effect.Effect<void>
    ): Effect.Effect<A, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.sync(() => core.protocol.begin(key)), (pending) =>
          Effect.flatMap(Effect.exit(restore(provided(storeWrite))), (exit) => {
            const outcome = outcomeOf(exit, classify)
            const tiers = Exit.isSuccess(exit) ? applied(exit.value, pending) : core.drop([key], pending)
            const inStep = outcome === "refused"
              ? Effect.void
              : Effect.zipRight(tiers, outcome === "unknown" ? Effect.zipRight(announce(key), rechecks.schedule(key)) : announce(key))
            return Effect.zipRight(
              Effect.ensuring(inStep, Effect.sync(() => core.protocol.end(pending))),
              exit
            )
          }))
      )

    /** Saves `input`, its entry stamped with what was known of the tag ledger before the store saw the write. */
    const saveStamped = (input: I): Effect.Effect<V, ESave> =>
      Effect.suspend(() => {
        const key = keyOf(input)
        // A tag invalidated meanwhile overtakes what the write stores, as it does a load.
        const stamp = core.tags?.take()
        return write(key, store.save(input), (value, pending) => core.store([[key, value]], stamp === undefined ? undefined : { stamp }, pending))
      })

    return {
      name: options.name,
      get: core.get,
      getOption: core.getOption,
      getMany: core.getMany,
      save: (input) =>
        Effect.suspend(() => {
          const tags = core.tags
          const save = tags === undefined ? saveStamped(input) : Effect.zipRight(tags.ready, saveStamped(input))
          return writeSpan(save, options.name, "save", [keyOf(input)])
        }),
      delete: (key) => writeSpan(write(key, store.remove(key), (_, pending) => core.drop([key], pending)), options.name, "delete", [key]),
      invalidate,
      invalidateAll,
      invalidateTag,
      metrics: core.metrics,
      breakers: core.breakers,
      freshness: freshness.stats
    }
  })
