/**
 * A Redis tier: values encoded with the tier's `Schema` as JSON, keys under a namespace, time-to-live with
 * `PX`, `getMany` in one `MGET`, `setMany` in one pipeline.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Cache, SetOptions } from "./Cache.js"
import { CacheError, CacheMiss } from "./Cache.js"
import * as CacheMetrics from "./CacheMetrics.js"
import { entryTimeToLive, validateTimeToLive } from "./internal/options.js"
import { RedisClient } from "./RedisClient.js"

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

/**
 * Escapes the two characters the key layout gives meaning to (`%` and `:`), so that the first `:` of a
 * stored key always separates the namespace from the key: no two (namespace, key) pairs share a Redis key.
 *
 * @since 0.1.0
 * @category keys
 */
export const escapeKeyPart = (part: string): string => part.replace(/%/g, "%25").replace(/:/g, "%3A")

/**
 * The Redis key of `key` in `namespace`: `escape(namespace):escape(key)`.
 *
 * @since 0.1.0
 * @category keys
 */
export const redisKey = (namespace: string, key: string): string => `${escapeKeyPart(namespace)}:${escapeKeyPart(key)}`

/** A `SCAN MATCH` pattern for every key of `namespace`: glob characters in the namespace are escaped. */
const namespacePattern = (namespace: string): string => `${escapeKeyPart(namespace).replace(/[*?[\]\\]/g, "\\$&")}:*`

/** Deletes a key only if it still holds the value we read, so a fresh write racing the clean-up survives. */
const deleteIfUnchanged = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`

/**
 * Builds a Redis tier over the `RedisClient` in context. Every Redis failure (including ioredis's command
 * timeout) is a `CacheError`; a stored value that is not JSON or does not decode with `schema` is treated as a
 * miss, deleted and counted in `cache_decode_failures`.
 *
 * `size` and `invalidateAll` walk the namespace with `SCAN` (O(keys in Redis)): fine for tests and
 * maintenance, not for a hot path.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, V, I>(
  options: Options<K, V, I>
): Effect.Effect<Cache<K, V, CacheError>, Cause.IllegalArgumentException, RedisClient> =>
  Effect.gen(function*() {
    const { client } = yield* RedisClient
    const name = options.name ?? options.namespace
    if (options.namespace.length === 0) {
      return yield* new Cause.IllegalArgumentException(`cache "${name}": namespace must not be empty`)
    }
    const defaultTimeToLive = yield* validateTimeToLive(options.timeToLive, name)
    const labels = { cache: name, tier: "redis" }
    const metrics = options.metrics === false ? CacheMetrics.disabled(labels) : CacheMetrics.make(labels)
    const encodeKey: (key: K) => string = options.encodeKey ?? String
    const prefix = `${escapeKeyPart(options.namespace)}:`
    const keyOf = (key: K): string => prefix + escapeKeyPart(encodeKey(key))
    // JSON.parse, then the schema: the same as `Schema.parseJson(schema)` without its extra transformation step.
    const decodeValue = Schema.decodeUnknownEither(options.schema)
    const encode = Schema.encodeEither(Schema.parseJson(options.schema))

    /** Runs one Redis call; a rejection is a `CacheError` for `operation`, counted. */
    const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, CacheError> =>
      Effect.tryPromise({
        try: run,
        catch: (cause) => {
          metrics.unsafeError()
          return new CacheError({ cache: name, operation, cause })
        }
      })

    /** The value of a stored string: `Right` when it decodes, `Left` when it is corrupt. */
    const decodeStored = (stored: string): Either.Either<V, unknown> => {
      let json: unknown
      try {
        json = JSON.parse(stored)
      } catch (error) {
        return Either.left(error)
      }
      return decodeValue(json)
    }

    /** Counts a corrupt value and deletes it, if it is still there; a failure leaves it for the next reader. */
    const discard = (redisKeyName: string, stored: string): Effect.Effect<void> => {
      metrics.unsafeDecodeFailure()
      return Effect.ignore(call("delete corrupt value", () => client.eval(deleteIfUnchanged, 1, redisKeyName, stored)))
    }

    /** One key's stored string as an `Option`, discarding it when corrupt; records the hit or miss. */
    const readOne = (redisKeyName: string, stored: string | null): Effect.Effect<Option.Option<V>> => {
      if (stored !== null) {
        const decoded = decodeStored(stored)
        if (Either.isRight(decoded)) {
          metrics.unsafeHit()
          return Effect.succeed(Option.some(decoded.right))
        }
      }
      metrics.unsafeMiss()
      return stored === null ? Effect.succeedNone : Effect.as(discard(redisKeyName, stored), Option.none())
    }

    const encodeValue = (value: V, operation: string): Effect.Effect<string, CacheError> =>
      Either.match(encode(value), {
        onLeft: (cause) => Effect.fail(new CacheError({ cache: name, operation, cause })),
        onRight: Effect.succeed
      })

    const getOption = (key: K): Effect.Effect<Option.Option<V>, CacheError> =>
      Effect.suspend(() => {
        const k = keyOf(key)
        return Effect.flatMap(call("get", () => client.get(k)), (stored) => readOne(k, stored))
      })

    const setMany = (entries: Iterable<readonly [K, V]>, setOptions?: SetOptions): Effect.Effect<void, CacheError> =>
      Effect.gen(function*() {
        const timeToLive = entryTimeToLive(setOptions?.timeToLive, defaultTimeToLive)
        const pipeline = client.pipeline()
        let count = 0
        for (const [key, value] of entries) {
          const json = yield* encodeValue(value, "setMany")
          // A time-to-live of zero or less is dead on arrival: drop what the key held instead.
          if (timeToLive <= 0) pipeline.del(keyOf(key))
          else if (timeToLive === Infinity) pipeline.set(keyOf(key), json)
          else pipeline.set(keyOf(key), json, "PX", Math.ceil(timeToLive))
          count++
        }
        if (count === 0) return
        const results = yield* call("setMany", () => pipeline.exec())
        const failed = results?.find(([error]) => error !== null)
        if (failed !== undefined) {
          metrics.unsafeError()
          return yield* new CacheError({ cache: name, operation: "setMany", cause: failed[0] })
        }
        metrics.unsafeSet(count)
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

    const cache: Cache<K, V, CacheError> = {
      name,
      get: (key) =>
        Effect.suspend(() => {
          const k = keyOf(key)
          return Effect.flatMap(call("get", () => client.get(k)), (stored) => {
            // The hit path decodes in place, without the `Option` of `getOption`.
            if (stored !== null) {
              const decoded = decodeStored(stored)
              if (Either.isRight(decoded)) {
                metrics.unsafeHit()
                return Effect.succeed(decoded.right)
              }
            }
            metrics.unsafeMiss()
            const miss = Effect.fail(new CacheMiss({ key, cache: name }))
            return stored === null ? miss : Effect.zipRight(discard(k, stored), miss)
          })
        }),
      getOption,
      getMany: (keys) =>
        Effect.gen(function*() {
          const asked = Array.from(keys)
          const found = new Map<K, V>()
          if (asked.length === 0) return found
          const redisKeys = asked.map(keyOf)
          const stored = yield* call("getMany", () => client.mget(redisKeys))
          for (let i = 0; i < asked.length; i++) {
            const value = yield* readOne(redisKeys[i]!, stored[i] ?? null)
            if (Option.isSome(value)) found.set(asked[i]!, value.value)
          }
          return found
        }),
      set: (key, value, setOptions) => setMany([[key, value]], setOptions),
      setMany,
      invalidate: (key) =>
        Effect.suspend(() => {
          const k = keyOf(key)
          return call("invalidate", () => client.del(k)).pipe(
            Effect.map((removed) => metrics.unsafeInvalidation(removed))
          )
        }),
      invalidateAll: scanNamespace((keys) =>
        call("invalidateAll", () => client.unlink(...keys)).pipe(
          Effect.map((removed) => metrics.unsafeInvalidation(removed))
        )
      ),
      size: Effect.suspend(() => {
        let count = 0
        return scanNamespace((keys) => Effect.sync(() => void (count += keys.length))).pipe(Effect.map(() => count))
      })
    }
    return cache
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
