/**
 * A scoped ioredis connection configured through Effect `Config`, failing fast when Redis is unreachable,
 * noticing when it goes silent, and never printing its credentials.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Cluster, Redis } from "ioredis"
import { type ClusterSettings, connect, connectCluster, type ConnectionSettings } from "./internal/redisConnection.js"
import type { RedisFailure } from "./internal/redisFailure.js"
import { addressOf, type Endpoint, parseRedisUrl } from "./internal/redisUrl.js"

/**
 * Redis could not be reached, did not become ready within the connect timeout, refused the credentials, or
 * the settings are not valid. It says where and why, and carries nothing else: no URL, no password, no raw
 * client error (whose command arguments may hold the password), so printing or serialising it in any way is
 * safe.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisConnectionError extends Data.TaggedError("RedisConnectionError")<{
  /** The server's address (`host:port[/db]`), without credentials. */
  readonly address: string
  /** Why: the client's message (`connect ECONNREFUSED …`, `WRONGPASS …`), a timeout, or an invalid setting. */
  readonly reason: string
  /** A short code when there is one: `ECONNREFUSED`, `WRONGPASS`, `NOAUTH`, `TIMEOUT`, `INVALID_URL`… */
  readonly code?: string
}> {
  override get message(): string {
    return `cannot connect to Redis at ${this.address}: ${this.reason}`
  }
}

/**
 * Connection settings.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. Give it `Redacted` when it carries a
   * password. Default: `redis://127.0.0.1:6379`.
   */
  readonly url?: string | Redacted.Redacted
  /** The password, if the URL does not carry one (it wins over the URL's). */
  readonly password?: Redacted.Redacted
  /**
   * Redis Cluster mode: the seed nodes, as `host:port` (or `redis://` / `rediss://` URLs, which may carry the
   * user and password; `rediss://` turns TLS on for every node). With it, `url` is not used.
   */
  readonly clusterNodes?: ReadonlyArray<string> | Redacted.Redacted
  /** How long to wait for the connection to become ready. Default: 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput
  /** How long any command may take before ioredis rejects it. Default: 1 second. */
  readonly commandTimeout?: Duration.DurationInput
  /**
   * How often an idle-or-not connection is sent a `PING`; one that is not answered within `commandTimeout`
   * is dropped and opened again, so a peer that went silent without closing the connection is noticed within
   * `heartbeatInterval + commandTimeout`. Default: 1 second.
   */
  readonly heartbeatInterval?: Duration.DurationInput
}

/**
 * A Redis connection and the means to open more with the same settings.
 *
 * Commands fail at once while the connection is down (no offline queue), so callers never wait for a
 * reconnect; ioredis reconnects in the background with a capped backoff until the scope closes. Every
 * connection is watched by a heartbeat (`Options.heartbeatInterval`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The ioredis connection (a `Cluster` client in cluster mode), ready when the service is built. */
  readonly client: Client
  /** `"cluster"` when `client` is a Redis Cluster client: multi-key commands must then stay within one slot. */
  readonly mode: "single" | "cluster"
  /** The server's address, without credentials, for messages. */
  readonly address: string
  /**
   * Opens another connection with the same settings (for pub/sub), closed with the current scope.
   * `autoResubscribe: false` leaves resubscribing after a reconnect to the caller.
   */
  duplicate(overrides?: { readonly autoResubscribe?: boolean }): Effect.Effect<Client, RedisConnectionError, Scope.Scope>
}

/**
 * A single-node ioredis connection or a Redis Cluster client.
 *
 * @since 0.1.0
 * @category models
 */
export type Client = Redis | Cluster

/**
 * Whether `client` is a Redis Cluster client.
 *
 * @since 0.1.0
 * @category guards
 */
export const isCluster = (client: Client): client is Cluster => (client as { readonly isCluster?: boolean }).isCluster === true

/**
 * The Redis connection service.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisClient extends Context.Tag("@rms/cache/RedisClient")<RedisClient, Service>() {}

const defaultUrl = "redis://127.0.0.1:6379"

const invalid = (address: string, reason: string, code: string) => new RedisConnectionError({ address, reason, code })

/** A duration option that must be positive and finite. */
const positive = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput, option: string) =>
  Option.match(Option.filter(Duration.decodeUnknown(input ?? fallback), (d) => Duration.isFinite(d) && Duration.toMillis(d) > 0), {
    onNone: () => Either.left(`${option} must be a positive, finite duration`),
    onSome: Either.right
  })

/** Validates `options` into what a connection needs; the reason for a refusal never quotes the URL. */
const settingsOf = (options: Options): Either.Either<ConnectionSettings, RedisConnectionError> => {
  const url = options.url === undefined ? defaultUrl : Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url
  return Either.gen(function*() {
    const endpoint = yield* Either.mapLeft(
      parseRedisUrl(url),
      (reason) => invalid("<invalid Redis URL>", `invalid Redis URL: ${reason}`, "INVALID_URL")
    )
    const address = addressOf(endpoint)
    const option = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput, name: string) =>
      Either.mapLeft(positive(input, fallback, name), (reason) => invalid(address, reason, "INVALID_OPTIONS"))
    return {
      endpoint,
      address,
      password: options.password,
      connectTimeout: yield* option(options.connectTimeout, "2 seconds", "connectTimeout"),
      commandTimeout: yield* option(options.commandTimeout, "1 second", "commandTimeout"),
      heartbeatInterval: yield* option(options.heartbeatInterval, "1 second", "heartbeatInterval")
    }
  })
}

/** The seed nodes of cluster mode, parsed; the reason for a refusal never quotes them. */
const seedsOf = (nodes: ReadonlyArray<string> | Redacted.Redacted): Either.Either<ReadonlyArray<Endpoint>, RedisConnectionError> => {
  const list = Redacted.isRedacted(nodes) ? Redacted.value(nodes as Redacted.Redacted<string>).split(",") : nodes
  const seeds = list.map((node) => node.trim()).filter((node) => node !== "")
  if (seeds.length === 0) return Either.left(invalid("<cluster>", "no cluster seed nodes given", "INVALID_URL"))
  return Either.all(seeds.map((seed, i) =>
    Either.mapLeft(
      parseRedisUrl(/^[a-z][a-z0-9+.-]*:\/\//i.test(seed) ? seed : `redis://${seed}`),
      (reason) => invalid("<cluster>", `invalid cluster seed node #${i + 1}: ${reason}`, "INVALID_URL")
    )
  ))
}

/** Validates cluster `options`: the seeds, then the shared settings from the first one. */
const clusterSettingsOf = (
  options: Options,
  nodes: ReadonlyArray<string> | Redacted.Redacted
): Either.Either<ClusterSettings, RedisConnectionError> =>
  Either.flatMap(seedsOf(nodes), (seeds) => {
    const first = seeds[0]!
    const tls = seeds.some((seed) => seed.tls)
    const address = `cluster(${seeds.map((seed) => `${seed.host}:${seed.port}`).join(",")})`
    return Either.map(
      settingsOf({ ...options, url: "redis://127.0.0.1:6379" }),
      (shared): ClusterSettings => ({ ...shared, address, endpoint: { ...first, tls, db: 0 }, seeds })
    )
  })

const connectionError = (address: string) => (failure: RedisFailure) =>
  new RedisConnectionError({
    address,
    reason: failure.message,
    ...(failure.code === undefined ? {} : { code: failure.code })
  })

/**
 * Opens the connection described by `options` in the current scope. Fails with `RedisConnectionError` when
 * the URL or an option is not valid, or Redis is not ready within `connectTimeout`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, RedisConnectionError, Scope.Scope> => {
  const nodes = options.clusterNodes
  if (nodes !== undefined) {
    return Effect.flatMap(clusterSettingsOf(options, nodes), (settings) => {
      // `autoResubscribe` is a single connection's: a cluster client's sharded subscribers always resubscribe.
      const open = () =>
        Effect.mapError(
          // Sharded pub/sub (SSUBSCRIBE) on the node that owns each channel's slot, followed across failovers.
          connectCluster(settings, { shardedSubscribers: true }),
          connectionError(settings.address)
        )
      return Effect.map(open(), (client): Service => ({ client, mode: "cluster", address: settings.address, duplicate: open }))
    })
  }
  return Effect.flatMap(settingsOf(options), (settings) => {
    const open = (overrides: { readonly autoResubscribe?: boolean } = {}) =>
      Effect.mapError(connect(settings, overrides), connectionError(settings.address))
    return Effect.map(open(), (client): Service => ({ client, mode: "single", address: settings.address, duplicate: open }))
  })
}

/**
 * The service over a client you already have (single node or cluster), which stays yours: it is not closed
 * with the scope, and `duplicate` opens its copies with `client.duplicate()`, closed with theirs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (client: Client): Service => {
  const cluster = isCluster(client)
  const address = cluster ? "cluster" : `${client.options.host ?? "127.0.0.1"}:${client.options.port ?? 6379}`
  return {
    client,
    mode: cluster ? "cluster" : "single",
    address,
    duplicate: () =>
      Effect.acquireRelease(
        Effect.sync((): Client => (isCluster(client) ? client.duplicate() : client.duplicate())),
        (copy) => Effect.sync(() => copy.disconnect())
      )
  }
}

/**
 * A layer over a client you already have (see `fromClient`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromClient = (client: Client): Layer.Layer<RedisClient> => Layer.succeed(RedisClient, fromClient(client))

/**
 * A layer with one Redis connection, closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<RedisClient, RedisConnectionError> =>
  Layer.scoped(RedisClient, make(options))

/**
 * `REDIS_URL` (redacted; default `redis://127.0.0.1:6379`), `REDIS_PASSWORD` (optional, redacted), and
 * `REDIS_CLUSTER_NODES` (optional, redacted: a comma list of `host:port` seeds; set, it selects cluster mode). A
 * `REDIS_URL` that is not a Redis URL is a `ConfigError` that says what is wrong with it without quoting it.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.redacted("REDIS_URL").pipe(
    Config.mapOrFail((url) =>
      Either.match(parseRedisUrl(Redacted.value(url)), {
        onLeft: (reason) => Either.left(ConfigError.InvalidData(["REDIS_URL"], `not a valid Redis URL: ${reason}`)),
        onRight: () => Either.right(url)
      })
    ),
    Config.withDefault(Redacted.make(defaultUrl))
  ),
  password: Config.option(Config.redacted("REDIS_PASSWORD")),
  clusterNodes: Config.option(Config.redacted("REDIS_CLUSTER_NODES"))
}).pipe(
  Config.map(({ clusterNodes, password, url }): Options => ({
    url,
    ...Option.match(password, { onNone: () => ({}), onSome: (p) => ({ password: p }) }),
    ...Option.match(clusterNodes, { onNone: () => ({}), onSome: (nodes) => ({ clusterNodes: nodes }) })
  }))
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
