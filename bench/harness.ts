/**
 * A small benchmark harness: every case of a group runs once per round, rounds interleave the cases so that
 * machine noise spreads over all of them, and the figure reported is the median over rounds.
 */

/** One measured case: `setup` runs untimed, then `run` is timed and returns the number of operations done. */
export interface Case {
  readonly name: string
  readonly setup?: () => unknown
  readonly run: (state: any) => number
}

/** The median throughput of one case, in operations per second. */
export interface Result {
  readonly name: string
  readonly opsPerSecond: number
  readonly rounds: ReadonlyArray<number>
}

export const rounds = Number(process.env.BENCH_ROUNDS ?? 7)

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Runs `cases` for `rounds` rounds (plus one warm-up round that is not counted). Every other round runs the
 * cases in reverse order, so that running first or last (a fresh heap, a pending collection) favours no case.
 */
export const measure = (cases: ReadonlyArray<Case>, options: { readonly rounds?: number } = {}): Array<Result> => {
  const n = options.rounds ?? rounds
  const samples = cases.map(() => [] as Array<number>)
  for (let round = -1; round < n; round++) {
    const order = cases.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      const c = cases[i]!
      const state = c.setup?.()
      const start = performance.now()
      const ops = c.run(state)
      const elapsed = performance.now() - start
      if (round >= 0) samples[i]!.push(ops / (elapsed / 1000))
    }
  }
  return cases.map((c, i) => ({ name: c.name, opsPerSecond: median(samples[i]!), rounds: samples[i]! }))
}

/**
 * The median over rounds of `subject`'s throughput divided by the best of `others` in the same round. Rounds
 * are measured back to back, so a ratio per round cancels the machine's slow drifts, which a ratio of medians
 * does not.
 */
export const ratioPerRound = (subject: Result, others: ReadonlyArray<Result>): number =>
  median(subject.rounds.map((ops, i) => ops / Math.max(...others.map((o) => o.rounds[i]!))))

/** Like `measure`, for cases whose run is asynchronous. */
export interface AsyncCase {
  readonly name: string
  readonly setup?: () => Promise<unknown>
  readonly run: (state: any) => Promise<number>
  readonly teardown?: (state: any) => Promise<void>
}

export const measureAsync = async (
  cases: ReadonlyArray<AsyncCase>,
  options: { readonly rounds?: number } = {}
): Promise<Array<Result>> => {
  const n = options.rounds ?? rounds
  const samples = cases.map(() => [] as Array<number>)
  for (let round = -1; round < n; round++) {
    for (const [i, c] of cases.entries()) {
      const state = await c.setup?.()
      const start = performance.now()
      const ops = await c.run(state)
      const elapsed = performance.now() - start
      await c.teardown?.(state)
      if (round >= 0) samples[i]!.push(ops / (elapsed / 1000))
    }
  }
  return cases.map((c, i) => ({ name: c.name, opsPerSecond: median(samples[i]!), rounds: samples[i]! }))
}

/** Deterministic pseudo-random numbers in [0, 1), so every run and every case sees the same keys. */
export const random = (seed: number) => () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
  return seed / 4294967296
}

/** `count` samples of a Zipf distribution over `0 … n-1` with exponent `s`, by inverse transform. */
export const zipf = (n: number, s: number, count: number, seed = 42): Int32Array => {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s)
    cdf[i] = sum
  }
  const next = random(seed)
  const out = new Int32Array(count)
  for (let j = 0; j < count; j++) {
    const u = next() * sum
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid]! < u) lo = mid + 1
      else hi = mid
    }
    out[j] = lo
  }
  return out
}

export const formatOps = (ops: number): string =>
  ops >= 1e6 ? `${(ops / 1e6).toFixed(2)} M/s` : ops >= 1e3 ? `${(ops / 1e3).toFixed(1)} k/s` : `${ops.toFixed(0)}/s`

export const formatNanos = (opsPerSecond: number): string => {
  const ns = 1e9 / opsPerSecond
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`
}
