/**
 * The LRU structure against lru-cache and mnemonist: get-hit, set-with-eviction and a Zipf mix (capacity 1e5,
 * 1e6 keys, s = 0.99), with integer keys and with string keys; memory per entry (of the structure, and of an
 * `LruCache` tier with a time-to-live and metrics against lru-cache with `ttl`); construction; and clearing a
 * large cache that holds few entries.
 */
import { execFileSync } from "node:child_process"
import { pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import { LRUCache } from "lru-cache"
import { LRUCache as MnemonistLRUCache } from "mnemonist"
import type { Cache } from "../src/Cache.js"
import { LruMap, maxCapacity } from "../src/internal/lruMap.js"
import * as LruCache from "../src/LruCache.js"
import { type Case, measure, median, ownCopy, random, type Result, seeStringShapes, type WorkloadResult, zipf } from "./harness.js"
import { nodeArgs } from "./report.js"

/** The sizes of the structure workloads: capacity, key space, operations per round (shared with bench/hitRatio.ts). */
export const CAPACITY = 100_000
export const KEYS = 1_000_000
export const OPS = 2_000_000

/**
 * The ids of the structure workloads, drawn with a fixed seed: the held keys (1e5 distinct keys of the 1e6-key
 * space, as a cache holds after running a while), the get-hit picks among them (uniform: almost every hit moves
 * its entry to the front, the costly case), and the Zipf ids of the mix.
 */
export const workloadIds = () => {
  const next = random(7)
  const space = Int32Array.from({ length: KEYS }, (_, i) => i)
  for (let i = KEYS - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    const t = space[i]!
    space[i] = space[j]!
    space[j] = t
  }
  const heldIds = space.slice(0, CAPACITY)
  const hitPicks = Int32Array.from({ length: OPS }, () => Math.floor(next() * CAPACITY))
  return { heldIds, hitPicks, zipfIds: zipf(KEYS, 0.99, OPS) }
}

interface Lru<K> {
  get(key: K): unknown
  set(key: K, value: unknown): unknown
  clear(): void
}

const implementations: ReadonlyArray<{ readonly name: string; readonly make: (capacity?: number) => Lru<any> }> = [
  { name: "@rms/cache LruMap", make: (capacity = CAPACITY) => new LruMap<unknown, unknown>(capacity) },
  { name: "lru-cache 11", make: (capacity = CAPACITY) => new LRUCache<{}, {}>({ max: capacity }) },
  { name: "mnemonist LRUCache", make: (capacity = CAPACITY) => new MnemonistLRUCache<unknown, unknown>(capacity) }
]

/**
 * The three workloads over keys made by `keyOf`. Every implementation gets keys of its own — equal values, but
 * distinct string objects — built before its rounds: a structure that indexes strings through a plain object
 * (mnemonist) makes V8 internalize them, which turns the shared originals into forwarding "thin" strings and
 * slows every other structure that reads them afterwards (measured: up to 1.7× on our string get-hit). Before
 * its rounds, every implementation has seen keys of every representation V8 gives a string (`seeStringShapes`),
 * as a service's cache has.
 */
const workloads = async <K>(keyOf: (i: number) => K, label: string): Promise<Array<WorkloadResult>> => {
  const { heldIds, hitPicks, zipfIds } = workloadIds()
  for (const impl of implementations) seeStringShapes(() => impl.make(64))

  /**
   * The cases of one workload, each implementation with its own keys (`keys` builds them) and its own copy of
   * the timed loop (`ownCopy`), which is given the structure, the keys and the number of operations.
   */
  const cases = <S>(
    keys: () => S,
    setup: (impl: (typeof implementations)[number], keys: S) => Lru<K>,
    run: (lru: Lru<K>, keys: S, ops: number) => number
  ): Array<Case> =>
    implementations.map((impl) => {
      const own = keys()
      const loop = ownCopy(run)
      return { name: impl.name, setup: () => setup(impl, own), run: (lru: Lru<K>) => loop(lru, own, OPS) }
    })
  const heldKeys = () => Array.from(heldIds, keyOf)
  const fill = (impl: (typeof implementations)[number], held: ReadonlyArray<K>) => {
    const lru = impl.make()
    for (const k of held) lru.set(k, k)
    return lru
  }

  const getHit = cases(
    () => {
      const held = heldKeys()
      return { held, hits: Array.from(hitPicks, (i) => held[i]!) }
    },
    (impl, { held }) => fill(impl, held),
    (lru, { hits }, ops) => {
      let found = 0
      for (let i = 0; i < ops; i++) if (lru.get(hits[i]!) !== undefined) found++
      if (found !== ops) throw new Error("get-hit missed")
      return ops
    }
  )
  const results: Array<WorkloadResult> = [{ workload: `get-hit, ${label} keys`, results: await measure(getHit) }]

  const setEvict = cases(
    () => ({ held: heldKeys(), fresh: Array.from({ length: OPS }, (_, i) => keyOf(KEYS + i)) }),
    (impl, { held }) => fill(impl, held),
    (lru, { fresh }, ops) => {
      for (let i = 0; i < ops; i++) lru.set(fresh[i]!, i)
      return ops
    }
  )
  results.push({ workload: `set-with-eviction, ${label} keys`, results: await measure(setEvict) })

  const zipfMix = cases(
    () => Array.from(zipfIds, keyOf),
    (impl) => impl.make(),
    (lru, keys, ops) => {
      for (let i = 0; i < ops; i++) {
        const k = keys[i]!
        if (lru.get(k) === undefined) lru.set(k, k)
      }
      return ops
    }
  )
  results.push({ workload: `Zipf mix (get, set on miss), ${label} keys`, results: await measure(zipfMix) })
  return results
}

/**
 * A side case, reported for transparency: get-hit when the held keys are exactly 0 … 1e5-1, inserted in order.
 * Dense small integers turn mnemonist's plain-object index into an array, its best case.
 */
const denseGetHit = async (): Promise<WorkloadResult> => {
  const next = random(9)
  const hitKeys = Int32Array.from({ length: OPS }, () => Math.floor(next() * CAPACITY))
  const loop = (lru: Lru<number>, keys: Int32Array, ops: number) => {
    for (let i = 0; i < ops; i++) lru.get(keys[i]!)
    return ops
  }
  const cases: Array<Case> = implementations.map((impl) => {
    const own = ownCopy(loop)
    return {
      name: impl.name,
      setup: () => {
        const lru = impl.make()
        for (let i = 0; i < CAPACITY; i++) lru.set(i, i)
        return lru
      },
      run: (lru: Lru<number>) => own(lru, hitKeys, OPS)
    }
  })
  return { workload: "get-hit, dense keys 0 … 1e5-1 (side case)", results: await measure(cases) }
}

export const runLru = async (): Promise<Array<WorkloadResult>> => [
  ...(await workloads((i) => i, "integer")),
  ...(await workloads((i) => `key:${i}`, "string")),
  await denseGetHit()
]

/** The capacity of the construction and clear benchmarks, and how many entries the cleared caches hold. */
export const BIG = 1_000_000
export const FEW = 10

const buildTier = (capacity: number): Cache<number, number> =>
  Effect.runSync(LruCache.make<number, number>({ capacity, timeToLive: "1 hour", name: "bench-lru-big" }))

/**
 * Constructing an empty cache: the structures at capacity 1e6, ours also at 2^30 (the largest capacity it
 * accepts), and the `LruCache` tier (time-to-live and metrics on) at both. Each run builds 20 and keeps them
 * alive until the run ends, so that allocation is not optimized away.
 */
export const runConstruction = async (): Promise<Array<Result>> => {
  const BUILDS = 20
  const loop = (make: () => unknown, builds: number) => {
    const kept: Array<unknown> = []
    for (let i = 0; i < builds; i++) kept.push(make())
    if (kept.length !== builds) throw new Error("lost a build")
    return builds
  }
  const build = (name: string, make: () => unknown): Case => {
    const own = ownCopy(loop)
    return { name, run: () => own(make, BUILDS) }
  }
  return measure([
    build("@rms/cache LruMap, 1e6", () => new LruMap(BIG)),
    build("@rms/cache LruMap, 2^30", () => new LruMap(maxCapacity)),
    build("@rms/cache LruCache.make (ttl, metrics), 1e6", () => buildTier(BIG)),
    build("@rms/cache LruCache.make (ttl, metrics), 2^30", () => buildTier(maxCapacity)),
    build("lru-cache 11, max 1e6", () => new LRUCache<{}, {}>({ max: BIG })),
    build("lru-cache 11, max 1e6, ttl", () => new LRUCache<{}, {}>({ max: BIG, ttl: 3_600_000 })),
    build("mnemonist LRUCache, 1e6", () => new MnemonistLRUCache(BIG))
  ])
}

/**
 * Clearing a cache of capacity 1e6 (ours also 2^30) that holds 10 entries: each operation writes the 10
 * entries and clears. `invalidateAll` is what a multi-level cache runs on an invalidation-bus gap.
 */
export const runClear = async (): Promise<Array<Result>> => {
  const CLEARS = 2_000
  const loop = (lru: Lru<number>, clears: number, few: number) => {
    for (let n = 0; n < clears; n++) {
      for (let i = 0; i < few; i++) lru.set(i, i)
      lru.clear()
    }
    return clears
  }
  const structure = (name: string, make: () => Lru<number>): Case => {
    const own = ownCopy(loop)
    return { name, setup: make, run: (lru: Lru<number>) => own(lru, CLEARS, FEW) }
  }
  const tier = (name: string, capacity: number): Case => ({
    name,
    setup: () => buildTier(capacity),
    run: (cache: Cache<number, number>) => {
      const entries = Array.from({ length: FEW }, (_, i) => [i, i] as const)
      Effect.runSync(Effect.gen(function*() {
        for (let n = 0; n < CLEARS; n++) {
          yield* cache.setMany(entries)
          yield* cache.invalidateAll
        }
      }))
      return CLEARS
    }
  })
  return measure([
    structure("@rms/cache LruMap.clear, 1e6", () => new LruMap(BIG)),
    structure("@rms/cache LruMap.clear, 2^30", () => new LruMap(maxCapacity)),
    tier("@rms/cache LruCache.invalidateAll (ttl, metrics), 1e6", BIG),
    tier("@rms/cache LruCache.invalidateAll (ttl, metrics), 2^30", maxCapacity),
    structure("lru-cache 11 clear, max 1e6", () => new LRUCache<number, number>({ max: BIG })),
    structure("lru-cache 11 clear, max 1e6, ttl", () => new LRUCache<number, number>({ max: BIG, ttl: 3_600_000 })),
    structure("mnemonist LRUCache clear, 1e6", () => new MnemonistLRUCache<number, number>(BIG))
  ])
}

/**
 * What the memory probes measure, each in a fresh child process: a full structure of 1e5 integer keys with
 * small-integer values (bytes per entry); the same held by an in-memory tier with a time-to-live, ours with
 * metrics on (bytes per entry); and an empty structure of capacity 1e6 or 2^30 (bytes in all).
 */
const probes: Record<string, { readonly name: string; readonly entries: number; readonly run: () => unknown }> = {
  ...Object.fromEntries(implementations.map((impl, i) => [`structure-${i}`, {
    name: impl.name,
    entries: CAPACITY,
    run: () => {
      const lru = impl.make()
      for (let i = 0; i < CAPACITY; i++) lru.set(i, i)
      return lru
    }
  }])),
  "tier-ours": {
    name: "@rms/cache LruCache (timeToLive, metrics on)",
    entries: CAPACITY,
    run: () =>
      Effect.runSync(Effect.gen(function*() {
        const cache = yield* LruCache.make<number, number>({ capacity: CAPACITY, timeToLive: "1 hour" })
        for (let i = 0; i < CAPACITY; i++) yield* cache.set(i, i)
        return cache
      }))
  },
  "tier-lru-cache": {
    name: "lru-cache 11 (ttl)",
    entries: CAPACITY,
    run: () => {
      const lru = new LRUCache<number, number>({ max: CAPACITY, ttl: 3_600_000 })
      for (let i = 0; i < CAPACITY; i++) lru.set(i, i)
      return lru
    }
  },
  "empty-ours-1e6": { name: "@rms/cache LruMap, 1e6", entries: 1, run: () => new LruMap(BIG) },
  "empty-ours-2^30": { name: "@rms/cache LruMap, 2^30", entries: 1, run: () => new LruMap(maxCapacity) },
  "empty-tier-ours-2^30": {
    name: "@rms/cache LruCache (timeToLive, metrics on), 2^30",
    entries: 1,
    run: () => buildTier(maxCapacity)
  },
  "empty-lru-cache-1e6": { name: "lru-cache 11, max 1e6", entries: 1, run: () => new LRUCache({ max: BIG }) },
  "empty-lru-cache-ttl-1e6": {
    name: "lru-cache 11, max 1e6, ttl",
    entries: 1,
    run: () => new LRUCache({ max: BIG, ttl: 3_600_000 })
  },
  "empty-mnemonist-1e6": { name: "mnemonist LRUCache, 1e6", entries: 1, run: () => new MnemonistLRUCache(BIG) }
}

/** Runs the probes named `prefix…` in fresh child processes; the median of three each (`NaN` if it crashed). */
const probeAll = (prefix: string): Array<{ readonly name: string; readonly bytes: number }> =>
  Object.entries(probes).filter(([id]) => id.startsWith(prefix)).map(([id, probe]) => {
    const samples = [0, 1, 2].map(() => {
      try {
        // This module again, compiled or through tsx as the bench itself runs.
        const out = execFileSync(process.execPath, [...nodeArgs("lru"), "--memory-probe", id], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"]
        })
        return Number(out.trim())
      } catch {
        return NaN
      }
    })
    return { name: probe.name, bytes: median(samples) }
  })

/**
 * Bytes per entry of a full LRU (capacity 1e5, integer keys, small-integer values): heap plus array buffers,
 * measured in a fresh child process per implementation so that nothing else lives on its heap.
 */
export const runLruMemory = (): Array<{ readonly name: string; readonly bytesPerEntry: number }> =>
  probeAll("structure-").map(({ bytes, name }) => ({ name, bytesPerEntry: bytes }))

/** Bytes per entry of an in-memory tier of 1e5 entries with a time-to-live: ours (metrics on) and lru-cache. */
export const runTierMemory = (): Array<{ readonly name: string; readonly bytesPerEntry: number }> =>
  probeAll("tier-").map(({ bytes, name }) => ({ name, bytesPerEntry: bytes }))

/** Bytes held by an empty structure of a large capacity (`NaN`: the process crashed). */
export const runEmptyMemory = (): Array<{ readonly name: string; readonly bytes: number }> => probeAll("empty-")

const probeMemory = (id: string): number => {
  const gc = (globalThis as { gc?: () => void }).gc!
  const used = () => {
    gc()
    const usage = process.memoryUsage()
    return usage.heapUsed + usage.arrayBuffers
  }
  const probe = probes[id]!
  // Warm up the code paths (and Effect's lazily built runtime) outside the measurement.
  if (id.startsWith("tier-ours")) Effect.runSync(LruCache.make({ capacity: 1, timeToLive: "1 hour", name: "warm" }))
  const before = used()
  const kept = probe.run()
  const after = used()
  if (kept === undefined) throw new Error("probe lost its structure")
  return (after - before) / probe.entries
}

// Only when this module is the one `node` ran: bench/hitRatio.ts imports it, and has a `--speed-probe` of its own.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === "--memory-probe") console.log(probeMemory(process.argv[3]!))
  else if (process.argv[2] === "--speed-probe") console.log(JSON.stringify(await runLru()))
}
