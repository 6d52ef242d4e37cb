import { hashString, IntIndex, StringIndex } from "./intIndex.js"

/** The largest capacity: slot numbers (plus one) must fit the signed 32-bit cells of `IntIndex`. */
export const maxCapacity = 2 ** 30

/** Slots the arrays start with; they double from there as slots are handed out, up to the capacity. */
const initialSlots = 16

/**
 * An exact, bounded least-recently-used map with O(1) `get`, `set` and `delete`.
 *
 * Mutable by design: this is the synchronous structure under `LruCache` and `TtlCache`, kept free of Effect so
 * the hot path costs one index lookup and a few array writes.
 *
 * Layout: every entry lives in a slot `0 … capacity-1`. `keys` and `values` hold the entry, and `links` (a typed
 * array of pairs) links the slots into a doubly linked recency list, from the most recent entry (`head`) to
 * the least recent (`tail`). Eviction reuses the least recent slot in place: no re-insertion, no
 * `keys().next()` scan over tombstones (which is what makes a `Map`-ordered LRU collapse under eviction).
 *
 * Memory and time follow the entries held, not the capacity: slots are handed out in order, the arrays grow
 * (doubling, capped at the capacity) as they are, and `clear` drops the arrays instead of filling them. A map
 * of capacity 2^30 holding ten entries costs what ten entries cost.
 *
 * The owner may keep numbers per entry in the map's own slots (`numbersPerEntry` of them: the in-memory tiers
 * keep an expiry instant and a version there), so that an entry needs no wrapper object. Their array is
 * allocated at the first write of a finite number, so a map that never stores one never reads it.
 *
 * Keys that are 32-bit integers are indexed by an `IntIndex` and strings by a `StringIndex` (open addressing, no
 * tombstones: an eviction's delete and insert leave nothing behind); every other key by a `Map`. All follow
 * `Map` semantics (SameValueZero: `0` and `-0` are one key, `NaN` is a key), and since a key's kind decides its
 * index, no two of them hold the same key.
 *
 * @internal
 */
export class LruMap<K, V> {
  /** The most entries the map holds; setting a new key when full evicts the least recently used one. */
  readonly capacity: number
  /** How many numbers the owner keeps per entry (see `numberAt`). */
  readonly numbersPerEntry: number

  private index = new Map<K, number>()
  private ints = new IntIndex()
  /** Created with the first string key, as are `hashes`: a map of integer keys never pays for them. */
  private strings: StringIndex | undefined = undefined
  /** The `hashString` of each slot's string key, so an eviction finds its bucket without reading the key. */
  private hashes: Int32Array | undefined = undefined
  private keys: Array<K | undefined> = []
  private values: Array<V | undefined> = []
  /** `links[2 * slot]` is the next newer slot, `links[2 * slot + 1]` the next older: one cache line per slot. */
  private links: Uint32Array
  /** The owner's numbers, `numbersPerEntry` per slot; `undefined` while every one of them is `Infinity`. */
  private numbers: Float64Array | undefined = undefined
  /** Slots freed by `delete`, reused before fresh ones: a stack chained through `links[2 * slot]`. */
  private freeHead = 0
  private freeCount = 0
  /** Slots handed out so far; slots at or beyond this were never used. */
  private allocated = 0
  private head = 0
  private tail = 0
  private count = 0

  /**
   * @param capacity a positive integer, at most `maxCapacity`
   * @param onEvict called with the least recently used entry when a `set` pushes it out (not on `delete`), once
   *   the new entry holds its slot; the owner's numbers in `slot` are still the evicted entry's
   * @param numbersPerEntry how many numbers the owner keeps per entry (see `numberAt`)
   */
  constructor(
    capacity: number,
    private readonly onEvict?: (key: K, value: V, slot: number) => void,
    numbersPerEntry = 0
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > maxCapacity) {
      throw new RangeError(`LruMap capacity must be an integer from 1 to 2^30, got ${capacity}`)
    }
    this.capacity = capacity
    this.numbersPerEntry = numbersPerEntry
    this.links = new Uint32Array(2 * Math.min(capacity, initialSlots))
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

  /** The slot holding `key`, marked most recently used; -1 when absent. */
  touch(key: K): number {
    const slot = this.slotOf(key)
    if (slot >= 0 && slot !== this.head) this.moveToHead(slot)
    return slot
  }

  /** The slot holding `key`, without touching its recency; -1 when absent. */
  slotOf(key: K): number {
    if (typeof key === "number" && (key | 0) === key) return this.ints.get(key)
    if (typeof key === "string") return this.stringSlot(key, hashString(key))
    const slot = this.index.get(key)
    return slot === undefined ? -1 : slot
  }

  /** The value in `slot`, which must hold an entry. */
  valueAt(slot: number): V {
    return this.values[slot] as V
  }

  /** The key in `slot`, which must hold an entry. */
  keyAt(slot: number): K {
    return this.keys[slot] as K
  }

  /**
   * The owner's `i`-th number (below `numbersPerEntry`) of the entry in `slot`: what `setNumber` last wrote
   * there, `Infinity` if nothing was. `set` leaves a slot's numbers alone, even when it hands the slot to
   * another key: the owner writes them after every `set`.
   */
  numberAt(slot: number, i: number): number {
    const numbers = this.numbers
    return numbers === undefined ? Infinity : numbers[slot * this.numbersPerEntry + i]!
  }

  /** Sets the owner's `i`-th number of the entry in `slot`. */
  setNumber(slot: number, i: number, value: number): void {
    let numbers = this.numbers
    if (numbers === undefined) {
      // Nothing to allocate for while every number is the default.
      if (value === Infinity) return
      numbers = this.numbers = new Float64Array(this.links.length / 2 * this.numbersPerEntry).fill(Infinity)
    }
    numbers[slot * this.numbersPerEntry + i] = value
  }

  /**
   * Stores `value` under `key` as the most recently used entry, evicting the least recent one when full.
   * Returns the entry's slot.
   */
  set(key: K, value: V): number {
    // A string key is hashed once, for the lookup and the insert.
    const hash = typeof key === "string" ? hashString(key) : 0
    let slot = typeof key === "string" ? this.stringSlot(key, hash) : this.slotOf(key)
    if (slot >= 0) {
      this.values[slot] = value
      if (slot !== this.head) this.moveToHead(slot)
      return slot
    }
    // Like Map, keep -0 as +0, so entries() and onEvict report the key a Map would.
    if (key === 0) key = 0 as K
    if (this.count < this.capacity) {
      slot = this.freshSlot()
      const links = this.links
      if (this.count === 0) {
        this.head = this.tail = slot
      } else {
        links[2 * slot + 1] = this.head
        links[2 * this.head] = slot
        this.head = slot
      }
      this.count++
      this.keys[slot] = key
      this.values[slot] = value
      this.link(key, slot, hash)
      return slot
    }
    // Full: the least recent slot takes the new entry in place and becomes the head.
    slot = this.tail
    const evictedKey = this.keys[slot] as K
    const evictedValue = this.values[slot] as V
    this.unlink(evictedKey, slot)
    if (slot !== this.head) {
      this.tail = this.links[2 * slot]!
      this.links[2 * slot + 1] = this.head
      this.links[2 * this.head] = slot
      this.head = slot
    }
    this.keys[slot] = key
    this.values[slot] = value
    this.link(key, slot, hash)
    // Called last, so a throwing callback cannot leave the map half-updated.
    if (this.onEvict !== undefined) this.onEvict(evictedKey, evictedValue, slot)
    return slot
  }

  /** Removes `key`; returns whether it was held. */
  delete(key: K): boolean {
    const slot = this.slotOf(key)
    if (slot < 0) return false
    this.deleteSlot(slot)
    return true
  }

  /**
   * Removes every entry whose slot passes `test`, from the least recent on; returns how many. `test` must not
   * change the map.
   */
  deleteWhere(test: (slot: number) => boolean): number {
    let removed = 0
    let slot = this.tail
    for (let left = this.count; left > 0; left--) {
      // Read before a removal reuses the link for the free list.
      const newer = this.links[2 * slot]!
      if (test(slot)) {
        this.deleteSlot(slot)
        removed++
      }
      slot = newer
    }
    return removed
  }

  /**
   * Removes every entry, in O(1): the arrays are dropped, not filled (a cleared map of capacity 2^30 would
   * otherwise pay for 2^30 slots), and the map starts over as if new.
   */
  clear(): void {
    this.index = new Map()
    this.ints = new IntIndex()
    this.strings = undefined
    this.hashes = undefined
    this.keys = []
    this.values = []
    this.links = new Uint32Array(2 * Math.min(this.capacity, initialSlots))
    this.numbers = undefined
    this.freeHead = this.freeCount = this.allocated = 0
    this.head = this.tail = this.count = 0
  }

  /** The entries from most to least recently used, without touching recency. */
  *entries(): IterableIterator<[K, V]> {
    let slot = this.head
    for (let i = 0; i < this.count; i++) {
      yield [this.keys[slot] as K, this.values[slot] as V]
      slot = this.links[2 * slot + 1]!
    }
  }

  /** A slot for a new entry while the map is not full: a freed one, else the next never used, growing if need be. */
  private freshSlot(): number {
    if (this.freeCount > 0) {
      const slot = this.freeHead
      this.freeHead = this.links[2 * slot]!
      this.freeCount--
      return slot
    }
    if (2 * this.allocated === this.links.length) this.grow()
    return this.allocated++
  }

  /** Doubles the typed arrays, up to the capacity; `keys` and `values` grow on their own as slots are appended. */
  private grow(): void {
    const slots = Math.min(2 * (this.links.length / 2), this.capacity)
    const links = new Uint32Array(2 * slots)
    links.set(this.links)
    this.links = links
    if (this.hashes !== undefined) {
      const hashes = new Int32Array(slots)
      hashes.set(this.hashes)
      this.hashes = hashes
    }
    if (this.numbers !== undefined) {
      const numbers = new Float64Array(slots * this.numbersPerEntry).fill(Infinity)
      numbers.set(this.numbers)
      this.numbers = numbers
    }
  }

  private deleteSlot(slot: number): void {
    this.unlink(this.keys[slot] as K, slot)
    const links = this.links
    if (this.count === 1) {
      this.head = this.tail = 0
    } else if (slot === this.head) {
      this.head = links[2 * slot + 1]!
    } else if (slot === this.tail) {
      this.tail = links[2 * slot]!
    } else {
      const newer = links[2 * slot]!
      const older = links[2 * slot + 1]!
      links[2 * newer + 1] = older
      links[2 * older] = newer
    }
    // Drop the references so the garbage collector can reclaim them.
    this.keys[slot] = undefined
    this.values[slot] = undefined
    links[2 * slot] = this.freeHead
    this.freeHead = slot
    this.freeCount++
    this.count--
  }

  /** The slot of the string `key`, whose `hashString` is `hash`; -1 when absent. */
  private stringSlot(key: string, hash: number): number {
    const strings = this.strings
    return strings === undefined ? -1 : strings.get(key, hash, this.keys)
  }

  /** Indexes `key`, absent until now, at `slot`; `hash` is its `hashString` if it is a string. */
  private link(key: K, slot: number, hash: number): void {
    if (typeof key === "number" && (key | 0) === key) {
      this.ints.set(key, slot)
    } else if (typeof key === "string") {
      ;(this.strings ??= new StringIndex()).insert(hash, slot)
      const hashes = this.hashes ??= new Int32Array(this.links.length / 2)
      hashes[slot] = hash
    } else {
      this.index.set(key, slot)
    }
  }

  /** Removes `key`, held at `slot`, from its index. */
  private unlink(key: K, slot: number): void {
    if (typeof key === "number" && (key | 0) === key) this.ints.delete(key)
    else if (typeof key === "string") this.strings!.delete(this.hashes![slot]!, slot)
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
