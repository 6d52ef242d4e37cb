/**
 * The LRU structure against lru-cache and mnemonist: get-hit, set-with-eviction and a Zipf mix (capacity 1e5,
 * 1e6 keys, s = 0.99), with integer keys and with string keys, plus memory per entry.
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { LRUCache } from "lru-cache"
import { LRUCache as MnemonistLRUCache } from "mnemonist"
import { LruMap } from "../src/internal/lruMap.js"
import { type Case, measure, median, random, type Result, zipf } from "./harness.js"

const CAPACITY = 100_000
const KEYS = 1_000_000
const OPS = 2_000_000

interface Lru<K> {
  get(key: K): unknown
  set(key: K, value: unknown): unknown
}

const implementations: ReadonlyArray<{ readonly name: string; readonly make: () => Lru<any> }> = [
  { name: "@rms/cache LruMap", make: () => new LruMap<unknown, unknown>(CAPACITY) },
  { name: "lru-cache 11", make: () => new LRUCache<{}, {}>({ max: CAPACITY }) },
  { name: "mnemonist LRUCache", make: () => new MnemonistLRUCache<unknown, unknown>(CAPACITY) }
]

export interface WorkloadResult {
  readonly workload: string
  readonly results: ReadonlyArray<Result>
}

const workloads = async <K>(keyOf: (i: number) => K, label: string): Promise<Array<WorkloadResult>> => {
  const next = random(7)
  // The held keys: 1e5 distinct keys drawn from the 1e6-key space, as a cache holds after running a while.
  const space = Int32Array.from({ length: KEYS }, (_, i) => i)
  for (let i = KEYS - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    const t = space[i]!
    space[i] = space[j]!
    space[j] = t
  }
  const held = Array.from(space.subarray(0, CAPACITY), keyOf)
  // Uniform over the held keys: almost every hit moves its entry to the front, the costly case.
  const hitKeys = Array.from({ length: OPS }, () => held[Math.floor(next() * CAPACITY)]!)
  const freshKeys = Array.from({ length: OPS }, (_, i) => keyOf(KEYS + i))
  const zipfKeys = Array.from(zipf(KEYS, 0.99, OPS), keyOf)

  const filled = (impl: (typeof implementations)[number]) => () => {
    const lru = impl.make()
    for (const k of held) lru.set(k, k)
    return lru
  }

  const getHit: Array<Case> = implementations.map((impl) => ({
    name: impl.name,
    setup: filled(impl),
    run: (lru: Lru<K>) => {
      let found = 0
      for (let i = 0; i < OPS; i++) if (lru.get(hitKeys[i]!) !== undefined) found++
      if (found !== OPS) throw new Error(`${impl.name}: get-hit missed`)
      return OPS
    }
  }))

  const setEvict: Array<Case> = implementations.map((impl) => ({
    name: impl.name,
    setup: filled(impl),
    run: (lru: Lru<K>) => {
      for (let i = 0; i < OPS; i++) lru.set(freshKeys[i]!, i)
      return OPS
    }
  }))

  const zipfMix: Array<Case> = implementations.map((impl) => ({
    name: impl.name,
    setup: () => impl.make(),
    run: (lru: Lru<K>) => {
      for (let i = 0; i < OPS; i++) {
        const k = zipfKeys[i]!
        if (lru.get(k) === undefined) lru.set(k, k)
      }
      return OPS
    }
  }))

  return [
    { workload: `get-hit, ${label} keys`, results: await measure(getHit) },
    { workload: `set-with-eviction, ${label} keys`, results: await measure(setEvict) },
    { workload: `Zipf mix (get, set on miss), ${label} keys`, results: await measure(zipfMix) }
  ]
}

/**
 * A side case, reported for transparency: get-hit when the held keys are exactly 0 … 1e5-1, inserted in order.
 * Dense small integers turn mnemonist's plain-object index into an array, its best case.
 */
const denseGetHit = async (): Promise<WorkloadResult> => {
  const next = random(9)
  const hitKeys = Int32Array.from({ length: OPS }, () => Math.floor(next() * CAPACITY))
  const cases: Array<Case> = implementations.map((impl) => ({
    name: impl.name,
    setup: () => {
      const lru = impl.make()
      for (let i = 0; i < CAPACITY; i++) lru.set(i, i)
      return lru
    },
    run: (lru: Lru<number>) => {
      for (let i = 0; i < OPS; i++) lru.get(hitKeys[i]!)
      return OPS
    }
  }))
  return { workload: "get-hit, dense keys 0 … 1e5-1 (side case)", results: await measure(cases) }
}

export const runLru = async (): Promise<Array<WorkloadResult>> => [
  ...(await workloads((i) => i, "integer")),
  ...(await workloads((i) => `key:${i}`, "string")),
  await denseGetHit()
]

/**
 * Bytes per entry of a full LRU (capacity 1e5, integer keys, small-integer values): heap plus array buffers,
 * measured in a fresh child process per implementation so that nothing else lives on its heap.
 */
export const runLruMemory = (): Array<{ readonly name: string; readonly bytesPerEntry: number }> =>
  implementations.map((impl, index) => {
    const samples = [0, 1, 2].map(() => {
      const out = execFileSync(
        process.execPath,
        ["--expose-gc", "--import", "tsx", fileURLToPath(import.meta.url), "--memory-probe", String(index)],
        { encoding: "utf8" }
      )
      return Number(out.trim())
    })
    return { name: impl.name, bytesPerEntry: median(samples) }
  })

const probeMemory = (index: number): number => {
  const gc = (globalThis as { gc?: () => void }).gc!
  const used = () => {
    gc()
    const usage = process.memoryUsage()
    return usage.heapUsed + usage.arrayBuffers
  }
  const before = used()
  const lru = implementations[index]!.make()
  for (let i = 0; i < CAPACITY; i++) lru.set(i, i)
  const after = used()
  if (lru.get(0) !== 0) throw new Error("probe lost its entries")
  return (after - before) / CAPACITY
}

if (process.argv[2] === "--memory-probe") {
  console.log(probeMemory(Number(process.argv[3])))
}
