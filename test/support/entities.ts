/**
 * A small entity and an in-memory store for tests of `CachedStore` without Postgres: rows with versions that
 * only grow (also across a delete), writes that can be held on a gate or made to fail in each way a store can
 * fail, and optional delays (Effect's `Clock` and `Random`) before and after each operation is applied, so that
 * concurrent operations complete in any order under `TestClock`.
 */
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Cache from "../../src/Cache.js"
import type * as CachedStore from "../../src/CachedStore.js"

/** A stored row. */
export interface Row {
  readonly id: string
  readonly text: string
  readonly version: number
}

/** What a caller saves. */
export interface Input {
  readonly id: string
  readonly text: string
}

/** The store refused the write: nothing changed. */
export class Refused extends Data.TaggedError("Refused")<{}> {}
/** The write may have been applied: the store did not say. */
export class Unknown extends Data.TaggedError("Unknown")<{}> {}
/** No row with this id. */
export class Missing extends Data.TaggedError("Missing")<{ readonly id: string }> {}

/** How each failure left the store. */
export const classify = (error: Refused | Unknown | Missing): CachedStore.WriteOutcome =>
  error._tag === "Refused" ? "refused" : error._tag === "Unknown" ? "unknown" : "absent"

/** A delay before and after an operation is applied: a fixed one, or random up to `max` (Effect's `Random`). */
export const upTo = (max: Duration.DurationInput): Effect.Effect<void> =>
  Effect.flatMap(Random.nextIntBetween(0, Duration.toMillis(max) + 1), (ms) => (ms === 0 ? Effect.void : Effect.sleep(Duration.millis(ms))))

/** How the next write fails: refused, or with an unknown outcome after it was applied or not. */
export type Failure = "refused" | "unknown-applied" | "unknown-not-applied"

/** An in-memory store of rows (see the module's doc). */
export const memoryStore = (options: { readonly delay?: Effect.Effect<void> } = {}) =>
  Effect.sync(() => {
    const rows = new Map<string, Row>()
    /** The last version of every id ever written, deleted ones included. */
    const versions = new Map<string, number>()
    const delay = options.delay ?? Effect.void
    let gate: Deferred.Deferred<void> | undefined
    let failNext: Failure | undefined
    const loads: Array<ReadonlyArray<string>> = []

    const applyOrFail = <A>(apply: () => A): Effect.Effect<A, Refused | Unknown> =>
      Effect.suspend((): Effect.Effect<A, Refused | Unknown> => {
        const failure = failNext
        failNext = undefined
        if (failure === "refused") return Effect.fail(new Refused())
        if (failure === "unknown-not-applied") return Effect.fail(new Unknown())
        const result = apply()
        return failure === "unknown-applied" ? Effect.fail(new Unknown()) : Effect.succeed(result)
      })

    const held = Effect.suspend(() => (gate === undefined ? Effect.void : Deferred.await(gate)))

    const store: CachedStore.Store<string, Row, Input, never, Refused | Unknown, Refused | Unknown | Missing> = {
      getMany: (ids) =>
        Effect.gen(function*() {
          yield* delay
          loads.push(ids)
          const found = new Map(ids.flatMap((id) => (rows.has(id) ? [[id, rows.get(id)!] as const] : [])))
          yield* delay
          return found
        }),
      save: (input) =>
        Effect.gen(function*() {
          yield* delay
          yield* held
          const row = yield* applyOrFail(() => {
            const row = { id: input.id, text: input.text, version: (versions.get(input.id) ?? 0) + 1 }
            rows.set(input.id, row)
            versions.set(input.id, row.version)
            return row
          })
          yield* delay
          return row
        }),
      remove: (id) =>
        Effect.gen(function*() {
          yield* delay
          yield* held
          if (!rows.has(id)) return yield* new Missing({ id })
          yield* applyOrFail(() => {
            rows.delete(id)
            versions.set(id, (versions.get(id) ?? 0) + 1)
          })
          yield* delay
        })
    }
    return {
      store,
      rows,
      loads,
      /** Holds every write until the returned gate is opened. */
      hold: Effect.map(Deferred.make<void>(), (d) => (gate = d)),
      release: Effect.suspend(() => {
        const open = gate
        gate = undefined
        return open === undefined ? Effect.void : Deferred.succeed(open, undefined)
      }),
      /** The next write fails this way. */
      failNext: (how: typeof failNext) => void (failNext = how)
    }
  })

/**
 * A view of `cache` whose every call waits `delay` on its way there and again on its way back (an instance's
 * connection to a shared tier), can be switched down (every call fails), and whose writes can be held on a
 * gate.
 */
export const view = <K, V, E, F = Refused>(
  cache: Cache.Cache<K, V, E>,
  delay: Effect.Effect<void> = Effect.void,
  /** What a call fails with while the view is down. */
  failure: () => F = () => new Refused() as F
) => {
  let down = false
  let gate: Deferred.Deferred<void> | undefined
  // The delay before the call reaches the tier, and again before its answer comes back: a round trip.
  const through = <A, E2>(effect: Effect.Effect<A, E2>): Effect.Effect<A, E2 | F> =>
    Effect.suspend((): Effect.Effect<A, E2 | F> =>
      down ? Effect.fail(failure()) : Effect.zipLeft(Effect.zipRight(delay, effect), delay)
    )
  /** Whether only the next write is held (the gate is taken by it). */
  let once = false
  const write = <A, E2>(effect: Effect.Effect<A, E2>) =>
    through(Effect.zipRight(
      Effect.suspend(() => {
        const held = gate
        if (once) gate = undefined
        return held === undefined ? Effect.void : Deferred.await(held)
      }),
      effect
    ))
  let answerGate: Deferred.Deferred<void> | undefined
  /** A read whose answer, once read at the tier, can be held on its way back. */
  const read = <A, E2>(effect: Effect.Effect<A, E2>) =>
    through(Effect.zipLeft(effect, Effect.suspend(() => (answerGate === undefined ? Effect.void : Deferred.await(answerGate)))))
  const tier: Cache.Cache<K, V, E | F> = {
    name: cache.name,
    ...(cache.versioned === undefined ? {} : { versioned: cache.versioned }),
    get: (key) => read(cache.get(key)),
    getOption: (key) => read(cache.getOption(key)),
    getMany: (keys) => read(cache.getMany(keys)),
    set: (key, value, options) => write(cache.set(key, value, options)),
    setMany: (entries, options) => write(cache.setMany(entries, options)),
    invalidate: (key) => write(cache.invalidate(key)),
    invalidateAll: write(cache.invalidateAll),
    size: through(cache.size)
  }
  return {
    tier,
    setDown: (value: boolean) => void (down = value),
    /** Holds every write until `releaseWrites`. */
    holdWrites: Effect.map(Deferred.make<void>(), (d) => {
      once = false
      gate = d
    }),
    /** Holds the next write only, until `releaseWrites` is called with the returned gate. */
    holdNextWrite: Effect.map(Deferred.make<void>(), (d) => {
      once = true
      gate = d
      return d
    }),
    releaseWrites: Effect.suspend(() => {
      const open = gate
      gate = undefined
      return open === undefined ? Effect.void : Deferred.succeed(open, undefined)
    }),
    holdAnswers: Effect.map(Deferred.make<void>(), (d) => (answerGate = d)),
    releaseAnswers: Effect.suspend(() => {
      const open = answerGate
      answerGate = undefined
      return open === undefined ? Effect.void : Deferred.succeed(open, undefined)
    })
  }
}
