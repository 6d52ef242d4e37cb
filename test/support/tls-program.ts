/**
 * The library over TLS (`rediss://`), end to end, for test/RedisTls.test.ts: it runs in a child process because
 * Node verifies a server's certificate against its default CAs, and the test's self-signed CA can only be added
 * to them when a process starts (`NODE_EXTRA_CA_CERTS` is read then, and only then). The test runs it with that
 * variable (the CA trusted: everything must work) and without it (the certificate is not trusted: opening the
 * client must fail with a typed `RedisConnectionError` within the connect timeout, and say nothing secret).
 *
 * Run from the repository's root: `node --import tsx test/support/tls-program.ts`, with
 *   TLS_URL           — a single node's `rediss://` URL (it may carry a password),
 *   TLS_CLUSTER_NODES — a cluster's `rediss://host:port` seeds, comma-separated,
 *   TLS_CONNECT_TIMEOUT_MS — the client's connect timeout (default 2000).
 *
 * Output lines, `single …` and `cluster …`:
 *   `<target> tls encrypted=<bool> authorized=<bool> connections=<n>` — every socket of the client is TLS, verified;
 *   `single get=… getMany=…`, `cluster getMany=<found>/100 masters=<n> owners=<n>`, `cluster versioned=…`;
 *   `<target> bus heard=<keys>` — a second bus heard the first one's message (`none` if not within 5 s);
 *   `<target> refused tag=… code=… elapsed=<ms> message=… json=…` — when the client could not be opened;
 *   `TLS-PROGRAM-DONE`, last.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Cluster, Redis } from "ioredis"
import type { TLSSocket } from "node:tls"
import { slotOf } from "../../src/internal/redisCluster.js"
import * as InvalidationBus from "../../src/InvalidationBus.js"
import * as RedisCache from "../../src/RedisCache.js"
import * as RedisClient from "../../src/RedisClient.js"

const url = process.env.TLS_URL
const clusterNodes = process.env.TLS_CLUSTER_NODES?.split(",")
const connectTimeout = Duration.millis(Number(process.env.TLS_CONNECT_TIMEOUT_MS ?? "2000"))
if (url === undefined || clusterNodes === undefined) throw new Error("TLS_URL and TLS_CLUSTER_NODES must be set")

const unique = (label: string) => `tls:${label}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`

/** Whether every given connection is a TLS socket whose certificate was verified. */
const tlsOf = (connections: ReadonlyArray<Redis>) => {
  const sockets = connections.map((connection) => connection.stream as TLSSocket)
  return `encrypted=${sockets.every((socket) => socket.encrypted === true)} authorized=${
    sockets.every((socket) => socket.authorized === true)
  } connections=${sockets.length}`
}

/** Opens the client, or prints why it could not be opened (and how long that took). */
const open = (target: string, options: RedisClient.Options) =>
  Effect.gen(function*() {
    const started = Date.now()
    const opened = yield* Effect.either(RedisClient.make({ ...options, connectTimeout }))
    if (opened._tag === "Right") return Option.some(opened.right)
    const error = opened.left
    console.log(`${target} refused tag=${error._tag} code=${error.code} elapsed=${Date.now() - started} message=${error.message} json=${JSON.stringify(error)}`)
    return Option.none()
  })

/** Two buses (two clients: two instances) on `namespace`: what B hears after A publishes `keys`, within 5 s. */
const busRoundTrip = (target: string, options: RedisClient.Options, first: RedisClient.Service, keys: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const namespace = unique(`${target}-bus`)
    const second = yield* RedisClient.make({ ...options, connectTimeout })
    const a = yield* InvalidationBus.make<string>({ namespace, decodeKey: Option.some, shards: 4 }).pipe(
      Effect.provideService(RedisClient.RedisClient, first)
    )
    const b = yield* InvalidationBus.make<string>({ namespace, decodeKey: Option.some, shards: 4 }).pipe(
      Effect.provideService(RedisClient.RedisClient, second)
    )
    const heard: Array<string> = []
    yield* b.listen({ onInvalidate: (received) => Effect.sync(() => void heard.push(...received)), onGap: Effect.void })
    yield* a.publish(keys)
    const deadline = Date.now() + 5_000
    while (heard.length < keys.length && Date.now() < deadline) yield* Effect.sleep("10 millis")
    const stats = yield* a.stats
    console.log(`${target} bus heard=${heard.length === 0 ? "none" : heard.join(",")} publishFailures=${stats.publishFailures}`)
  })

const single = Effect.gen(function*() {
  const options: RedisClient.Options = { url }
  const opened = yield* open("single", options)
  if (Option.isNone(opened)) return
  const service = opened.value
  const client = service.client as Redis
  console.log(`single mode=${service.mode} address=${service.address}`)
  console.log(`single tls ${tlsOf([client])}`)
  const cache = yield* RedisCache.make<string, string, string>({ namespace: unique("single"), schema: Schema.String, timeToLive: "1 minute" }).pipe(
    Effect.provideService(RedisClient.RedisClient, service)
  )
  yield* cache.set("a", "alpha")
  yield* cache.set("b", "beta")
  const got = yield* cache.get("a")
  const many = yield* cache.getMany(["a", "b", "c"])
  console.log(`single get=${got} getMany=${[...many].map(([key, value]) => `${key}:${value}`).join(",")}`)
  yield* busRoundTrip("single", options, service, ["single-key-1", "single-key-2"])
})

const Versioned = Schema.Struct({ version: Schema.Number, text: Schema.String })

const cluster = Effect.gen(function*() {
  const options: RedisClient.Options = { clusterNodes: clusterNodes! }
  const opened = yield* open("cluster", options)
  if (Option.isNone(opened)) return
  const service = opened.value
  const client = service.client as Cluster
  console.log(`cluster mode=${service.mode}`)
  const namespace = unique("cluster")
  const cache = yield* RedisCache.make<string, string, string>({ namespace, schema: Schema.String, timeToLive: "1 minute" }).pipe(
    Effect.provideService(RedisClient.RedisClient, service)
  )
  const keys = Array.from({ length: 100 }, (_, i) => `key-${i}-${Math.random().toString(36).slice(2)}`)
  yield* cache.setMany(keys.map((key, i) => [key, `value ${i}`] as const))
  const found = yield* cache.getMany([...keys, "absent-1", "absent-2"])
  const exact = keys.every((key, i) => found.get(key) === `value ${i}`) && found.size === keys.length
  // The masters that own the 100 keys' slots, by the client's slot map (generation 0: a fresh namespace).
  const owners = new Set(keys.map((key) => client.slots[slotOf(RedisCache.redisKey(namespace, key, 0))]?.[0]))
  console.log(`cluster getMany=${found.size}/${keys.length} exact=${exact} masters=${client.nodes("master").length} owners=${owners.size}`)

  const versioned = yield* RedisCache.make<string, typeof Versioned.Type, typeof Versioned.Encoded>({
    namespace: unique("cluster-versioned"),
    schema: Versioned,
    timeToLive: "1 minute",
    version: (value) => value.version
  }).pipe(Effect.provideService(RedisClient.RedisClient, service))
  yield* versioned.set("row", { version: 2, text: "newer" })
  // Older: refused by the script, on the master that owns the key.
  yield* versioned.set("row", { version: 1, text: "older" })
  const kept = yield* versioned.get("row")
  console.log(`cluster versioned=${kept.version}:${kept.text}`)

  yield* busRoundTrip("cluster", options, service, ["cluster-key-1", "cluster-key-2"])
  // Every connection the client holds now, the sharded subscribers' not included: all TLS, all verified.
  console.log(`cluster tls ${tlsOf(client.nodes("all"))}`)
})

const program = Effect.gen(function*() {
  yield* Effect.scoped(single)
  yield* Effect.scoped(cluster)
  console.log("TLS-PROGRAM-DONE")
})

Effect.runPromise(program).catch((error: unknown) => {
  console.error(`TLS-PROGRAM-FAILED ${error instanceof Error ? error.stack : String(error)}`)
  process.exitCode = 1
})
