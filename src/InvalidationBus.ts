/**
 * Invalidation across instances: every write publishes the keys it changed (never values), and every other
 * instance drops them from its nearest tier. Over Redis pub/sub (`make`), or between instances of one process
 * (`makeMemoryHub`) for tests of several instances without Redis.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as MemoryBus from "./internal/memoryBus.js"
import * as RedisBus from "./internal/redisBus.js"
import type { RedisClient, RedisConnectionError } from "./RedisClient.js"

/**
 * What a message said besides its keys.
 *
 * @since 0.1.0
 * @category models
 */
export interface Invalidation {
  /**
   * The writer could not update the shared (farther) tiers for these keys — a Redis timeout, an open breaker —
   * so they may still hold the older values there until the writer repairs them: a receiver must not read them
   * from those tiers meanwhile.
   */
  readonly sharedTiersStale: boolean
}

/**
 * What an instance does with invalidations from the others.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener<K> {
  /** Another instance changed these keys. */
  readonly onInvalidate: (keys: ReadonlyArray<K>, invalidation: Invalidation) => Effect.Effect<void>
  /**
   * Messages may have been missed: the subscription was lost (it is called when the loss is noticed, and again
   * once the subscription is back), or another instance could not publish some of its keys. Everything local
   * may be stale.
   */
  readonly onGap: Effect.Effect<void>
  /**
   * Another instance invalidated these tags, each at its position in the tag ledger (see `tagPositions`).
   * Default: ignored.
   */
  readonly onTags?: (tags: ReadonlyArray<readonly [tag: string, position: number]>) => Effect.Effect<void>
}

/**
 * The tag ledger as read at one moment: its position (how many tag invalidations it has ordered, a number that
 * only grows) and the position of the last invalidation of each tag asked for (0 for a tag never invalidated).
 *
 * @since 0.1.0
 * @category models
 */
export interface TagPositions {
  readonly position: number
  readonly tags: ReadonlyMap<string, number>
}

/**
 * The tag ledger could not be read or written (its Redis did not answer, or answered with an error): a tag
 * invalidation that fails with it did not happen.
 *
 * @since 0.1.0
 * @category errors
 */
export class TagLedgerError extends Data.TaggedError("TagLedgerError")<{
  /** What went wrong, without anything the client's error carried beyond kind and message. */
  readonly reason: string
}> {
  override get message(): string {
    return `tag ledger: ${this.reason}`
  }
}

/**
 * Counts of the bus's work since it started.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Messages this instance published. */
  readonly published: number
  /** Publications that failed (their keys are kept and published again later). */
  readonly publishFailures: number
  /** Messages received from other instances. */
  readonly received: number
  /** Keys those messages invalidated. */
  readonly invalidatedKeys: number
  /** Times everything local was dropped: after a gap in the subscription, or on another instance's request. */
  readonly gaps: number
  /** Keys (and tags) waiting to be published again. */
  readonly pending: number
}

/**
 * Options of one publication.
 *
 * @since 0.1.0
 * @category models
 */
export interface PublishOptions {
  /** The shared tiers missed the write of these keys (see `Invalidation.sharedTiersStale`). Default: false. */
  readonly sharedTiersStale?: boolean
}

/**
 * An instance's end of the bus.
 *
 * @since 0.1.0
 * @category models
 */
export interface InvalidationBus<in out K> {
  /** This instance's id, carried by its messages so that it ignores its own. */
  readonly instanceId: string
  /** The channel; on a Redis Cluster, the prefix of its sharded channels (`<channel>:<i>`). */
  readonly channel: string
  /**
   * Tells the other instances that `keys` changed. Never fails: when the message cannot be sent the keys are
   * kept (at most `maxPending`, past which the next message asks everyone to drop everything) and published
   * again every `retryInterval` until it succeeds.
   */
  publish(keys: ReadonlyArray<K>, options?: PublishOptions): Effect.Effect<void>
  /** Asks every other instance to drop everything local (after `invalidateAll`). Never fails, like `publish`. */
  readonly publishAll: Effect.Effect<void>
  /**
   * Orders an invalidation of `tags` in the tag ledger — it gets a position above every earlier one and above
   * `floor` — and tells the other instances. Fails when the ledger cannot be written; once it has been, the
   * message is published as `publish`'s are (kept and sent again when it cannot be sent at once).
   */
  invalidateTags(tags: ReadonlyArray<string>, floor: number): Effect.Effect<number, TagLedgerError>
  /** Reads the tag ledger: its position and the positions of `tags`. */
  tagPositions(tags: ReadonlyArray<string>): Effect.Effect<TagPositions, TagLedgerError>
  /** Calls `listener` for every message from another instance, until the scope closes. */
  listen(listener: Listener<K>): Effect.Effect<void, never, Scope.Scope>
  /** Counts of this instance's messages and gaps since the bus started. */
  readonly stats: Effect.Effect<Stats>
}

/**
 * Options of the bus over Redis.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K> {
  /** The namespace of the cache it serves: the channel is `<namespace>:invalidations` (escaped like keys). */
  readonly namespace: string
  /** Turns a key into the string sent. Default: `String(key)`. */
  readonly encodeKey?: (key: K) => string
  /** Turns a received string back into a key; `None` drops it (a key that is not valid here). */
  readonly decodeKey: (key: string) => Option.Option<K>
  /** The most keys kept for publishing again. Default: 10,000. */
  readonly maxPending?: number
  /** How often kept keys are published again. Default: 1 second. */
  readonly retryInterval?: Duration.DurationInput
  /**
   * On a Redis Cluster: the number of sharded channels (`SPUBLISH` / `SSUBSCRIBE`) the messages are spread over,
   * in turn, so that no master carries every message. Default: 16. Unused on a single node.
   */
  readonly shards?: number
  /**
   * The longest a publication may take before its keys are kept for later, so that a write never waits long
   * on a Redis that does not answer. Default: 250 milliseconds.
   */
  readonly publishTimeout?: Duration.DurationInput
}

/**
 * Opens the bus over the `RedisClient` in context: publications go through its connection, the subscription
 * through a connection of its own (scoped), watched by the client's heartbeat. When the subscription is lost
 * (closed, or found silent), listeners get `onGap` at once and again once it is active again, so that nothing
 * published meanwhile is served stale afterwards.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K>(
  options: Options<K>
) => Effect.Effect<InvalidationBus<K>, RedisConnectionError, RedisClient | Scope.Scope> = RedisBus.make

/**
 * A layer providing the bus over Redis under `tag`, open as long as the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, K>(
  tag: Context.Tag<Id, InvalidationBus<K>>,
  options: Options<K>
): Layer.Layer<Id, RedisConnectionError, RedisClient> => Layer.scoped(tag, make(options))

/**
 * Options of an in-process hub.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryHubOptions {
  /**
   * How long a message takes to reach each other instance: a duration, or an effect that picks one per
   * delivery (with `Random`, deliveries are reordered; with `TestClock`, they arrive as the test adjusts the
   * clock). Default: at once, in a fiber of the receiver.
   */
  readonly delay?: Duration.DurationInput | Effect.Effect<Duration.DurationInput>
  /** The name its metrics are tagged with. Default: `"memory"`. */
  readonly namespace?: string
}

/**
 * Invalidation between instances of one process.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryHub<K> {
  /** One instance's end of the bus, connected until the scope closes; what it publishes reaches the others. */
  readonly connect: Effect.Effect<InvalidationBus<K>, never, Scope.Scope>
  /** Every connected instance hears a gap, as after a lost subscription. */
  readonly gap: Effect.Effect<void>
}

/**
 * Builds an in-process hub: the bus of a multi-instance test without Redis, driven by `TestClock`. Messages
 * are delivered to every other connected instance (never lost), after `delay`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemoryHub: <K>(options?: MemoryHubOptions) => Effect.Effect<MemoryHub<K>> = MemoryBus.make
