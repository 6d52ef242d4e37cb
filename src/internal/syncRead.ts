/**
 * A synchronous read of an in-memory tier, for the multi-level cache's hit path: the value or `notFound`, with
 * no `CacheMiss` built and no Effect around it. The tier carries it under `syncRead` along with its own `get`,
 * so that a wrapper replacing `get` (`{ ...lru, get: traced }`) is not bypassed: the read is only used while
 * `cache.get` is still the tier's own.
 *
 * @internal
 */
import type { Cache } from "../Cache.js"

export const syncRead: unique symbol = Symbol.for("@rms/cache/syncRead")

/** What a read answers when the tier holds nothing (live) under the key. */
export const notFound: unique symbol = Symbol.for("@rms/cache/notFound")

/** The capability: the tier's own `get`, and a read that does what it does, synchronously. */
export interface SyncRead<K, V> {
  readonly get: Function
  readonly read: (key: K) => V | typeof notFound
}

/** The synchronous read of `cache`, when it has one and its `get` is still its own. */
export const syncReaderOf = <K, V>(cache: Cache<K, V, unknown>): ((key: K) => V | typeof notFound) | undefined => {
  const capability = (cache as { readonly [syncRead]?: SyncRead<K, V> })[syncRead]
  return capability !== undefined && capability.get === cache.get ? capability.read : undefined
}
