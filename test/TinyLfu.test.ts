/**
 * `TinyLfu` (W-TinyLFU, `src/internal/tinyLfu.ts`): its frequency sketch counter for counter against a naive one
 * (aging, growth); the policy with a fixed window against a naive model over random operation sequences
 * (contents, order within each region, every eviction), compared after every step or, so that hits stay
 * buffered across other operations, every 150 steps; invariants with the adaptive window; the hill climber; and
 * generated traces (a loop, a hot set under scans) against `LruMap`. The literature's traces stay outside the
 * repository: only the benchmark (`npm run bench:hit-ratio`) replays them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { LruMap, maxCapacity } from "../src/internal/lruMap.js"
import { FrequencySketch, HillClimber, keyHash, rehash, spread, TinyLfu } from "../src/internal/tinyLfu.js"

/** Deterministic pseudo-random numbers in [0, 1) (an LCG), so that every run admits the same candidates. */
const seeded = (seed: number) => () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
  return seed / 4294967296
}

/** A random source that replays `values` in a cycle: lets a test make the 1/128 admission happen often. */
const cycling = (values: ReadonlyArray<number>) => {
  let i = 0
  return () => values[i++ % values.length]!
}

/** SameValueZero, as `Map` compares keys. */
const same = (a: unknown, b: unknown): boolean => a === b || (a !== a && b !== b)

/**
 * A naive count-min sketch with Caffeine's parameters: plain numbers, one per 4-bit counter, at index
 * `cell * 16 + nibble`, where a key's four counters are picked exactly as `FrequencySketch.java` picks them.
 * Growing the table concatenates it with itself (block `b + n` is a copy of block `b`).
 */
class NaiveSketch {
  counters: Array<number>
  readonly maximumCells: number
  readonly sampleSize: number
  additions = 0

  constructor(capacity: number, entries: number) {
    const maximum = Math.max(Math.min(capacity, 2 ** 30 - 1), 256)
    this.maximumCells = 2 ** Math.ceil(Math.log2(maximum))
    const cells = Math.min(2 ** Math.ceil(Math.log2(Math.max(entries, 256))), this.maximumCells)
    this.counters = new Array<number>(cells * 16).fill(0)
    this.sampleSize = 10 * maximum
  }

  get cells(): number {
    return this.counters.length / 16
  }

  grow(entries: number): void {
    while (this.cells < entries && this.cells < this.maximumCells) this.counters = [...this.counters, ...this.counters]
  }

  /** The four counters' indexes: Caffeine's block, then cell `block + (h & 1) + 2i`, then nibble `(h >>> 1) & 15`. */
  positions(hash: number): Array<number> {
    const blockHash = spread(hash)
    const counterHash = rehash(blockHash)
    const blocks = this.cells / 8
    const block = (((blockHash % blocks) + blocks) % blocks) * 8
    return [0, 1, 2, 3].map((i) => {
      const h = counterHash >>> (8 * i)
      return (block + (h & 1) + 2 * i) * 16 + ((h >>> 1) & 15)
    })
  }

  frequency(hash: number): number {
    return Math.min(...this.positions(hash).map((p) => this.counters[p]!))
  }

  increment(hash: number): void {
    let added = false
    for (const p of this.positions(hash)) {
      if (this.counters[p]! < 15) {
        this.counters[p]!++
        added = true
      }
    }
    if (added && ++this.additions === this.sampleSize) {
      const odd = this.counters.filter((c) => c % 2 === 1).length
      this.counters = this.counters.map((c) => Math.floor(c / 2))
      this.additions = Math.max(0, Math.floor((this.additions - Math.floor(odd / 4)) / 2))
    }
  }
}

/**
 * W-TinyLFU with a fixed window, written for obviousness: three arrays of keys (most recent first) and a `Map`
 * of values, the naive sketch fed `keyHash`, the same rules as the module comment of src/internal/tinyLfu.ts.
 */
class ModelTinyLfu<K, V> {
  window: Array<K> = []
  probation: Array<K> = []
  protected: Array<K> = []
  readonly values = new Map<K, V>()
  readonly windowMaximum: number
  readonly protectedMaximum: number
  sketch: NaiveSketch | undefined = undefined

  constructor(readonly capacity: number, readonly random: () => number) {
    this.windowMaximum = capacity - Math.floor(0.99 * capacity)
    this.protectedMaximum = Math.floor(0.8 * (capacity - this.windowMaximum))
  }

  private listOf(key: K): Array<K> {
    for (const list of [this.window, this.probation, this.protected]) if (list.some((k) => same(k, key))) return list
    throw new Error("not held")
  }

  private remove(list: Array<K>, key: K): void {
    list.splice(list.findIndex((k) => same(k, key)), 1)
  }

  private access(key: K): void {
    this.sketch!.increment(keyHash(key))
    const list = this.listOf(key)
    this.remove(list, key)
    if (list === this.probation && this.protectedMaximum > 0) {
      this.protected.unshift(key)
      if (this.protected.length > this.protectedMaximum) this.probation.unshift(this.protected.pop()!)
    } else {
      list.unshift(key)
    }
  }

  get(key: K): V | undefined {
    if (!this.values.has(key)) return undefined
    this.access(key)
    return this.values.get(key)
  }

  /** Stores, and returns what was evicted. */
  set(key: K, value: V): [K, V] | undefined {
    if (this.values.has(key)) {
      this.values.set(key, value)
      this.access(key)
      return undefined
    }
    if (same(key, 0)) key = 0 as K
    if (this.sketch === undefined) this.sketch = new NaiveSketch(this.capacity, this.values.size + 1)
    else this.sketch.grow(this.values.size + 1)
    this.sketch.increment(keyHash(key))
    let candidate: K | undefined
    let moved = false
    while (this.window.length >= this.windowMaximum && this.window.length > 0) {
      const oldest = this.window.pop()!
      this.probation.unshift(oldest)
      if (!moved) candidate = oldest
      moved = true
    }
    let evicted: [K, V] | undefined
    if (this.values.size === this.capacity) {
      const victim = this.probation.length > 0
        ? this.probation.at(-1)!
        : this.protected.length > 0
        ? this.protected.at(-1)!
        : this.window.at(-1)!
      if (!moved) candidate = this.window.at(-1)
      const loser = candidate === undefined || same(candidate, victim) || this.admit(candidate, victim)
        ? victim
        : candidate!
      evicted = [loser, this.values.get(loser)!]
      this.remove(this.listOf(loser), loser)
      this.values.delete(loser)
    }
    this.window.unshift(key)
    this.values.set(key, value)
    return evicted
  }

  private admit(candidate: K, victim: K): boolean {
    const c = this.sketch!.frequency(keyHash(candidate))
    const v = this.sketch!.frequency(keyHash(victim))
    return c > v || (c >= 6 && this.random() < 1 / 128)
  }

  delete(key: K): boolean {
    if (!this.values.has(key)) return false
    this.remove(this.listOf(key), key)
    this.values.delete(key)
    return true
  }

  clear(): void {
    this.window = []
    this.probation = []
    this.protected = []
    this.values.clear()
  }

  entries(): Array<[K, V]> {
    return [...this.window, ...this.probation, ...this.protected].map((k) => [k, this.values.get(k)!])
  }
}

/** Keys that exercise both indexes and the `Map` equality corner cases, and objects (the `Map` index). */
const sharedObject = { id: "object key" }
const key: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -3, max: 24 }) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>("a", "b", "0", -0, NaN, 1.5, 2 ** 31, -(2 ** 31), sharedObject) },
  { weight: 1, arbitrary: fc.string({ maxLength: 2 }) }
)

type Op =
  | { readonly op: "get" | "peek" | "has" | "touch" | "delete"; readonly key: unknown }
  | { readonly op: "set"; readonly key: unknown; readonly value: number }
  | { readonly op: "fresh"; readonly value: number }
  | { readonly op: "clear" }

/** `fresh` sets a key never used before, so that long sequences fill the sketch and age it. */
const ops = (weights: { readonly fresh: number; readonly clear: number }): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({ op: fc.constantFrom("get" as const, "peek" as const, "has" as const, "touch" as const), key })
    },
    { weight: 5, arbitrary: fc.record({ op: fc.constant("set" as const), key, value: fc.integer() }) },
    { weight: weights.fresh, arbitrary: fc.record({ op: fc.constant("fresh" as const), value: fc.integer() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("delete" as const), key }) },
    { weight: weights.clear, arbitrary: fc.record({ op: fc.constant("clear" as const) }) }
  )

/**
 * The same entries in the same order (keys and values by SameValueZero). Checked by hand first, since the
 * matcher's deep equality costs a microsecond per element on every step; the matcher then reports a mismatch.
 */
const expectSameEntries = (actual: ReadonlyArray<[unknown, unknown]>, expected: ReadonlyArray<[unknown, unknown]>) => {
  const equal = actual.length === expected.length &&
    actual.every(([k, v], i) => same(k, expected[i]![0]) && same(v, expected[i]![1]))
  if (!equal) expect(actual).toStrictEqual(expected)
}

/** `expect(actual, what).toBe(expected)`, compared by hand first: the matcher is slow enough to matter per step. */
const check = (actual: unknown, expected: unknown, what: string) => {
  if (!same(actual, expected)) expect(actual, what).toBe(expected)
}

/**
 * Runs `steps` on a fixed-window `TinyLfu` and the model side by side, comparing every `checkEvery` steps and
 * at the end. Comparing lists the entries, which applies the hits the map has buffered (see `TinyLfu.drain`):
 * with `checkEvery` above 1, hits stay buffered across the other operations, as they do in use.
 */
const againstModel = (
  capacity: number,
  steps: ReadonlyArray<Op>,
  randomValues: ReadonlyArray<number>,
  checkEvery = 1
) => {
  const evicted: Array<[unknown, number]> = []
  const map = new TinyLfu<unknown, number>(capacity, (k, v) => evicted.push([k, v]), 0, {
    adaptive: false,
    random: cycling(randomValues)
  })
  const model = new ModelTinyLfu<unknown, number>(capacity, cycling(randomValues))
  const modelEvicted: Array<[unknown, number]> = []
  let fresh = 1_000_000
  let checked = 0
  for (const [i, step] of steps.entries()) {
    switch (step.op) {
      case "get":
        expect(map.get(step.key)).toStrictEqual(model.get(step.key))
        break
      case "touch": {
        const slot = map.touch(step.key)
        expect(slot >= 0 ? map.valueAt(slot) : undefined).toStrictEqual(model.get(step.key))
        break
      }
      case "peek":
        expect(map.peek(step.key)).toStrictEqual(model.values.get(step.key))
        break
      case "has":
        expect(map.has(step.key)).toBe(model.values.has(step.key))
        break
      case "set":
      case "fresh": {
        const k = step.op === "set" ? step.key : fresh++
        const slot = map.set(k, step.value)
        expect(map.keyAt(slot)).toStrictEqual(same(k, 0) ? 0 : k)
        const out = model.set(k, step.value)
        if (out !== undefined) modelEvicted.push(out)
        break
      }
      case "delete":
        expect(map.delete(step.key)).toBe(model.delete(step.key))
        break
      case "clear":
        map.clear()
        model.clear()
        break
    }
    expect(map.size).toBe(model.values.size)
    expect(map.size).toBeLessThanOrEqual(capacity)
    if ((i + 1) % checkEvery !== 0 && i !== steps.length - 1) continue
    expectSameEntries([...map.entries()], model.entries())
    // Only the evictions since the last step: comparing the whole history every step would be quadratic.
    expectSameEntries(evicted.slice(checked), modelEvicted.slice(checked))
    checked = modelEvicted.length
  }
  // The sketches agree counter for counter.
  if (model.sketch !== undefined) {
    const sketch = (map as unknown as { sketch: FrequencySketch }).sketch
    expect(sketch.cells).toBe(model.sketch.cells)
    for (const [k] of model.entries()) expect(sketch.frequency(keyHash(k))).toBe(model.sketch.frequency(keyHash(k)))
  }
}

/**
 * A loop trace, as the LIRS paper's `loop` is: keys 0 … `length − 1` in order, over and over. Generated here:
 * the real traces are for benchmarks only and stay outside the repository (`npm run bench:hit-ratio` replays them).
 */
const loopTrace = (length: number, requests: number): Int32Array => Int32Array.from({ length: requests }, (_, i) => i % length)

/**
 * A hot set under scans: `hotShare` of the requests go to a skewed hot set of `hot` keys, the others to keys
 * never seen before (a scan, a batch job). LRU lets every scanned key push out a hot one; frequency-aware
 * admission keeps the hot set.
 */
const scannedHotSetTrace = (hot: number, hotShare: number, requests: number, seed: number): Int32Array => {
  const next = seeded(seed)
  let scan = hot
  return Int32Array.from({ length: requests }, () => (next() < hotShare ? Math.floor(hot * next() ** 2) : scan++))
}

/** The hit ratio (percent) of `cache` over `trace`: a get per request, a set after each miss. */
const hitRatio = (cache: { get(k: number): unknown; set(k: number, v: number): unknown }, trace: Int32Array) => {
  let hits = 0
  for (const k of trace) {
    if (cache.get(k) !== undefined) hits++
    else cache.set(k, k)
  }
  return (100 * hits) / trace.length
}

describe("TinyLfu", () => {
  describe("the frequency sketch", () => {
    it.prop(
      "counts, ages and grows exactly as the naive sketch with Caffeine's layout",
      [
        fc.integer({ min: 1, max: 3_000 }),
        fc.array(fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 40 })), {
          minLength: 1,
          maxLength: 200
        }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 })
      ],
      ([capacity, hashes, seed]) => {
        const next = seeded(seed)
        const sketch = new FrequencySketch(capacity, 1)
        const naive = new NaiveSketch(capacity, 1)
        // Enough increments to age the sketch a few times: the sample is 10 × max(capacity, 256).
        const total = 3 * naive.sampleSize + 500
        for (let i = 0; i < total; i++) {
          const hash = hashes[Math.floor(next() * hashes.length)]! + (next() < 0.5 ? 0 : i)
          sketch.increment(hash)
          naive.increment(hash)
          if (i % 997 === 0) {
            sketch.ensureCapacity(i >> 2)
            naive.grow(i >> 2)
          }
        }
        expect(sketch.cells).toBe(naive.cells)
        for (const hash of hashes) expect(sketch.frequency(hash)).toBe(naive.frequency(hash))
        const words = Array.from(sketch.table)
        const unpacked = words.flatMap((word) => Array.from({ length: 8 }, (_, n) => (word >>> (4 * n)) & 15))
        expect(unpacked).toStrictEqual(naive.counters)
      },
      { fastCheck: { numRuns: 10 } }
    )

    it("keeps every key's counters when it doubles", () => {
      const sketch = new FrequencySketch(10_000, 1)
      for (let key = 0; key < 200; key++) for (let n = 0; n <= key % 16; n++) sketch.increment(key)
      const before = Array.from({ length: 200 }, (_, key) => sketch.frequency(key))
      sketch.ensureCapacity(10_000)
      expect(sketch.cells).toBe(16_384)
      expect(Array.from({ length: 200 }, (_, key) => sketch.frequency(key))).toStrictEqual(before)
    })

    it("halves its counters after 10 × max(capacity, 256) changing increments", () => {
      const sketch = new FrequencySketch(1_000)
      expect(sketch.sampleSize).toBe(10_000)
      for (let n = 0; n < 15; n++) sketch.increment(42)
      expect(sketch.frequency(42)).toBe(15)
      // Fresh keys, so that (almost) every increment changes a counter, until the sample completes.
      let i = 1_000_000
      while (sketch.frequency(42) === 15) sketch.increment(i++)
      expect(sketch.frequency(42)).toBe(7)
      expect(i - 1_000_000).toBeLessThanOrEqual(10_000)
    })
  })

  describe("against a naive model of the policy (fixed window)", () => {
    it.prop(
      "short random sequences on small capacities",
      [
        fc.integer({ min: 1, max: 20 }),
        fc.array(ops({ fresh: 1, clear: 1 }), { maxLength: 300, size: "max" }),
        fc.array(fc.constantFrom(0, 0.001, 0.5, 0.99), { minLength: 1, maxLength: 8 })
      ],
      ([capacity, steps, randomValues]) => againstModel(capacity, steps, randomValues),
      { fastCheck: { numRuns: 150 } }
    )

    it.prop(
      "long sequences that age the sketch and grow it",
      [
        fc.integer({ min: 1, max: 20 }),
        fc.array(ops({ fresh: 12, clear: 0 }), { minLength: 4_000, maxLength: 6_000 }),
        fc.array(fc.constantFrom(0, 0.001, 0.5, 0.99), { minLength: 1, maxLength: 8 })
      ],
      ([capacity, steps, randomValues]) => againstModel(capacity, steps, randomValues),
      // Shrinking thousands of steps takes minutes: a failure is reported as found (the short property shrinks).
      { fastCheck: { numRuns: 6, endOnFailure: true } }
    )

    it.prop(
      "capacities past the sketch's minimum, so that it grows as the map fills",
      [
        fc.integer({ min: 257, max: 600 }),
        fc.array(ops({ fresh: 30, clear: 0 }), { minLength: 1_500, maxLength: 2_500 }),
        fc.array(fc.constantFrom(0, 0.5), { minLength: 1, maxLength: 4 })
      ],
      ([capacity, steps, randomValues]) => againstModel(capacity, steps, randomValues),
      { fastCheck: { numRuns: 3, endOnFailure: true } }
    )

    it.prop(
      "hits buffered across sets, deletes and clears count as if applied at once (compared every 150 steps)",
      [
        fc.integer({ min: 1, max: 40 }),
        fc.array(ops({ fresh: 3, clear: 1 }), { minLength: 200, maxLength: 2_000 }),
        fc.array(fc.constantFrom(0, 0.001, 0.5, 0.99), { minLength: 1, maxLength: 8 })
      ],
      ([capacity, steps, randomValues]) => againstModel(capacity, steps, randomValues, 150),
      { fastCheck: { numRuns: 40 } }
    )
  })

  describe("with the adaptive window", () => {
    it.prop(
      "holds at most its capacity, keeps what it did not evict, deletes and clears",
      [
        fc.integer({ min: 1, max: 300 }),
        fc.array(ops({ fresh: 6, clear: 0 }), { minLength: 1, maxLength: 8_000, size: "max" }),
        fc.integer()
      ],
      ([capacity, steps, seed]) => {
        const held = new Map<unknown, number>()
        const map = new TinyLfu<unknown, number>(capacity, (k, v) => {
          check(held.get(k), v, "an evicted entry is one that was held")
          held.delete(k)
        }, 0, { random: seeded(seed) })
        /** The map holds exactly `held`, in regions within their bounds. */
        const checkContents = () => {
          const policy = map.policy()
          expect(policy.windowSize).toBeLessThanOrEqual(policy.windowMaximum)
          expect(policy.protectedSize).toBeLessThanOrEqual(policy.protectedMaximum)
          expect(policy.windowMaximum).toBeGreaterThanOrEqual(1)
          expect(policy.windowSize + policy.probationSize + policy.protectedSize).toBe(map.size)
          // Main within its share: what makes a window overflow precede every eviction.
          expect(policy.probationSize + policy.protectedSize).toBeLessThanOrEqual(capacity - policy.windowMaximum)
          const entries = [...map.entries()]
          if (entries.length !== held.size || entries.some(([k, v]) => !held.has(k) || held.get(k) !== v)) {
            expect(new Map(entries)).toStrictEqual(held)
          }
        }
        let fresh = 1_000_000
        for (const [i, step] of steps.entries()) {
          switch (step.op) {
            case "get":
              check(map.get(step.key), held.get(step.key), "get")
              break
            case "touch":
              check(map.touch(step.key) >= 0, held.has(step.key), "touch")
              break
            case "peek":
            case "has":
              check(map.peek(step.key), held.get(step.key), "peek")
              check(map.has(step.key), held.has(step.key), "has")
              break
            case "set":
            case "fresh": {
              const k = step.op === "set" ? step.key : fresh++
              const slot = map.set(k, step.value)
              check(map.valueAt(slot), step.value, "the slot set returns")
              held.set(k, step.value)
              // The key just set is never the one evicted.
              check(map.get(k), step.value, "get after set")
              break
            }
            case "delete":
              check(map.delete(step.key), held.delete(step.key), "delete")
              check(map.has(step.key), false, "has after delete")
              break
          }
          check(map.size, held.size, "size")
          check(map.size <= capacity, true, "size ≤ capacity")
          if (i % 500 === 0) checkContents()
        }
        checkContents()
        map.clear()
        expect(map.size).toBe(0)
        expect([...map.entries()]).toStrictEqual([])
        for (const k of held.keys()) expect(map.has(k)).toBe(false)
        map.set("after", 1)
        expect(map.get("after")).toBe(1)
      },
      { fastCheck: { numRuns: 25, endOnFailure: true } }
    )
  })

  describe("the hill climber", () => {
    it("walks on while the hit rate improves, turns back when it falls, decays, and restarts on a big change", () => {
      const climber = new HillClimber(1_000)
      // Caffeine starts by shrinking the window by 6.25 % of the capacity.
      expect(climber.stepSize).toBe(-62.5)
      // From 0 to 50 %: better (keep going), and a change of 5 points or more restarts the step at full size.
      expect(climber.adjust(0.5)).toBe(-62)
      expect(climber.stepSize).toBe(-62.5)
      // A little better: same direction, the step decays by 0.98.
      expect(climber.adjust(0.52)).toBe(-62)
      expect(climber.stepSize).toBeCloseTo(-61.25, 10)
      // A little worse: turn back.
      expect(climber.adjust(0.5)).toBe(61)
      expect(climber.stepSize).toBeCloseTo(60.025, 10)
      // Much worse: turn back and restart at full size in the new direction.
      expect(climber.adjust(0.4)).toBe(-60)
      expect(climber.stepSize).toBe(-62.5)
      // Nothing changes: the step keeps decaying towards zero, where the window stops moving.
      for (let i = 0; i < 300; i++) climber.adjust(0.4)
      expect(climber.adjust(0.4)).toBe(0)
    })

    it("moves only entries it has, and finishes a move on later insertions", () => {
      // Capacity 1000: window 10, protected 792, a sample every 10,000 requests (hits and insertions).
      const map = new TinyLfu<number, number>(1_000, undefined, 0, { random: seeded(1) })
      expect(map.policy()).toMatchObject({ windowMaximum: 10, protectedMaximum: 792 })
      // Sample 1, hit rate 99.8 %: better than nothing, so the first step (−62) applies, down to a window of 1.
      for (let k = 0; k < 20; k++) map.set(k, k)
      for (let i = 0; i < 9_980; i++) map.get(i % 20)
      expect(map.policy()).toMatchObject({ windowMaximum: 1, protectedMaximum: 801 })
      // Sample 2, hit rate 50 %: worse, so the climber turns round (+62). Misses are insertions deleted at once,
      // so that main holds its 20 entries only: they all move to the window, and the other 42 stay pending.
      let fresh = 1_000
      for (let i = 0; i < 5_000; i++) {
        map.get(i % 20)
        map.set(fresh, fresh)
        if (i < 4_999) map.delete(fresh++)
      }
      expect(map.policy()).toMatchObject({ windowMaximum: 21, protectedMaximum: 781, windowSize: 21 })
      // Insertions finish the move: the window reaches 1 + 62 entries, and protected gives up as much.
      for (let i = 0; i < 100; i++) map.set(fresh, fresh++)
      expect(map.policy()).toMatchObject({ windowMaximum: 63, protectedMaximum: 739, windowSize: 63 })
      // Sample 3, hit rate 0: worse again, so the climber turns round (−62); the window holds only 4 entries
      // (3 kept, and the insertion that completes the sample): they move, and the other 58 stay pending.
      for (const [k] of [...map.entries()].slice(3, 63)) map.delete(k)
      for (let i = 0; i < 9_900; i++) {
        map.set(fresh, fresh)
        if (i < 9_899) map.delete(fresh++)
      }
      expect(map.policy()).toMatchObject({ windowMaximum: 59, protectedMaximum: 743, windowSize: 0 })
    })

    /** The window's bound after each of `samples` samples of a workload that `keyAt(t)` describes. */
    const windowTrail = (capacity: number, requests: number, keyAt: (t: number) => number) => {
      const map = new TinyLfu<number, number>(capacity, undefined, 0, { random: seeded(1) })
      const trail: Array<number> = []
      for (let t = 0; t < requests; t++) {
        const k = keyAt(t)
        if (map.get(k) === undefined) map.set(k, k)
        if (t % 2_560 === 0) trail.push(map.policy().windowMaximum)
      }
      return { trail, map }
    }

    it("grows the window for a recency-biased workload, within [1, capacity − probation's share]", () => {
      // A working set of 60 keys sliding forward: every key is used a few times shortly after it appears.
      const next = seeded(3)
      const { map, trail } = windowTrail(100, 100_000, (t) => Math.floor(t / 8) + Math.floor(next() * 60))
      // Probation keeps its 20 % of main: 100 − ⌊0.99 × 100⌋ = 1, main 99, protected ⌊0.8 × 99⌋ = 79.
      const largest = 100 - (99 - 79)
      expect(Math.max(...trail)).toBe(largest)
      expect(map.policy().windowMaximum).toBeGreaterThanOrEqual(60)
      expect(trail.every((w) => w >= 1 && w <= largest)).toBe(true)
    })

    it("keeps the window small for a frequency-biased workload (a loop longer than the cache)", () => {
      const { map, trail } = windowTrail(100, 100_000, (t) => t % 150)
      expect(map.policy().windowMaximum).toBeLessThanOrEqual(10)
      expect(trail.every((w) => w >= 1 && w <= 80)).toBe(true)
    })
  })

  describe("trace replay (generated traces)", () => {
    it("a loop longer than the cache: far above LRU, which it defeats", () => {
      const trace = loopTrace(1_011, 50_000)
      const lru = hitRatio(new LruMap<number, number>(512), trace)
      const tinyLfu = hitRatio(new TinyLfu<number, number>(512, undefined, 0, { random: seeded(1) }), trace)
      // The best any policy can do is about 512 / 1011 ≈ 50 %.
      expect(lru).toBe(0)
      expect(tinyLfu).toBeGreaterThanOrEqual(45)
    })

    it("a hot set under scans: keeps the hot set that LRU lets the scans push out", () => {
      const trace = scannedHotSetTrace(800, 0.5, 100_000, 7)
      const lru = hitRatio(new LruMap<number, number>(1_000), trace)
      const tinyLfu = hitRatio(new TinyLfu<number, number>(1_000, undefined, 0, { random: seeded(1) }), trace)
      // Measured: LRU 30 %, TinyLfu 47.5–47.8 % over seeds: +17 points; asserted with room.
      expect(lru).toBeLessThan(35)
      expect(tinyLfu).toBeGreaterThanOrEqual(lru + 10)
    })
  })

  describe("the LruMap surface", () => {
    it("treats keys with Map semantics", () => {
      const map = new TinyLfu<unknown, string>(10)
      const object = {}
      map.set(0, "zero")
      map.set("0", "string zero")
      map.set(NaN, "nan")
      map.set(1.5, "one and a half")
      map.set(object, "object")
      map.set(Symbol.for("s"), "symbol")
      expect(map.get(-0)).toBe("zero")
      expect(map.get("0")).toBe("string zero")
      expect(map.get(NaN)).toBe("nan")
      expect(map.get(1.5)).toBe("one and a half")
      expect(map.get(object)).toBe("object")
      expect(map.get({})).toBeUndefined()
      expect(map.get(Symbol.for("s"))).toBe("symbol")
      expect(map.get(1)).toBeUndefined()
      expect(map.size).toBe(6)
      map.set(-0, "zero again")
      expect([...map.entries()].find(([k]) => k === 0)).toStrictEqual([0, "zero again"])
      expect(Object.is([...map.entries()].find(([k]) => k === 0)![0], 0)).toBe(true)
    })

    it("rejects a capacity that is not an integer from 1 to 2^30", () => {
      for (const capacity of [0, -1, 1.5, NaN, Infinity, maxCapacity + 1]) {
        expect(() => new TinyLfu(capacity)).toThrow(RangeError)
      }
    })

    it("leaves the map consistent when the eviction callback throws", () => {
      const map = new TinyLfu<number, number>(2, () => {
        throw new Error("boom")
      })
      map.set(1, 1)
      map.set(2, 2)
      expect(() => map.set(3, 3)).toThrow("boom")
      expect(map.size).toBe(2)
      expect(map.get(3)).toBe(3)
      expect(map.has(1) !== map.has(2)).toBe(true)
    })

    it("keeps the owner's numbers per slot, and deleteWhere removes by them", () => {
      const map = new TinyLfu<string, number>(100, undefined, 2)
      for (let i = 0; i < 50; i++) {
        const slot = map.set(`k${i}`, i)
        map.setNumber(slot, 0, i % 3 === 0 ? 5 : Infinity)
        map.setNumber(slot, 1, i)
      }
      for (let i = 0; i < 50; i++) expect(map.numberAt(map.slotOf(`k${i}`), 1)).toBe(i)
      expect(map.deleteWhere((slot) => map.numberAt(slot, 0) <= 5)).toBe(17)
      expect(map.size).toBe(33)
      for (let i = 0; i < 50; i++) expect(map.has(`k${i}`)).toBe(i % 3 !== 0)
    })

    it("applies the hits it buffered before deleteWhere frees their slots, which new keys then take", () => {
      const map = new TinyLfu<string, number>(100, undefined, 1)
      for (let i = 0; i < 50; i++) map.setNumber(map.set(`k${i}`, i), 0, i)
      // Hits on entries about to go, fewer than the buffer holds, so that they are still buffered.
      for (let i = 0; i < 10; i++) expect(map.get(`k${i}`)).toBe(i)
      expect(map.deleteWhere((slot) => map.numberAt(slot, 0) < 10)).toBe(10)
      for (let i = 50; i < 60; i++) map.set(`k${i}`, i)
      const keys = [...map.entries()].map(([k]) => k)
      expect(keys).toHaveLength(50)
      expect(new Set(keys)).toStrictEqual(new Set(Array.from({ length: 50 }, (_, i) => `k${i + 10}`)))
    })

    it("admits a warm losing candidate when the random source draws below 1/128, and not otherwise", () => {
      const run = (draw: number) => {
        // Capacity 2: window 1, probation 1, protected 0. Key 1 becomes a hot victim, key 2 a warm candidate.
        const map = new TinyLfu<number, number>(2, undefined, 0, { adaptive: false, random: () => draw })
        map.set(1, 1)
        for (let i = 0; i < 12; i++) map.get(1)
        map.set(2, 2)
        for (let i = 0; i < 7; i++) map.get(2)
        // Key 3 pushes key 2 out of the window: 2 (frequency 8) competes with 1 (frequency 13).
        map.set(3, 3)
        return [...map.entries()].map(([k]) => k).sort()
      }
      expect(run(0.5)).toStrictEqual([1, 3])
      expect(run(0.001)).toStrictEqual([2, 3])
    })

    it("holds a large capacity in memory that follows the entries, sketch included", () => {
      const map = new TinyLfu<number, number>(maxCapacity)
      for (let i = 0; i < 1_000; i++) map.set(i, i)
      const sketch = (map as unknown as { sketch: FrequencySketch }).sketch
      // A cell (8 bytes) per entry held, rounded up to a power of two: not one per unit of capacity.
      expect(sketch.cells).toBe(1_024)
      expect(map.size).toBe(1_000)
      expect(map.get(999)).toBe(999)
    })
  })
})
