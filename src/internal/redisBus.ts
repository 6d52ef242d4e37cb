/**
 * The invalidation bus over Redis pub/sub: messages are JSON on `<namespace>:invalidations`, published through
 * the client's connection and received on a connection of its own, whose losses are gaps.
 *
 * On a Redis Cluster it uses sharded pub/sub (Redis ≥ 7): `shards` channels `<namespace>:invalidations:{<tag>}`,
 * whose hash tags spread their slots evenly over the slot space, hence over the masters; each message goes to the next channel in turn (`SPUBLISH`), and
 * the subscriber holds an `SSUBSCRIBE` of every channel on the master that owns it (ioredis's sharded
 * subscriber group, which follows failovers and resharding). Losing any of those subscriptions is a gap.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import type { InvalidationBus, Options } from "../InvalidationBus.js"
import { escapeKeyPart } from "../RedisCache.js"
import { isCluster, RedisClient, RedisConnectionError } from "../RedisClient.js"
import type { Cluster } from "ioredis"
import { Endpoint, listenerRuntime, type Message } from "./busEndpoint.js"
import { bounded, deadlineLeaf, Watchdog } from "./deadline.js"
import { slotOf } from "./redisCluster.js"
import { redisFailure } from "./redisFailure.js"
import { redisLedger } from "./redisTagLedger.js"
import type { Ledger } from "./tags.js"

/** A message as received, or `undefined` when it is not one of ours. */
const parseMessage = (text: string): Message<string> | undefined => {
  try {
    const data: unknown = JSON.parse(text)
    if (typeof data !== "object" || data === null || !("from" in data) || typeof data.from !== "string") return undefined
    // Optional: a message from an older publisher has no timestamp, and no lag is recorded for it.
    const sent = "sent" in data && typeof data.sent === "number" && Number.isFinite(data.sent) ? { sent: data.sent } : {}
    if ("all" in data && data.all === true) return { from: data.from, all: true, ...sent }
    if ("tags" in data && Array.isArray(data.tags) && data.tags.every(isTagPosition)) {
      return { from: data.from, tags: data.tags, ...sent }
    }
    if ("keys" in data && Array.isArray(data.keys) && data.keys.every((k: unknown) => typeof k === "string")) {
      return { from: data.from, keys: data.keys, ...("stale" in data && data.stale === true ? { stale: true } : {}), ...sent }
    }
    return undefined
  } catch {
    return undefined
  }
}

/** A tag and its ledger position, as a message carries them. */
const isTagPosition = (entry: unknown): entry is readonly [string, number] =>
  Array.isArray(entry) && entry.length === 2 && typeof entry[0] === "string" && Number.isSafeInteger(entry[1])

/** The methods of a bus that go through its tag ledger, publishing through `endpoint`. */
const tagMethods = (ledger: Ledger, endpoint: Endpoint<unknown, string>): Pick<InvalidationBus<unknown>, "invalidateTags" | "tagPositions"> => ({
  invalidateTags: (tags, floor) =>
    Effect.flatMap(ledger.invalidateTags(tags, floor), (at) => Effect.as(endpoint.publishTags(tags.map((tag) => [tag, at] as const)), at)),
  tagPositions: (tags) => ledger.tagPositions(tags)
})

/** The watchdog that bounds each publication by `publishTimeout`, in the current scope. */
const publishWatchdog = <K>(options: Options<K>) =>
  Effect.gen(function*() {
    const publishTimeout = Duration.decode(options.publishTimeout ?? "250 millis")
    return new Watchdog(
      yield* Effect.clock,
      yield* Effect.scope,
      Duration.toMillis(publishTimeout),
      () => `publishing an invalidation took longer than ${Duration.format(publishTimeout)}`
    )
  })

/** Opens the bus over the `RedisClient` in context (see `InvalidationBus.make`). */
export const make = <K>(
  options: Options<K>
): Effect.Effect<InvalidationBus<K>, RedisConnectionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const redis = yield* RedisClient
    if (redis.mode === "cluster") return yield* makeSharded(options, redis)
    const channel = `${escapeKeyPart(options.namespace)}:invalidations`
    const encodeKey: (key: K) => string = options.encodeKey ?? String
    const watchdog = yield* publishWatchdog(options)
    const endpoint = new Endpoint<K, string>(
      Crypto.randomUUID(),
      options.namespace,
      yield* listenerRuntime,
      // A write publishes from its exit, which is not interruptible: the wait gives up at its deadline instead.
      (message) => bounded(deadlineLeaf(() => redis.client.publish(channel, JSON.stringify(message)), identity), watchdog, false),
      (raw) => Option.getOrUndefined(options.decodeKey(raw)),
      options.maxPending ?? 10_000,
      yield* Effect.clock
    )

    // Resubscribing is done here rather than by ioredis, to know when the subscription is active again.
    const subscriber = yield* redis.duplicate({ autoResubscribe: false })
    if (isCluster(subscriber)) return yield* Effect.dieMessage("a single-node client duplicated into a cluster client")
    subscriber.on("message", (from: string, text: string) => {
      if (from !== channel) return
      const message = parseMessage(text)
      if (message !== undefined) endpoint.receive(message)
    })
    yield* Effect.tryPromise({ try: () => subscriber.subscribe(channel), catch: subscribeError(redis.address) })
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
      endpoint.gap()
    })
    const resubscribe = () =>
      subscriber.subscribe(channel).then(() => {
        if (subscribed) return
        subscribed = true
        deaf = false
        endpoint.gap()
      }, () => {})
    subscriber.on("ready", resubscribe)

    yield* Effect.sleep(options.retryInterval ?? "1 second").pipe(
      Effect.andThen(Effect.sync(() => {
        if (!subscribed && subscriber.status === "ready") void resubscribe()
      })),
      Effect.andThen(endpoint.flush),
      Effect.catchAllCause((cause) => Effect.logWarning("invalidation bus: retry failed", cause)),
      Effect.forever,
      Effect.annotateLogs({ channel }),
      Effect.interruptible,
      Effect.forkScoped
    )

    return {
      instanceId: endpoint.instanceId,
      channel,
      publish: (keys, publishOptions) => Effect.suspend(() => endpoint.publish(keys.map(encodeKey), publishOptions)),
      publishAll: endpoint.publishAll,
      ...tagMethods(redisLedger(redis.client, options.namespace, watchdog, false), endpoint as Endpoint<unknown, string>),
      listen: (listener) => endpoint.listen(listener),
      stats: endpoint.stats
    }
  })

/** The subscription error of a bus, without anything the client's error carried beyond kind and message. */
const subscribeError = (address: string) => (cause: unknown) => {
  const failure = redisFailure(cause)
  return new RedisConnectionError({
    address,
    reason: `cannot subscribe: ${failure.message}`,
    ...(failure.code === undefined ? {} : { code: failure.code })
  })
}

/**
 * The name of channel `i` of `shards`: `<base>:{<i>.<n>}`, with the smallest `n` whose hash tag puts the channel
 * in the `i`-th equal part of the 16,384 slots. Channels so spread over the slot space spread over the masters
 * as evenly as their slots are (a cluster made by `redis-cli --cluster create` gives each an equal range);
 * every instance computes the same names.
 */
export const shardChannel = (base: string, i: number, shards: number): string => {
  const from = Math.floor((i * 16384) / shards)
  const to = Math.floor(((i + 1) * 16384) / shards)
  // A tag lands in a part of size 16384/shards with probability 1/shards: found in a few dozen tries.
  for (let n = 0; n < 100_000; n++) {
    const tag = `${i}.${n}`
    const slot = slotOf(tag)
    if (slot >= from && slot < to) return `${base}:{${tag}}`
  }
  return `${base}:${i}`
}

/** How long a cluster bus's subscriptions must stay up after a loss before it counts as back. */
const settleMillis = 250

/** The bus on a Redis Cluster: sharded channels (see the module's doc). */
const makeSharded = <K>(
  options: Options<K>,
  redis: RedisClient["Type"]
): Effect.Effect<InvalidationBus<K>, RedisConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const shards = options.shards ?? 16
    if (!Number.isSafeInteger(shards) || shards < 1) {
      return yield* new RedisConnectionError({ address: redis.address, reason: "shards must be a positive integer", code: "INVALID_OPTIONS" })
    }
    const base = `${escapeKeyPart(options.namespace)}:invalidations`
    const channels = Array.from({ length: shards }, (_, i) => shardChannel(base, i, shards))
    const known = new Set(channels)
    const encodeKey: (key: K) => string = options.encodeKey ?? String
    const watchdog = yield* publishWatchdog(options)
    const client = redis.client as Cluster
    // Round robin: each channel carries 1/shards of the messages, whatever their keys.
    let next = 0
    const endpoint = new Endpoint<K, string>(
      Crypto.randomUUID(),
      options.namespace,
      yield* listenerRuntime,
      (message) =>
        bounded(
          deadlineLeaf(() => client.spublish(channels[next++ % shards]!, JSON.stringify(message)), identity),
          watchdog,
          false
        ),
      (raw) => Option.getOrUndefined(options.decodeKey(raw)),
      options.maxPending ?? 10_000,
      yield* Effect.clock
    )

    const subscriber = (yield* redis.duplicate()) as Cluster
    subscriber.on("smessage", (from: string, text: string) => {
      if (!known.has(from)) return
      const message = parseMessage(text)
      if (message !== undefined) endpoint.receive(message)
    })
    // Any subscription lost (a master gone, a failover, a resharding, a connection that failed): a gap at once,
    // and another once the group's subscribers are back, since what was published meanwhile never arrives.
    // While a master is down ioredis retries its subscriber every few milliseconds, each attempt a loss and then
    // a "ready" (sent before its SSUBSCRIBEs are answered): the bus is back only once no loss has come for
    // `settleMillis` and every channel's SSUBSCRIBE, sent again, has been answered — one gap at the loss and one
    // at the recovery, not one per attempt (hundreds in a failover, each emptying L1).
    let deaf = false
    let losses = 0
    // The settling wait is a fiber on Effect's `Clock`, of a set closed with the bus's scope.
    const runSettle = yield* FiberSet.makeRuntime<never, void, never>()
    let settling: Fiber.RuntimeFiber<void> | undefined
    const lost = () => {
      losses++
      settling?.unsafeInterruptAsFork(FiberId.none)
      settling = undefined
      if (deaf) return
      deaf = true
      endpoint.gap()
    }
    for (const event of ["-node", "-subscriber", "nodeError", "error"]) subscriber.on(event, lost)
    const confirm = () => {
      settling = undefined
      const since = losses
      Promise.all(channels.map((channel) => subscriber.ssubscribe(channel))).then(() => {
        if (!deaf || losses !== since) return
        deaf = false
        endpoint.gap()
      }, lost)
    }
    const back = () => {
      if (!deaf || settling !== undefined) return
      settling = runSettle(Effect.zipRight(Effect.sleep(settleMillis), Effect.sync(confirm)))
    }
    for (const event of ["+subscriber", "subscribersReady"]) subscriber.on(event, back)
    // One SSUBSCRIBE per channel: a call may only name channels of one slot.
    yield* Effect.forEach(channels, (channel) =>
      Effect.tryPromise({ try: () => subscriber.ssubscribe(channel), catch: subscribeError(redis.address) }), { discard: true })

    yield* Effect.sleep(options.retryInterval ?? "1 second").pipe(
      // Still deaf with no recovery under way (ioredis announced none): subscribe every channel again now.
      Effect.andThen(Effect.sync(() => {
        if (deaf && settling === undefined) confirm()
      })),
      Effect.andThen(endpoint.flush),
      Effect.catchAllCause((cause) => Effect.logWarning("invalidation bus: retry failed", cause)),
      Effect.forever,
      Effect.annotateLogs({ channel: base }),
      Effect.interruptible,
      Effect.forkScoped
    )

    return {
      instanceId: endpoint.instanceId,
      channel: base,
      publish: (keys, publishOptions) => Effect.suspend(() => endpoint.publish(keys.map(encodeKey), publishOptions)),
      publishAll: endpoint.publishAll,
      ...tagMethods(redisLedger(client, options.namespace, watchdog, true), endpoint as Endpoint<unknown, string>),
      listen: (listener) => endpoint.listen(listener),
      stats: endpoint.stats
    }
  })
