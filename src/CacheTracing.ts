/**
 * The spans every cache opens, their names and attributes, and the switch that adds keys to them.
 *
 * Spans are Effect's own (`Effect.withSpan`): they reach whatever tracer the program provides, such as the
 * OpenTelemetry one of `@rms/cache/OpenTelemetry`. They are opened on the calls that leave the process or run
 * user code — a load from the source, a write, a call to a farther tier (L2 and beyond), a bus message sent or
 * received — and never on a read of the nearest tier, whose hit costs less than a span.
 *
 * Keys are not in any attribute unless `withKeys` (or the `keys` layer) is in effect: they may be personal
 * data, and a span per key would be unbounded.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as internal from "./internal/spans.js"

/**
 * The span names, stable across releases.
 *
 * - `cache.load`: one batch of keys loaded from the source (the `load` of a `MultiLevelCache`, a `CachedStore`'s
 *   `store.getMany`, a `LoadingCache`'s loader).
 * - `cache.write`: a write through a `CachedStore` or `MultiLevelCache` (`save`, `delete`, `set`, `invalidate`
 *   and their batch forms), store and tiers together.
 * - `cache.tier.read` / `cache.tier.write`: one call to a farther tier (L2 and beyond).
 * - `cache.bus.publish` / `cache.bus.receive`: an invalidation message sent, or received from another instance.
 *
 * @since 0.1.0
 * @category spans
 */
export const spanNames = internal.spanNames

/**
 * The attribute names used on those spans: `cache.name`, `cache.tier` (`"l2"`, …), `cache.operation`,
 * `cache.batch_size` (how many keys) and, only with `withKeys`, `cache.keys`: the call's first 32 keys as a
 * JSON array of strings (`"*"` for every key). A failed call's span has an error status (the tracer's).
 *
 * @since 0.1.0
 * @category spans
 */
export const attributeNames = internal.attributeNames

/**
 * Runs `effect` with keys recorded in the cache spans it opens (`cache.keys`). Off by default.
 *
 * @since 0.1.0
 * @category spans
 */
export const withKeys: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = internal.withKeys

/**
 * A layer that records keys in every cache span of the program it is provided to.
 *
 * @since 0.1.0
 * @category spans
 */
export const keys: Layer.Layer<never> = Layer.locallyScoped(internal.spanKeys, true)
