/**
 * The `Cache` service shared by the in-memory tiers (`LruCache`, `TtlCache`): expiry, metrics, versioning and
 * the Effect wrappers, over an `LruMap` (exact LRU) or a `TinyLfu` (W-TinyLFU admission), which offer the same
 * slot surface.
 *
 * An entry is the map's slot and nothing more: the value sits in the map's values, and the instant it stops
 * being served (and, in a versioned tier, its version) in the map's per-slot numbers. No wrapper object per
 * entry, and a read allocates nothing but the Effect it answers with.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Cache, SetOptions } from "../Cache.js"
import { CacheMiss } from "../Cache.js"
import type { CacheMetrics } from "../CacheMetrics.js"
import { Answer } from "./answer.js"
import { LruMap } from "./lruMap.js"
import { TinyLfu } from "./tinyLfu.js"
import { entryTimeToLive } from "./options.js"
import { notFound, type SyncRead, syncRead } from "./syncRead.js"

/** The value of an entry that holds nothing (a tombstone or a floor). */
export const absent: unique symbol = Symbol.for("@rms/cache/absent")

/** How a versioned tier orders writes. */
export interface Versioning<V> {
  readonly version: (value: V) => number
  /** How long a tombstone or a floor refuses writes, in milliseconds. */
  readonly tombstoneMillis: number
}

/** Which of an entry's numbers in the map is its expiry instant (Clock milliseconds, `Infinity` for never)… */
const expiryNumber = 0
/** …and, in a versioned tier, its version: the value's, or the one a tombstone or a floor refuses writes below. */
const versionNumber = 1

/** What the tier needs of its map: the slot surface `LruMap` and `TinyLfu` share. */
type SlotMap<K, V> = Pick<
  LruMap<K, V>,
  "touch" | "slotOf" | "valueAt" | "numberAt" | "setNumber" | "set" | "delete" | "deleteWhere" | "clear" | "size"
>

/** How a full tier chooses what to keep: exact LRU, or W-TinyLFU (admission by frequency, `TinyLfu`). */
export type Eviction = "lru" | "tinyLfu"

/** An in-memory tier: the `Cache`, and the sweep that `TtlCache` runs in the background. */
export interface MemoryTier<K, V> {
  readonly cache: Cache<K, V>
  /** Removes every entry that has expired by now, counted as expirations. O(size). */
  readonly sweep: () => void
}

/**
 * Builds an in-memory tier over an `LruMap` of `capacity` entries. Every read checks expiry against `clock`; an
 * expired entry is removed and counted as an expiration and a miss. A write whose time-to-live is zero or less
 * stores nothing and removes what the key held, since storing a dead entry could only push out a live one.
 */
export const make = <K, V>(options: {
  readonly name: string
  readonly capacity: number
  /** Whether a read marks its entry most recently used (LRU eviction); without it, only writes do. */
  readonly recency: boolean
  /**
   * The eviction policy. Default: `"lru"`. `"tinyLfu"` needs `recency` (a read is what its frequency sketch
   * counts).
   */
  readonly eviction?: Eviction
  readonly defaultTimeToLive: number
  readonly clock: Clock.Clock
  readonly metrics: CacheMetrics
  /** With it, the tier is versioned (see `Cache.versioned`). */
  readonly versioning?: Versioning<V>
}): MemoryTier<K, V> => {
  const { clock, defaultTimeToLive, metrics, name, recency, versioning } = options

  // Without metrics there is nothing to tell on eviction: no callback at all. The evicted entry's expiry is
  // still in its slot when the callback runs (the new entry's is written after `set` returns).
  const onEvict = metrics.enabled
    ? (_key: K, _value: V | typeof absent, slot: number) => {
      const at = entries.numberAt(slot, expiryNumber)
      if (at !== Infinity && at <= clock.unsafeCurrentTimeMillis()) metrics.unsafeExpiration()
      else metrics.unsafeEviction()
    }
    : undefined
  const numbers = versioning === undefined ? 1 : 2
  const entries: SlotMap<K, V | typeof absent> = options.eviction === "tinyLfu"
    ? new TinyLfu<K, V | typeof absent>(options.capacity, onEvict, numbers)
    : new LruMap<K, V | typeof absent>(options.capacity, onEvict, numbers)

  /** Removes the expired entry of `key`, counted. */
  const expire = (key: K): void => {
    entries.delete(key)
    metrics.unsafeExpiration()
    metrics.unsafeSize(entries.size)
  }

  /** The slot of the entry a read answers with (or -1), its hit or miss counted. */
  const lookupPlain = (key: K): number => {
    const slot = recency ? entries.touch(key) : entries.slotOf(key)
    if (slot < 0) {
      metrics.unsafeMiss()
      return -1
    }
    // Entries without a time-to-live skip the clock read: it is the most expensive step of a hit.
    const at = entries.numberAt(slot, expiryNumber)
    if (at !== Infinity && at <= clock.unsafeCurrentTimeMillis()) {
      expire(key)
      metrics.unsafeMiss()
      return -1
    }
    metrics.unsafeHit()
    return slot
  }

  /**
   * The same for a versioned tier, where a tombstone or a floor is a live entry without a value: a miss. Apart,
   * so that a plain tier's hit pays for no check.
   */
  const lookupVersioned = (key: K): number => {
    const slot = recency ? entries.touch(key) : entries.slotOf(key)
    if (slot >= 0 && entries.valueAt(slot) !== absent) return lookupPlain(key)
    if (slot >= 0) {
      const at = entries.numberAt(slot, expiryNumber)
      if (at !== Infinity && at <= clock.unsafeCurrentTimeMillis()) expire(key)
    }
    metrics.unsafeMiss()
    return -1
  }

  const lookup = versioning === undefined ? lookupPlain : lookupVersioned

  /** The value a read answers with, or `notFound`: what the multi-level cache reads its nearest tier with. */
  const read = (key: K): V | typeof notFound => {
    const slot = lookup(key)
    return slot < 0 ? notFound : entries.valueAt(slot) as V
  }

  /** What `get` answers: an `Exit` on a hit, so that a generator's driver applies it in place (see `Get`). */
  const answer = (key: K): Effect.Effect<V, CacheMiss> => {
    const slot = lookup(key)
    return slot < 0 ? Effect.fail(new CacheMiss({ key, cache: name })) : Exit.succeed(entries.valueAt(slot) as V)
  }

  const get = (key: K): Effect.Effect<V, CacheMiss> => new Answer(answer, key)

  /** The version a live entry under `key` refuses writes below (`-Infinity`: none). Marks the key recent. */
  const floorOf = (key: K): number => {
    const slot = recency ? entries.touch(key) : entries.slotOf(key)
    return slot >= 0 && entries.numberAt(slot, expiryNumber) > clock.unsafeCurrentTimeMillis()
      ? entries.numberAt(slot, versionNumber)
      : -Infinity
  }

  /** Stores an entry, or a tombstone or a floor (`absent`), with its expiry and, if versioned, its version. */
  const put = (key: K, value: V | typeof absent, expiresAt: number, version: number): void => {
    const slot = entries.set(key, value)
    entries.setNumber(slot, expiryNumber, expiresAt)
    if (versioning !== undefined) entries.setNumber(slot, versionNumber, version)
  }

  const store = versioning === undefined
    ? (key: K, value: V, timeToLive: number): void => {
      if (timeToLive <= 0) entries.delete(key)
      else put(key, value, timeToLive === Infinity ? Infinity : clock.unsafeCurrentTimeMillis() + timeToLive, 0)
    }
    : (key: K, value: V, timeToLive: number): void => {
      const version = versioning.version(value)
      if (floorOf(key) > version) return
      const now = clock.unsafeCurrentTimeMillis()
      // Dead on arrival: nothing is stored, but older versions stay refused, as after a write of this one.
      if (timeToLive <= 0) put(key, absent, now + versioning.tombstoneMillis, version)
      else put(key, value, timeToLive === Infinity ? Infinity : now + timeToLive, version)
    }

  /** Removes `key`; a versioned tier leaves a tombstone that refuses every write for a while. */
  const remove = versioning === undefined
    ? (key: K): boolean => entries.delete(key)
    : (key: K): boolean => {
      const slot = entries.slotOf(key)
      const live = slot >= 0 ? entries.valueAt(slot) : undefined
      put(key, absent, clock.unsafeCurrentTimeMillis() + versioning.tombstoneMillis, Infinity)
      return live !== undefined && live !== absent
    }

  const capability: SyncRead<K, V> = { get, read }

  const cache: Cache<K, V> & { readonly [syncRead]: SyncRead<K, V> } = {
    name,
    versioned: versioning !== undefined,
    get,
    [syncRead]: capability,
    getOption: (key) =>
      Effect.sync(() => {
        const slot = lookup(key)
        return slot < 0 ? Option.none() : Option.some(entries.valueAt(slot) as V)
      }),
    getMany: (keys) =>
      Effect.sync(() => {
        const found = new Map<K, V>()
        for (const key of keys) {
          const slot = lookup(key)
          if (slot >= 0) found.set(key, entries.valueAt(slot) as V)
        }
        return found
      }),
    set: (key, value, options?: SetOptions) =>
      Effect.sync(() => {
        store(key, value, entryTimeToLive(options?.timeToLive, defaultTimeToLive))
        metrics.unsafeSet()
        metrics.unsafeSize(entries.size)
      }),
    setMany: (items, options?: SetOptions) =>
      Effect.sync(() => {
        const timeToLive = entryTimeToLive(options?.timeToLive, defaultTimeToLive)
        let count = 0
        for (const [key, value] of items) {
          store(key, value, timeToLive)
          count++
        }
        metrics.unsafeSet(count)
        metrics.unsafeSize(entries.size)
      }),
    invalidate: (key) =>
      Effect.sync(() => {
        if (remove(key)) {
          metrics.unsafeInvalidation()
          metrics.unsafeSize(entries.size)
        }
      }),
    // O(1) whatever the capacity: the map drops its arrays.
    invalidateAll: Effect.sync(() => {
      metrics.unsafeInvalidation(entries.size)
      entries.clear()
      metrics.unsafeSize(0)
    }),
    size: Effect.sync(() => entries.size)
  }

  const sweep = (): void => {
    const now = clock.unsafeCurrentTimeMillis()
    const removed = entries.deleteWhere((slot) => entries.numberAt(slot, expiryNumber) <= now)
    if (removed > 0) {
      metrics.unsafeExpiration(removed)
      metrics.unsafeSize(entries.size)
    }
  }

  return { cache, sweep }
}
