import { IntIndex } from "./intIndex.js"

/** The largest capacity: slot numbers (plus one) must fit the signed 32-bit cells of `IntIndex`. */
export const maxCapacity = 2 ** 30

/**
 * An exact, bounded least-recently-used map with O(1) `get`, `set` and `delete`.
 *
 * Mutable by design: this is the synchronous structure under `LruCache`, kept free of Effect so the hot path
 * costs one `Map` lookup and a few typed-array writes.
 *
 * Layout: every entry lives in a slot `0 … capacity-1`. `keys` and `values` hold the entry, and `links` (a typed
 * array of pairs) links the slots into a doubly linked recency list, from the most recent entry (`head`) to
 * the least recent (`tail`). Eviction reuses the least recent slot in place: no re-insertion, no
 * `keys().next()` scan over tombstones (which is what makes a `Map`-ordered LRU collapse under eviction).
 *
 * Keys that are 32-bit integers are indexed by an `IntIndex` (open addressing, no tombstones); every other key
 * by a `Map`. Both follow `Map` semantics (SameValueZero: `0` and `-0` are one key, `NaN` is a key), and since
 * a key's kind decides its index, the two never hold the same key.
 *
 * @internal
 */
export class LruMap<K, V> {
  /** The most entries the map holds; setting a new key when full evicts the least recently used one. */
  readonly capacity: number

  private readonly index = new Map<K, number>()
  private readonly ints = new IntIndex()
  private strings: Record<string, number> = Object.create(null)
  private readonly keys: Array<K | undefined>
  private readonly values: Array<V | undefined>
  /** `links[2 * slot]` is the next newer slot, `links[2 * slot + 1]` the next older: one cache line per slot. */
  private readonly links: Uint32Array
  /** Slots freed by `delete`, reused before fresh ones: a stack chained through `links[2 * slot]`. */
  private freeHead = 0
  private freeCount = 0
  /** Slots handed out so far; slots at or beyond this were never used. */
  private allocated = 0
  private head = 0
  private tail = 0
  private count = 0

  /**
   * @param capacity a positive integer
   * @param onEvict called with the least recently used entry when a `set` pushes it out (not on `delete`)
   */
  constructor(capacity: number, private readonly onEvict?: (key: K, value: V) => void) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > maxCapacity) {
      throw new RangeError(`LruMap capacity must be an integer from 1 to 2^30, got ${capacity}`)
    }
    this.capacity = capacity
    this.keys = new Array(capacity)
    this.values = new Array(capacity)
    this.links = new Uint32Array(capacity * 2)
  }

  /** The number of entries held. */
  get size(): number {
    return this.count
  }

  /** The value under `key`, marking it most recently used; `undefined` when absent. */
  get(key: K): V | undefined {
    const slot = this.slotOf(key)
    if (slot < 0) return undefined
    if (slot !== this.head) this.moveToHead(slot)
    return this.values[slot]
  }

  /** The value under `key` without touching its recency. */
  peek(key: K): V | undefined {
    const slot = this.slotOf(key)
    return slot < 0 ? undefined : this.values[slot]
  }

  /** Whether `key` is held, without touching its recency. */
  has(key: K): boolean {
    return this.slotOf(key) >= 0
  }

  /** Stores `value` under `key` as the most recently used entry, evicting the least recent one when full. */
  set(key: K, value: V): void {
    let slot = this.slotOf(key)
    if (slot >= 0) {
      this.values[slot] = value
      if (slot !== this.head) this.moveToHead(slot)
      return
    }
    // Like Map, keep -0 as +0, so entries() and onEvict report the key a Map would.
    if (key === 0) key = 0 as K
    if (this.count < this.capacity) {
      if (this.freeCount > 0) {
        slot = this.freeHead
        this.freeHead = this.links[2 * slot]!
        this.freeCount--
      } else {
        slot = this.allocated++
      }
      if (this.count === 0) {
        this.head = this.tail = slot
      } else {
        this.links[2 * slot + 1] = this.head
        this.links[2 * this.head] = slot
        this.head = slot
      }
      this.count++
      this.keys[slot] = key
      this.values[slot] = value
      this.link(key, slot)
      return
    }
    // Full: the least recent slot takes the new entry in place and becomes the head.
    slot = this.tail
    const evictedKey = this.keys[slot] as K
    const evictedValue = this.values[slot] as V
    this.unlink(evictedKey)
    if (slot !== this.head) {
      this.tail = this.links[2 * slot]!
      this.links[2 * slot + 1] = this.head
      this.links[2 * this.head] = slot
      this.head = slot
    }
    this.keys[slot] = key
    this.values[slot] = value
    this.link(key, slot)
    // Called last, so a throwing callback cannot leave the map half-updated.
    if (this.onEvict !== undefined) this.onEvict(evictedKey, evictedValue)
  }

  /** Removes `key`; returns whether it was held. */
  delete(key: K): boolean {
    const slot = this.slotOf(key)
    if (slot < 0) return false
    this.unlink(key)
    if (this.count === 1) {
      this.head = this.tail = 0
    } else if (slot === this.head) {
      this.head = this.links[2 * slot + 1]!
    } else if (slot === this.tail) {
      this.tail = this.links[2 * slot]!
    } else {
      const newer = this.links[2 * slot]!
      const older = this.links[2 * slot + 1]!
      this.links[2 * newer + 1] = older
      this.links[2 * older] = newer
    }
    // Drop the references so the garbage collector can reclaim them.
    this.keys[slot] = undefined
    this.values[slot] = undefined
    this.links[2 * slot] = this.freeHead
    this.freeHead = slot
    this.freeCount++
    this.count--
    return true
  }

  /** Removes every entry. */
  clear(): void {
    this.index.clear()
    this.ints.clear()
    this.strings = Object.create(null)
    this.keys.fill(undefined)
    this.values.fill(undefined)
    this.freeCount = 0
    this.allocated = 0
    this.head = this.tail = 0
    this.count = 0
  }

  /** The entries from most to least recently used, without touching recency. */
  *entries(): IterableIterator<[K, V]> {
    let slot = this.head
    for (let i = 0; i < this.count; i++) {
      yield [this.keys[slot] as K, this.values[slot] as V]
      slot = this.links[2 * slot + 1]!
    }
  }

  /** The slot holding `key`, or -1. */
  private slotOf(key: K): number {
    if (typeof key === "number" && (key | 0) === key) return this.ints.get(key)
    if (typeof key === "string") {
      const s = this.strings[key]
      return s === undefined ? -1 : s
    }
    const slot = this.index.get(key)
    return slot === undefined ? -1 : slot
  }

  private link(key: K, slot: number): void {
    if (typeof key === "number" && (key | 0) === key) this.ints.set(key, slot)
    else if (typeof key === "string") this.strings[key] = slot
    else this.index.set(key, slot)
  }

  private unlink(key: K): void {
    if (typeof key === "number" && (key | 0) === key) this.ints.delete(key)
    else if (typeof key === "string") delete this.strings[key]
    else this.index.delete(key)
  }

  private moveToHead(slot: number): void {
    const links = this.links
    const newer = links[2 * slot]!
    if (slot === this.tail) {
      this.tail = newer
    } else {
      const older = links[2 * slot + 1]!
      links[2 * newer + 1] = older
      links[2 * older] = newer
    }
    links[2 * slot + 1] = this.head
    links[2 * this.head] = slot
    this.head = slot
  }
}
