/**
 * What every invalidation bus shares, whatever carries its messages (Redis pub/sub, an in-process hub): the
 * listeners and the fibers their work runs in, the stats and metrics, and the keys kept when a publication
 * failed, published again later.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as CacheMetrics from "../CacheMetrics.js"
import type { Listener, PublishOptions, Stats } from "../InvalidationBus.js"
import { attributeNames, span, spanNames } from "./spans.js"

/** A message between instances: keys (never values), tags with their ledger positions, or a request to drop everything. */
export interface Message<Key> {
  readonly from: string
  readonly keys?: ReadonlyArray<Key>
  readonly tags?: ReadonlyArray<readonly [string, number]>
  /** The writer could not update the shared tiers for these keys: they may hold older values there. */
  readonly stale?: true
  readonly all?: true
  /** When the publisher sent it, in milliseconds since the epoch by its clock (for `cache_bus_lag_ms`). */
  readonly sent?: number
}

/** Sends one message; fails (or times out) when it could not. */
export type Send<Key> = (message: Message<Key>) => Effect.Effect<void, unknown>

type Counter = "published" | "publishFailures" | "received" | "invalidatedKeys" | "gaps"

/** Mutable by design: listeners come and go, counters and kept keys change with every message. */
export class Endpoint<K, Key> {
  private readonly listeners = new Set<Listener<K>>()
  private readonly local: Record<Counter, number> = { published: 0, publishFailures: 0, received: 0, invalidatedKeys: 0, gaps: 0 }
  private readonly metrics: Record<Counter, ReturnType<typeof CacheMetrics.counter>>
  private readonly lag: ReturnType<typeof CacheMetrics.busLag>
  private readonly spanAttributes: Record<string, unknown>
  /**
   * Keys that could not be published, by whether the shared tiers missed them, and tags with their latest
   * position; `all` past `maxPending`.
   */
  private readonly kept = { fresh: new Set<Key>(), stale: new Set<Key>(), tags: new Map<string, number>(), all: false }

  constructor(
    readonly instanceId: string,
    readonly namespace: string,
    private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => unknown,
    private readonly send: Send<Key>,
    private readonly decodeKey: (key: Key) => K | undefined,
    private readonly maxPending: number,
    private readonly clock: Clock.Clock
  ) {
    const labels = { cache: namespace, tier: "bus" }
    const names = CacheMetrics.metricNames
    this.metrics = {
      published: CacheMetrics.counter(names.busPublished, labels),
      publishFailures: CacheMetrics.counter(names.busPublishFailures, labels),
      received: CacheMetrics.counter(names.busReceived, labels),
      invalidatedKeys: CacheMetrics.counter(names.busInvalidatedKeys, labels),
      gaps: CacheMetrics.counter(names.busGaps, labels)
    }
    this.lag = CacheMetrics.busLag(namespace)
    // Registered now, so that an exporter lists them at zero before their first event (a rate of 0, not "no data").
    for (const metric of [...Object.values(this.metrics), this.lag]) metric.unsafeValue(none)
    this.spanAttributes = { [attributeNames.cache]: namespace }
  }

  private count(what: Counter, n = 1): void {
    this.local[what] += n
    this.metrics[what].unsafeUpdate(n, none)
  }

  /** Everything local may be stale: every listener drops everything. */
  gap(): void {
    this.count("gaps")
    for (const listener of this.listeners) this.runFork(listener.onGap)
  }

  /** A message arrived; one of this instance's own is ignored. */
  receive(message: Message<Key>): void {
    if (message.from === this.instanceId) return
    this.count("received")
    // Another machine's clock may be ahead of this one's: a negative lag is recorded as none.
    if (message.sent !== undefined) this.lag.unsafeUpdate(Math.max(0, this.clock.unsafeCurrentTimeMillis() - message.sent), none)
    if (message.all === true) return this.gap()
    if (message.tags !== undefined && message.tags.length > 0) {
      const tags = message.tags
      for (const listener of this.listeners) {
        if (listener.onTags !== undefined) this.runFork(this.received(listener.onTags(tags), "tags", tags.length))
      }
    }
    const keys: Array<K> = []
    for (const raw of message.keys ?? []) {
      const key = this.decodeKey(raw)
      if (key !== undefined) keys.push(key)
    }
    if (keys.length === 0) return
    this.count("invalidatedKeys", keys.length)
    const info = { sharedTiersStale: message.stale === true }
    for (const listener of this.listeners) this.runFork(this.received(listener.onInvalidate(keys, info), "keys", keys.length, keys))
  }

  /** A listener's work on a message, in a `cache.bus.receive` span. */
  private received(work: Effect.Effect<void>, kind: string, size: number, keys?: ReadonlyArray<K>): Effect.Effect<void> {
    return span(work, spanNames.busReceive, { ...this.spanAttributes, [attributeNames.operation]: kind, [attributeNames.batchSize]: size }, keys)
  }

  /** Sends a message; when it cannot be sent its keys are kept for `flush`, and it never fails. */
  private deliver(unsent: Message<Key>): Effect.Effect<void> {
    const kind = unsent.all === true ? "all" : unsent.tags !== undefined ? "tags" : "keys"
    const size = unsent.keys?.length ?? unsent.tags?.length ?? 0
    const send = Effect.suspend(() => {
      const message = { ...unsent, sent: this.clock.unsafeCurrentTimeMillis() }
      return this.outcome(message, this.send(message))
    })
    return span(send, spanNames.busPublish, {
      ...this.spanAttributes,
      [attributeNames.operation]: kind,
      [attributeNames.batchSize]: size
    }, unsent.all === true ? "all" : unsent.keys)
  }

  /** Counts a send's outcome; when it failed, its keys are kept for `flush`. */
  private outcome(message: Message<Key>, send: Effect.Effect<void, unknown>): Effect.Effect<void> {
    return Effect.matchEffect(send, {
      onFailure: () =>
        Effect.sync(() => {
          this.count("publishFailures")
          const keys = message.keys ?? []
          const tags = message.tags ?? []
          const kept = this.kept
          if (
            message.all === true || kept.all ||
            kept.fresh.size + kept.stale.size + kept.tags.size + keys.length + tags.length > this.maxPending
          ) {
            // Too much to keep: everyone drops everything (and reads the tag ledger again).
            kept.all = true
            kept.fresh.clear()
            kept.stale.clear()
            kept.tags.clear()
          } else {
            for (const key of keys) (message.stale === true ? kept.stale : kept.fresh).add(key)
            for (const [tag, at] of tags) kept.tags.set(tag, Math.max(at, kept.tags.get(tag) ?? at))
          }
        }),
      onSuccess: () => Effect.sync(() => this.count("published"))
    })
  }

  publish(keys: ReadonlyArray<Key>, options?: PublishOptions): Effect.Effect<void> {
    if (keys.length === 0) return Effect.void
    return this.deliver({
      from: this.instanceId,
      keys,
      ...(options?.sharedTiersStale === true ? { stale: true as const } : {})
    })
  }

  /** Tells the others of tag invalidations, each at its ledger position. */
  publishTags(tags: ReadonlyArray<readonly [string, number]>): Effect.Effect<void> {
    if (tags.length === 0) return Effect.void
    return this.deliver({ from: this.instanceId, tags })
  }

  get publishAll(): Effect.Effect<void> {
    return this.deliver({ from: this.instanceId, all: true })
  }

  /** Publishes what was kept: everything at once, or a request to drop everything when too much was lost. */
  get flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const kept = this.kept
      if (kept.all) {
        kept.all = false
        return this.publishAll
      }
      const fresh = Array.from(kept.fresh)
      const stale = Array.from(kept.stale)
      const tags = Array.from(kept.tags)
      kept.fresh.clear()
      kept.stale.clear()
      kept.tags.clear()
      return Effect.zipRight(
        this.publishTags(tags),
        Effect.zipRight(this.publish(fresh), this.publish(stale, { sharedTiersStale: true }))
      )
    })
  }

  listen(listener: Listener<K>): Effect.Effect<void, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.sync(() => void this.listeners.add(listener)),
      () => Effect.sync(() => void this.listeners.delete(listener))
    )
  }

  get stats(): Effect.Effect<Stats> {
    return Effect.sync(() => {
      const kept = this.kept
      return { ...this.local, pending: kept.all ? Infinity : kept.fresh.size + kept.stale.size + kept.tags.size }
    })
  }
}

const none: ReadonlyArray<never> = []

/** A runner for listener work in fibers of the current scope: closing it interrupts what a message started. */
export const listenerRuntime: Effect.Effect<<A, E>(effect: Effect.Effect<A, E>) => unknown, never, Scope.Scope> =
  Effect.map(FiberSet.makeRuntime<never, unknown, unknown>(), (runFork) => (effect) => runFork(effect))
