/**
 * One workload of the side-by-side benchmark, in a process of its own (started by `bench/peers.ts`):
 *
 *   node --expose-gc .bench-tmp/bench/peers-workload.js <workload> <run prefix> <output file>   (or --import tsx bench/peers-workload.ts)
 *
 * It builds every library under Redis prefixes that start with `<run prefix>`, measures, writes its figures
 * as JSON to `<output file>`, and deletes its Redis keys however it ends. `memory <run prefix> <library>`
 * measures one library's bytes per L1 entry and prints the figure instead.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type { Redis } from "ioredis"
import { writeFileSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { heapInUse, random, rounds, zipf } from "./harness.js"
import { type Measured, measureAll, type PeerCase, runWorkers } from "./peers-harness.js"
import {
  type BuildOptions,
  deletePrefix,
  type Library,
  loads,
  type LoaderOptions,
  ours,
  type Ours,
  peers,
  plainRedis,
  sleep,
  type Value,
  valueOf
} from "./peers-libraries.js"

export type WorkloadName = "l1-hit" | "l2-hit" | "cold-distinct" | "stampede" | "zipf"

export interface WorkloadOutput {
  /** One list of cases per table: one for most workloads, one per concurrency for the Zipf mix. */
  readonly tables: ReadonlyArray<ReadonlyArray<Measured>>
  /** Bytes of one stored value in Redis, by library (L2 hit only). */
  readonly storedBytes?: Readonly<Record<string, number>>
}

/** Row names, shared with the report. */
export const names = {
  fibers: "@rms/cache, fibers",
  promise: "@rms/cache, runPromise per call",
  getMany: "@rms/cache, one runPromise(getMany) per burst",
  floorFork: "floor: 1,000 forked fibers awaiting one Deferred",
  floorForEach: "floor: `Effect.forEach` unbounded, awaiting one Deferred",
  floorRunPromise: "floor: 1,000 `runtime.runPromise` awaiting one Deferred",
  floorAsync: "floor: 1,000 async functions awaiting one promise",
  floorRedis: "floor: ioredis `get` + `JSON.parse`"
} as const

/** Sizes of the workloads, shared with the report. */
export const sizes = {
  l1Keys: 1_000,
  l1Gets: 20_000,
  /** async-cache-dedupe has no memory tier: each of its gets is a Redis round trip, so fewer per round. */
  l1GetsRedisOnly: 2_000,
  l2Capacity: 1_000,
  l2Keys: 2_000,
  callers: 1_000,
  burstsPerRound: 3,
  loaderDelayMillis: 1,
  zipfKeys: 100_000,
  zipfCapacity: 10_000,
  zipfOps: 10_000,
  zipfWriteShare: 0.05,
  zipfConcurrency: 32,
  memoryEntries: 20_000
} as const

interface Built {
  readonly fibers: Ours
  readonly promise: Ours
  readonly peers: ReadonlyArray<Library>
  /** Every library as a Promise user calls it: ours (runPromise per call) first, then the peers. */
  readonly promiseShaped: ReadonlyArray<Library>
  readonly close: () => Promise<void>
}

/** Ours twice (one instance per calling style, so that neither warms the other's L1) and every peer. */
const buildAll = async (run: string, l1Capacity: number, loader: LoaderOptions): Promise<Built> => {
  const options: BuildOptions = { run, l1Capacity, loader }
  const fibers = await ours({ ...options, tag: "fibers" })
  const promise = await ours({ ...options, tag: "promise" })
  const built = Object.values(peers).map((make) => make(options))
  return {
    fibers,
    promise,
    peers: built,
    promiseShaped: [{ ...promise.library, name: names.promise }, ...built],
    close: async () => {
      for (const library of [fibers.library, promise.library, ...built]) {
        await library.close().catch((error) => console.error(`closing ${library.name}:`, error))
      }
    }
  }
}

const keyRange = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`)

/** Every value read must be one the loader or a write made for that key: a cheap check that gets answered. */
const check = (name: string, key: string, value: Value) => {
  if (value.id !== key) throw new Error(`${name}: read ${value.id} for ${key}`)
}

/** Reads `keys` through each library once, in order, so that L2 (and L1, up to its capacity) holds them. */
const fill = async (libraries: ReadonlyArray<Library>, keys: ReadonlyArray<string>, workers = 1) => {
  for (const library of libraries) {
    await runWorkers(workers, keys.length, async (i) => check(library.name, keys[i]!, await library.get(keys[i]!)))
  }
}

/** Sequential gets of `keys` in turn: the same loop for ours (fibers) and, awaited, for every other case. */
const sequentialCases = (built: Built, keys: ReadonlyArray<string>, gets: (library: string) => number) => {
  const fibers: PeerCase = {
    name: names.fibers,
    run: () =>
      Effect.runPromise(Effect.gen(function*() {
        const n = gets(names.fibers)
        for (let i = 0; i < n; i++) {
          const key = keys[i % keys.length]!
          check(names.fibers, key, yield* built.fibers.get(key))
        }
        return n
      }))
  }
  const others = built.promiseShaped.map((library): PeerCase => ({
    name: library.name,
    run: async () => {
      const n = gets(library.name)
      for (let i = 0; i < n; i++) {
        const key = keys[i % keys.length]!
        check(library.name, key, await library.get(key))
      }
      return n
    }
  }))
  return [fibers, ...others]
}

/** The first key matching `pattern`, however many other keys the server holds. */
const findKey = async (client: Redis, pattern: string): Promise<string | undefined> => {
  let cursor = "0"
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 10_000)
    if (keys[0] !== undefined) return keys[0]
    cursor = next
  } while (cursor !== "0")
  return undefined
}

/** 1. L1 hits: every key is in L1 (and L2); one caller, one get at a time. */
const l1Hit = async (run: string): Promise<WorkloadOutput> => {
  const built = await buildAll(run, 10_000, { delayMillis: 0 })
  try {
    const keys = keyRange("l1-", sizes.l1Keys)
    await fill([built.fibers.library, ...built.promiseShaped], keys)
    const cases = sequentialCases(
      built,
      keys,
      (name) => (name === "async-cache-dedupe" ? sizes.l1GetsRedisOnly : sizes.l1Gets)
    )
    return { tables: [await measureAll(cases)] }
  } finally {
    await built.close()
  }
}

/**
 * 2. L2 hits: 2,000 keys in Redis cycled in order through an L1 of 1,000 entries, so that every get misses L1
 * (the key was evicted 1,000 gets ago), is found in L2 and back-filled into L1.
 */
const l2Hit = async (run: string): Promise<WorkloadOutput> => {
  const built = await buildAll(run, sizes.l2Capacity, { delayMillis: 0 })
  const raw = await plainRedis()
  try {
    const keys = keyRange("l2-", sizes.l2Keys)
    await fill([built.fibers.library, ...built.promiseShaped], keys)
    // The floor reads what ours stored, on an ioredis connection with the defaults (as bentocache's and
    // async-cache-dedupe's are; ours sets a command timeout and no offline queue).
    const floor: PeerCase = {
      name: names.floorRedis,
      run: async () => {
        for (const key of keys) {
          const stored = await raw.get(`${built.fibers.library.prefix}${key}`)
          if (stored === null) throw new Error("floor: miss")
          check("floor", key, JSON.parse(stored) as Value)
        }
        return keys.length
      }
    }
    const cases = [...sequentialCases(built, keys, () => keys.length), floor]
    const storedBytes: Record<string, number> = {}
    for (const library of [{ ...built.fibers.library, name: "@rms/cache" }, ...built.peers]) {
      const key = await findKey(raw, `${library.prefix}*l2-0`)
      if (key !== undefined) storedBytes[library.name] = await raw.strlen(key)
    }
    return { tables: [await measureAll(cases)], storedBytes }
  } finally {
    await raw.quit()
    await built.close()
  }
}

/**
 * The floors of a burst of 1,000 callers, one per calling style: each caller only waits for one answer that
 * comes after the loader's delay, on the same `setTimeout` as the loaders.
 */
const floorCases = (built: Built): Array<PeerCase> => {
  const { callers, burstsPerRound: bursts, loaderDelayMillis: delay } = sizes
  const answer = valueOf("floor")
  const completeLater = (deferred: Deferred.Deferred<Value>) =>
    Effect.fork(Effect.zipRight(Effect.promise(() => sleep(delay)), Deferred.succeed(deferred, answer)))
  const indices = Array.from({ length: callers }, (_, i) => i)
  return [
    {
      name: names.floorFork,
      run: () =>
        Effect.runPromise(Effect.gen(function*() {
          for (let b = 0; b < bursts; b++) {
            const deferred = yield* Deferred.make<Value>()
            const fibers: Array<Fiber.RuntimeFiber<Value>> = []
            for (let i = 0; i < callers; i++) fibers.push(yield* Effect.fork(Deferred.await(deferred)))
            yield* completeLater(deferred)
            yield* Fiber.joinAll(fibers)
          }
          return bursts * callers
        }))
    },
    {
      name: names.floorForEach,
      run: () =>
        Effect.runPromise(Effect.gen(function*() {
          for (let b = 0; b < bursts; b++) {
            const deferred = yield* Deferred.make<Value>()
            yield* completeLater(deferred)
            yield* Effect.forEach(indices, () => Deferred.await(deferred), { concurrency: "unbounded" })
          }
          return bursts * callers
        }))
    },
    {
      name: names.floorRunPromise,
      run: async () => {
        const runtime = built.promise.runtime
        for (let b = 0; b < bursts; b++) {
          const deferred = Effect.runSync(Deferred.make<Value>())
          void sleep(delay).then(() => Effect.runSync(Deferred.succeed(deferred, answer)))
          await Promise.all(indices.map(() => runtime.runPromise(Deferred.await(deferred))))
        }
        return bursts * callers
      }
    },
    {
      name: names.floorAsync,
      run: async () => {
        for (let b = 0; b < bursts; b++) {
          const promise = sleep(delay).then(() => answer)
          await Promise.all(indices.map(async () => await promise))
        }
        return bursts * callers
      }
    }
  ]
}

/**
 * 3. and 4. Bursts of 1,000 concurrent callers on keys never seen (missing from L1 and L2), with a loader that
 * answers after 1 ms: each caller a distinct key (`distinct`), or all of them one key (a stampede).
 */
const bursts = (distinct: boolean) => async (run: string): Promise<WorkloadOutput> => {
  const built = await buildAll(run, 10_000, { delayMillis: sizes.loaderDelayMillis })
  try {
    const { burstsPerRound, callers } = sizes
    let burst = 0
    /** The keys of a fresh burst: never asked before, by any case. */
    const freshKeys = (): ReadonlyArray<string> => {
      const b = burst++
      return distinct
        ? Array.from({ length: callers }, (_, i) => `cold-${b}-${i}`)
        : Array.from({ length: callers }, () => `herd-${b}`)
    }
    const fibers: PeerCase<ReadonlyArray<ReadonlyArray<string>>> = {
      name: names.fibers,
      setup: () => Array.from({ length: burstsPerRound }, freshKeys),
      run: (keysOfBursts) =>
        Effect.runPromise(Effect.gen(function*() {
          for (const keys of keysOfBursts) {
            const values = yield* Effect.forEach(keys, (key) => built.fibers.get(key), { concurrency: "unbounded" })
            check(names.fibers, keys[callers - 1]!, values[callers - 1]!)
          }
          return burstsPerRound * callers
        }))
    }
    const others = built.promiseShaped.map((library): PeerCase<ReadonlyArray<ReadonlyArray<string>>> => ({
      name: library.name,
      setup: () => Array.from({ length: burstsPerRound }, freshKeys),
      run: async (keysOfBursts) => {
        for (const keys of keysOfBursts) {
          const values = await Promise.all(keys.map((key) => library.get(key)))
          check(library.name, keys[callers - 1]!, values[callers - 1]!)
        }
        return burstsPerRound * callers
      }
    }))
    // What the README tells Promise callers to do with a burst: one call for all of its keys.
    const getMany: PeerCase<ReadonlyArray<ReadonlyArray<string>>> = {
      name: names.getMany,
      setup: () => Array.from({ length: burstsPerRound }, freshKeys),
      run: async (keysOfBursts) => {
        for (const keys of keysOfBursts) {
          const found = await built.promise.runtime.runPromise(built.promise.getMany(keys))
          check(names.getMany, keys[callers - 1]!, found.get(keys[callers - 1]!)!)
        }
        return burstsPerRound * callers
      }
    }
    return { tables: [await measureAll([fibers, ...others, ...(distinct ? [getMany] : []), ...floorCases(built)])] }
  } finally {
    await built.close()
  }
}

/**
 * 5. Zipf mix: s = 0.99 over 1e5 keys, an L1 of 1e4 entries, 5 % writes (`set` of a new version), at
 * concurrency 1 and 32. One stream of operations long enough for every run: each run of a case takes the next
 * `zipfOps` of it, so that L1 keeps turning over as in a long-running process (replaying one short stream
 * would soon fit in L1). Redis is filled beforehand, through each library and untimed, with every key the
 * stream reads, so that the rounds measure a warm cache: a read that misses L1 finds its key in L2. The loader
 * answers at once and is left for keys Redis does not have.
 */
const zipfMix = async (run: string): Promise<WorkloadOutput> => {
  const built = await buildAll(run, sizes.zipfCapacity, { delayMillis: 0 })
  try {
    const { zipfConcurrency, zipfKeys, zipfOps, zipfWriteShare } = sizes
    // Per concurrency: the warm-up round, the timed rounds and the counting pass.
    const runsPerCase = 2 * (rounds + 2)
    const length = runsPerCase * zipfOps
    const keys = Array.from(zipf(zipfKeys, 0.99, length, 42), (k) => `z-${k}`)
    const next = random(7)
    const writes = Array.from({ length }, () => next() < zipfWriteShare)
    const written = keys.map((key, i) => (writes[i] ? valueOf(key, 2 + (i % 5)) : undefined))
    const read = [...new Set(keys)]
    console.error(`  zipf: filling Redis with the ${read.length} keys of the stream, for each library …`)
    await fill([built.fibers.library, ...built.promiseShaped], read, 128)

    /** Each case's own position in the stream: its n-th run takes the n-th slice. */
    const slices = () => {
      let position = 0
      return () => (position++) * zipfOps
    }
    const fiberOp = (i: number) =>
      writes[i]
        ? built.fibers.set(keys[i]!, written[i]!)
        : Effect.map(built.fibers.get(keys[i]!), (value) => check(names.fibers, keys[i]!, value))
    const fibersSlice = slices()
    const librarySlices = built.promiseShaped.map(slices)
    const casesAt = (concurrency: number): Array<PeerCase<number>> => [
      {
        name: names.fibers,
        setup: fibersSlice,
        run: (start) =>
          Effect.runPromise(Effect.gen(function*() {
            if (concurrency === 1) for (let i = start; i < start + zipfOps; i++) yield* fiberOp(i)
            else {
              const indices = Array.from({ length: zipfOps }, (_, i) => start + i)
              yield* Effect.forEach(indices, fiberOp, { concurrency, discard: true })
            }
            return zipfOps
          }))
      },
      ...built.promiseShaped.map((library, l): PeerCase<number> => ({
        name: library.name,
        setup: librarySlices[l]!,
        run: async (start) => {
          await runWorkers(concurrency, zipfOps, async (j) => {
            const i = start + j
            if (writes[i]) await library.set(keys[i]!, written[i]!)
            else check(library.name, keys[i]!, await library.get(keys[i]!))
          })
          return zipfOps
        }
      }))
    ]
    return { tables: [await measureAll(casesAt(1)), await measureAll(casesAt(zipfConcurrency))] }
  } finally {
    await built.close()
  }
}

const workloads: Record<WorkloadName, (run: string) => Promise<WorkloadOutput>> = {
  "l1-hit": l1Hit,
  "l2-hit": l2Hit,
  "cold-distinct": bursts(true),
  "stampede": bursts(false),
  "zipf": zipfMix
}

/** Libraries whose L1 the memory probe measures, plus a plain `Map` of the same entries as the floor. */
export const memorySubjects = ["@rms/cache", "bentocache", "cacheable", "cache-manager", "Map"] as const

/**
 * 6. Bytes per L1 entry: heap (plus array buffers) after a full collection, before and after writing
 * `memoryEntries` entries with `set`, in a process that does nothing else. Keys and values exist before the
 * first reading and stay referenced, so the figure is what the cache adds: its structure, the key as it stores
 * it, and any copy of the value it keeps.
 */
const probeMemory = async (subject: string, run: string): Promise<number> => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run node with --expose-gc")
  const n = sizes.memoryEntries
  const keys = keyRange("m-", n)
  const values = keys.map((key) => valueOf(key))
  const options: BuildOptions = { run, l1Capacity: n, loader: { delayMillis: 0 } }
  const library: Library | undefined = subject === "Map"
    ? undefined
    : subject === "@rms/cache"
    ? (await ours({ ...options, tag: "mem" })).library
    : peers[subject]!(options)
  const map = new Map<string, Value>()
  try {
    // One write first, so that connections and lazily loaded code exist before the first reading.
    if (library !== undefined) await library.set("m-warm", valueOf("m-warm"))
    await sleep(200)
    const used = () => heapInUse(gc)
    const before = used()
    if (library === undefined) for (let i = 0; i < n; i++) map.set(keys[i]!, values[i]!)
    else await runWorkers(64, n, (i) => library.set(keys[i]!, values[i]!))
    await sleep(200)
    const after = used()
    if (map.size !== (library === undefined ? n : 0)) throw new Error("probe lost its entries")
    return (after - before) / n
  } finally {
    await library?.close()
  }
}

const main = async () => {
  // `target`: the output file, or the library whose memory to probe.
  const [workload, run, target] = process.argv.slice(2) as [string, string, string]
  const cleaner = await plainRedis()
  try {
    if (workload === "memory") {
      console.log(String(await probeMemory(target, run)))
      return
    }
    const start = performance.now()
    const result = await workloads[workload as WorkloadName](run)
    writeFileSync(target, JSON.stringify(result))
    console.error(`  ${workload}: ${((performance.now() - start) / 1000).toFixed(0)} s, loads ${JSON.stringify(loads)}`)
  } finally {
    await deletePrefix(cleaner, run)
    await cleaner.quit()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
