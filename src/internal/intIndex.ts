/**
 * Open-addressing hash indexes from keys to slot numbers, for `LruMap`: `IntIndex` for 32-bit integer keys and
 * `StringIndex` for string keys.
 *
 * Why they exist: integer ids and short strings are the most common cache keys, and a `Map` (or an object used
 * as a dictionary) pays for every eviction with a `delete` (a tombstone) and a `set`, plus periodic rehashing
 * of the whole table to clear the tombstones. Linear probing with backward-shift deletion leaves no
 * tombstones, so a delete followed by an insert costs two short probes and nothing later. Each bucket is a pair
 * in one `Int32Array` — a 32-bit word (the integer key itself, or a string's hash), then the slot plus one
 * (zero marks an empty bucket) — so a probe touches one cache line. The table doubles while it is more than
 * half full and never shrinks (`LruMap.clear` drops it instead).
 *
 * @internal
 */

/** The bucket table shared by both indexes: pairs of a 32-bit word and a slot plus one. */
abstract class Buckets {
  protected table: Int32Array
  protected mask: number
  private shift: number
  private count = 0

  constructor(initialSize: number) {
    const buckets = 2 ** Math.ceil(Math.log2(Math.max(initialSize, 2)))
    this.table = new Int32Array(buckets * 2)
    this.mask = buckets - 1
    this.shift = 32 - Math.log2(buckets)
  }

  /** The number of keys held. */
  get size(): number {
    return this.count
  }

  /** Fibonacci hashing: spreads sequential ids (and weak low bits of a string hash) over the whole table. */
  protected home(word: number): number {
    return Math.imul(word, 0x9e3779b1) >>> this.shift
  }

  /** Stores a pair whose key is known to be absent, growing first if need be. */
  protected add(word: number, slot: number): void {
    if ((this.count + 1) * 4 > this.table.length) this.grow()
    this.place(word, slot)
  }

  /**
   * Empties bucket `i`. Backward-shift deletion: later pairs of the probe run move into the hole when the hole
   * lies between their home bucket and where they sit, so lookups never meet a gap inside a run.
   */
  protected removeAt(i: number): void {
    const table = this.table
    const mask = this.mask
    let hole = i
    let j = i
    for (;;) {
      j = (j + 1) & mask
      const stored = table[2 * j + 1]!
      if (stored === 0) break
      const home = this.home(table[2 * j]!)
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j
      if (movable) {
        table[2 * hole] = table[2 * j]!
        table[2 * hole + 1] = stored
        hole = j
      }
    }
    table[2 * hole + 1] = 0
    this.count--
  }

  private place(word: number, slot: number): void {
    const table = this.table
    let i = this.home(word)
    while (table[2 * i + 1] !== 0) i = (i + 1) & this.mask
    table[2 * i] = word
    table[2 * i + 1] = slot + 1
    this.count++
  }

  private grow(): void {
    const old = this.table
    const buckets = old.length // twice the old bucket count
    this.table = new Int32Array(buckets * 2)
    this.mask = buckets - 1
    this.shift = 32 - Math.log2(buckets)
    this.count = 0
    for (let i = 0; i < old.length; i += 2) {
      const stored = old[i + 1]!
      if (stored !== 0) this.place(old[i]!, stored - 1)
    }
  }
}

/** An index of 32-bit integer keys: the bucket's word is the key itself. */
export class IntIndex extends Buckets {
  constructor(initialSize = 16) {
    super(initialSize)
  }

  /** The slot stored under `key`, or -1. */
  get(key: number): number {
    const table = this.table
    let i = this.home(key)
    for (;;) {
      const stored = table[2 * i + 1]!
      if (stored === 0) return -1
      if (table[2 * i] === key) return stored - 1
      i = (i + 1) & this.mask
    }
  }

  /** Stores `slot` under `key`, replacing any previous slot. */
  set(key: number, slot: number): void {
    const table = this.table
    let i = this.home(key)
    for (;;) {
      const stored = table[2 * i + 1]!
      if (stored === 0) return this.add(key, slot)
      if (table[2 * i] === key) {
        table[2 * i + 1] = slot + 1
        return
      }
      i = (i + 1) & this.mask
    }
  }

  /** Removes `key`; returns whether it was held. */
  delete(key: number): boolean {
    const table = this.table
    let i = this.home(key)
    for (;;) {
      const stored = table[2 * i + 1]!
      if (stored === 0) return false
      if (table[2 * i] === key) break
      i = (i + 1) & this.mask
    }
    this.removeAt(i)
    return true
  }
}

/**
 * A hash of `key`'s UTF-16 code units, cut to 30 bits: FNV-1a over the even code units and, separately, over the
 * odd ones, the two joined by a multiplication. Unlike `Map`, which reuses the hash V8 caches in a string, this
 * reads the whole key on every lookup: cheap for the short keys caches use, O(length) for long ones.
 *
 * Two lanes, because each FNV step waits for the previous one's multiplication: one lane made a ten-character
 * key a chain of ten, two lanes run side by side in half of it (measured: about 6 % of a W-TinyLFU string
 * get-hit, `npm run bench:hit-ratio`). Thirty bits keep it a small integer (a V8 Smi): a full 32-bit hash is
 * boxed as a heap number wherever it crosses a call, which measured several times slower.
 *
 * `String.prototype.charCodeAt.call(key, i)`, never `key.charCodeAt(i)`: V8 looks `key.charCodeAt` up by the
 * string's map, and a string has one of many (flat, concatenated, sliced, internalized, two-byte…). Once this
 * function has seen more than four, as it has in any service that has run a while, that lookup is megamorphic:
 * V8 no longer inlines the read, and every character costs a property lookup and a call (measured: a 10-character
 * key 11–14 ns, then 52–54 ns; `LruMap`'s string get-hit fell from 1.6× to 0.7× lru-cache's). Reached through
 * `String.prototype`, the function is a constant that V8 inlines whatever the string (12–15 ns either way).
 */
export const hashString = (key: string): number => {
  let even = 0x811c9dc5 | 0
  let odd = 0x2545f491 | 0
  const n = key.length
  let i = 0
  for (; i + 1 < n; i += 2) {
    even = Math.imul(even ^ String.prototype.charCodeAt.call(key, i), 0x01000193)
    odd = Math.imul(odd ^ String.prototype.charCodeAt.call(key, i + 1), 0x01000193)
  }
  if (i < n) even = Math.imul(even ^ String.prototype.charCodeAt.call(key, i), 0x01000193)
  return (even ^ Math.imul(odd, 0x85ebca6b)) & 0x3fffffff
}

/**
 * An index of string keys: the bucket's word is the key's `hashString`, and the keys themselves stay in the
 * owner's array (`keys[slot]`), compared only when the hashes match. The owner keeps each entry's hash too, so
 * that removing an entry (an eviction) finds its bucket without reading the key again.
 */
export class StringIndex extends Buckets {
  constructor(initialSize = 16) {
    super(initialSize)
  }

  /**
   * The slot of `key` (whose hash is `hash`), given the owner's keys by slot; -1 when absent.
   *
   * The keys are compared with `Object.is`, which agrees with `===` on strings: V8 compiles `===` from the
   * kinds of string this comparison has met, and after it has met several (see `hashString`), the W-TinyLFU
   * string get-hit measured 0.58–0.83× lru-cache with `===` and 0.73–0.91× with `Object.is`, in four runs
   * that timed both side by side (`LruMap`: the same within the noise).
   */
  get(key: string, hash: number, keys: ReadonlyArray<unknown>): number {
    const table = this.table
    let i = this.home(hash)
    for (;;) {
      const stored = table[2 * i + 1]!
      if (stored === 0) return -1
      if (table[2 * i] === hash && Object.is(keys[stored - 1], key)) return stored - 1
      i = (i + 1) & this.mask
    }
  }

  /** Indexes `slot` under `hash`; its key must not be indexed already. */
  insert(hash: number, slot: number): void {
    this.add(hash, slot)
  }

  /** Removes `slot`, indexed under `hash`. */
  delete(hash: number, slot: number): void {
    const table = this.table
    let i = this.home(hash)
    while (table[2 * i + 1] !== slot + 1) i = (i + 1) & this.mask
    this.removeAt(i)
  }
}
