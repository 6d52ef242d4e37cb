/**
 * A Redis tier: values encoded with the tier's `Schema` as JSON, keys under a namespace, time-to-live with
 * `PX`, `getMany` in one `MGET` (a `GET` for one key), `setMany` in one pipeline; optionally versioned, so that
 * an older value can never replace a newer one.
 *
 * On a Redis Cluster (a `RedisClient` in cluster mode) the same tier never sends a command whose keys span
 * slots: `getMany` and `setMany` send one pipeline per master (a `GET` per key, an `MGET` for keys that share a
 * slot; the writes one per key), to every master involved at once, so a batch costs one round trip of latency;
 * a command a node redirects (`MOVED`, `ASK`: the slot map is not loaded yet or has changed) is sent again on
 * its own, which the client follows to the slot's owner — a right answer or a `CacheError`, never a wrong
 * value. Versioned writes and tombstones go through the same one-key script.
 *
 * `invalidateAll` on a cluster is a namespace generation, not a `SCAN` of every shard: keys are laid out
 * `escape(namespace):<generation>:escape(key)`, the generation lives in the key `escape(namespace)#generation`
 * (it has no `:`, which every data key has, so it is never a data key) and is cached in memory.
 * Every read batch reads the generation beside its data (in the same pipelines, so no added latency); if it
 * has moved, what was read is treated as misses and the cached generation updated. Every write batch reads it
 * too, and writes again under the new one when it moved. `invalidateAll` is an `INCR` of it. What was written
 * under an older generation is never read again: give a cluster tier a `timeToLive`, so that those orphans
 * expire. The generation key itself has no time-to-live; under an `allkeys-*` eviction policy Redis may evict
 * it, and the namespace then reads as generation 0 again (use `noeviction` or a `volatile-*` policy).
 *
 * A failover moves the generation too: replication is asynchronous, so a master may acknowledge a write and
 * die before its replica has it, leaving the promoted replica with the older value. When the client loses a
 * node, the tier's next batch first moves the namespace to a new generation (a large random jump, so that a
 * generation key rolled back by the failover never comes back to one already used): after a failover L2 is
 * cold, never older than what was acknowledged.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { isUtf8 } from "node:buffer"
import type { Cluster } from "ioredis"
import type { Cache, SetOptions } from "./Cache.js"
import { CacheError, CacheMiss } from "./Cache.js"
import * as CacheMetrics from "./CacheMetrics.js"
import { currentDeadline, type Deadline, deadlineLeaf, honoursDeadlines, markOf } from "./internal/deadline.js"
import { entryTimeToLive, validateTimeToLive } from "./internal/options.js"
import { nodeLossesOf, readBySlot, type SlotCommand, sendBySlot, slotOf } from "./internal/redisCluster.js"
import { redisFailure } from "./internal/redisFailure.js"
import { hasLoneSurrogate, loneSurrogate } from "./internal/text.js"
import {
  defineSetIfNewer,
  deleteIfUnchangedLua,
  floor,
  invalid,
  setIfNewer,
  tombstone,
  valueDecoder,
  versionedJson
} from "./internal/redisLayout.js"
import { isCluster, RedisClient } from "./RedisClient.js"

/**
 * Options of a Redis tier.
 *
 * @since 0.1.0
 * @category models
 */
export type Options<K, V, I> =
  & {
    /** Every key of this tier lives under this namespace; `invalidateAll` and `size` cover exactly it. */
    readonly namespace: string
    /** Encodes values to JSON-compatible data and decodes them back; a value that does not decode is a miss. */
    readonly schema: Schema.Schema<V, I>
    /** How long an entry lives unless the write gives its own. Default: forever. */
    readonly timeToLive?: Duration.DurationInput
    /**
     * The version of a value (a counter that grows with every change, such as a row's `version`). With it, a
     * write is refused when Redis already holds a higher version, and `invalidate` leaves a tombstone that
     * refuses every write for `tombstoneTimeToLive`: slow loads and delayed writes, on any instance, cannot put
     * back a value that was replaced or deleted. Default: none (last write wins).
     */
    readonly version?: (value: V) => number
    /** How long a tombstone refuses writes; make it longer than a load can take. Default: 30 seconds. */
    readonly tombstoneTimeToLive?: Duration.DurationInput
    /**
     * The largest stored value, in bytes of JSON. A larger value is not stored (its key is invalidated instead,
     * so nothing stale stays) and the write fails with `CacheError`; a larger value found in Redis is a miss.
     * Default: 1 MiB.
     */
    readonly maxValueBytes?: number
    /** The name the metrics are tagged with. Default: the namespace for `make`, the tag's key for `layer`. */
    readonly name?: string
    /** Whether to record metrics. Default: true. */
    readonly metrics?: boolean
  }
  & ([K] extends [string | number] ? {
      /** Turns a key into the string stored in Redis. Default: `String(key)`. */
      readonly encodeKey?: (key: K) => string
    }
    : {
      /** Turns a key into the string stored in Redis; keys that are not strings or numbers need one. */
      readonly encodeKey: (key: K) => string
    })

const loneSurrogates = new RegExp(loneSurrogate.source, "g")

/**
 * Escapes the two characters the key layout gives meaning to (`%` and `:`), so that the first `:` of a
 * stored key always separates the namespace from the key: no two (namespace, key) pairs share a Redis key.
 * Lone UTF-16 surrogates, which UTF-8 cannot carry (they would all reach Redis as U+FFFD), become `%uXXXX`.
 *
 * @since 0.1.0
 * @category keys
 */
export const escapeKeyPart = (part: string): string => {
  // Most keys have nothing to escape: one scan, no copies.
  if (!needsEscape.test(part)) return part
  const escaped = part.replace(/%/g, "%25").replace(/:/g, "%3A")
  return hasLoneSurrogate(escaped)
    ? escaped.replace(loneSurrogates, (s) => `%u${s.charCodeAt(0).toString(16).toUpperCase()}`)
    : escaped
}

const needsEscape = /[%:\ud800-\udfff]/

/**
 * The Redis key of `key` in `namespace`: `escape(namespace):escape(key)`; on a cluster, where keys carry the
 * namespace's `generation`, `escape(namespace):generation:escape(key)`.
 *
 * @since 0.1.0
 * @category keys
 */
export const redisKey = (namespace: string, key: string, generation?: number | string): string =>
  generation === undefined
    ? `${escapeKeyPart(namespace)}:${escapeKeyPart(key)}`
    : `${escapeKeyPart(namespace)}:${generation}:${escapeKeyPart(key)}`

/**
 * The Redis key that holds the generation of `namespace` on a cluster: `escape(namespace)#generation`. It has no
 * `:`, and every data key has one, so it is never a data key of any namespace.
 *
 * @since 0.1.0
 * @category keys
 */
export const generationKey = (namespace: string): string => `${escapeKeyPart(namespace)}#generation`

/** `text` with its glob characters escaped, for `SCAN MATCH`. */
const globEscaped = (text: string): string => text.replace(/[*?[\]\\]/g, "\\$&")

/** A `SCAN MATCH` pattern for every key of `namespace`: glob characters in the namespace are escaped. */
const namespacePattern = (namespace: string): string => `${globEscaped(escapeKeyPart(namespace))}:*`

/** A generation read from Redis: an absent key is generation 0; anything but digits is not ours. */
const generationOf = (reply: unknown): string | undefined =>
  reply === null ? "0" : typeof reply === "string" && /^\d{1,20}$/.test(reply) ? reply : undefined

/** A stored key that holds no value: absent, or a tombstone or floor of a versioned tier. */
const absent: unique symbol = Symbol.for("@rms/cache/RedisCache/absent")

/** A stored value that is not of the tier's layout, not JSON, too large, or does not decode. */
const corrupt: unique symbol = Symbol.for("@rms/cache/RedisCache/corrupt")

/**
 * Whether Redis refused a command because the key holds another type (a list, a hash…). `MGET` answers nil for
 * such a key; the reads that use `GET` treat it the same way: a miss, not a backend failure.
 */
const isWrongType = (cause: unknown): boolean =>
  Predicate.hasProperty(cause, "message") && typeof cause.message === "string" && cause.message.startsWith("WRONGTYPE")

/**
 * Builds a Redis tier over the `RedisClient` in context. Every Redis failure (including ioredis's command
 * timeout) is a `CacheError`; a stored value that is not of the tier's layout, not JSON, too large, or does
 * not decode with `schema` is treated as a miss, deleted and counted in `cache_decode_failures`.
 *
 * `size` and `invalidateAll` walk the namespace with `SCAN` (O(keys in Redis)): fine for tests and
 * maintenance, not for a hot path. In a versioned tier `size` counts tombstones too, and `invalidateAll`
 * deletes keys without leaving tombstones.
 *
 * On a Redis Cluster (see the module doc) `invalidateAll` is one `INCR` of the namespace's generation, counted
 * as one invalidation (how many entries it drops is not known), and leaves no tombstones either; `size` counts
 * the keys of the current generation — values, tombstones and floors — by a `SCAN` of every master (fine for
 * tests and maintenance); the orphans of older generations are not counted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, I>(
  options: Options<K, V, I>
): Effect.Effect<Cache<K, V, CacheError>, Cause.IllegalArgumentException, RedisClient> =>
  Effect.gen(function*() {
    const { client } = yield* RedisClient
    // The mode is the client's: a `Cluster` cannot run a multi-key command across slots, whatever it is called.
    const cluster = isCluster(client) ? client : undefined
    const name = options.name ?? options.namespace
    if (options.namespace.length === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": namespace must not be empty`)
    }
    const maxValueBytes = options.maxValueBytes ?? 1_048_576
    if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 1) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": maxValueBytes must be a positive integer`)
    }
    const defaultTimeToLive = yield* validateTimeToLive(options.timeToLive, name)
    const tombstoneMillis = yield* validateTimeToLive(options.tombstoneTimeToLive ?? "30 seconds", name, "tombstoneTimeToLive")
    const version = options.version
    if (version !== undefined) defineSetIfNewer(client)
    const labels = { cache: name, tier: "redis" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const encodeKey: (key: K) => string = options.encodeKey ?? String
    const namespacePart = escapeKeyPart(options.namespace)
    // On a cluster the namespace's generation is part of every key, and moves with `invalidateAll`: `generation`
    // and `prefix` are its cached copy (mutable by design, see `adopt`). On a single node `prefix` never changes.
    const generationKeyName = generationKey(options.namespace)
    const generationSlot = slotOf(generationKeyName)
    let generation = "0"
    let prefix = cluster === undefined ? `${namespacePart}:` : `${namespacePart}:${generation}:`
    const keyOf = (key: K): string => prefix + escapeKeyPart(encodeKey(key))
    /**
     * Takes the generation read from Redis as the current one. Replies of concurrent batches may arrive out of
     * order and put back an older one for a while: harmless, since every batch checks it against Redis.
     */
    const adopt = (read: string) => {
      if (read === generation) return
      generation = read
      prefix = `${namespacePart}:${read}:`
    }
    // Nodes this instance's cluster client lost (see `afterNodeLoss`) when the tier last looked.
    const losses = cluster === undefined ? undefined : nodeLossesOf(cluster)
    let lossesSeen = losses?.count ?? 0
    if (cluster !== undefined) {
      // Best effort: an instance that starts after an `invalidateAll` then uses the current generation at once,
      // instead of finding its first reads to be misses and sending its first writes twice.
      const initial = yield* Effect.promise(() => cluster.get(generationKeyName).then(generationOf, () => undefined)).pipe(
        Effect.timeoutTo({ duration: "1 second", onSuccess: (read) => read, onTimeout: () => undefined })
      )
      if (initial !== undefined) adopt(initial)
    }
    // JSON.parse, then the schema: the same as `Schema.parseJson(schema)` without its extra transformation step,
    // with the schema compiled once into a decoder that skips Schema's general machinery (see `valueDecoder`).
    const decodeValue = valueDecoder(options.schema)
    const encode = Schema.encodeEither(Schema.parseJson(options.schema))

    /** A rejected Redis call: a `CacheError` for `operation`, counted; nothing of the command is kept. */
    const failure = (operation: string, cause: unknown): CacheError => {
      metrics.unsafeError()
      return new CacheError({ cache: name, operation, cause: redisFailure(cause) })
    }

    /**
     * Runs one Redis call; a rejection is a `CacheError` for `operation`, counted. It gives up at the deadline of
     * a bounded call (a multi-level cache's tier timeout) and fails then, the command left to finish unheard.
     */
    const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, CacheError> =>
      deadlineLeaf(run, (cause) => failure(operation, cause))

    /**
     * Sends one Redis call from inside an `Effect.async` and resumes the fiber with `onReply` of its reply, from
     * the promise's own callback: no `flatMap` or error-mapping steps around it. The read paths use it; each of
     * their steps counts on an L2 hit. `onReply` must record nothing itself: what it returns runs only if the
     * fiber still waits (a read abandoned on a timeout counts no hit, miss or error when its reply comes).
     */
    const send = <A, B, E>(
      resume: (effect: Effect.Effect<B, E | CacheError>) => void,
      deadline: Deadline | undefined,
      operation: string,
      run: () => Promise<A>,
      onReply: (reply: A) => Effect.Effect<B, E>,
      /** The reply to assume when Redis refuses the command because the key holds another type. */
      onWrongType?: A
    ): Effect.Effect<void> | void => {
      // Waiting until the reply, the deadline (see `call`) or the caller's interruption, whichever comes first.
      let waiting = true
      const bounded = deadline !== undefined && !deadline.done
      const settle = (next: Effect.Effect<B, E | CacheError>) => {
        if (!waiting) return
        waiting = false
        if (bounded) deadline.unwatch(abort)
        resume(next)
      }
      const abort = () => settle(Effect.failSync(() => failure(operation, deadline!.timeout())))
      if (bounded && !deadline.watch(abort)) return abort()
      const reply = (value: A) => {
        // A throw here would be lost in the promise and leave the fiber waiting forever: it is a defect.
        let next: Effect.Effect<B, E>
        try {
          next = onReply(value)
        } catch (defect) {
          next = Effect.die(defect)
        }
        settle(next)
      }
      let pending: Promise<A>
      try {
        pending = run()
      } catch (cause) {
        return settle(Effect.failSync(() => failure(operation, cause)))
      }
      pending.then((value) => waiting && reply(value), (cause) => {
        if (!waiting) return
        if (onWrongType !== undefined && isWrongType(cause)) reply(onWrongType)
        else settle(Effect.failSync(() => failure(operation, cause)))
      })
      return Effect.sync(() => {
        waiting = false
        if (bounded) deadline.unwatch(abort)
      })
    }

    /** A read: `send` from an `Effect.async`, under the caller's current deadline. */
    const read = <B, E>(register: (resume: (effect: Effect.Effect<B, E>) => void, deadline: Deadline | undefined) => Effect.Effect<void> | void) =>
      Effect.withFiberRuntime<B, E>((fiber) => {
        const deadline = fiber.getFiberRef(currentDeadline)
        return Effect.async<B, E>((resume) => register(resume, deadline))
      })

    /**
     * What a stored value is, read as raw bytes: so that invalid UTF-8 is seen as corrupt, and so that the
     * clean-up compares exactly.
     */
    const parseStored = (bytes: Buffer | null): V | typeof absent | typeof corrupt => {
      if (bytes === null) return absent
      if (bytes.length > maxValueBytes || !isUtf8(bytes)) return corrupt
      const stored = bytes.toString("utf8")
      const json = version === undefined ? stored : versionedJson(stored)
      if (json === null) return absent // a tombstone
      if (json === undefined) return corrupt
      let data: unknown
      try {
        data = JSON.parse(json)
      } catch {
        return corrupt
      }
      const value = decodeValue(data)
      return value === invalid ? corrupt : value
    }

    /** Counts a corrupt value and deletes it, if it is still there; a failure leaves it for the next reader. */
    const discard = (redisKeyName: string, stored: Buffer): Effect.Effect<void> => {
      metrics.unsafeDecodeFailure()
      return Effect.ignore(call("delete corrupt value", () => client.eval(deleteIfUnchangedLua, 1, redisKeyName, stored)))
    }

    /** The entries found among `keys`, from their stored bytes; corrupt ones are discarded. Records hits and misses. */
    const collect = (asked: ReadonlyArray<K>, redisKeys: ReadonlyArray<string>, stored: ReadonlyArray<Buffer | null>) => {
      const found = new Map<K, V>()
      let corrupted: Array<number> | undefined
      for (let i = 0; i < asked.length; i++) {
        const parsed = parseStored(stored[i] ?? null)
        if (parsed === corrupt) (corrupted ??= []).push(i)
        else if (parsed !== absent) found.set(asked[i]!, parsed)
      }
      const record = Effect.sync(() => {
        metrics.unsafeHit(found.size)
        if (found.size < asked.length) metrics.unsafeMiss(asked.length - found.size)
        return found
      })
      if (corrupted === undefined) return record
      const indexes = corrupted
      return Effect.zipLeft(record, Effect.forEach(indexes, (i) => discard(redisKeys[i]!, stored[i]!), { discard: true }))
    }

    /** The stored form of a value, or the reason it cannot be stored. */
    const storedForm = (value: V): Either.Either<string, unknown> =>
      Either.flatMap(encode(value), (json) => {
        // The limit applies to what Redis holds (version prefix included), as on reads.
        const stored = version === undefined ? json : `${version(value)}:${json}`
        const bytes = Buffer.byteLength(stored)
        if (bytes > maxValueBytes) return Either.left(`a value of ${bytes} bytes exceeds maxValueBytes (${maxValueBytes})`)
        return Either.right(stored)
      })

    /** Queues the removal of a key: a tombstone in a versioned tier, a `DEL` otherwise. */
    const queueInvalidate = (pipeline: ReturnType<typeof client.pipeline>, redisKeyName: string) => {
      if (version === undefined) pipeline.del(redisKeyName)
      else pipeline.set(redisKeyName, tombstone, "PX", Math.ceil(tombstoneMillis))
    }

    /**
     * Queues the write of `value` under `redisKeyName`: its stored form; or, when it has none (`stored` is the
     * reason), the key's removal; or, dead on arrival (`stored` undefined), the removal of what is older.
     */
    const queueWrite = (
      pipeline: ReturnType<typeof client.pipeline>,
      redisKeyName: string,
      value: V,
      stored: Either.Either<string, unknown> | undefined,
      timeToLive: number
    ) => {
      if (stored === undefined) {
        // Dead on arrival: store nothing, and drop what the key held. In a versioned tier only what is older,
        // leaving a floor that refuses older write-backs as a tombstone would: a plain `DEL` would also drop
        // a tombstone or a newer value, and then accept the very write-back they were refusing.
        if (version === undefined) pipeline.del(redisKeyName)
        else setIfNewer(pipeline, redisKeyName, version(value), floor(version(value)), tombstoneMillis)
      } else if (Either.isLeft(stored)) {
        // Not stored, so the key must not keep an older value either.
        queueInvalidate(pipeline, redisKeyName)
      } else if (version !== undefined) {
        setIfNewer(pipeline, redisKeyName, version(value), stored.right, timeToLive)
      } else if (timeToLive === Infinity) {
        pipeline.set(redisKeyName, stored.right)
      } else {
        pipeline.set(redisKeyName, stored.right, "PX", Math.ceil(timeToLive))
      }
    }

    const execute = (operation: string, pipeline: ReturnType<typeof client.pipeline>) =>
      Effect.flatMap(call(operation, () => pipeline.exec()), (results) => {
        const failed = results?.find(([error]) => error !== null)
        if (failed === undefined) return Effect.void
        metrics.unsafeError()
        return Effect.fail(new CacheError({ cache: name, operation, cause: redisFailure(failed[0]) }))
      })

    const notAGeneration = `the key ${generationKeyName} holds something other than a namespace generation`

    /**
     * Cluster mode: after the client lost a node (a master that died, a failover), the namespace moves to a new
     * generation before the next batch. Replication is asynchronous: a master may acknowledge a write and die
     * before its replica has it, and the promoted replica then holds the older value, which nothing else would
     * ever replace or drop. The jump is a large random one, not `+1`: the generation key may itself have been
     * rolled back by the failover, and must not come back to a generation that was already used. Every
     * instance that sees the loss moves it; L2 then starts empty (misses, loads) — a failover costs a cold L2.
     */
    const afterNodeLoss = (on: Cluster): Promise<void> => {
      if (losses === undefined || losses.count === lossesSeen) return Promise.resolve()
      const seen = losses.count
      const jump = 1_000_000 + Math.floor(Math.random() * 1_000_000_000)
      return on.incrby(generationKeyName, jump).then((moved) => {
        lossesSeen = seen
        adopt(String(moved))
      })
    }

    /**
     * Cluster mode: reads `redisKeys`, built under generation `used`, with the generation beside them. When it
     * has moved (an `invalidateAll`, here or on another instance), what was read belongs to an abandoned
     * generation: all misses, and the new generation is adopted.
     */
    const readCluster = (on: Cluster, redisKeys: ReadonlyArray<string>, used: string) =>
      afterNodeLoss(on).then(() => readBySlot(on, redisKeys, generationKeyName, generationSlot)).then(({ extra, stored }) => {
        const read = generationOf(extra)
        if (read === undefined) throw new Error(notAGeneration)
        if (read === used) return stored
        adopt(read)
        return stored.fill(null)
      })

    /** The call that reads one key, built by `keyOf` just before (so under the current generation on a cluster). */
    const readOne: (redisKeyName: string) => () => Promise<Buffer | null> = cluster === undefined
      ? (redisKeyName) => () => client.getBuffer(redisKeyName)
      : (redisKeyName) => {
        const used = generation
        return () => readCluster(cluster, [redisKeyName], used).then((stored) => stored[0]!)
      }

    /** The call that reads several keys, built by `keyOf` just before. */
    const readMany: (redisKeys: Array<string>) => () => Promise<Array<Buffer | null>> = cluster === undefined
      ? (redisKeys) => () => client.mgetBuffer(redisKeys)
      : (redisKeys) => {
        const used = generation
        return () => readCluster(cluster, redisKeys, used)
      }

    /**
     * Cluster mode: sends the writes `at(prefix)` builds under the current generation, with a read of the
     * generation beside them (in the same pipelines: no added latency). When it has moved, they went to keys no
     * reader looks at any more (orphans, gone with their time-to-live) and are sent again under the new one.
     */
    const writeCluster = (on: Cluster, operation: string, at: (prefix: string) => Array<SlotCommand>) =>
      Effect.gen(function*() {
        yield* call(operation, () => afterNodeLoss(on))
        for (let attempt = 0; attempt < 3; attempt++) {
          const used = generation
          const commands = at(prefix)
          commands.push({ slot: generationSlot, queue: (pipeline) => void pipeline.get(generationKeyName) })
          const replies = yield* call(operation, () => sendBySlot(on, commands))
          const failed = replies.find(([error]) => error !== null)
          if (failed !== undefined) return yield* Effect.fail(failure(operation, failed[0]))
          const read = generationOf(replies[replies.length - 1]![1])
          if (read === undefined) return yield* Effect.fail(failure(operation, notAGeneration))
          if (read === used) return
          adopt(read)
        }
        return yield* Effect.fail(failure(operation, "the namespace's generation moved during every attempt"))
      })

    const setMany = (entries: Iterable<readonly [K, V]>, setOptions?: SetOptions): Effect.Effect<void, CacheError> =>
      Effect.suspend(() => {
        const timeToLive = entryTimeToLive(setOptions?.timeToLive, defaultTimeToLive)
        const refused: Array<unknown> = []
        /** The stored form of `value` (`undefined`: dead on arrival); a refusal is kept for the error. */
        const formOf = (value: V) => {
          const stored = timeToLive <= 0 ? undefined : storedForm(value)
          if (stored !== undefined && Either.isLeft(stored)) refused.push(stored.left)
          return stored
        }
        const written = (count: number) =>
          Effect.suspend(() => {
            metrics.unsafeSet(count - refused.length)
            return refused.length === 0
              ? Effect.void
              : Effect.fail(new CacheError({ cache: name, operation: "setMany", cause: refused[0] }))
          })
        if (cluster !== undefined) {
          const parts: Array<string> = []
          const values: Array<V> = []
          const forms: Array<Either.Either<string, unknown> | undefined> = []
          for (const [key, value] of entries) {
            parts.push(escapeKeyPart(encodeKey(key)))
            values.push(value)
            forms.push(formOf(value))
          }
          if (parts.length === 0) return Effect.void
          return Effect.zipRight(
            writeCluster(cluster, "setMany", (at) =>
              parts.map((part, i): SlotCommand => {
                const redisKeyName = at + part
                return {
                  slot: slotOf(redisKeyName),
                  queue: (pipeline) => queueWrite(pipeline, redisKeyName, values[i]!, forms[i], timeToLive)
                }
              })),
            written(parts.length)
          )
        }
        const pipeline = client.pipeline()
        let count = 0
        for (const [key, value] of entries) {
          count++
          queueWrite(pipeline, keyOf(key), value, formOf(value), timeToLive)
        }
        if (count === 0) return Effect.void
        return Effect.zipRight(execute("setMany", pipeline), written(count))
      })

    const scanNamespace = (onKeys: (keys: Array<string>) => Effect.Effect<void, CacheError>) =>
      Effect.gen(function*() {
        const pattern = namespacePattern(options.namespace)
        let cursor = "0"
        do {
          const [next, keys] = yield* call("scan", () => client.scan(cursor, "MATCH", pattern, "COUNT", 1000))
          if (keys.length > 0) yield* onKeys(keys)
          cursor = next
        } while (cursor !== "0")
      })

    /** Cluster mode: the keys of the current generation, on every master. */
    const clusterSize = (on: Cluster) =>
      Effect.gen(function*() {
        const read = generationOf(yield* call("size", () => on.get(generationKeyName)))
        if (read === undefined) return yield* Effect.fail(failure("size", notAGeneration))
        adopt(read)
        const pattern = `${globEscaped(namespacePart)}:${read}:*`
        let count = 0
        for (const node of on.nodes("master")) {
          let cursor = "0"
          do {
            const [next, keys] = yield* call("size", () => node.scan(cursor, "MATCH", pattern, "COUNT", 1000))
            count += keys.length
            cursor = next
          } while (cursor !== "0")
        }
        return count
      })

    const cache: Cache<K, V, CacheError> = {
      name,
      versioned: version !== undefined,
      get: (key) =>
        read<V, CacheMiss | CacheError>((resume, deadline) => {
          const k = keyOf(key)
          return send(resume, deadline, "get", readOne(k), (stored) => {
            const parsed = parseStored(stored)
            if (parsed !== absent && parsed !== corrupt) {
              return Effect.sync(() => {
                metrics.unsafeHit()
                return parsed
              })
            }
            return Effect.suspend(() => {
              metrics.unsafeMiss()
              const miss = Effect.fail(new CacheMiss({ key, cache: name }))
              return parsed === corrupt ? Effect.zipRight(discard(k, stored!), miss) : miss
            })
          }, null)
        }),
      getOption: (key) =>
        read<Option.Option<V>, CacheError>((resume, deadline) => {
          const k = keyOf(key)
          return send(resume, deadline, "get", readOne(k), (stored) => {
            const parsed = parseStored(stored)
            if (parsed !== absent && parsed !== corrupt) {
              return Effect.sync(() => {
                metrics.unsafeHit()
                return Option.some(parsed)
              })
            }
            return Effect.suspend(() => {
              metrics.unsafeMiss()
              return parsed === corrupt ? Effect.as(discard(k, stored!), Option.none()) : Effect.succeedNone
            })
          }, null)
        }),
      getMany: (keys) =>
        read<ReadonlyMap<K, V>, CacheError>((resume, deadline) => {
          // Each distinct key once: a key asked twice is one read, one hit or one miss.
          const asked: Array<K> = []
          const redisKeys: Array<string> = []
          let seen: Set<string> | undefined
          for (const key of keys) {
            const k = keyOf(key)
            if (redisKeys.length > 0) {
              seen ??= new Set(redisKeys)
              if (seen.has(k)) continue
              seen.add(k)
            }
            asked.push(key)
            redisKeys.push(k)
          }
          if (asked.length === 0) return resume(Effect.succeed(new Map()))
          // One key is a `GET`: cheaper than an `MGET` of one, for Redis and for ioredis.
          if (asked.length === 1) {
            const onReply = (stored: Buffer | null) => collect(asked, redisKeys, [stored])
            return send(resume, deadline, "getMany", readOne(redisKeys[0]!), onReply, null)
          }
          return send(resume, deadline, "getMany", readMany(redisKeys), (stored) => collect(asked, redisKeys, stored))
        }),
      set: (key, value, setOptions) => setMany([[key, value]], setOptions),
      setMany,
      invalidate: (key) =>
        Effect.suspend(() => {
          if (cluster !== undefined) {
            const part = escapeKeyPart(encodeKey(key))
            return Effect.tap(
              writeCluster(cluster, "invalidate", (at) => {
                const redisKeyName = at + part
                return [{ slot: slotOf(redisKeyName), queue: (pipeline) => queueInvalidate(pipeline, redisKeyName) }]
              }),
              () => metrics.unsafeInvalidation()
            )
          }
          const pipeline = client.pipeline()
          queueInvalidate(pipeline, keyOf(key))
          return Effect.tap(execute("invalidate", pipeline), () => metrics.unsafeInvalidation())
        }),
      invalidateAll: cluster === undefined
        ? scanNamespace((keys) =>
          call("invalidateAll", () => client.unlink(...keys)).pipe(
            Effect.map((removed) => metrics.unsafeInvalidation(removed))
          )
        )
        : call("invalidateAll", () => cluster.incr(generationKeyName)).pipe(
          Effect.map((next) => {
            adopt(String(next))
            metrics.unsafeInvalidation()
          })
        ),
      size: cluster === undefined
        ? Effect.suspend(() => {
          let count = 0
          return scanNamespace((keys) => Effect.sync(() => void (count += keys.length))).pipe(Effect.map(() => count))
        })
        : clusterSize(cluster)
    }
    // Every wait on Redis above is a `call` or a `send`: a multi-level cache may bound these in the caller's fiber.
    return Object.assign(cache, { [honoursDeadlines]: markOf(cache) })
  })

/**
 * A layer providing a Redis tier under `tag`, named after the tag's key unless `options.name` says otherwise.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, K, V, I>(
  tag: Context.Tag<Id, Cache<K, V, CacheError>>,
  options: Options<K, V, I>
): Layer.Layer<Id, Cause.IllegalArgumentException, RedisClient> =>
  Layer.effect(tag, make<K, V, I>({ ...options, name: options.name ?? tag.key }))
