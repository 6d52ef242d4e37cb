/**
 * An open-addressing hash index from 32-bit integer keys to slot numbers, for `LruMap`.
 *
 * Why it exists: integer ids are the most common cache keys, and a `Map` pays for every eviction with a
 * `delete` (a tombstone) and a `set`, plus periodic rehashing of the whole table to clear the tombstones.
 * Linear probing with backward-shift deletion leaves no tombstones, so a delete followed by an insert costs
 * two short probes and nothing later. Each bucket is a pair in one `Int32Array` — the key, then the slot plus
 * one (zero marks an empty bucket) — so a probe touches one cache line. The table doubles while it is more
 * than half full and never shrinks.
 *
 * @internal
 */
export class IntIndex {
  private table: Int32Array
  private mask: number
  private shift: number
  private count = 0

  constructor(initialSize = 16) {
    const buckets = 2 ** Math.ceil(Math.log2(Math.max(initialSize, 2)))
    this.table = new Int32Array(buckets * 2)
    this.mask = buckets - 1
    this.shift = 32 - Math.log2(buckets)
  }

  /** The number of keys held. */
  get size(): number {
    return this.count
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
    if ((this.count + 1) * 4 > this.table.length) this.grow()
    this.insert(key, slot)
  }

  /** Removes `key`; returns whether it was held. */
  delete(key: number): boolean {
    const table = this.table
    const mask = this.mask
    let i = this.home(key)
    for (;;) {
      if (table[2 * i + 1] === 0) return false
      if (table[2 * i] === key) break
      i = (i + 1) & mask
    }
    // Backward-shift deletion: pull later entries of the probe run into the hole when the hole lies between
    // their home bucket and where they sit, so lookups never meet a gap inside a run.
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
    return true
  }

  /** Removes every key. */
  clear(): void {
    this.table.fill(0)
    this.count = 0
  }

  private insert(key: number, slot: number): void {
    const table = this.table
    let i = this.home(key)
    for (;;) {
      const stored = table[2 * i + 1]!
      if (stored === 0) {
        table[2 * i] = key
        table[2 * i + 1] = slot + 1
        this.count++
        return
      }
      if (table[2 * i] === key) {
        table[2 * i + 1] = slot + 1
        return
      }
      i = (i + 1) & this.mask
    }
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
      if (stored !== 0) this.insert(old[i]!, stored - 1)
    }
  }

  /** Fibonacci hashing: spreads sequential ids over the whole table. */
  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift
  }
}
