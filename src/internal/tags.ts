/**
 * Tags: what an instance knows of the tag ledger, and the ledger of one process.
 *
 * The ledger orders tag invalidations: each gets a position, above every earlier one, and the ledger keeps the
 * last position of each tag. An entry carries its tags and `seen`, what this instance knew of the ledger when the
 * load (or write) that produced it began. It is valid while none of its tags was invalidated at a position above
 * `seen`: an invalidation that came after its load began has a position above anything known then, so a load
 * overtaken by an invalidation is never valid, whenever it ends and whichever instance reads it.
 *
 * An instance knows the positions of the tags whose invalidations it heard (on the bus, or its own) since a
 * `base`: the ledger's position read while it was listening. Every tag it has not heard of was invalidated at
 * or before `base`, so an entry with `seen ≥ base` is checked with no round trip; only an older one (from a
 * shared tier, stamped before this instance started or before its last gap) needs its tags' positions read from
 * the ledger, once. A gap forgets everything: what was missed is read again.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type { TagLedgerError, TagPositions } from "../InvalidationBus.js"

/** Where tag invalidations are ordered: the bus's (Redis, or a hub's), or this instance's alone. */
export interface Ledger {
  invalidateTags(tags: ReadonlyArray<string>, floor: number): Effect.Effect<number, TagLedgerError>
  tagPositions(tags: ReadonlyArray<string>): Effect.Effect<TagPositions, TagLedgerError>
}

/** A ledger in memory: for one instance without a bus, or the instances of a `MemoryHub`. Mutable by design. */
export class LocalLedger implements Ledger {
  private position = 0
  private readonly tags = new Map<string, number>()

  /** Orders an invalidation of `tags` at once (see `Ledger`). */
  unsafeInvalidate(tags: ReadonlyArray<string>, floor: number): number {
    const at = Math.max(this.position, floor) + 1
    this.position = at
    for (const tag of tags) this.tags.set(tag, at)
    return at
  }

  invalidateTags(tags: ReadonlyArray<string>, floor: number): Effect.Effect<number, TagLedgerError> {
    return Effect.sync(() => this.unsafeInvalidate(tags, floor))
  }

  tagPositions(tags: ReadonlyArray<string>): Effect.Effect<TagPositions, TagLedgerError> {
    return Effect.sync(() => ({ position: this.position, tags: new Map(tags.map((tag) => [tag, this.tags.get(tag) ?? 0])) }))
  }
}

/** What was known of the ledger when a load or write began. */
export interface Stamp {
  readonly seen: number
  readonly gaps: number
}

/** What a check of an entry's tags found. */
export type Verdict = "valid" | "invalid" | "unknown"

/** The `seen` of an entry whose load began when nothing was known of the ledger: valid only without tags. */
export const unseen = -1

/** The most tag positions kept; past it they are forgotten, and `base` moves up to what is known. */
const maxTags = 100_000

/** How long after a failed read of the ledger's position loads go on unstamped without trying again. */
const retryMillis = 1_000

/** What an instance knows of the ledger (see the module's doc). Mutable by design. */
export class TagClock {
  /** Positions of the tags heard of (or read) since `base`. */
  private readonly heard = new Map<string, number>()
  /** Every tag not in `heard` was invalidated at or before it; undefined: not read since the last gap. */
  private base: number | undefined = undefined
  /** The highest position known: what a load that begins now has seen. */
  private known = unseen
  /** Moves at each gap: a read of the ledger begun before one must not be taken as current after it. */
  private epoch = 0
  /** The read of the ledger's position under way, shared by the loads that wait for it. */
  private reading: Deferred.Deferred<void> | undefined = undefined
  /** Until when, after a failed read, loads do not wait for another. */
  private retryAt = 0

  constructor(private readonly ledger: Ledger, private readonly clock: Clock.Clock) {}

  /** What a load or write that begins now has seen of the ledger (`unseen` before it has been read). */
  take(): Stamp {
    return { seen: this.base === undefined ? unseen : this.known, gaps: this.epoch }
  }

  /**
   * The `seen` of what a load or write stamped `stamp` produced: `unseen` once a gap came between (what was
   * known then may have missed invalidations, and the ledger may even have gone back).
   */
  seenOf(stamp: Stamp): number {
    return stamp.gaps === this.epoch ? stamp.seen : unseen
  }

  /**
   * Reads the ledger's position when it is not known, before a load, so that what it loads can be checked: one
   * read at a time, shared; after a failed one, loads go on unstamped for a second without waiting on another.
   */
  get ready(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.base !== undefined || this.clock.unsafeCurrentTimeMillis() < this.retryAt) return Effect.void
      if (this.reading !== undefined) return Deferred.await(this.reading)
      const reading = Deferred.unsafeMake<void>(FiberId.none)
      this.reading = reading
      return this.readPositions([]).pipe(
        Effect.tap((read) =>
          Effect.sync(() => {
            if (read === "failed") this.retryAt = this.clock.unsafeCurrentTimeMillis() + retryMillis
          })
        ),
        Effect.ensuring(Effect.sync(() => {
          this.reading = undefined
          Deferred.unsafeDone(reading, Effect.void)
        })),
        Effect.asVoid
      )
    })
  }

  /** Whether an entry with `tags`, stamped `seen`, may answer. */
  check(tags: ReadonlyArray<string>, seen: number | undefined): Verdict {
    if (seen === undefined) return "invalid"
    const base = this.base
    // Nothing invalidated since it was stamped (the common case): its tags need no look.
    if (base !== undefined && seen >= this.known) return "valid"
    let unknown = false
    for (let i = 0; i < tags.length; i++) {
      const at = this.heard.get(tags[i]!)
      if (at !== undefined) {
        if (at > seen) return "invalid"
      } else if (base === undefined || seen < base) unknown = true
    }
    return unknown ? "unknown" : "valid"
  }

  /** Reads the positions of `tags` (and the ledger's) into what is known; a failure leaves them unknown. */
  read(tags: ReadonlyArray<string>): Effect.Effect<void> {
    return Effect.asVoid(this.readPositions(tags))
  }

  /** `read`, saying whether it failed, or was overtaken by a gap (and not kept). */
  private readPositions(tags: ReadonlyArray<string>): Effect.Effect<"kept" | "overtaken" | "failed"> {
    return Effect.suspend(() => {
      const epoch = this.epoch
      return Effect.match(this.ledger.tagPositions(tags), {
        onFailure: () => "failed" as const,
        onSuccess: (positions) => {
          if (epoch !== this.epoch) return "overtaken" as const
          this.learn(positions.tags)
          if (this.base === undefined) this.base = positions.position
          if (positions.position > this.known) this.known = positions.position
          return "kept" as const
        }
      })
    })
  }

  /** Invalidations heard of (on the bus, or made here). */
  learn(tags: Iterable<readonly [string, number]>): void {
    for (const [tag, at] of tags) {
      const before = this.heard.get(tag)
      if (before === undefined || at > before) this.heard.set(tag, at)
      if (at > this.known) this.known = at
    }
    if (this.heard.size > maxTags) {
      // Every position forgotten is at most `known`: it becomes the base (only if there is one: without a base
      // nothing is taken as known anyway).
      this.heard.clear()
      if (this.base !== undefined) this.base = this.known
    }
  }

  /** Invalidates `tags` in the ledger (above everything known here), and knows it at once. */
  invalidate(tags: ReadonlyArray<string>): Effect.Effect<number, TagLedgerError> {
    return Effect.suspend(() =>
      Effect.tap(this.ledger.invalidateTags(tags, this.known), (at) =>
        Effect.sync(() => this.learn(tags.map((tag) => [tag, at] as const))))
    )
  }

  /** Messages may have been missed: everything is read again. */
  gap(): void {
    this.epoch++
    this.heard.clear()
    this.base = undefined
    // The ledger itself may have gone back (a failover of its Redis): stamps start again from what it says.
    this.known = unseen
  }
}

/** The tags of an entry, as stored: none is `undefined`, so that untagged entries stay as they were. */
export const tagsOf = <A>(of: ((value: A) => Iterable<string>) | undefined, value: A): ReadonlyArray<string> | undefined => {
  if (of === undefined) return undefined
  const tags = Array.from(new Set(of(value)))
  return tags.length === 0 ? undefined : tags
}
