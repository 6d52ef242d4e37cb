/**
 * Invalidation across instances over Redis pub/sub: every write publishes the keys it changed (never values),
 * and every other instance drops them from its nearest tier.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as CacheMetrics from "./CacheMetrics.js"
import { redisFailure } from "./internal/redisFailure.js"
import { escapeKeyPart } from "./RedisCache.js"
import { RedisClient, RedisConnectionError } from "./RedisClient.js"

/**
 * What an instance does with invalidations from the others.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener<K> {
  /** Another instance changed these keys. */
  readonly onInvalidate: (keys: ReadonlyArray<K>) => Effect.Effect<void>
  /**
   * Messages may have been missed: the subscription was lost (it is called when the loss is noticed, and again
   * once the subscription is back), or another instance could not publish some of its keys. Everything local
   * may be stale.
   */
  readonly onGap: Effect.Effect<void>
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
  /** Keys waiting to be published again. */
  readonly pending: number
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
  /** The Redis channel. */
  readonly channel: string
  /**
   * Tells the other instances that `keys` changed. Never fails: when Redis cannot be reached the keys are kept
   * (at most `maxPending`, past which the next message asks everyone to drop everything) and published again
   * every `retryInterval` until it succeeds.
   */
  publish(keys: ReadonlyArray<K>): Effect.Effect<void>
  /** Calls `listener` for every message from another instance, until the scope closes. */
  listen(listener: Listener<K>): Effect.Effect<void, never, Scope.Scope>
  /** Counts of this instance's messages and gaps since the bus started. */
  readonly stats: Effect.Effect<Stats>
}

/**
 * Options of the bus.
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
   * The longest a publication may take before its keys are kept for later, so that a write never waits long
   * on a Redis that does not answer. Default: 250 milliseconds.
   */
  readonly publishTimeout?: Duration.DurationInput
}

interface Message {
  readonly from: string
  readonly keys?: ReadonlyArray<string>
  readonly all?: true
}

const parseMessage = (text: string): Message | undefined => {
  try {
    const data: unknown = JSON.parse(text)
    if (typeof data !== "object" || data === null || !("from" in data) || typeof data.from !== "string") return undefined
    if ("all" in data && data.all === true) return { from: data.from, all: true }
    if ("keys" in data && Array.isArray(data.keys) && data.keys.every((k: unknown) => typeof k === "string")) {
      return { from: data.from, keys: data.keys }
    }
    return undefined
  } catch {
    return undefined
  }
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
export const make = <K>(
  options: Options<K>
): Effect.Effect<InvalidationBus<K>, RedisConnectionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const redis = yield* RedisClient
    // Listener work runs in fibers of this scope: closing it interrupts whatever a message started.
    const runFork = yield* FiberSet.makeRuntime<never, void, never>()
    const instanceId = Crypto.randomUUID()
    const channel = `${escapeKeyPart(options.namespace)}:invalidations`
    const encodeKey: (key: K) => string = options.encodeKey ?? String
    const maxPending = options.maxPending ?? 10_000
    const publishTimeout = options.publishTimeout ?? "250 millis"
    const listeners = new Set<Listener<K>>()
    const pending = new Set<string>()
    let pendingAll = false

    // Per instance for `stats`, and as tagged metrics for exporters.
    const local = { published: 0, publishFailures: 0, received: 0, invalidatedKeys: 0, gaps: 0 }
    const labels = { cache: options.namespace, tier: "bus" }
    const metrics = {
      published: CacheMetrics.counter("cache_bus_published", labels),
      publishFailures: CacheMetrics.counter("cache_bus_publish_failures", labels),
      received: CacheMetrics.counter("cache_bus_received", labels),
      invalidatedKeys: CacheMetrics.counter("cache_bus_invalidated_keys", labels),
      gaps: CacheMetrics.counter("cache_bus_gaps", labels)
    }
    const none: ReadonlyArray<never> = []
    const count = (what: keyof typeof local, n = 1) => {
      local[what] += n
      metrics[what].unsafeUpdate(n, none)
    }

    const gap = () => {
      count("gaps")
      for (const listener of listeners) runFork(listener.onGap)
    }

    // Resubscribing is done here rather than by ioredis, to know when the subscription is active again.
    const subscriber = yield* redis.duplicate({ autoResubscribe: false })
    subscriber.on("message", (from: string, text: string) => {
      if (from !== channel) return
      const message = parseMessage(text)
      if (message === undefined || message.from === instanceId) return
      count("received")
      if (message.all) return gap()
      const keys: Array<K> = []
      for (const raw of message.keys ?? []) {
        const key = options.decodeKey(raw)
        if (Option.isSome(key)) keys.push(key.value)
      }
      if (keys.length === 0) return
      count("invalidatedKeys", keys.length)
      for (const listener of listeners) runFork(listener.onInvalidate(keys))
    })
    yield* Effect.tryPromise({
      try: () => subscriber.subscribe(channel),
      catch: (cause) => {
        const failure = redisFailure(cause)
        return new RedisConnectionError({
          address: redis.address,
          reason: `cannot subscribe: ${failure.message}`,
          ...(failure.code === undefined ? {} : { code: failure.code })
        })
      }
    })
    // A lost subscription may already have missed messages (a connection found silent by the heartbeat may
    // have been deaf for seconds): everything local is dropped as soon as ioredis sets out to reconnect, and
    // again once subscribed again, since messages published while it was down are never delivered. A
    // resubscription that fails is tried again every `retryInterval`.
    let subscribed = true
    subscriber.on("close", () => {
      subscribed = false
    })
    let deaf = false
    subscriber.on("reconnecting", () => {
      if (deaf) return
      deaf = true
      gap()
    })
    const resubscribe = () =>
      subscriber.subscribe(channel).then(() => {
        if (subscribed) return
        subscribed = true
        deaf = false
        gap()
      }, () => {})
    subscriber.on("ready", resubscribe)

    /** Sends one message; on failure its keys are kept for later. */
    const send = (message: Message, keys: ReadonlyArray<string>): Effect.Effect<void> =>
      Effect.tryPromise(() => redis.client.publish(channel, JSON.stringify(message))).pipe(
        // Interruptible: a write publishes from its exit, which is not, and the timeout must still hold.
        Effect.interruptible,
        Effect.timeout(publishTimeout),
        Effect.matchEffect({
          onFailure: () =>
            Effect.sync(() => {
              count("publishFailures")
              if (message.all || pending.size + keys.length > maxPending) {
                pendingAll = true
                pending.clear()
              } else {
                for (const key of keys) pending.add(key)
              }
            }),
          onSuccess: () => Effect.sync(() => count("published"))
        })
      )

    /** Publishes what was kept: everything at once, or a request to drop everything when too much was lost. */
    const flushPending = Effect.suspend(() => {
      if (pendingAll) {
        pendingAll = false
        return send({ from: instanceId, all: true }, none)
      }
      if (pending.size === 0) return Effect.void
      const keys = Array.from(pending)
      pending.clear()
      return send({ from: instanceId, keys }, keys)
    })

    yield* Effect.sleep(options.retryInterval ?? "1 second").pipe(
      Effect.andThen(Effect.sync(() => {
        if (!subscribed && subscriber.status === "ready") void resubscribe()
      })),
      Effect.andThen(flushPending),
      Effect.catchAllCause((cause) => Effect.logWarning("invalidation bus: retry failed", cause)),
      Effect.forever,
      Effect.annotateLogs({ channel }),
      Effect.interruptible,
      Effect.forkScoped
    )

    return {
      instanceId,
      channel,
      publish: (keys) =>
        Effect.suspend(() => {
          if (keys.length === 0) return Effect.void
          const encoded = keys.map(encodeKey)
          return send({ from: instanceId, keys: encoded }, encoded)
        }),
      listen: (listener) =>
        Effect.acquireRelease(
          Effect.sync(() => void listeners.add(listener)),
          () => Effect.sync(() => void listeners.delete(listener))
        ),
      stats: Effect.sync(() => ({ ...local, pending: pendingAll ? Infinity : pending.size }))
    }
  })
