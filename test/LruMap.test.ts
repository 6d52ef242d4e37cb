import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { hashString, IntIndex, StringIndex } from "../src/internal/intIndex.js"
import { LruMap, maxCapacity } from "../src/internal/lruMap.js"
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

  describe("memory and time follow the entries held, not the capacity", () => {
    /** Array buffers in use now, after a collection when the test runs with --expose-gc. */
    const buffers = () => {
      ;(globalThis as { gc?: () => void }).gc?.()
      return process.memoryUsage().arrayBuffers
    }

    it.prop(
      "at capacities 2^30 and 1e8, stays a textbook LRU over random operations and repeated clears",
      [fc.constantFrom(maxCapacity, 1e8), fc.array(op, { maxLength: 300 })],
      ([capacity, ops]) => {
        const map = new LruMap<unknown, number>(capacity, () => {
          throw new Error("nothing is evicted below capacity")
        })
        const model = new ModelLru<unknown, number>(capacity)
        for (const step of [...ops, { op: "clear" as const }, ...ops]) {
          if (step.op === "set") {
            map.set(step.key, step.value)
            model.set(step.key, step.value)
          } else if (step.op === "clear") {
            map.clear()
            model.entries.clear()
          } else if (step.op === "delete") {
            expect(map.delete(step.key)).toBe(model.delete(step.key))
          } else {
            expect(map.get(step.key)).toStrictEqual(model.get(step.key))
          }
        }
        expect([...map.entries()]).toStrictEqual(model.order())
      },
      { fastCheck: { numRuns: 50 } }
    )

    it("builds and clears a map of capacity 2^30 in constant memory, many times over", () => {
      const before = buffers()
      const kept: Array<LruMap<number, number>> = []
      for (let i = 0; i < 1_000; i++) {
        const map = new LruMap<number, number>(maxCapacity)
        for (let k = 0; k < 5; k++) map.set(k * 7919, k)
        map.clear()
        map.set(i, i)
        kept.push(map)
      }
      // A thousand maps holding an entry each: kilobytes, where a capacity-sized array would be gigabytes each.
      expect(buffers() - before).toBeLessThan(8 * 2 ** 20)
      expect(kept.every((map, i) => map.size === 1 && map.get(i) === i)).toBe(true)
    })

    it("holds a hundred thousand entries at capacity 2^30 and then clears them, staying exact", () => {
      const map = new LruMap<number | string, number>(maxCapacity)
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 100_000; i++) map.set(i % 2 === 0 ? i : `k${i}`, i)
        expect(map.size).toBe(100_000)
        expect(map.get(0)).toBe(0)
        expect(map.get("k99999")).toBe(99_999)
        expect([...map.entries()].slice(0, 3)).toStrictEqual([["k99999", 99_999], [0, 0], [99_998, 99_998]])
        map.clear()
        expect(map.size).toBe(0)
        expect(map.get(0)).toBeUndefined()
        expect([...map.entries()]).toStrictEqual([])
      }
    })
  })

  describe("the owner's numbers per entry", () => {
    it.prop(
      "keep what was written for each live entry, through growth, eviction, deletion and clear",
      [
        fc.integer({ min: 1, max: 40 }),
        fc.array(
          fc.oneof(
            { weight: 6, arbitrary: fc.record({ op: fc.constant("set" as const), key, a: fc.double(), b: fc.double() }) },
            { weight: 2, arbitrary: fc.record({ op: fc.constant("delete" as const), key }) },
            { weight: 1, arbitrary: fc.record({ op: fc.constant("clear" as const) }) }
          ),
          { maxLength: 300 }
        )
      ],
      ([capacity, ops]) => {
        const evictedNumbers: Array<number> = []
        const map: LruMap<unknown, number> = new LruMap(capacity, (_key, _value, slot) => {
          evictedNumbers.push(map.numberAt(slot, 0))
        }, 2)
        const model = new ModelLru<unknown, readonly [number, number]>(capacity)
        const modelEvicted: Array<number> = []
        for (const step of ops) {
          if (step.op === "set") {
            const slot = map.set(step.key, 0)
            map.setNumber(slot, 0, step.a)
            map.setNumber(slot, 1, step.b)
            const out = model.set(step.key, [step.a, step.b])
            if (out !== undefined) modelEvicted.push(out.value[0])
          } else if (step.op === "delete") {
            map.delete(step.key)
            model.delete(step.key)
          } else {
            map.clear()
            model.entries.clear()
          }
          for (const [k, { value }] of model.entries) {
            const slot = map.slotOf(k)
            expect(map.keyAt(slot)).toStrictEqual(k)
            expect([map.numberAt(slot, 0), map.numberAt(slot, 1)]).toStrictEqual(value)
          }
        }
        expect(evictedNumbers).toStrictEqual(modelEvicted)
      },
      { fastCheck: { numRuns: 200 } }
    )

    it("read as Infinity until a finite one is written", () => {
      const map = new LruMap<string, string>(4, undefined, 1)
      const slot = map.set("a", "A")
      map.setNumber(slot, 0, Infinity)
      expect(map.numberAt(slot, 0)).toBe(Infinity)
      map.setNumber(map.set("b", "B"), 0, 42)
      expect(map.numberAt(map.slotOf("b"), 0)).toBe(42)
      expect(map.numberAt(slot, 0)).toBe(Infinity)
    })

    it("select entries to remove with deleteWhere, in any position of the recency list", () => {
      const map = new LruMap<number, number>(100, undefined, 1)
      for (let i = 0; i < 50; i++) map.setNumber(map.set(i, i), 0, i % 3)
      expect(map.deleteWhere((slot) => map.numberAt(slot, 0) === 0)).toBe(17)
      expect([...map.entries()].map(([k]) => k)).toStrictEqual(
        Array.from({ length: 50 }, (_, i) => 49 - i).filter((k) => k % 3 !== 0)
      )
      expect(map.deleteWhere(() => true)).toBe(33)
      expect(map.size).toBe(0)
      map.set(7, 7)
      expect([...map.entries()]).toStrictEqual([[7, 7]])
    })
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

describe("StringIndex", () => {
  const stringKey = fc.oneof(fc.constantFrom("a", "b", "", "key:1", "key:2"), fc.string({ maxLength: 6 }))
  it.prop(
    "agrees with a Map under random insert / delete / get, through growth and backward-shift deletion",
    [
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("set" as const), key: stringKey }),
          fc.record({ op: fc.constantFrom("delete" as const, "get" as const), key: stringKey })
        ),
        { maxLength: 400 }
      )
    ],
    ([ops]) => {
      // Slots are handed out as LruMap does: the owner's keys array holds the key of each slot.
      const index = new StringIndex(2)
      const keys: Array<string | undefined> = []
      const model = new Map<string, number>()
      for (const step of ops) {
        const hash = hashString(step.key)
        if (step.op === "set") {
          if (!model.has(step.key)) {
            const slot = keys.length
            keys.push(step.key)
            index.insert(hash, slot)
            model.set(step.key, slot)
          }
        } else if (step.op === "delete") {
          const slot = model.get(step.key)
          if (slot !== undefined) {
            index.delete(hash, slot)
            keys[slot] = undefined
            model.delete(step.key)
          }
        } else {
          // A copy of the key (a distinct string object) finds the same slot.
          expect(index.get([...step.key].join(""), hash, keys)).toBe(model.get(step.key) ?? -1)
        }
        expect(index.size).toBe(model.size)
      }
      for (const [k, slot] of model) expect(index.get(k, hashString(k), keys)).toBe(slot)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("hashes a key alike whatever V8's representation of it, and finds it through any of them", () => {
    // The same text as a literal (internalized), built at run time (flat), concatenated (a cons string),
    // cut from a longer string (sliced), and after serving as a property name (V8 may leave a "thin" string
    // pointing at an internalized copy); and the same for a key with code units above 0xff (two-byte).
    const shapes = (text: string): Array<string> => {
      const half = text.length >> 1
      const built = [...text].join("")
      const cons = text.slice(0, half) + built.slice(half)
      const sliced = ("#".repeat(40) + text + "#".repeat(40)).substring(40, 40 + text.length)
      const thin = [...text].join("")
      const dictionary: Record<string, number> = {}
      dictionary[thin] = 1
      return [text, built, cons, sliced, thin]
    }
    for (const text of ["tenant:acme:user:000123456:profile", "clé:ünïcödé:€:000123456:profile"]) {
      const forms = shapes(text)
      for (const form of forms) expect(form).toBe(text)
      for (const form of forms) expect(hashString(form)).toBe(hashString(text))
      for (const stored of forms) {
        const map = new LruMap<string, number>(4)
        map.set(stored, 1)
        for (const asked of forms) expect(map.get(asked)).toBe(1)
      }
    }
  })

  it("hashes to small integers (V8 Smis), the same for equal strings", () => {
    for (const s of ["", "a", "key:123456", "ü€😀", "x".repeat(1000)]) {
      const hash = hashString(s)
      expect(hash).toBe(hashString([...s].join("")))
      expect(Number.isInteger(hash) && hash >= 0 && hash < 2 ** 30).toBe(true)
    }
  })
})
