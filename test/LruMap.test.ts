import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { IntIndex } from "../src/internal/intIndex.js"
import { LruMap } from "../src/internal/lruMap.js"
import { ModelLru } from "./support/models.js"

/** Keys that exercise both indexes and the `Map` equality corner cases: -0, NaN, non-integers, big ints. */
const key: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -3, max: 24 }) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>("a", "b", "0", "1", -0, NaN, 1.5, 2 ** 31, -(2 ** 31), 2 ** 31 - 1) },
  { weight: 1, arbitrary: fc.string({ maxLength: 2 }) }
)

type Op =
  | { readonly op: "get" | "peek" | "has" | "delete"; readonly key: unknown }
  | { readonly op: "set"; readonly key: unknown; readonly value: number }
  | { readonly op: "clear" }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom("get" as const, "peek" as const, "has" as const), key }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("set" as const), key, value: fc.integer() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("delete" as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("clear" as const) }) }
)

describe("LruMap", () => {
  it.prop(
    "behaves like a textbook LRU over random operation sequences",
    [fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 300 })],
    ([capacity, ops]) => {
      const evicted: Array<[unknown, number]> = []
      const map = new LruMap<unknown, number>(capacity, (k, v) => evicted.push([k, v]))
      const model = new ModelLru<unknown, number>(capacity)
      const modelEvicted: Array<[unknown, number]> = []
      for (const step of ops) {
        switch (step.op) {
          case "get":
            expect(map.get(step.key)).toStrictEqual(model.get(step.key))
            break
          case "peek":
            expect(map.peek(step.key)).toStrictEqual(model.peek(step.key))
            break
          case "has":
            expect(map.has(step.key)).toBe(model.entries.has(step.key))
            break
          case "set": {
            map.set(step.key, step.value)
            const out = model.set(step.key, step.value)
            if (out !== undefined) modelEvicted.push([out.key, out.value])
            break
          }
          case "delete":
            expect(map.delete(step.key)).toBe(model.delete(step.key))
            break
          case "clear":
            map.clear()
            model.entries.clear()
            break
        }
        expect(map.size).toBe(model.entries.size)
        expect([...map.entries()]).toStrictEqual(model.order())
        expect(evicted).toStrictEqual(modelEvicted)
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("treats keys with Map semantics across its two indexes", () => {
    const map = new LruMap<unknown, string>(10)
    map.set(0, "zero")
    map.set("0", "string zero")
    map.set(NaN, "nan")
    map.set(1.5, "one and a half")
    expect(map.get(-0)).toBe("zero")
    expect(map.get("0")).toBe("string zero")
    expect(map.get(NaN)).toBe("nan")
    expect(map.get(1.5)).toBe("one and a half")
    expect(map.get(1)).toBeUndefined()
    expect(map.size).toBe(4)
  })

  it("rejects a capacity that is not an integer from 1 to 2^30", () => {
    for (const capacity of [0, -1, 1.5, NaN, Infinity, 2 ** 30 + 1]) {
      expect(() => new LruMap(capacity)).toThrow(RangeError)
    }
  })

  it("leaves the map consistent when the eviction callback throws", () => {
    const map = new LruMap<number, number>(2, () => {
      throw new Error("boom")
    })
    map.set(1, 1)
    map.set(2, 2)
    expect(() => map.set(3, 3)).toThrow("boom")
    expect([...map.entries()]).toStrictEqual([[3, 3], [2, 2]])
    expect(map.get(1)).toBeUndefined()
  })

  describe("exactness on long generated traces (hit counts of a textbook LRU)", () => {
    /** A seeded generator (a 32-bit LCG): the same trace on every machine, nothing read from disk. */
    const generator = (seed: number) => () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32

    /** `length` keys drawn from a Zipf distribution (exponent `s`) over `keys` keys, by inverse transform. */
    const zipfTrace = (length: number, keys: number, s: number, seed: number): Int32Array => {
      const random = generator(seed)
      const cumulative = new Float64Array(keys)
      let total = 0
      for (let k = 0; k < keys; k++) cumulative[k] = total += 1 / (k + 1) ** s
      const trace = new Int32Array(length)
      for (let i = 0; i < length; i++) {
        const target = random() * total
        let low = 0
        let high = keys - 1
        while (low < high) {
          const mid = (low + high) >>> 1
          if (cumulative[mid]! < target) low = mid + 1
          else high = mid
        }
        // Scatter the ranks over the key space, so that hot keys are not small integers next to each other.
        trace[i] = Math.imul(low, 2654435761) | 0
      }
      return trace
    }

    /** A loop over `span` keys, repeated, with a burst of one-off keys (a scan) every `scanEvery` requests. */
    const loopTrace = (length: number, span: number, scanEvery: number): Int32Array => {
      const trace = new Int32Array(length)
      for (let i = 0; i < length; i++) trace[i] = i % scanEvery < 50 ? 1_000_000 + i : i % span
      return trace
    }

    const hits = <K>(keys: ArrayLike<K>, cache: { get(k: K): unknown; set(k: K, v: true): unknown }) => {
      let count = 0
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!
        if (cache.get(k) === undefined) cache.set(k, true)
        else count++
      }
      return count
    }

    const sameAsModel = <K>(keys: ArrayLike<K>, capacity: number) => {
      const model = hits(keys, new ModelLru<K, true>(capacity))
      expect(hits(keys, new LruMap<K, true>(capacity))).toBe(model)
      return model
    }

    it("Zipf (s = 0.99, 100,000 keys, 300,000 requests), integer keys, at 250 / 1,000 / 5,000 / 20,000 entries", () => {
      const trace = zipfTrace(300_000, 100_000, 0.99, 42)
      const counts = [250, 1_000, 5_000, 20_000].map((capacity) => sameAsModel(trace, capacity))
      // A larger cache hits more: the trace is not degenerate.
      for (let i = 1; i < counts.length; i++) expect(counts[i]!).toBeGreaterThan(counts[i - 1]!)
    })

    it("the same trace as string keys (the other index)", () => {
      const trace = Array.from(zipfTrace(100_000, 30_000, 0.99, 7), (k) => `k${k}`)
      for (const capacity of [100, 1_000]) sameAsModel(trace, capacity)
    })

    it("a loop longer than the cache never hits; one that fits always does after its first pass", () => {
      expect(sameAsModel(loopTrace(50_000, 600, 10_000), 512)).toBe(0)
      const fits = loopTrace(50_000, 400, 10_000)
      expect(sameAsModel(fits, 512)).toBeGreaterThan(40_000)
    })
  })
})

describe("IntIndex", () => {
  const intKey = fc.oneof(
    fc.integer({ min: 0, max: 40 }),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
  )
  it.prop(
    "agrees with a Map under random set / delete / get, through growth and backward-shift deletion",
    [
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("set" as const), key: intKey, slot: fc.nat({ max: 1000 }) }),
          fc.record({ op: fc.constantFrom("delete" as const, "get" as const), key: intKey })
        ),
        { maxLength: 400 }
      )
    ],
    ([ops]) => {
      const index = new IntIndex(2)
      const model = new Map<number, number>()
      for (const step of ops) {
        if (step.op === "set") {
          index.set(step.key, step.slot)
          model.set(step.key, step.slot)
        } else if (step.op === "delete") {
          expect(index.delete(step.key)).toBe(model.delete(step.key))
        } else {
          expect(index.get(step.key)).toBe(model.get(step.key) ?? -1)
        }
        expect(index.size).toBe(model.size)
      }
      for (const [k, slot] of model) expect(index.get(k)).toBe(slot)
    },
    { fastCheck: { numRuns: 300 } }
  )
})
