/**
 * Tiny reference models the caches are compared against in property tests. They favour obviousness over speed.
 */

/** A textbook LRU: a `Map` kept in recency order (least recent first), optionally with expiry instants. */
export class ModelLru<K, V> {
  readonly entries = new Map<K, { value: V; expiresAt: number }>()
  constructor(readonly capacity: number) {}

  /** Like a cache read at `now`: drops an expired entry, refreshes recency of a live one. */
  get(key: K, now = 0): V | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    this.entries.delete(key)
    if (entry.expiresAt <= now) return undefined
    this.entries.set(key, entry)
    return entry.value
  }

  peek(key: K): V | undefined {
    return this.entries.get(key)?.value
  }

  /** Stores and returns the evicted key, if any. */
  set(key: K, value: V, expiresAt = Infinity): { key: K; value: V } | undefined {
    this.entries.delete(key)
    this.entries.set(key, { value, expiresAt })
    if (this.entries.size > this.capacity) {
      const [oldestKey, oldest] = this.entries.entries().next().value!
      this.entries.delete(oldestKey)
      return { key: oldestKey, value: oldest.value }
    }
    return undefined
  }

  delete(key: K): boolean {
    return this.entries.delete(key)
  }

  /** Entries from most to least recent. */
  order(): Array<[K, V]> {
    return [...this.entries].reverse().map(([key, entry]) => [key, entry.value])
  }
}
