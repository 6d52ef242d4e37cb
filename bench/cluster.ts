/**
 * Round trips on a Redis Cluster: a private cluster of 3 masters (`redis-server --cluster-enabled yes` on free
 * loopback ports, joined by `redis-cli --cluster create … --cluster-yes`), started here and killed by pid at the
 * end, also when a step fails. On it, with the library's own `RedisClient` in cluster mode:
 *
 * - `RedisCache.getMany` and `setMany` of 100 random keys, a versioned `setMany`, and `invalidateAll`: requests
 *   counted at the client's sockets (one write to a node's socket is one request: a pipeline or a lone
 *   command), commands counted by each master (`INFO commandstats`), error replies by kind (`INFO errorstats`:
 *   `CROSSSLOT`, `MOVED`, `ASK`);
 * - the invalidation bus on sharded pub/sub between two instances: messages per sharded channel (counted by a
 *   sharded subscriber of our own) and per master (`SPUBLISH` in `INFO commandstats`), and the delivery latency
 *   from A's publish to B's listener.
 *
 * `runCluster()` returns the markdown section for BENCHMARKS.md (`bench/run.ts` appends it); run alone, it prints
 * it:
 *
 *   npx tsc -p tsconfig.bench.json && node .bench-tmp/bench/cluster.js
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Cluster, Redis } from "ioredis"
import * as InvalidationBus from "../src/InvalidationBus.js"
import { shardChannel } from "../src/internal/redisBus.js"
import { slotOf } from "../src/internal/redisCluster.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { machine, table } from "./report.js"

/** The workload's sizes, shared with the report. */
export const sizes = {
  masters: 3,
  /** Keys per `getMany` / `setMany`. */
  batch: 100,
  /** Calls of each batch operation, each with fresh random keys. */
  calls: 20,
  /** The bus's sharded channels (its default). */
  shards: 16,
  /** Messages published, one after the other, by instance A. */
  messages: 1_600,
  /** Tag invalidations made, one after the other, by instance A. */
  tagInvalidations: 200
} as const

const progress = (line: string) => console.error(line)

// ---------------------------------------------------------------------------------------------------------
// A private cluster

/** Every node process started and not yet seen to exit: killed by pid on the way out, whatever the way. */
const running = new Set<ChildProcess>()
const killAll = () => {
  for (const child of running) child.kill("SIGKILL")
}
process.once("exit", killAll)

interface PrivateCluster {
  readonly ports: ReadonlyArray<number>
  /** `host:port` of every node. */
  readonly seeds: ReadonlyArray<string>
  /** Kills every node (SIGKILL, by pid) and removes their directory. */
  readonly stop: () => Promise<void>
}

/** Whether `port` can be listened on at loopback now. */
const isFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** A port whose cluster-bus port (+10000) is free too. */
const clusterPort = async (taken: Set<number>): Promise<number> => {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 25_000)
    if (taken.has(port) || taken.has(port + 10_000)) continue
    if ((await isFree(port)) && (await isFree(port + 10_000))) {
      taken.add(port)
      taken.add(port + 10_000)
      return port
    }
  }
  throw new Error("no free port pair for a cluster node")
}

const pause = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

/** One command on one node, on a connection of its own; `undefined` when the node does not answer. */
const ask = async (port: number, command: string, ...args: Array<string>): Promise<string | undefined> => {
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on("error", () => {})
  try {
    await probe.connect()
    return String(await probe.call(command, ...args))
  } catch {
    return undefined
  } finally {
    probe.disconnect()
  }
}

/** Starts `masters` masters without replicas, joined into one cluster, every slot served. */
const startCluster = async (masters: number): Promise<PrivateCluster> => {
  const directory = mkdtempSync(join(tmpdir(), "rms-bench-cluster-"))
  const children: Array<ChildProcess> = []
  // Interrupted: the nodes and their directory go at once, then the signal does what it would have done.
  const onSignal = (signal: NodeJS.Signals) => {
    killAll()
    rmSync(directory, { recursive: true, force: true })
    process.kill(process.pid, signal)
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  const stop = async () => {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    await Promise.all(children.map((child) =>
      new Promise<void>((resolve) => {
        running.delete(child)
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const timer = setTimeout(resolve, 5_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve()
        })
        process.kill(child.pid!, "SIGKILL")
      })
    ))
    rmSync(directory, { recursive: true, force: true })
  }
  try {
    const taken = new Set<number>()
    const ports: Array<number> = []
    for (let i = 0; i < masters; i++) {
      const port = await clusterPort(taken)
      const child = spawn("redis-server", [
        "--port", String(port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", join(directory, `nodes-${port}.conf`),
        "--cluster-node-timeout", "1000",
        "--dir", directory,
        "--save", "",
        "--appendonly", "no"
      ], { stdio: "ignore" })
      running.add(child)
      children.push(child)
      ports.push(port)
    }
    for (const port of ports) {
      let up = false
      for (let i = 0; i < 250 && !up; i++) {
        up = (await ask(port, "PING")) === "PONG"
        if (!up) await pause(20)
      }
      if (!up) throw new Error(`cluster node ${port} did not start`)
    }
    await promisify(execFile)("redis-cli", [
      "--cluster", "create",
      ...ports.map((port) => `127.0.0.1:${port}`),
      "--cluster-replicas", "0",
      "--cluster-yes"
    ], { timeout: 20_000 })
    for (let i = 0; ; i++) {
      const states = await Promise.all(ports.map((port) => ask(port, "CLUSTER", "INFO")))
      if (states.every((state) => state?.includes("cluster_state:ok") === true)) break
      if (i === 300) throw new Error("the cluster did not reach cluster_state:ok")
      await pause(50)
    }
    return { ports, seeds: ports.map((port) => `127.0.0.1:${port}`), stop }
  } catch (error) {
    await stop()
    throw error
  }
}

// ---------------------------------------------------------------------------------------------------------
// Counting

/** `INFO <section>` counters of every master, by port: `name → count`. */
const infoCounters = async (admins: ReadonlyMap<number, Redis>, section: "commandstats" | "errorstats") => {
  const pattern = section === "commandstats" ? /cmdstat_([^:]+):calls=(\d+)/g : /errorstat_([^:]+):count=(\d+)/g
  const counters = new Map<number, Map<string, number>>()
  for (const [port, admin] of admins) {
    const info = await admin.info(section)
    counters.set(port, new Map([...info.matchAll(pattern)].map(([, name, count]) => [name!.toLowerCase(), Number(count)])))
  }
  return counters
}

/** Commands that are not the operation's: our own probes, the clients' heartbeats and slot-map refreshes. */
const overhead = (command: string) =>
  command === "info" || command === "ping" || command === "hello" || command === "readonly" ||
  command.startsWith("cluster") || command.startsWith("client") || command.startsWith("command")

type Counters = Map<number, Map<string, number>>

/** What each master counted between two snapshots, overhead left out: `port → command → count`. */
const delta = (before: Counters, after: Counters): Counters =>
  new Map([...after].map(([port, counts]) => [
    port,
    new Map([...counts].flatMap(([name, count]) => {
      const grown = count - (before.get(port)?.get(name) ?? 0)
      return grown > 0 && !overhead(name) ? [[name, grown] as const] : []
    }))
  ]))

const total = (counters: Counters, name?: string) =>
  [...counters.values()].reduce((sum, counts) =>
    sum + (name === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : counts.get(name) ?? 0), 0)

/** Counts the requests the client writes to each node's socket: one per pipeline, one per lone command. */
const countRequests = (cluster: Cluster) => {
  const counts = new Map<string, number>()
  const restore: Array<() => void> = []
  for (const node of cluster.nodes("all")) {
    const stream = node.stream as unknown as { write: (...args: Array<unknown>) => boolean }
    const write = stream.write
    const address = `${node.options.host}:${node.options.port}`
    stream.write = function(this: unknown, ...args: Array<unknown>) {
      counts.set(address, (counts.get(address) ?? 0) + 1)
      return write.apply(this, args)
    }
    restore.push(() => void (stream.write = write))
  }
  return {
    /** Requests per node since the last call. */
    take: () => {
      const snapshot = new Map(counts)
      counts.clear()
      return snapshot
    },
    restore: () => restore.forEach((undo) => undo())
  }
}

const sum = (counts: ReadonlyMap<unknown, number>) => [...counts.values()].reduce((a, b) => a + b, 0)
const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const median = (values: ReadonlyArray<number>) => percentile([...values].sort((a, b) => a - b), 0.5)
const randomKeys = (count: number) => Array.from({ length: count }, () => `key-${Math.random().toString(36).slice(2, 12)}`)

// ---------------------------------------------------------------------------------------------------------
// Measuring

/** One batch operation over its calls. */
interface BatchFigures {
  /** Requests per call, at the client's sockets. */
  readonly requests: ReadonlyArray<number>
  /** Nodes written to per call. */
  readonly nodes: ReadonlyArray<number>
  /** Commands per call, at the masters, by name (summed over the calls). */
  readonly commands: ReadonlyMap<string, number>
  readonly calls: number
  /** Wall time per call, milliseconds. */
  readonly millis: ReadonlyArray<number>
}

export interface ClusterOutput {
  readonly getMany: BatchFigures
  readonly setMany: BatchFigures
  readonly setManyVersioned: BatchFigures
  readonly invalidateAll: BatchFigures
  /** `getMany` of the last batch's keys after `invalidateAll`: keys found (expected 0), requests. */
  readonly afterInvalidateAll: { readonly found: number; readonly requests: number }
  /** Keys `getMany` found, over all calls (expected `batch × calls`). */
  readonly found: number
  /** Error replies of each kind over the batch operations, at the masters. */
  readonly errors: ReadonlyMap<string, number>
  readonly bus: {
    /** Messages each sharded channel carried, by channel. */
    readonly perChannel: ReadonlyArray<number>
    /** `SPUBLISH`es each master ran. */
    readonly perMaster: ReadonlyArray<number>
    /** Channels each master owns. */
    readonly channelsPerMaster: ReadonlyArray<number>
    /** Messages B's listener heard. */
    readonly delivered: number
    /** Delivery latency from A's publish to B's listener, milliseconds, sorted. */
    readonly latencies: ReadonlyArray<number>
    /** A's publish (the `SPUBLISH` round trip), milliseconds, sorted. */
    readonly publishes: ReadonlyArray<number>
    /** Gaps B heard (expected 0). */
    readonly gaps: number
  }
  readonly tags: {
    /** Commands the masters ran for the invalidations, summed: `name → count`. */
    readonly commands: ReadonlyMap<string, number>
    /** Masters that ran the ledger's script. */
    readonly ledgerMasters: number
    /** Delivery latency from A's call to B's listener, milliseconds, sorted. */
    readonly latencies: ReadonlyArray<number>
    /** A's `invalidateTags` (ledger script, then `SPUBLISH`), milliseconds, sorted. */
    readonly walls: ReadonlyArray<number>
    /** Commands the masters ran for one read of 10 tags' positions. */
    readonly read: ReadonlyMap<string, number>
  }
}

const Versioned = Schema.Struct({ version: Schema.Number, text: Schema.String })

const measure = async (cluster: PrivateCluster): Promise<ClusterOutput> => {
  const scope = Effect.runSync(Scope.make())
  const inScope = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  const admins = new Map<number, Redis>()
  let counter: Cluster | undefined
  try {
    for (const port of cluster.ports) {
      const admin = new Redis({ port, host: "127.0.0.1", lazyConnect: true })
      admins.set(port, admin)
      await admin.connect()
    }
    const service = await inScope(RedisClient.make({ clusterNodes: cluster.seeds }))
    if (!RedisClient.isCluster(service.client)) throw new Error("RedisClient did not open a cluster client")
    const client = service.client
    const namespace = `bench:cluster:${process.pid}`
    const provide = Effect.provideService(RedisClient.RedisClient, service)
    const plain = await Effect.runPromise(
      RedisCache.make<string, string, string>({ namespace, schema: Schema.String, timeToLive: "1 minute", name: "bench-cluster" }).pipe(provide)
    )
    const versioned = await Effect.runPromise(
      RedisCache.make<string, typeof Versioned.Type, typeof Versioned.Encoded>({
        namespace: `${namespace}:versioned`,
        schema: Versioned,
        timeToLive: "1 minute",
        version: (value) => value.version,
        name: "bench-cluster-versioned"
      }).pipe(provide)
    )
    // A connection to every master before the counting starts, so that each socket exists to be counted.
    await Promise.all(client.nodes("master").map((node) => node.ping()))
    const requests = countRequests(client)
    const errorsBefore = await infoCounters(admins, "errorstats")

    /** Runs `call` once, counting at the client and at the masters. */
    const counted = async <A>(call: () => Promise<A>) => {
      const before = await infoCounters(admins, "commandstats")
      requests.take()
      const start = performance.now()
      const result = await call()
      const millis = performance.now() - start
      const sent = requests.take()
      const commands = delta(before, await infoCounters(admins, "commandstats"))
      return { result, millis, sent, commands }
    }
    const figures = () => {
      const requestsPerCall: Array<number> = []
      const nodes: Array<number> = []
      const millis: Array<number> = []
      const commands = new Map<string, number>()
      let calls = 0
      return {
        add: (step: { readonly millis: number; readonly sent: ReadonlyMap<string, number>; readonly commands: Counters }) => {
          calls++
          requestsPerCall.push(sum(step.sent))
          nodes.push(step.sent.size)
          millis.push(step.millis)
          for (const counts of step.commands.values()) {
            for (const [name, count] of counts) commands.set(name, (commands.get(name) ?? 0) + count)
          }
        },
        done: (): BatchFigures => ({ requests: requestsPerCall, nodes, commands, calls, millis })
      }
    }

    progress("cluster: getMany / setMany of 100 random keys …")
    const gets = figures()
    const sets = figures()
    const versionedSets = figures()
    let found = 0
    let lastKeys: Array<string> = []
    for (let call = 0; call < sizes.calls; call++) {
      const keys = randomKeys(sizes.batch)
      lastKeys = keys
      sets.add(await counted(() => Effect.runPromise(plain.setMany(keys.map((key) => [key, `value of ${key}`])))))
      const read = await counted(() => Effect.runPromise(plain.getMany(keys)))
      gets.add(read)
      found += [...read.result].filter(([key, value]) => value === `value of ${key}`).length
      versionedSets.add(await counted(() =>
        Effect.runPromise(versioned.setMany(keys.map((key, i) => [key, { version: call * sizes.batch + i + 1, text: key }])))
      ))
    }
    progress("cluster: invalidateAll …")
    const invalidations = figures()
    invalidations.add(await counted(() => Effect.runPromise(plain.invalidateAll)))
    const after = await counted(() => Effect.runPromise(plain.getMany(lastKeys)))
    const errorsAfter = await infoCounters(admins, "errorstats")
    requests.restore()
    const kinds = new Set(["crossslot", "moved", "ask", ...[...errorsAfter.values()].flatMap((counts) => [...counts.keys()])])
    const errors = new Map([...kinds].map((kind) => [kind.toUpperCase(), total(errorsAfter, kind) - total(errorsBefore, kind)]))

    progress(`cluster: the bus, ${sizes.messages} messages over ${sizes.shards} sharded channels …`)
    const busNamespace = `${namespace}:bus`
    const instance = () =>
      Effect.flatMap(
        RedisClient.make({ clusterNodes: cluster.seeds }),
        (own) =>
          InvalidationBus.make<string>({ namespace: busNamespace, decodeKey: Option.some, shards: sizes.shards }).pipe(
            Effect.provideService(RedisClient.RedisClient, own)
          )
      )
    const a = await inScope(instance())
    const b = await inScope(instance())
    const arrivals = new Map<string, number>()
    await inScope(b.listen({
      onInvalidate: (keys) =>
        Effect.sync(() => {
          const now = performance.now()
          for (const key of keys) arrivals.set(key, now)
        }),
      onGap: Effect.void
    }))
    // Our own sharded subscriber counts what each channel carries.
    const channels = Array.from({ length: sizes.shards }, (_, i) => shardChannel(a.channel, i, sizes.shards))
    counter = new Cluster(cluster.seeds.map((seed) => ({ host: "127.0.0.1", port: Number(seed.split(":")[1]) })), { shardedSubscribers: true })
    counter.on("error", () => {})
    const perChannel = new Map<string, number>(channels.map((channel) => [channel, 0]))
    counter.on("smessage", (channel: string) => perChannel.set(channel, (perChannel.get(channel) ?? 0) + 1))
    for (const channel of channels) await counter.ssubscribe(channel)
    const waitUntil = async (condition: () => boolean, what: string) => {
      const deadline = Date.now() + 10_000
      while (!condition()) {
        if (Date.now() > deadline) throw new Error(`bus: ${what} not reached within 10 s`)
        await pause(5)
      }
    }
    const heardByCounter = () => sum(perChannel)
    // Warm-up: two messages per channel, then the counts start from zero.
    const warmup = 2 * sizes.shards
    await Effect.runPromise(Effect.forEach(Array.from({ length: warmup }, (_, i) => `warmup-${i}`), (key) => a.publish([key]), { discard: true }))
    await waitUntil(() => arrivals.size === warmup && heardByCounter() === warmup, "the warm-up")
    arrivals.clear()
    for (const channel of channels) perChannel.set(channel, 0)
    const publishBefore = await infoCounters(admins, "commandstats")
    const gapsBefore = (await Effect.runPromise(b.stats)).gaps

    const sent = new Map<string, number>()
    const publishes: Array<number> = []
    await Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < sizes.messages; i++) {
        const key = `message-${i}`
        const start = performance.now()
        sent.set(key, start)
        yield* a.publish([key])
        publishes.push(performance.now() - start)
      }
    }))
    await waitUntil(() => arrivals.size === sizes.messages && heardByCounter() === sizes.messages, "every delivery")
    const spublish = delta(publishBefore, await infoCounters(admins, "commandstats"))
    // Taken now: the tag invalidations below go over the same channels.
    const carried = channels.map((channel) => perChannel.get(channel) ?? 0)
    const latencies = [...arrivals].map(([key, at]) => at - sent.get(key)!).sort((x, y) => x - y)

    progress(`cluster: ${sizes.tagInvalidations} tag invalidations …`)
    const tagArrivals = new Map<string, number>()
    await inScope(b.listen({
      onInvalidate: () => Effect.void,
      onGap: Effect.void,
      onTags: (tags) =>
        Effect.sync(() => {
          const now = performance.now()
          for (const [tag] of tags) tagArrivals.set(tag, now)
        })
    }))
    await Effect.runPromise(a.invalidateTags(["warm-up"], 0))
    await waitUntil(() => tagArrivals.has("warm-up"), "the tag warm-up")
    tagArrivals.clear()
    const tagsBefore = await infoCounters(admins, "commandstats")
    const tagSent = new Map<string, number>()
    const walls: Array<number> = []
    await Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < sizes.tagInvalidations; i++) {
        const tag = `tag-${i}`
        const start = performance.now()
        tagSent.set(tag, start)
        yield* a.invalidateTags([tag], 0)
        walls.push(performance.now() - start)
      }
    }))
    await waitUntil(() => tagArrivals.size === sizes.tagInvalidations, "every tag delivery")
    const tagCommands = delta(tagsBefore, await infoCounters(admins, "commandstats"))
    const readBefore = await infoCounters(admins, "commandstats")
    await Effect.runPromise(b.tagPositions(Array.from({ length: 10 }, (_, i) => `tag-${i}`)))
    const readCommands = delta(readBefore, await infoCounters(admins, "commandstats"))
    const summed = (counters: Counters) => {
      const byName = new Map<string, number>()
      for (const counts of counters.values()) for (const [name, count] of counts) byName.set(name, (byName.get(name) ?? 0) + count)
      return byName
    }
    // Which master owns each channel, by the slot map.
    const ownerOf = (channel: string) => {
      const owner = client.slots[slotOf(channel)]?.[0]
      return Number(owner?.split(":")[1])
    }
    return {
      getMany: gets.done(),
      setMany: sets.done(),
      setManyVersioned: versionedSets.done(),
      invalidateAll: invalidations.done(),
      afterInvalidateAll: { found: after.result.size, requests: sum(after.sent) },
      found,
      errors,
      bus: {
        perChannel: carried,
        perMaster: cluster.ports.map((port) => spublish.get(port)?.get("spublish") ?? 0),
        channelsPerMaster: cluster.ports.map((port) => channels.filter((channel) => ownerOf(channel) === port).length),
        delivered: arrivals.size,
        latencies,
        publishes: [...publishes].sort((x, y) => x - y),
        gaps: (await Effect.runPromise(b.stats)).gaps - gapsBefore
      },
      tags: {
        commands: summed(tagCommands),
        ledgerMasters: [...tagCommands.values()].filter((counts) => (counts.get("eval") ?? 0) + (counts.get("evalsha") ?? 0) > 0).length,
        latencies: [...tagArrivals].map(([tag, at]) => at - tagSent.get(tag)!).sort((x, y) => x - y),
        walls: walls.sort((x, y) => x - y),
        read: summed(readCommands)
      }
    }
  } finally {
    counter?.disconnect()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    for (const admin of admins.values()) admin.disconnect()
  }
}

// ---------------------------------------------------------------------------------------------------------
// Report

const range = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const low = sorted[0]!
  const high = sorted[sorted.length - 1]!
  return low === high ? String(low) : `${median(sorted)} (${low}–${high})`
}

/** Commands per call by name, from the sums over the calls. */
const commandsPerCall = (figures: BatchFigures, names?: ReadonlyArray<string>) =>
  [...figures.commands]
    .filter(([name]) => names === undefined || names.includes(name))
    .sort(([, x], [, y]) => y - x)
    .map(([name, count]) => `${Number((count / figures.calls).toFixed(2))} ${name.toUpperCase()}`)
    .join(" + ") || "—"

const ms = (millis: number) => `${millis.toFixed(2)} ms`

export const report = (output: ClusterOutput): string => {
  const { batch, calls, masters, messages, shards } = sizes
  const bound = (messages / shards) * 1.1
  const maxChannel = Math.max(...output.bus.perChannel)
  const minChannel = Math.min(...output.bus.perChannel)
  const maxGetRequests = Math.max(...output.getMany.requests)
  const crossslot = output.errors.get("CROSSSLOT") ?? 0
  const otherErrors = [...output.errors].filter(([name, count]) => name !== "CROSSSLOT" && count > 0)
  const { latencies, publishes } = output.bus
  const rows = [
    [`\`getMany\` of ${batch} random keys`, output.getMany],
    [`\`setMany\` of ${batch} random keys`, output.setMany],
    [`\`setMany\` of ${batch} random keys, versioned tier`, output.setManyVersioned],
    ["`invalidateAll`", output.invalidateAll]
  ] as const
  return `## Redis Cluster: round trips and the sharded bus

A private cluster of ${masters} masters, no replicas (\`redis-server --cluster-enabled yes\` on loopback ports,
\`redis-cli --cluster create … --cluster-yes\`), started by the bench and killed by pid when it ends. The library's
own \`RedisClient\` in cluster mode and a \`RedisCache\` on it (a \`Schema.String\` tier; and a versioned one, whose
writes go through its one-key script). ${calls} calls of each batch operation, each on ${batch} fresh random keys (so spread
over about ${batch} slots on every master); the \`setMany\` of a call writes the keys its \`getMany\` then reads. **Requests**
are counted at the client's sockets (each write to a node's socket is one request: a pipeline, or a lone command);
**commands** by each master (\`INFO commandstats\`, differences around each call; the clients' \`PING\`s, slot-map
refreshes and our \`INFO\`s left out; a script's own commands are counted by Redis beside its \`EVALSHA\`, so only the
\`EVALSHA\`/\`EVAL\`/\`SCRIPT\` calls are shown for the versioned tier); **error replies** by kind at the masters (\`INFO
errorstats\`). Medians over the calls, range in brackets. Target: \`getMany\` of ${batch} random keys in ≤ ${masters} round trips (one
pipeline per master), 0 \`CROSSSLOT\`. Reproduce alone with \`npx tsc -p tsconfig.bench.json && node .bench-tmp/bench/cluster.js\`.

${
    table(["operation", "requests per call", "masters reached", "commands per call, at the masters", "wall per call"], rows.map(([name, figures]) => [
      name,
      name.startsWith("`getMany`") ? `**${range(figures.requests)}**` : range(figures.requests),
      range(figures.nodes),
      name.includes("versioned") ? commandsPerCall(figures, ["evalsha", "eval", "script|load", "script|exists"]) : commandsPerCall(figures),
      ms(median(figures.millis))
    ]))
  }

\`getMany\` found ${output.found} of the ${batch * calls} keys written, in at most **${maxGetRequests}** requests per call: it ${
    maxGetRequests <= masters ? "meets" : "**misses**"
  } the target (≤ ${masters}). Error replies at the masters over all these calls: **${crossslot} \`CROSSSLOT\`**${
    otherErrors.length === 0 ? ", and no other (no `MOVED`, no `ASK`)" : `, ${otherErrors.map(([name, count]) => `${count} \`${name}\``).join(", ")}`
  }. \`invalidateAll\` took ${commandsPerCall(output.invalidateAll)} (the namespace's generation) in ${
    range(output.invalidateAll.requests)
  } request, whatever the number of keys; a \`getMany\` of the last batch's ${batch} keys right after it found ${output.afterInvalidateAll.found}
of them (in ${output.afterInvalidateAll.requests} requests). A fraction of a command per call is a sum over the ${calls} calls divided by
them: two keys of a batch that share a slot are read by one \`MGET\`; a script is sent once as \`EVAL\` to each
master, then as \`EVALSHA\`.

**The bus on sharded pub/sub.** Two instances, each with its own \`RedisClient\` in cluster mode and an
\`InvalidationBus\` of ${shards} sharded channels (its default); A publishes ${messages.toLocaleString("en-US")} messages of one key one after the
other (each awaited), after a warm-up of ${2 * shards}; B's listener records each key's arrival. A sharded subscriber of our
own counts the messages each channel carried; each master counted its \`SPUBLISH\`es. Target: each channel ≤ 1/${shards} of the
messages + 10 % (≤ ${bound.toFixed(0)} of ${messages.toLocaleString("en-US")}).

${
    table(["", "value"], [
      ["messages per channel (min – max)", `${minChannel} – **${maxChannel}** (share ${((maxChannel / messages) * 100).toFixed(2)} % at most; 1/${shards} = ${(100 / shards).toFixed(2)} %)`],
      ["channels per master", output.bus.channelsPerMaster.join(" / ")],
      ["`SPUBLISH` per master", output.bus.perMaster.join(" / ")],
      ["delivered to B", `${output.bus.delivered} of ${messages}, ${output.bus.gaps} gaps`],
      ["delivery A → B, p50 / p99 / max", `**${ms(percentile(latencies, 0.5))} / ${ms(percentile(latencies, 0.99))}** / ${ms(latencies[latencies.length - 1]!)}`],
      ["A's publish (`SPUBLISH` reply), p50 / p99", `${ms(percentile(publishes, 0.5))} / ${ms(percentile(publishes, 0.99))}`]
    ])
  }

Each channel carried at most ${maxChannel} messages: it ${maxChannel <= bound ? "meets" : "**misses**"} the target (≤ ${bound.toFixed(0)}). The
channels are spread over the masters by their slots, so each master's share follows how many channels it owns
(no master carries every message); the delivery latency is on loopback, the publisher and both subscribers in
this one process.

**Tag invalidations.** The same two buses: A makes ${sizes.tagInvalidations} tag invalidations of one tag each, one after the other
(\`invalidateTags\`, what \`invalidateTag\` of a cache calls), B's listener records each tag's arrival; then B reads the
positions of 10 tags (\`tagPositions\`, what an instance does for entries stamped before it knew the ledger). Commands
counted by the masters, per invalidation (a script's own \`HINCRBY\`/\`HSET\` are counted beside it).

${
    table(["", "value"], [
      ["commands per invalidation, at the masters", [...output.tags.commands]
        .sort(([, x], [, y]) => y - x)
        .map(([name, count]) => `${Number((count / sizes.tagInvalidations).toFixed(2))} ${name.toUpperCase()}`)
        .join(" + ")],
      ["masters that ran the ledger's script", String(output.tags.ledgerMasters)],
      ["A's \`invalidateTags\`, p50 / p99", `${ms(percentile(output.tags.walls, 0.5))} / ${ms(percentile(output.tags.walls, 0.99))}`],
      ["delivery A → B, p50 / p99 / max", `**${ms(percentile(output.tags.latencies, 0.5))} / ${ms(percentile(output.tags.latencies, 0.99))}** / ${
        ms(output.tags.latencies[output.tags.latencies.length - 1]!)
      }`],
      ["commands for one read of 10 tags' positions", [...output.tags.read].map(([name, count]) => `${count} ${name.toUpperCase()}`).join(" + ")]
    ])
  }

The ledger is one hash, so one slot on one master: an invalidation is two requests (its script there, then the
\`SPUBLISH\` on the next channel), never a cross-slot command; a tagged read of an entry this instance stamped makes
none (see the tagged \`LoadingCache.get\` row above).
`
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

/** Starts the cluster, measures, stops it (also on failure) and returns the markdown section. */
export const runCluster = async (): Promise<string> => {
  const start = performance.now()
  progress("cluster: starting 3 masters …")
  const cluster = await startCluster(sizes.masters)
  try {
    const output = await measure(cluster)
    return report(output)
  } finally {
    await cluster.stop()
    progress(`cluster: done in ${((performance.now() - start) / 1000).toFixed(1)} s`)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const markdown = await runCluster()
  console.log(`# Redis Cluster benchmark

Machine: ${machine()}.

${markdown}`)
}
