/**
 * One ioredis connection in a scope: opened from an `Endpoint` (never from the URL text), ready within the
 * connect timeout, watched by a heartbeat, and closed with the scope.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis"
import { isIP } from "node:net"
import { RedisFailure, redisFailure } from "./redisFailure.js"
import type { Endpoint } from "./redisUrl.js"
import { settle } from "./settle.js"

/** Everything needed to open a connection, validated. */
export interface ConnectionSettings {
  readonly endpoint: Endpoint
  /** `host:port[/db]`, for messages. */
  readonly address: string
  /** Overrides the URL's password (`REDIS_PASSWORD`). */
  readonly password: Redacted.Redacted | undefined
  readonly connectTimeout: Duration.Duration
  readonly commandTimeout: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
}

/** What a cluster connection needs besides the shared settings: its seed nodes. */
export interface ClusterSettings extends ConnectionSettings {
  /** The seed nodes; their user, password and TLS are the same for every node (the first seed's). */
  readonly seeds: ReadonlyArray<Endpoint>
}

/** ioredis's options for `settings`; the password is revealed here and nowhere else. */
const clientOptions = (settings: ConnectionSettings, overrides: Partial<RedisOptions>): RedisOptions => {
  const { endpoint } = settings
  const password = settings.password ?? endpoint.password
  return {
    host: endpoint.host,
    port: endpoint.port,
    db: endpoint.db,
    ...(endpoint.username === undefined ? {} : { username: endpoint.username }),
    ...(password === undefined ? {} : { password: Redacted.value(password) }),
    // SNI carries host names only.
    ...(endpoint.tls ? { tls: isIP(endpoint.host) === 0 ? { servername: endpoint.host } : {} } : {}),
    lazyConnect: true,
    connectTimeout: Duration.toMillis(settings.connectTimeout),
    // Bounds every command, the handshake's included: a reconnection to a peer that accepts the connection but
    // answers nothing fails its ready check and is tried again, instead of waiting forever.
    commandTimeout: Duration.toMillis(settings.commandTimeout),
    // Fail commands at once while disconnected instead of queueing them until Redis returns.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
    ...overrides
  }
}

const isTimeout = (failure: RedisFailure): boolean => failure.message === "Command timed out"

/**
 * Every `interval`, a `PING` on a ready connection. A connection whose peer has gone silent without closing it
 * (a partition, a load balancer that forgot the flow) is otherwise never noticed: no error, no `close`, commands
 * that time out one by one, and a subscriber that simply hears nothing, for as long as TCP keeps the socket
 * (about 15 minutes). A `PING` that times out (`commandTimeout`) destroys the socket, so that ioredis reconnects
 * and the connection's users see a `close`, then a `ready`: the bus treats that as a gap.
 *
 * Only the spacing of the beats reads Effect's `Clock`; the ping's own deadline is ioredis's real-time
 * `commandTimeout`, so a test that moves a `TestClock` never makes a healthy connection look silent.
 */
const heartbeat = (client: Redis, settings: ConnectionSettings): Effect.Effect<void, never, Scope.Scope> =>
  Effect.sleep(settings.heartbeatInterval).pipe(
    Effect.zipRight(Effect.suspend(() => {
      if (client.status !== "ready") return Effect.void
      return Effect.tryPromise(() => client.ping()).pipe(
        Effect.catchAll(({ error }) => {
          const failure = redisFailure(error)
          if (!isTimeout(failure) || client.status !== "ready") return Effect.void
          // `disconnect(true)` would end the socket politely and wait for a peer that will never answer.
          client.stream.destroy()
          return Effect.logWarning(
            `Redis did not answer a PING within ${Duration.format(settings.commandTimeout)}: reconnecting`
          )
        })
      )
    })),
    Effect.forever,
    Effect.annotateLogs({ redis: settings.address }),
    Effect.interruptible,
    Effect.forkScoped,
    Effect.asVoid
  )

/**
 * Opens one connection in the current scope: ready within `connectTimeout` or a `RedisFailure` (the timeout's
 * included); closed with `QUIT` (bounded by a second, then dropped) when the scope closes. ioredis reconnects in
 * the background with a capped backoff until then; connection errors are logged once per outage, without
 * anything a command carried.
 */
export const connect = (
  settings: ConnectionSettings,
  overrides: Partial<RedisOptions> = {}
): Effect.Effect<Redis, RedisFailure, Scope.Scope> =>
  Effect.tap(
    opened(settings, "Redis connection error", () => new Redis(clientOptions(settings, overrides))),
    (client) => heartbeat(client, settings)
  )

/**
 * Opens a client (a connection or a cluster) in the current scope: ready within `connectTimeout` or a
 * `RedisFailure` (the timeout's included); closed with `QUIT` (bounded by a second, then dropped) when the scope
 * closes. ioredis reconnects in the background until then; its errors are logged once per outage (`what: …`),
 * without anything a command carried, and not before the first connection: that failure is this effect's error.
 */
const opened = <C extends Redis | Cluster>(
  settings: ConnectionSettings,
  what: string,
  create: () => C
): Effect.Effect<C, RedisFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const connectMillis = Duration.toMillis(settings.connectTimeout)
    const runtime = yield* Effect.runtime<never>()
    const log = Runtime.runFork(runtime)
    return yield* Effect.acquireRelease(
      // Interruptible, so that the timeout below can end it: interrupting it disconnects the client.
      Effect.async<C, RedisFailure>((resume) => {
        const client = create()
        // ioredis emits "error" on every failed attempt; an unhandled "error" event would crash the process.
        let lastError: RedisFailure | undefined = undefined
        let reported = true
        client.on("error", (error: unknown) => {
          lastError = redisFailure(error)
          if (!reported) {
            reported = true
            log(Effect.logWarning(`${what}: ${lastError.toString()}`).pipe(Effect.annotateLogs({ redis: settings.address })))
          }
        })
        client.on("ready", () => {
          reported = false
        })
        client.connect().then(
          () => resume(Effect.succeed(client)),
          (cause: unknown) => {
            client.disconnect()
            resume(Effect.fail(lastError ?? redisFailure(cause)))
          }
        )
        return Effect.sync(() => client.disconnect())
      }).pipe(
        Effect.interruptible,
        Effect.timeoutFail({
          duration: connectMillis + 100,
          onTimeout: () => new RedisFailure("TimeoutError", `not ready within ${connectMillis} ms`, "TIMEOUT", undefined)
        })
      ),
      // `QUIT` fails at once when the connection is down (no offline queue): then it is simply dropped.
      (client) => Effect.ensuring(settle(() => client.quit()), Effect.sync(() => client.disconnect()))
    )
  })

/** ioredis's cluster options for `settings`: each node's connection set up as a single connection's. */
const clusterOptions = (settings: ClusterSettings, overrides: Partial<ClusterOptions>): ClusterOptions => {
  const { host: _h, port: _p, db: _d, retryStrategy: _r, enableOfflineQueue: _e, lazyConnect: _l, ...node } = clientOptions(settings, {})
  return {
    redisOptions: node,
    lazyConnect: true,
    enableOfflineQueue: false,
    // Masters only: a replica may answer with a value older than a write already acknowledged.
    scaleReads: "master",
    slotsRefreshTimeout: Duration.toMillis(settings.connectTimeout),
    clusterRetryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
    // A command sent while a failover moves its slot is retried on the new owner for a while, not failed.
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
    ...overrides
  }
}

/**
 * Opens a Redis Cluster client in the current scope: ready (slots known, a connection to each master) within
 * `connectTimeout` or a `RedisFailure`; closed with the scope. ioredis follows `MOVED`/`ASK` redirections and
 * refreshes the slot map on failover. No heartbeat runs here: every command is bounded by `commandTimeout`, and
 * a node that stops answering makes ioredis refresh the slots and reconnect.
 */
export const connectCluster = (
  settings: ClusterSettings,
  overrides: Partial<ClusterOptions> = {}
): Effect.Effect<Cluster, RedisFailure, Scope.Scope> =>
  opened(
    settings,
    "Redis Cluster error",
    () => new Cluster(settings.seeds.map((seed) => ({ host: seed.host, port: seed.port })), clusterOptions(settings, overrides))
  )
