/**
 * An asynchronous counterpart of `measure` for the suites that talk to real servers or run fibers: the cases
 * of a group run back to back in every round, in reverse order every other round, after one warm-up round
 * that is not counted. A case is timed either by the wall clock or by the process's CPU time (user + system,
 * from `process.cpuUsage()`). Results have the shape of `harness.ts`'s, so `ratioPerRound` applies to them.
 */
import { median, type Result, rounds as defaultRounds } from "./harness.js"

/** One measured case: `setup` and `teardown` are not timed; `run` is, and returns the number of operations. */
export interface TimedCase {
  readonly name: string
  readonly setup?: () => unknown
  readonly run: (state: any) => Promise<number> | number
  readonly teardown?: (state: any) => unknown
}

export type Clock = "wall" | "cpu"

/** Seconds elapsed since `start`, by the chosen clock. */
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
 * Runs `cases` for `rounds` rounds plus one warm-up round. No collection is forced between cases: a forced full
 * collection shrinks the young generation, and the case timed right after it then pays for regrowing it (up to
 * twice the time of 1,000 concurrent fibers here).
 */
export const measureTimed = async (
  cases: ReadonlyArray<TimedCase>,
  options: { readonly rounds?: number; readonly clock?: Clock } = {}
): Promise<Array<Result>> => {
  const n = options.rounds ?? defaultRounds
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

/** The median over rounds of `subject`'s time per operation minus `base`'s, in nanoseconds. */
export const differencePerRound = (subject: Result, base: Result): number =>
  median(subject.rounds.map((ops, i) => 1e9 / ops - 1e9 / base.rounds[i]!))

/** Nanoseconds as `µs` with two decimals (or `ns` below one microsecond), keeping the sign. */
export const formatDuration = (ns: number): string =>
  Math.abs(ns) >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`
