/**
 * A source for tests of `LoadingCache` without a database: rows whose versions only grow (also across a
 * delete), a batch `load` and a one-key `lookup` that read the rows when they are called (a snapshot) and
 * then may take time (`Effect.sleep`, so `TestClock` drives it), wait on a gate, or fail — so that a test
 * decides exactly when a load that read an older row hands it back.
 */
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** A row of the source. */
export interface Item {
  readonly version: number
  readonly text: string
}

/** The schema of a row, for a `RedisCache` tier. */
export const Item: Schema.Schema<Item> = Schema.Struct({ version: Schema.Number, text: Schema.String })

/** The source is down. */
export class SourceDown extends Data.TaggedError("SourceDown")<{}> {}

/** An in-memory source (see the module's doc). */
export const makeSource = (initial: ReadonlyArray<readonly [string, string]> = []) =>
  Effect.sync(() => {
    const rows = new Map<string, Item>()
    /** The last version of every key ever written, deleted ones included. */
    const versions = new Map<string, number>()
    /** The keys of each load call, in order. */
    const loads: Array<ReadonlyArray<string>> = []
    /** Calls that have handed their answer back (or failed). */
    let finished = 0
    let gate: Deferred.Deferred<void> | undefined
    let failing = false
    let latency: Duration.DurationInput | undefined
    /** An extra delay per call, chosen when it is called (reorders concurrent loads). */
    let jitter: Effect.Effect<void> = Effect.void

    const write = (key: string, text: string): Item => {
      const item = { version: (versions.get(key) ?? 0) + 1, text }
      versions.set(key, item.version)
      rows.set(key, item)
      return item
    }
    const remove = (key: string): void => {
      rows.delete(key)
      versions.set(key, (versions.get(key) ?? 0) + 1)
    }
    for (const [key, text] of initial) write(key, text)

    /** Reads the rows at once, then takes its time, waits on the gate of its call, fails if the source is down. */
    const load = (keys: ReadonlyArray<string>): Effect.Effect<ReadonlyMap<string, Item>, SourceDown> =>
      Effect.suspend(() => {
        loads.push([...keys])
        const snapshot = new Map(keys.flatMap((key) => (rows.has(key) ? [[key, rows.get(key)!] as const] : [])))
        const held = gate
        const slow = latency
        return Effect.gen(function*() {
          yield* jitter
          if (slow !== undefined) yield* Effect.sleep(slow)
          if (held !== undefined) yield* Deferred.await(held)
          if (failing) return yield* new SourceDown()
          return snapshot
        }).pipe(Effect.ensuring(Effect.sync(() => void finished++)))
      })

    const lookup = (key: string): Effect.Effect<Option.Option<Item>, SourceDown> =>
      Effect.map(load([key]), (found) => Option.fromNullable(found.get(key)))

    return {
      rows,
      loads,
      load,
      lookup,
      write,
      remove,
      /** Calls made so far. */
      calls: () => loads.length,
      /** Calls still running (or held). */
      running: () => loads.length - finished,
      /** Holds every call made from now on (after it read the rows) until `release`. */
      hold: Effect.map(Deferred.make<void>(), (d) => void (gate = d)),
      release: Effect.suspend(() => {
        const open = gate
        gate = undefined
        return open === undefined ? Effect.void : Deferred.succeed(open, undefined)
      }),
      /** Calls that end from now on fail (or not). */
      setFailing: (on: boolean) => void (failing = on),
      /** Calls made from now on take this long (`undefined`: no time). */
      setLatency: (duration: Duration.DurationInput | undefined) => void (latency = duration),
      setJitter: (delay: Effect.Effect<void>) => void (jitter = delay)
    }
  })

/** The source's type. */
export type Source = Effect.Effect.Success<ReturnType<typeof makeSource>>
