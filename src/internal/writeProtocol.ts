/**
 * The write protocol's bookkeeping, in one place: ticks, operations in progress per key, and the loads that
 * must let go of a key when it changes.
 *
 * Every guarantee against stale write-backs rests on one rule: an operation that read or decided a key's value
 * before a change of that key (a write, an invalidation, another instance's message) must not store that value
 * afterwards. Each party follows the rule through this module:
 *
 * - a write registers itself (`begin`) before the store sees it, and is `overtaken` by any change of its key
 *   that comes before it has updated the nearest tier; an overtaken write does not leave its value there;
 * - a repair of a tier registers its keys before reading the store, and skips the keys overtaken meanwhile;
 * - loads in flight follow every change (`follow`): the batched singleflight lets go of the key, so its batch
 *   stores nothing of it and the next reader starts a fresh load;
 * - ticks order writes, back-fills and repairs for the tiers' dirty marks (see `GuardedTier`).
 *
 * All of it is synchronous and local to one cache: it runs between the fiber steps of its callers, and two
 * instances only meet through the bus, whose messages are changes like any other.
 *
 * @internal
 */

/** One operation in progress on a key. Mutable by design: set when a change of its key overtakes it. */
export class Pending<K> {
  overtaken = false
  constructor(readonly key: K) {}
}

/** What a follower is told: the keys that changed, or `"all"`. */
export type Change<K> = ReadonlyArray<K> | "all"

/** Mutable by design: the ticks and the operations in progress change with every call. */
export class WriteProtocol<K> {
  private ticks = 0
  /** The operations in progress, by key. */
  private readonly pending = new Map<K, Set<Pending<K>>>()
  private readonly followers: Array<(change: Change<K>) => void> = []

  /** The next tick: later ticks are later events of this cache. */
  tick(): number {
    return ++this.ticks
  }

  /** Registers an operation on `key` whose outcome a change of the key may overtake. */
  begin(key: K): Pending<K> {
    const operation = new Pending(key)
    const set = this.pending.get(key)
    if (set === undefined) this.pending.set(key, new Set([operation]))
    else set.add(operation)
    return operation
  }

  /** Ends an operation (whatever its outcome): later changes no longer concern it. */
  end(operation: Pending<K>): void {
    const set = this.pending.get(operation.key)
    if (set === undefined) return
    set.delete(operation)
    if (set.size === 0) this.pending.delete(operation.key)
  }

  /**
   * A change of `keys` is coming or has come: every operation in progress on them, but `except` (the change's
   * own), is overtaken, and every follower lets go of them.
   */
  change(keys: Change<K>, except?: Pending<K>): void {
    if (keys === "all") {
      for (const set of this.pending.values()) for (const operation of set) if (operation !== except) operation.overtaken = true
    } else if (this.pending.size > 0) {
      for (const key of keys) {
        const set = this.pending.get(key)
        if (set !== undefined) for (const operation of set) if (operation !== except) operation.overtaken = true
      }
    }
    for (const follow of this.followers) follow(keys)
  }

  /** Calls `follower` with every change from now on (the batched singleflight, so its loads let go of keys). */
  follow(follower: (change: Change<K>) => void): void {
    this.followers.push(follower)
  }
}
