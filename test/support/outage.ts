/**
 * Outages for tests: a loopback TCP proxy that can be stopped (listener closed, every socket pair destroyed)
 * and started again on the same port, and a private `redis-server` that can be frozen (SIGSTOP) and thawed
 * (SIGCONT) by pid, keeping its data and its clients' connections.
 */
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import { Redis } from "ioredis"
import { freePort } from "./redis.js"

/** A TCP proxy on `127.0.0.1:port` forwarding to a target, that the test may stop, start, freeze and thaw. */
export interface TcpProxy {
  readonly port: number
  /** Closes the listener and destroys every open connection (both ends); new connections are refused. */
  readonly stop: Effect.Effect<void>
  /** Listens again on the same port. */
  readonly start: Effect.Effect<void>
  /**
   * Stops forwarding, both ways, on every connection, and holds new ones (accepted, connected upstream, nothing
   * forwarded): the peer looks alive but answers nothing. What was sent meanwhile waits in the socket buffers.
   */
  readonly freeze: Effect.Effect<void>
  /** Forwards again, starting with what was held. */
  readonly thaw: Effect.Effect<void>
  /**
   * The connections open now stop forwarding for good, both ways, and are never closed: what a partition or a
   * load balancer that forgot the flows does (no RST, no FIN). New connections are forwarded as usual.
   */
  readonly sever: Effect.Effect<void>
  /** Connections accepted since the proxy was made. */
  readonly accepted: () => number
  /** Connections open now. */
  readonly open: () => number
}

interface Pair {
  readonly client: Net.Socket
  readonly upstream: Net.Socket
}

/** Starts a TCP proxy to `target`, stopped (with every socket destroyed) when the scope closes. */
export const tcpProxy = (target: { readonly host: string; readonly port: number }) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const pairs = new Set<Pair>()
    let server: Net.Server | undefined
    let accepted = 0
    let frozen = false
    const severed = new Set<Pair>()

    const forward = ({ client, upstream }: Pair) => {
      client.pipe(upstream)
      upstream.pipe(client)
    }
    const hold = ({ client, upstream }: Pair) => {
      client.unpipe(upstream)
      upstream.unpipe(client)
      client.pause()
      upstream.pause()
    }

    const onConnection = (client: Net.Socket) => {
      accepted++
      const pair: Pair = { client, upstream: Net.connect(target.port, target.host) }
      pairs.add(pair)
      const drop = () => {
        pair.client.destroy()
        pair.upstream.destroy()
        pairs.delete(pair)
        severed.delete(pair)
      }
      for (const socket of [pair.client, pair.upstream]) {
        socket.on("error", drop)
        socket.on("close", drop)
      }
      if (!frozen) forward(pair)
    }

    /** One attempt to listen on `port`. */
    const listenOnce = Effect.async<Net.Server, Error>((resume) => {
      const candidate = Net.createServer(onConnection)
      const onError = (error: Error) => resume(Effect.fail(error))
      candidate.once("error", onError)
      candidate.listen(port, "127.0.0.1", () => {
        candidate.off("error", onError)
        resume(Effect.succeed(candidate))
      })
    })

    const start: Effect.Effect<void> = Effect.suspend(() => {
      if (server !== undefined) return Effect.void
      // The port was ours a moment ago; retry briefly (bounded) in case the kernel has not released it yet.
      return listenOnce.pipe(
        Effect.retry({ times: 50, while: (error) => (error as NodeJS.ErrnoException).code === "EADDRINUSE" }),
        Effect.tap((listening) => Effect.sync(() => void (server = listening))),
        Effect.orDie,
        Effect.asVoid
      )
    })

    const stop: Effect.Effect<void> = Effect.suspend(() => {
      const listening = server
      server = undefined
      for (const pair of Array.from(pairs)) {
        pair.client.destroy()
        pair.upstream.destroy()
      }
      pairs.clear()
      severed.clear()
      if (listening === undefined) return Effect.void
      return Effect.async<void>((resume) => {
        listening.close(() => resume(Effect.void))
      }).pipe(Effect.timeout("2 seconds"), Effect.orDie)
    })

    const freeze = Effect.sync(() => {
      if (frozen) return
      frozen = true
      for (const pair of pairs) hold(pair)
    })

    const thaw = Effect.sync(() => {
      if (!frozen) return
      frozen = false
      for (const pair of pairs) if (!severed.has(pair)) forward(pair)
    })

    const sever = Effect.sync(() => {
      for (const pair of pairs) {
        if (!frozen) hold(pair)
        severed.add(pair)
      }
    })

    yield* Effect.acquireRelease(start, () => Effect.zipRight(thaw, stop))
    return {
      port,
      stop,
      start,
      freeze,
      thaw,
      sever,
      accepted: () => accepted,
      open: () => pairs.size
    } satisfies TcpProxy
  })

/** A private `redis-server` whose process the test may freeze and thaw. */
export interface FreezableRedis {
  readonly url: string
  readonly port: number
  /** SIGSTOP: the server keeps its sockets and data but answers nothing. */
  readonly freeze: Effect.Effect<void>
  /** SIGCONT: the server answers again, running what was sent meanwhile. */
  readonly thaw: Effect.Effect<void>
}

const ping = (port: number) =>
  Effect.promise(async () => {
    const probe = new Redis({
      port,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null
    })
    probe.on("error", () => {})
    const ok = await probe.connect().then(() => probe.ping().then(() => true), () => false).catch(() => false)
    probe.disconnect()
    return ok
  })

/** Starts a private `redis-server` (no persistence), killed by pid when the scope closes. */
export const freezableRedis = Effect.gen(function*() {
  const port = yield* freePort
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: "ignore"
      })
    ),
    (child: ChildProcess) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        process.kill(child.pid!, "SIGCONT")
        process.kill(child.pid!, "SIGKILL")
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
  )
  let ready = false
  for (let i = 0; i < 300 && !ready; i++) {
    ready = yield* ping(port)
    if (!ready) yield* Effect.sleep("20 millis")
  }
  if (!ready) return yield* Effect.dieMessage(`redis-server on ${port} did not become ready`)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    freeze: Effect.sync(() => void process.kill(child.pid!, "SIGSTOP")),
    thaw: Effect.sync(() => void process.kill(child.pid!, "SIGCONT"))
  } satisfies FreezableRedis
})
