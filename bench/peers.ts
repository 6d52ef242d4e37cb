/**
 * The side-by-side benchmark against other Node.js caches with an L1 in memory and an L2 in Redis: bentocache,
 * cacheable, cache-manager and async-cache-dedupe, against `MultiLevelCache` called from fibers and called with
 * one `runPromise` per call. `runPeers()` returns the markdown for BENCHMARKS.md (`bench/run.ts` appends it);
 * run alone, it prints it:
 *
 *   npm run bench:peers     (compiled into .bench-tmp first, like `npm run bench`; BENCH_ROUNDS=n for more rounds)
 *
 * Each workload runs in a child process of its own (`bench/peers-workload.ts`), so that no library's heap,
 * timers or connections weigh on another workload's figures.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { differencePerRound, formatDuration, median, type Result, ratioPerRound, rounds } from "./harness.js"
import type { Measured } from "./peers-harness.js"
import { deletePrefix, plainRedis } from "./peers-libraries.js"
import { memorySubjects, names, sizes, type WorkloadName, type WorkloadOutput } from "./peers-workload.js"
import { machine, nodeArgs, ratio, table, versionOf } from "./report.js"


/** Runs the workload script in a child process; resolves with what it printed on stdout. */
const child = (args: ReadonlyArray<string>, captureStdout: boolean): Promise<string> =>
  new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeArgs("peers-workload"), ...args], {
      // The child's own progress goes to our stderr: our stdout is the markdown when run alone.
      stdio: ["ignore", captureStdout ? "pipe" : process.stderr, "inherit"]
    })
    let out = ""
    proc.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
    proc.on("error", reject)
    proc.on("exit", (code, signal) =>
      code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited with ${code ?? signal}`))
    )
  })

const progress = (line: string) => console.error(line)

// ---------------------------------------------------------------------------------------------------------
// Formatting

const count = (n: number): string => n.toLocaleString("en-US")

/** Nanoseconds as ns, µs or ms. */
const duration = (ns: number): string =>
  ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`

/** Time per operation of a throughput. */
const per = (r: Result, ops = 1): string => duration((1e9 / r.opsPerSecond) * ops)

const by = (cases: ReadonlyArray<Measured>, name: string): Measured => {
  const found = cases.find((c) => c.name === name)
  if (found === undefined) throw new Error(`no case ${name}`)
  return found
}

/**
 * Redis commands per operation (or per `scale` operations), with the commands that make them up. `PING` is
 * left out: our connection's heartbeat sends one a second whatever the load, in whichever case is running.
 */
const commands = (c: Measured, scale = 1): string => {
  const entries = Object.entries(c.commands).filter(([name]) => name !== "ping").map(([name, n]) => [name, n * scale] as const)
  const digits = scale === 1 ? 2 : 0
  const total = entries.reduce((sum, [, n]) => sum + n, 0)
  const shown = entries.filter(([, n]) => n >= 0.5 * 10 ** -digits).sort((a, b) => b[1] - a[1])
  const parts = shown.map(([name, n]) => `${name.toUpperCase()} ${n.toFixed(digits)}`)
  return total < 0.5 * 10 ** -digits ? "0" : `${total.toFixed(digits)} (${parts.join(", ")})`
}

/** Loader calls and keys loaded per operation (or per `scale` operations). */
const loaderCalls = (c: Measured, scale = 1): string => {
  const digits = scale === 1 ? 2 : 0
  return `${(c.loaderCalls * scale).toFixed(digits)} / ${(c.keysLoaded * scale).toFixed(digits)}`
}

/** `row`'s time over `subject`'s, per round (above 1: `subject` is faster). */
const slower = (subject: Measured, row: Measured, clock: "wall" | "cpu" = "wall"): string =>
  ratio(ratioPerRound(subject[clock], [row[clock]]))

// ---------------------------------------------------------------------------------------------------------
// Sections

const peerNames = ["bentocache", "cacheable", "cache-manager", "async-cache-dedupe"] as const
const oursNames = [names.fibers, names.promise] as const

const sequentialSection = (title: string, intro: string, output: WorkloadOutput, floor?: string): string => {
  const cases = output.tables[0]!
  const fibers = by(cases, names.fibers)
  const promise = by(cases, names.promise)
  const floorCase = floor === undefined ? undefined : by(cases, floor)
  const rows = [...oursNames, ...peerNames, ...(floor === undefined ? [] : [floor])].map((name) => {
    const c = by(cases, name)
    return [
      name === "async-cache-dedupe" ? "async-cache-dedupe (no memory tier: Redis only)" : name,
      per(c.wall),
      slower(fibers, c),
      slower(promise, c),
      ...(floorCase === undefined ? [] : [slower(floorCase, c)]),
      commands(c),
      loaderCalls(c),
      ...(output.storedBytes === undefined ? [] : [String(output.storedBytes[name.startsWith("@rms") ? "@rms/cache" : name] ?? "—")])
    ]
  })
  const header = [
    "case",
    "time per get",
    "÷ ours, fibers",
    "÷ ours, runPromise",
    ...(floorCase === undefined ? [] : ["÷ ioredis floor"]),
    "Redis commands per get",
    "loader calls / keys loaded per get",
    ...(output.storedBytes === undefined ? [] : ["bytes stored in Redis"])
  ]
  return `### ${title}

${intro}

${table(header, rows)}
`
}

/** The floor of each calling style: what its callers cost before any cache. */
const floorOf = (name: string): string =>
  name === names.fibers
    ? names.floorForEach
    : name === names.promise
    ? names.floorRunPromise
    : names.floorAsync

const burstSection = (title: string, intro: string, output: WorkloadOutput): string => {
  const cases = output.tables[0]!
  const { callers } = sizes
  const floors: ReadonlyArray<string> = [names.floorFork, names.floorForEach, names.floorRunPromise, names.floorAsync]
  const isOurs = (name: string) => name === names.fibers || name === names.promise || name === names.getMany
  const aboveFloor = (c: Measured) => differencePerRound(c.cpu, by(cases, floorOf(c.name)).cpu)
  const main = table(
    [
      "case",
      "wall per burst",
      "CPU per burst",
      "CPU per caller",
      "CPU per caller above the floor of its calling style",
      "loader calls / keys loaded per burst",
      "Redis commands per burst"
    ],
    [...oursNames, ...(cases.some((c) => c.name === names.getMany) ? [names.getMany] : []), ...peerNames, ...floors].map((name) => {
      const c = by(cases, name)
      const isFloor = floors.includes(name)
      return [
        name,
        per(c.wall, callers),
        per(c.cpu, callers),
        per(c.cpu),
        // One call for the whole burst has no per-caller floor to compare with.
        isFloor || name === names.getMany ? "—" : isOurs(name) ? `**${formatDuration(aboveFloor(c))}**` : formatDuration(aboveFloor(c)),
        isFloor ? "—" : loaderCalls(c, callers),
        isFloor ? "—" : commands(c, callers)
      ]
    })
  )
  const fibers = by(cases, names.fibers)
  const promise = by(cases, names.promise)
  const versus = table(
    ["peer", "wall ÷ ours, fibers", "CPU ÷ ours, fibers", "wall ÷ ours, runPromise", "CPU ÷ ours, runPromise"],
    peerNames.map((name) => {
      const c = by(cases, name)
      return [name, slower(fibers, c), slower(fibers, c, "cpu"), slower(promise, c), slower(promise, c, "cpu")]
    })
  )
  const verdict = (c: Measured) => {
    const above = aboveFloor(c)
    return `${formatDuration(above)} per caller above its floor: it ${above <= 2_000 ? "meets" : "**misses**"} the target (≤ 2 µs)`
  }
  return `### ${title}

${intro}

${main}

Each peer's time over ours, median over rounds of the per-round ratio (above 1.00×: ours is faster):

${versus}

Ours, fibers: ${verdict(fibers)}. Ours, \`runPromise\` per call: ${verdict(promise)}.
`
}

const zipfSection = (output: WorkloadOutput): string => {
  const [one, many] = output.tables as [ReadonlyArray<Measured>, ReadonlyArray<Measured>]
  const rows = [...oursNames, ...peerNames].map((name) => {
    const a = by(one, name)
    const b = by(many, name)
    return [
      name === "async-cache-dedupe" ? "async-cache-dedupe (no memory tier: Redis only)" : name,
      per(a.wall),
      per(a.cpu),
      per(b.wall),
      per(b.cpu),
      `${commands(a)}; ${commands(b)}`,
      `${loaderCalls(a)}; ${loaderCalls(b)}`
    ]
  })
  const versus = table(
    ["peer", "c = 1: ÷ ours, fibers", "c = 1: ÷ ours, runPromise", `c = ${sizes.zipfConcurrency}: ÷ ours, fibers`, `c = ${sizes.zipfConcurrency}: ÷ ours, runPromise`],
    peerNames.map((name) => [
      name,
      slower(by(one, names.fibers), by(one, name)),
      slower(by(one, names.promise), by(one, name)),
      slower(by(many, names.fibers), by(many, name)),
      slower(by(many, names.promise), by(many, name))
    ])
  )
  return `### 5. Zipf mix, concurrency 1 and ${sizes.zipfConcurrency}

s = 0.99 over ${count(sizes.zipfKeys)} keys, an L1 of ${count(sizes.zipfCapacity)} entries, ${sizes.zipfWriteShare * 100} % writes
(\`set\` of a new version of the key, for every library: ours is \`MultiLevelCache.set\`, async-cache-dedupe's is
\`cache.set(name, storageKey, value, ttl)\`), the rest read-through gets with a loader that answers at once.
${count(sizes.zipfOps)} operations per run, taken from one long stream, each run of a case continuing where its last run
stopped: L1 keeps turning over as in a long-running process. **Redis is pre-populated**: before the rounds,
every key the stream reads is read once through each library (untimed), so the rounds measure a warm cache
in its steady state, where a read that misses L1 is an L2 hit. At concurrency 1 one caller awaits each
operation in turn (ours, fibers: a loop in one fiber); at ${sizes.zipfConcurrency}, ${sizes.zipfConcurrency} async workers take the next operation as they
finish one (ours, fibers: \`Effect.forEach(…, { concurrency: ${sizes.zipfConcurrency} })\`). Wall time per operation is the inverse of
the throughput.

${
    table(
      [
        "case",
        "c = 1: wall per op",
        "c = 1: CPU per op",
        `c = ${sizes.zipfConcurrency}: wall per op`,
        `c = ${sizes.zipfConcurrency}: CPU per op`,
        `Redis commands per op (c = 1; c = ${sizes.zipfConcurrency})`,
        `loader calls / keys loaded per op (c = 1; c = ${sizes.zipfConcurrency})`
      ],
      rows
    )
  }

Each peer's wall time over ours, median over rounds of the per-round ratio (above 1.00×: ours is faster):

${versus}
`
}

const memorySection = (bytes: ReadonlyMap<string, number>): string => {
  const map = bytes.get("Map")!
  const rows: Array<Array<string>> = memorySubjects.map((name) => {
    const b = bytes.get(name)!
    return [name === "Map" ? "a plain `Map` of the same entries (floor)" : name, b.toFixed(0), name === "Map" ? "—" : (b - map).toFixed(0)]
  })
  rows.push(["async-cache-dedupe", "— (no memory tier)", "—"])
  return `### 6. Bytes per L1 entry

Heap plus array buffers after two forced collections, before and after ${count(sizes.memoryEntries)} \`set\`s
(L1 capacity ${count(sizes.memoryEntries)}, so nothing is evicted; L2 written too), divided by the entries; each figure the
median of three fresh processes per library. Keys and values exist before the first reading and stay
referenced, so the figure is what the cache adds per entry: its structures, the key as it keeps it, and any
copy of the value it makes (bentocache keeps the value serialized as JSON in its L1 by default).

${table(["L1", "bytes per entry", "above a plain Map"], rows)}
`
}

// ---------------------------------------------------------------------------------------------------------

/** Runs every workload, each in a child process, and returns the markdown sections. */
export const runPeers = async (): Promise<string> => {
  // Every key of the run starts with this prefix: one SCAN finds them all, whatever a child left behind.
  const run = `peers-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const directory = mkdtempSync(join(tmpdir(), "peers-"))
  const outputs = new Map<WorkloadName, WorkloadOutput>()
  const bytes = new Map<string, number>()
  const start = performance.now()
  try {
    const workloads: ReadonlyArray<WorkloadName> = ["l1-hit", "l2-hit", "cold-distinct", "stampede", "zipf"]
    for (const workload of workloads) {
      progress(`peers: ${workload} …`)
      const file = join(directory, `${workload}.json`)
      await child([workload, `${run}-${workload}`, file], false)
      outputs.set(workload, JSON.parse(readFileSync(file, "utf8")) as WorkloadOutput)
    }
    progress("peers: bytes per L1 entry …")
    for (const subject of memorySubjects) {
      const samples: Array<number> = []
      for (let i = 0; i < 3; i++) {
        samples.push(Number((await child(["memory", `${run}-mem${i}`, subject], true)).trim()))
      }
      bytes.set(subject, median(samples))
    }
  } finally {
    rmSync(directory, { recursive: true, force: true })
    const redis = await plainRedis()
    try {
      const left = await deletePrefix(redis, run)
      if (left > 0) progress(`peers: deleted ${left} keys a child left behind`)
    } finally {
      await redis.quit()
    }
  }
  progress(`peers: done in ${((performance.now() - start) / 1000).toFixed(0)} s`)
  return report(outputs, bytes)
}

const report = (outputs: ReadonlyMap<WorkloadName, WorkloadOutput>, bytes: ReadonlyMap<string, number>): string => {
  const v = versionOf
  const { callers, loaderDelayMillis } = sizes
  return `## Side by side: other multi-level caches for Node.js

bentocache ${v("bentocache")}, cacheable ${v("cacheable")}, cache-manager ${v("cache-manager")} (with keyv ${v("keyv")} and @keyv/redis ${
    v("@keyv/redis")
  })
and async-cache-dedupe ${v("async-cache-dedupe")} (with ioredis ${v("ioredis")}), each configured as its README shows for an L1 in memory and
an L2 in Redis, with a time-to-live of one hour:

- **bentocache**: \`bentostore().useL1Layer(memoryDriver({ maxItems })).useL2Layer(redisDriver(…))\`, read with
  \`getOrSet({ key, factory })\`; no bus (one instance). Its L1 keeps values serialized by default, so an L1 hit
  parses JSON.
- **cacheable**: \`new Cacheable({ primary: createKeyv({ lruSize }), secondary: new KeyvRedis(url), namespace, ttl })\`,
  read with \`getOrSet(key, fn)\` (the default primary is unbounded: bounded here to the L1 capacity).
- **cache-manager**: \`createCache({ stores: [createKeyv({ lruSize }) from cacheable, createKeyv(url, { namespace }) from
  @keyv/redis], ttl })\`, read with \`wrap(key, fn)\`.
- **async-cache-dedupe**: \`createCache({ ttl, storage: { type: "redis", options: { client } } })\` and \`define\`. **It
  has a single storage**: with Redis there is no memory tier, every get is a Redis \`GET\`; its rows are marked so.
- **Ours**: \`MultiLevelCache.make\` with tiers \`[LruCache, { cache: RedisCache, timeout: "250 millis", breaker:
  { failures: 5, cooldown: "5 seconds" } }]\`, as \`TaskRepository\` configures its L2 (one-hour time-to-live in both
  tiers, metrics on, L2 unversioned like the peers' and decoding a four-field \`Schema.Struct\` on every read), and a
  batch loader. Two calling styles: **fibers** — one \`Effect.runPromise\` per run, in which the gets are fibers (a
  loop, \`Effect.forEach\` with a concurrency, or \`Effect.forEach\` unbounded for the bursts); **runPromise per call**
  — the peers' very loops, each call \`runtime.runPromise(cache.get(key))\` with the \`ManagedRuntime\` the cache was
  built in, built once as a Promise-based application would keep it.

Every library stores the same four-field object (about 100 bytes of JSON), under a Redis prefix of its own and
of this run, deleted at the end (\`SCAN\` + \`UNLINK\`). The peers' loaders load one key per call; ours loads the
keys of a turn in one call. Each workload runs in a child process of its own, with every library built in it;
within a round its cases run back to back, in reverse order every other round; ${rounds} timed rounds follow one
warm-up round. Figures are medians over rounds; a column "÷ ours, …" is the row's time over ours, the median
of the per-round ratios (above 1.00×: ours is faster), which cancels the machine's slow drifts. CPU time
is the process's (user + system from \`process.cpuUsage()\`, collection and the Redis clients' work included,
Redis's own excluded). Redis commands were counted in one more run of each case outside the timed rounds, on
the client side, from the diagnostics channels ioredis and node-redis publish every command on (\`PING\` left out:
our connection's heartbeat sends one a second whatever the load): the server's \`INFO commandstats\` would count
the commands of anything else using the same Redis. Loader calls are counted over the timed rounds. Reproduce
with \`npm run bench:peers\` (\`BENCH_ROUNDS=n\` for more rounds; run it while nothing else uses the machine).

${
    sequentialSection(
      "1. L1 hit, sequential",
      `${count(sizes.l1Keys)} keys, read once through each library beforehand, so all of them are in L1 (capacity 10,000) and in
Redis; one caller then reads them in turn (${count(sizes.l1Gets)} gets per run; ${count(sizes.l1GetsRedisOnly)} for async-cache-dedupe, whose every get
goes to Redis).`,
      outputs.get("l1-hit")!
    )
  }
${
    sequentialSection(
      "2. L2 hit, sequential",
      `${count(sizes.l2Keys)} keys in Redis, read in turn through an L1 of ${count(sizes.l2Capacity)} entries: each key was evicted from L1 ${
        count(sizes.l2Capacity)
      } gets
before it comes round again, so every get misses L1, finds the key in Redis and back-fills L1 (the counts confirm
one Redis \`GET\` per get and no load). The floor is a plain ioredis connection (default options, as bentocache's
and async-cache-dedupe's; @keyv/redis uses node-redis) doing \`get\` + \`JSON.parse\` of our stored keys in the same
loop. "bytes stored in Redis" is one value as each library lays it out.`,
      outputs.get("l2-hit")!,
      names.floorRedis
    )
  }
${
    burstSection(
      "3. 1,000 concurrent gets of distinct cold keys",
      `${sizes.burstsPerRound} bursts per run; each burst asks for ${count(callers)} keys never asked before (missing from L1 and Redis) at once
(\`Promise.all\`; ours, fibers: \`Effect.forEach(keys, get, { concurrency: "unbounded" })\`), and the loader answers
after ${loaderDelayMillis} ms on a \`setTimeout\`; the burst ends when every caller has its value (stored in both tiers). The floors
are each calling style's callers alone, every one waiting for a single answer that comes after the same ${loaderDelayMillis} ms:
${count(callers)} fibers forked in a loop, or started by \`Effect.forEach\` unbounded, awaiting one \`Deferred\`; ${count(callers)}
\`runtime.runPromise\` calls awaiting one \`Deferred\`; ${count(callers)} async functions awaiting one promise. "Above the floor"
subtracts, per round, the floor of the row's calling style (\`Effect.forEach\` for ours in fibers, \`runPromise\` for ours
per call, async functions for the peers). Target for ours: ≤ 2 µs per caller above its floor. One more row of
ours, "one runPromise(getMany) per burst", is what the README tells Promise callers to do with a burst: the
${count(callers)} keys in one \`runtime.runPromise(cache.getMany(keys))\` (section "Calling from Promise code" there).`,
      outputs.get("cold-distinct")!
    )
  }
${
    burstSection(
      "4. Stampede: 1,000 concurrent gets of one cold key",
      `As above, but the ${count(callers)} callers of a burst all ask for the same key, never asked before: a cache stampede.
One loader call per burst is the goal.`,
      outputs.get("stampede")!
    )
  }
${zipfSection(outputs.get("zipf")!)}
${memorySection(bytes)}`
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const markdown = await runPeers()
  console.log(`# Side-by-side benchmark

Machine: ${machine()}.

${markdown}`)
}
