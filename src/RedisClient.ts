/**
 * A scoped ioredis connection configured through Effect `Config`, failing fast when Redis is unreachable.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { settle } from "./internal/settle.js"
import { Redis } from "ioredis"

/**
 * Redis could not be reached (or did not become ready) within the connect timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisConnectionError extends Data.TaggedError("RedisConnectionError")<{
  /** The server's address, without credentials. */
  readonly address: string
  /** The failure reported by ioredis (or the timeout). */
  readonly cause: unknown
}> {
  override get message(): string {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot connect to Redis at ${this.address}: ${reason}`
  }
}

/**
 * Connection settings.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** A `redis://` URL. Default: `redis://127.0.0.1:6379`. */
  readonly url?: string
  /** The password, if the URL does not carry one. */
  readonly password?: Redacted.Redacted
  /** How long to wait for the connection to become ready. Default: 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput
  /** How long any command may take before ioredis rejects it. Default: 1 second. */
  readonly commandTimeout?: Duration.DurationInput
}

/**
 * A Redis connection and the means to open more with the same settings.
 *
 * Commands fail at once while the connection is down (no offline queue), so callers never wait for a
 * reconnect; ioredis reconnects in the background with a capped backoff until the scope closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The ioredis connection, ready when the service is built. */
  readonly client: Redis
  /** The server's address, without credentials, for messages. */
  readonly address: string
  /**
   * Opens another connection with the same settings (for pub/sub), closed with the current scope.
   * `autoResubscribe: false` leaves resubscribing after a reconnect to the caller.
   */
  duplicate(overrides?: { readonly autoResubscribe?: boolean }): Effect.Effect<Redis, RedisConnectionError, Scope.Scope>
}

/**
 * The Redis connection service.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisClient extends Context.Tag("@rms/cache/RedisClient")<RedisClient, Service>() {}

const defaultUrl = "redis://127.0.0.1:6379"

/** `redis://user:secret@host:6379/0` → `host:6379/0`. */
const addressOf = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "6379"}${parsed.pathname === "/" ? "" : parsed.pathname}`
  } catch {
    return "<invalid Redis URL>"
  }
}

/**
 * Opens one connection in the current scope: ready within `connectTimeout` or a `RedisConnectionError`; closed
 * with `QUIT` (bounded by a second, then dropped) when the scope closes.
 */
const connect = (
  options: Options,
  overrides: { readonly autoResubscribe?: boolean } = {}
): Effect.Effect<Redis, RedisConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const url = options.url ?? defaultUrl
    const address = addressOf(url)
    const connectTimeout = Duration.toMillis(options.connectTimeout ?? "2 seconds")
    const runtime = yield* Effect.runtime<never>()
    const log = Runtime.runFork(runtime)

    return yield* Effect.acquireRelease(
      // Interruptible, so that the timeout below can end it: interrupting it disconnects the client.
      Effect.async<Redis, RedisConnectionError>((resume) => {
        const client = new Redis(url, {
          lazyConnect: true,
          connectTimeout,
          commandTimeout: Duration.toMillis(options.commandTimeout ?? "1 second"),
          // Fail commands at once while disconnected instead of queueing them until Redis returns.
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
          ...overrides,
          ...(options.password === undefined ? {} : { password: Redacted.value(options.password) })
        })
        // ioredis emits "error" on every failed attempt; an unhandled "error" event would crash the process.
        // Log once per outage, not once per reconnect attempt, and not before the first connection: that
        // failure is the typed error of this effect.
        let lastError: unknown = undefined
        let reported = true
        client.on("error", (error: unknown) => {
          lastError = error
          if (!reported) {
            reported = true
            log(Effect.logWarning("Redis connection error", error).pipe(Effect.annotateLogs({ redis: address })))
          }
        })
        client.on("ready", () => {
          reported = false
        })
        client.connect().then(
          () => resume(Effect.succeed(client)),
          (cause: unknown) => {
            client.disconnect()
            resume(Effect.fail(new RedisConnectionError({ address, cause: lastError ?? cause })))
          }
        )
        return Effect.sync(() => client.disconnect())
      }).pipe(
        Effect.interruptible,
        Effect.timeoutFail({
          duration: connectTimeout + 100,
          onTimeout: () => new RedisConnectionError({ address, cause: `not ready within ${connectTimeout} ms` })
        })
      ),
      // `QUIT` fails at once when the connection is down (no offline queue): then it is simply dropped.
      (client) => Effect.ensuring(settle(() => client.quit()), Effect.sync(() => client.disconnect()))
    )
  })

/**
 * Opens the connection described by `options` in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, RedisConnectionError, Scope.Scope> =>
  Effect.map(connect(options), (client) => ({
    client,
    address: addressOf(options.url ?? defaultUrl),
    duplicate: (overrides) => connect(options, overrides)
  }))

/**
 * A layer with one Redis connection, closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<RedisClient, RedisConnectionError> =>
  Layer.scoped(RedisClient, make(options))

/**
 * `REDIS_URL` (default `redis://127.0.0.1:6379`) and `REDIS_PASSWORD` (optional, redacted).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.string("REDIS_URL").pipe(Config.withDefault(defaultUrl)),
  password: Config.option(Config.redacted("REDIS_PASSWORD"))
}).pipe(
  Config.map(({ password, url }) => Option.match(password, { onNone: () => ({ url }), onSome: (p) => ({ url, password: p }) }))
)

/**
 * `layer` configured from `REDIS_URL` and `REDIS_PASSWORD`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<RedisClient, RedisConnectionError | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(config, layer)
)
