/**
 * A private Redis Cluster for tests: `redis-server --cluster-enabled yes` processes on free loopback ports (and
 * their cluster-bus ports, +10000), joined by `redis-cli --cluster create … --cluster-yes`, waited for until every
 * node says `cluster_state:ok`. Every process is killed by pid when the scope closes — also when the test fails
 * or times out — and on the test process's exit, as a last resort. Nothing is kept on disk beyond a temporary
 * directory for the nodes' cluster files, removed with the scope.
 *
 * With `tls`, the nodes speak TLS only (`--port 0 --tls-port …`), on the cluster bus and replication links too,
 * and the helper's probes and `redis-cli` trust the test CA: see `TestTls`.
 */
import { afterAll, beforeAll } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { Cluster, Redis, type RedisOptions } from "ioredis"

/** One node of a test cluster. */
export interface ClusterNode {
  readonly port: number
  readonly pid: number
  /** SIGKILL: the node dies at once, as a crashed master does. */
  readonly kill: Effect.Effect<void>
  /** SIGSTOP: the node keeps its sockets but reads and answers nothing (no replication, no cluster bus). */
  readonly freeze: Effect.Effect<void>
  /** SIGCONT: the node runs again, reading what was sent meanwhile. */
  readonly thaw: Effect.Effect<void>
}

/** A running test cluster. */
export interface TestCluster {
  /** Every node started, masters first (as `--cluster create` assigned them). */
  readonly nodes: ReadonlyArray<ClusterNode>
  /** `host:port` seeds, comma-separated: what `REDIS_CLUSTER_NODES` holds. */
  readonly seeds: string
  /** The nodes that are masters now, by port. */
  readonly masters: Effect.Effect<ReadonlyArray<number>>
  /** Waits until every live node reports `cluster_state:ok` (bounded). */
  readonly waitHealthy: Effect.Effect<void>
  /**
   * Waits (bounded) until every live replica has its link to its master up and no sync in progress: a replica
   * that has not finished its first sync cannot take over from its master.
   */
  readonly waitReplicasInSync: Effect.Effect<void>
}

const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/**
 * A `redis-server` started with `args`, killed (SIGKILL, by pid) when the scope closes, also when the test fails
 * or times out, and on the test process's exit as a last resort.
 */
export const redisServer = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const started = spawn("redis-server", [...args], { stdio: "ignore" })
      running.add(started)
      return started
    }),
    (started) =>
      Effect.async<void>((resume) => {
        running.delete(started)
        if (started.exitCode !== null || started.signalCode !== null) return resume(Effect.void)
        started.once("exit", () => resume(Effect.void))
        started.kill("SIGKILL")
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
  )

/**
 * TLS for test servers: PEM files (paths) of the server's certificate and key, and of the CA that signed it,
 * which the helper's probes and `redis-cli` trust. Clients are not asked for certificates.
 */
export interface TestTls {
  readonly cert: string
  readonly key: string
  readonly ca: string
}

/** The `redis-server` arguments that serve TLS on `port`, and only TLS (`--port 0`). */
export const tlsServerArgs = (tls: TestTls, port: number): ReadonlyArray<string> => [
  "--port", "0",
  "--tls-port", String(port),
  "--tls-cert-file", tls.cert,
  "--tls-key-file", tls.key,
  "--tls-ca-cert-file", tls.ca,
  "--tls-auth-clients", "no"
]

/** How the helper's probes reach a node: plain TCP, or TLS trusting the test CA (checking the server's name). */
const probeOptions = (tls: TestTls | undefined): Partial<RedisOptions> =>
  tls === undefined ? {} : { tls: { ca: readFileSync(tls.ca) } }

/** Whether `port` can be listened on at loopback now. */
const isFree = (port: number) =>
  Effect.async<boolean>((resume) => {
    const server = createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen(port, "127.0.0.1", () => server.close(() => resume(Effect.succeed(true))))
  })

/** A port whose cluster-bus port (+10000) is free too: tried in a range below 55535, a bounded number of times. */
const clusterPort = (taken: Set<number>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = 20_000 + Math.floor(Math.random() * 25_000)
      if (taken.has(port) || taken.has(port + 10_000)) continue
      if ((yield* isFree(port)) && (yield* isFree(port + 10_000))) {
        taken.add(port)
        taken.add(port + 10_000)
        return port
      }
    }
    return yield* Effect.dieMessage("no free port pair for a cluster node")
  })

const run = promisify(execFile)

/** A real-time pause: the helper waits for processes, whatever clock the test runs its effects on. */
const pause = (millis: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, millis)))

/**
 * The reply to one command on a node of its own connection (`connection` adds a password or TLS), as text, or
 * undefined when the node does not answer.
 */
export const probeNode = (port: number, connection: Partial<RedisOptions>, ...args: Array<string>) =>
  Effect.promise(async () => {
    const probe = new Redis({
      port,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 1_000,
      ...connection
    })
    probe.on("error", () => {})
    try {
      await probe.connect()
      return String(await probe.call(args[0]!, ...args.slice(1)))
    } catch {
      return undefined
    } finally {
      probe.disconnect()
    }
  })

/**
 * Starts a cluster of `masters` masters with `replicas` replicas each, stopped with the scope. `serverArgs` are
 * passed to every `redis-server` after the helper's own (e.g. `--repl-diskless-sync-delay 0`, so that replicas
 * sync at once instead of after Redis's default 5 s). With `tls`, every node serves TLS only, on the ports of
 * `nodes` (clients and the cluster bus alike: `--tls-cluster yes --tls-replication yes`).
 */
export const testCluster = (
  options: {
    readonly masters?: number
    readonly replicas?: number
    readonly serverArgs?: ReadonlyArray<string>
    readonly tls?: TestTls
  } = {}
) =>
  Effect.gen(function*() {
    const tls = options.tls
    const probe = probeOptions(tls)
    const clusterCommand = (port: number, ...args: Array<string>) => probeNode(port, probe, ...args)
    const masters = options.masters ?? 3
    const replicas = options.replicas ?? 0
    const count = masters * (1 + replicas)
    const directory = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "rms-cluster-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const taken = new Set<number>()
    const nodes: Array<ClusterNode> = []
    for (let i = 0; i < count; i++) {
      const port = yield* clusterPort(taken)
      const child = yield* redisServer([
        ...(tls === undefined ? ["--port", String(port)] : [...tlsServerArgs(tls, port), "--tls-cluster", "yes", "--tls-replication", "yes"]),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", join(directory, `nodes-${port}.conf`),
        "--cluster-node-timeout", "1000",
        "--dir", directory,
        "--save", "",
        "--appendonly", "no",
        ...(options.serverArgs ?? [])
      ])
      nodes.push({
        port,
        pid: child.pid!,
        kill: Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGKILL")
        }).pipe(Effect.timeout("5 seconds"), Effect.ignore),
        freeze: Effect.sync(() => void child.kill("SIGSTOP")),
        thaw: Effect.sync(() => void child.kill("SIGCONT"))
      })
    }
    // Each node answers PING before the cluster is formed.
    for (const node of nodes) {
      let up = false
      for (let i = 0; i < 250 && !up; i++) {
        up = (yield* clusterCommand(node.port, "PING")) === "PONG"
        if (!up) yield* pause(20)
      }
      if (!up) return yield* Effect.dieMessage(`cluster node ${node.port} did not start`)
    }
    yield* Effect.promise(() =>
      run("redis-cli", [
        ...(tls === undefined ? [] : ["--tls", "--cacert", tls.ca]),
        "--cluster", "create",
        ...nodes.map((node) => `127.0.0.1:${node.port}`),
        "--cluster-replicas", String(replicas),
        "--cluster-yes"
      ], { timeout: 30_000 })
    )
    const live = () => nodes.filter((node) => running.size > 0 && node.pid > 0)
    const waitHealthy = Effect.gen(function*() {
      for (let i = 0; i < 300; i++) {
        const states = yield* Effect.forEach(live(), (node) => clusterCommand(node.port, "CLUSTER", "INFO"))
        const answering = states.filter((state): state is string => state !== undefined)
        if (answering.length > 0 && answering.every((state) => state.includes("cluster_state:ok"))) return
        yield* pause(50)
      }
      return yield* Effect.dieMessage("the test cluster did not reach cluster_state:ok")
    })
    yield* waitHealthy
    const mastersNow = Effect.map(
      Effect.forEach(nodes, (node) => Effect.map(clusterCommand(node.port, "ROLE"), (role) => ({ node, role }))),
      (roles) => roles.filter(({ role }) => role?.startsWith("master") === true).map(({ node }) => node.port)
    )
    const waitReplicasInSync = Effect.gen(function*() {
      if (replicas === 0) return
      for (let i = 0; i < 300; i++) {
        const infos = yield* Effect.forEach(nodes, (node) => clusterCommand(node.port, "INFO", "replication"))
        const linked = infos.filter((info): info is string => info?.includes("role:slave") === true)
        if (linked.length > 0 && linked.every((info) => info.includes("master_link_status:up") && info.includes("master_sync_in_progress:0"))) return
        yield* pause(50)
      }
      return yield* Effect.dieMessage("the test cluster's replicas did not finish syncing")
    })
    return {
      nodes,
      seeds: nodes.map((node) => `127.0.0.1:${node.port}`).join(","),
      masters: mastersNow,
      waitHealthy,
      waitReplicasInSync
    } satisfies TestCluster
  })

/** A plain ioredis client of `cluster`, outside the library, ready; closed with the scope. */
export const rawCluster = (cluster: TestCluster) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new Cluster(cluster.nodes.map((node) => ({ host: "127.0.0.1", port: node.port })))
      client.on("error", () => {})
      await new Promise<void>((resolve) => client.once("ready", resolve))
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

/** A raw command on one node, on a connection of its own. */
export const onNode = (port: number, command: string, ...args: Array<string>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1 })),
    (node) => Effect.promise(() => node.call(command, ...args)),
    (node) => Effect.sync(() => node.disconnect())
  )

/**
 * One 3-master cluster for a whole test file: started in `beforeAll` with what `setup` builds on it, stopped (by
 * pid, with everything `setup` opened) in `afterAll`. Returns the getter of what `setup` built.
 */
export const clusterForFile = <S>(setup: (cluster: TestCluster) => Effect.Effect<S, unknown, Scope.Scope>): () => S => {
  let shared: S | undefined
  const scope = Effect.runSync(Scope.make())
  beforeAll(() =>
    Effect.runPromise(
      Effect.gen(function*() {
        shared = yield* setup(yield* testCluster({ masters: 3 }))
      }).pipe(Scope.extend(scope))
    ), 30_000)
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)), 15_000)
  return () => {
    if (shared === undefined) throw new Error("the test cluster is not up")
    return shared
  }
}
