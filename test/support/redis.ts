/**
 * Real Redis for tests: the shared server's connection layer, a MONITOR that records the commands touching
 * a test's keys, and private `redis-server` processes that a test may stop and restart.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { Redis } from "ioredis"
import * as RedisClient from "../../src/RedisClient.js"

export const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** A `RedisClient` on the shared test server. */
export const redisLayer = RedisClient.layer({ url: redisUrl })

/** Provides a `RedisClient` on the shared server that lives as long as the enclosing scope. */
export const withRedis = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    RedisClient.make({ url: redisUrl }),
    (client) => Effect.provideService(effect, RedisClient.RedisClient, client)
  )

/** A namespace no other test (or run) uses. */
export const uniqueNamespace = (label: string): string =>
  `test:${label}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`

/** A raw ioredis connection, outside the library, closed with the scope. */
export const rawRedis = (url = redisUrl) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 })),
    (client) => Effect.promise(() => client.quit()).pipe(Effect.timeout("1 second"), Effect.ignore)
  )

/**
 * Records every command the server runs whose arguments mention `needle`, through `MONITOR` on a connection
 * of its own: a count taken at the server, not from our code.
 */
export const monitor = (needle: string, url = redisUrl) =>
  Effect.gen(function*() {
    const seen: Array<ReadonlyArray<string>> = []
    const client = yield* rawRedis(url)
    const monitor = yield* Effect.acquireRelease(
      Effect.promise(() => client.monitor()),
      (m) => Effect.sync(() => m.disconnect())
    )
    monitor.on("monitor", (_time: string, args: Array<string>) => {
      if (args.some((arg) => arg.includes(needle))) seen.push(args)
    })
    // MONITOR starts asynchronously: wait until it sees a marker command before trusting the record.
    const marker = `${needle}:monitor-ready`
    yield* Effect.promise(() => client.get(marker))
    for (let i = 0; i < 200 && !seen.some((args) => args.includes(marker)); i++) yield* Effect.sleep("10 millis")
    seen.length = 0
    return {
      /** Commands seen so far, lower-cased name first. */
      commands: () => seen.map((args) => [args[0]!.toLowerCase(), ...args.slice(1)]),
      /** Waits for the server's echo of what was sent so far (MONITOR lags a little), then resets. */
      settle: Effect.gen(function*() {
        const done = `${needle}:settle-${Math.random()}`
        yield* Effect.promise(() => client.get(done))
        for (let i = 0; i < 200 && !seen.some((args) => args.includes(done)); i++) yield* Effect.sleep("10 millis")
        const index = seen.findIndex((args) => args.includes(done))
        if (index >= 0) seen.splice(index, 1)
      })
    }
  })

/** A free TCP port on loopback. */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A private `redis-server` on its own port that the test may stop and start again (by pid). */
export interface PrivateRedis {
  readonly url: string
  readonly port: number
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

const waitForPing = (port: number, up: boolean, password?: string) =>
  Effect.promise(async () => {
    for (let i = 0; i < 300; i++) {
      const probe = new Redis({
        port,
        host: "127.0.0.1",
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        ...(password === undefined ? {} : { password })
      })
      probe.on("error", () => {})
      const ok = await probe.connect().then(() => probe.ping().then(() => true), () => false).catch(() => false)
      probe.disconnect()
      if (ok === up) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error(`redis-server on ${port} did not become ${up ? "ready" : "unreachable"}`)
  })

/**
 * Starts a private `redis-server`, stopped (by pid) when the scope closes; with `requirepass`, clients must
 * authenticate with that password.
 */
export const privateRedisWith = (options: { readonly requirepass?: string } = {}) => Effect.gen(function*() {
  const port = yield* freePort
  let child: ChildProcess | undefined
  const auth = options.requirepass === undefined ? [] : ["--requirepass", options.requirepass]
  const start = Effect.suspend(() => {
    child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...auth],
      { stdio: "ignore" }
    )
    return waitForPing(port, true, options.requirepass)
  })
  const stop = Effect.suspend(() => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return Effect.void
    return Effect.async<void>((resume) => {
      running.once("exit", () => resume(Effect.void))
      process.kill(running.pid!, "SIGKILL")
    }).pipe(Effect.zipRight(waitForPing(port, false, options.requirepass)))
  })
  yield* Effect.acquireRelease(start, () => stop)
  return { url: `redis://127.0.0.1:${port}`, port, stop, start } satisfies PrivateRedis
})

/** Starts a private `redis-server`, stopped (by pid) when the scope closes. */
export const privateRedis = privateRedisWith()

/** Deletes every key of `namespace` on the shared server when the scope closes. */
export const cleanNamespaceOnClose = (namespace: string) =>
  Layer.scopedDiscard(
    Effect.flatMap(rawRedis(), (client) =>
      Effect.addFinalizer(() =>
        Effect.promise(async () => {
          let cursor = "0"
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `${namespace.replace(/:/g, "%3A")}*`, "COUNT", 1000)
            if (keys.length > 0) await client.unlink(...keys)
            cursor = next
          } while (cursor !== "0")
        })
      ))
  )
