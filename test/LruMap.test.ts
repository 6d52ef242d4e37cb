import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { IntIndex } from "../src/internal/intIndex.js"
import { LruMap } from "../src/internal/lruMap.js"
import { ModelLru } from "./support/models.js"
import { readArcTrace, readLirsTrace } from "./support/traces.js"

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

  describe("exactness on real traces (hit ratios of a textbook LRU, ../shared/traces/README.md)", () => {
    const hitRatio = (keys: Int32Array, capacity: number): string => {
      const map = new LruMap<number, true>(capacity)
      let hits = 0
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!
        if (map.get(k) === undefined) map.set(k, true)
        else hits++
      }
      return ((100 * hits) / keys.length).toFixed(2)
    }

    it("oltp: 16.47 / 23.45 / 32.83 / 42.47 % at 250 / 500 / 1000 / 2000", () => {
      const keys = readArcTrace("oltp.arc.gz")
      expect(keys.length).toBe(914_145)
      expect([250, 500, 1000, 2000].map((capacity) => hitRatio(keys, capacity))).toStrictEqual([
        "16.47",
        "23.45",
        "32.83",
        "42.47"
      ])
    })

    it("p3: 29.34 / 59.35 % at 100,000 / 200,000", () => {
      const keys = readArcTrace("p3.arc.gz")
      expect([100_000, 200_000].map((capacity) => hitRatio(keys, capacity))).toStrictEqual(["29.34", "59.35"])
    })

    it("gli and loop: 0.91 / 0.95 / 11.21 % and 0.00 / 0.00 %", () => {
      const gli = readLirsTrace("gli.lirs.gz")
      expect([250, 500, 1000].map((capacity) => hitRatio(gli, capacity))).toStrictEqual(["0.91", "0.95", "11.21"])
      const loop = readLirsTrace("loop.lirs.gz")
      expect([256, 512].map((capacity) => hitRatio(loop, capacity))).toStrictEqual(["0.00", "0.00"])
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
