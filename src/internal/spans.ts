/**
 * Cache spans: names, attributes, and the fiber setting that adds keys to them (see `CacheTracing`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"

export const spanNames = {
  load: "cache.load",
  write: "cache.write",
  tierRead: "cache.tier.read",
  tierWrite: "cache.tier.write",
  busPublish: "cache.bus.publish",
  busReceive: "cache.bus.receive"
} as const

export const attributeNames = {
  cache: "cache.name",
  tier: "cache.tier",
  operation: "cache.operation",
  batchSize: "cache.batch_size",
  keys: "cache.keys"
} as const

/** Whether spans carry keys. */
export const spanKeys: FiberRef.FiberRef<boolean> = globalValue(
  Symbol.for("@rms/cache/CacheTracing/spanKeys"),
  () => FiberRef.unsafeMake(false)
)

export const withKeys = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locally(effect, spanKeys, true)

/** The most keys written into one span. */
const maxKeys = 32

/**
 * Runs `effect` in a span `name` with `attributes`, plus the keys when the fiber asks for them. The stack
 * trace is not captured: it costs microseconds and points into the library.
 */
export const span = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  attributes: Record<string, unknown>,
  keys?: ReadonlyArray<unknown> | "all"
): Effect.Effect<A, E, R> =>
  FiberRef.getWith(spanKeys, (withKeyAttributes) =>
    Effect.withSpan(effect, name, {
      captureStackTrace: false,
      attributes: withKeyAttributes && keys !== undefined
        // One string (a JSON array of strings): exporters send an array attribute in forms that differ.
        ? { ...attributes, [attributeNames.keys]: keys === "all" ? "*" : JSON.stringify(keys.slice(0, maxKeys).map(String)) }
        : attributes
    }))

/** A write's span: `cache.write` with the cache's name, the operation and how many keys. */
export const writeSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  cache: string,
  operation: string,
  keys: ReadonlyArray<unknown> | "all"
): Effect.Effect<A, E, R> =>
  span(effect, spanNames.write, {
    [attributeNames.cache]: cache,
    [attributeNames.operation]: operation,
    [attributeNames.batchSize]: keys === "all" ? "all" : keys.length
  }, keys)
