/**
 * A small benchmark harness: every case of a group runs once per round, rounds interleave the cases so that
 * machine noise spreads over all of them, and the figure reported is the median over rounds.
 */

/**
 * One measured case: `setup` and `teardown` are not timed; `run` is (synchronous or not), and returns the
 * number of operations it did.
 */
export interface Case {
  readonly name: string
  readonly setup?: () => unknown
  readonly run: (state: any) => Promise<number> | number
  readonly teardown?: (state: any) => unknown
}

/**
 * A copy of `loop` with type feedback of its own, for a case's timed loop. V8 keeps one feedback vector per
 * function literal, so a loop written once and run by every implementation sees all their classes at its call
 * sites: polymorphic, where V8 inlines less, or megamorphic. A user's call site sees one class. Measured on the
 * W-TinyLFU get-hit (bench/hitRatio.ts, integer keys): one loop shared by three structures gave 1.4–1.6× lru-cache,
 * a loop of its own each about 1.05–1.3× (lru-cache lost more than we did to the shared one). `loop` must not
 * close over anything: it is rebuilt from its source text, so it sees only its parameters and globals.
 */
export const ownCopy = <F extends (...args: Array<any>) => unknown>(loop: F): F =>
  new Function(`return (${loop.toString()})`)() as F

/**
 * Keys in every representation V8 gives a string: literal (internalized), built at run time, concatenated (cons),
 * cut from a longer string (sliced), "thin" (after serving as a property name), two-byte. A service's cache sees
 * all of them; a benchmark whose keys are all built alike would time code whose type feedback knows only one,
 * which a service never runs (see `hashString` in src/internal/intIndex.ts for what that hid).
 */
export const stringShapes = (): Array<string> => {
  const long = "#".repeat(40) + "order:000987654:line:12" + "#".repeat(40)
  const thin = ["session", String(Date.now() % 1000)].join(":")
  const dictionary: Record<string, number> = {}
  dictionary[thin] = 1
  return [
    "key:1",
    `key:${Date.now() % 1000}`,
    "tenant:" + String(Date.now() % 1000) + ":user:000123456:profile",
    long.substring(40, 63),
    thin,
    `clé:${Date.now() % 1000}:€`
  ]
}

/** Sets and gets `stringShapes` in a small structure made by `make`, before the timed rounds (see there). */
export const seeStringShapes = (make: () => { get(key: string): unknown; set(key: string, value: unknown): unknown }): void => {
  const shapes = stringShapes()
  const structure = make()
  for (let round = 0; round < 2_000; round++) {
    for (const key of shapes) {
      if (structure.get(key) === undefined) structure.set(key, round)
    }
  }
}

/** The median throughput of one case, in operations per second, and the throughput of every round. */
export interface Result {
  readonly name: string
  readonly opsPerSecond: number
  readonly rounds: ReadonlyArray<number>
}

export const rounds = Number(process.env.BENCH_ROUNDS ?? 7)

/** How many fresh processes a table measured across processes runs in (see `inFreshProcesses` in bench/report.ts). */
export const processes = Number(process.env.BENCH_PROCESSES ?? 5)

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** What a case is timed by: the wall clock, or the process's CPU time (user + system, `process.cpuUsage()`). */
export type Clock = "wall" | "cpu"

/** Seconds elapsed since the call, by the chosen clock. */
const stopwatch = (clock: Clock): (() => number) => {
  if (clock === "wall") {
    const start = performance.now()
    return () => (performance.now() - start) / 1000
  }
  const start = process.cpuUsage()
  return () => {
    const used = process.cpuUsage(start)
    return (used.user + used.system) / 1e6
  }
}

/**
 * Runs `cases` for `rounds` rounds plus one warm-up round that is not counted. Within a round the cases run back
 * to back, in reverse order every other round, so that running first or last (a fresh heap, a pending
 * collection) favours no case. No collection is forced between cases: a forced full collection shrinks the
 * young generation, and the case timed right after it then pays for regrowing it.
 */
export const measure = async (
  cases: ReadonlyArray<Case>,
  options: { readonly rounds?: number; readonly clock?: Clock } = {}
): Promise<Array<Result>> => {
  const n = options.rounds ?? rounds
  const clock = options.clock ?? "wall"
  const samples = cases.map(() => [] as Array<number>)
  for (let round = -1; round < n; round++) {
    const order = cases.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      const c = cases[i]!
      const state = await c.setup?.()
      const elapsed = stopwatch(clock)
      const ops = await c.run(state)
      const seconds = elapsed()
      await c.teardown?.(state)
      if (round >= 0) samples[i]!.push(ops / Math.max(seconds, 1e-9))
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

/** One workload's results: each case's, in a fixed order. */
export interface WorkloadResult {
  readonly workload: string
  readonly results: ReadonlyArray<Result>
}

/** One workload measured in several processes (see `inFreshProcesses` in bench/report.ts): per process, its cases' results. */
export interface WorkloadAcrossProcesses {
  readonly workload: string
  readonly perProcess: ReadonlyArray<ReadonlyArray<Result>>
}

/** Regroups each process's workloads (`runs`, the same ones in the same order in each) by workload. */
export const acrossProcesses = (
  runs: ReadonlyArray<ReadonlyArray<WorkloadResult>>
): Array<WorkloadAcrossProcesses> =>
  runs[0]!.map(({ workload }, w) => ({ workload, perProcess: runs.map((run) => run[w]!.results) }))

/** The median over processes of the throughput of the case `pick` finds in each. */
export const rateAcross = (
  { perProcess }: WorkloadAcrossProcesses,
  pick: (results: ReadonlyArray<Result>) => Result
): number => median(perProcess.map((results) => pick(results).opsPerSecond))

/** Per process, `ratioPerRound` of the case `subject` finds against those `others` find. */
export const ratiosAcross = (
  { perProcess }: WorkloadAcrossProcesses,
  subject: (results: ReadonlyArray<Result>) => Result,
  others: ReadonlyArray<(results: ReadonlyArray<Result>) => Result>
): Array<number> => perProcess.map((results) => ratioPerRound(subject(results), others.map((other) => other(results))))

/** The median over rounds of `subject`'s time per operation minus `base`'s, in nanoseconds. */
export const differencePerRound = (subject: Result, base: Result): number =>
  median(subject.rounds.map((ops, i) => 1e9 / ops - 1e9 / base.rounds[i]!))

/** The first and third quartiles over rounds of the same difference: how much the rounds disagree. */
export const differenceQuartiles = (subject: Result, base: Result): readonly [number, number] => {
  const sorted = subject.rounds.map((ops, i) => 1e9 / ops - 1e9 / base.rounds[i]!).sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))]!
  return [at(0.25), at(0.75)]
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

/** Nanoseconds as `µs` with two decimals (or `ns` below one microsecond), keeping the sign. */
export const formatDuration = (ns: number): string =>
  Math.abs(ns) >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`

export const formatNanos = (opsPerSecond: number): string => {
  const ns = 1e9 / opsPerSecond
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`
}

/**
 * Heap plus array buffers in use, after two garbage collections (`gc`, from `--expose-gc`): a single one leaves
 * some of what was just dropped counted in some runs.
 */
export const heapInUse = (gc: () => void): number => {
  gc()
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}
