/**
 * The measuring loop of the side-by-side benchmark: `harness.measure`'s rounds (one warm-up round, the cases
 * back to back, in reverse order every other round), timing every run by the wall clock and by the process's
 * CPU time at once, then one more untimed pass per case that counts the Redis commands it sends.
 *
 * Commands are counted on the client side, from the diagnostics channels ioredis (`ioredis:command`) and
 * node-redis (`node-redis:command`, `node-redis:batch`) publish every command on, rather than from the
 * server's `INFO commandstats`: the server is shared with tests and other benchmarks, whose commands would be
 * counted too. Nothing subscribes during the timed rounds, so the libraries skip their tracing there.
 */
import { tracingChannel } from "node:diagnostics_channel"
import { median, type Result, rounds as defaultRounds } from "./harness.js"
import { loads, sleep } from "./peers-libraries.js"

/** One case: `setup` and `teardown` are not timed; `run` is, and returns the operations it did. */
export interface PeerCase<S = unknown> {
  readonly name: string
  readonly setup?: () => S | Promise<S>
  readonly run: (state: S) => Promise<number>
  readonly teardown?: (state: S) => unknown
}

/** What one case measured. Both `Result`s work with `harness.ratioPerRound` (throughputs per round). */
export interface Measured {
  readonly name: string
  /** Operations per second of wall time. */
  readonly wall: Result
  /** Operations per second of CPU time (user + system, `process.cpuUsage()`, collection included). */
  readonly cpu: Result
  /** Redis commands per operation, by command name (lower case), from the counting pass. */
  readonly commands: Readonly<Record<string, number>>
  /** Loader calls and keys loaded per operation, over the timed rounds. */
  readonly loaderCalls: number
  readonly keysLoaded: number
}

/** Lets pending callbacks and replies of the previous case land before the next one starts. */
const settle = () => sleep(20)

/** Counts the Redis commands sent by any client of this process while `f` runs (and just after). */
export const countCommands = async (f: () => Promise<unknown>): Promise<Map<string, number>> => {
  const counts = new Map<string, number>()
  const add = (name: unknown, n = 1) => {
    const key = String(name).toLowerCase()
    counts.set(key, (counts.get(key) ?? 0) + n)
  }
  const ioredis = tracingChannel("ioredis:command")
  const nodeRedis = tracingChannel("node-redis:command")
  const nodeRedisBatch = tracingChannel("node-redis:batch")
  const ignore = () => {}
  const subscriber = (start: (context: object) => void) => ({ start, end: ignore, asyncStart: ignore, asyncEnd: ignore, error: ignore })
  const onCommand = subscriber((context) => add((context as { command?: unknown }).command))
  // node-redis traces a pipeline's commands one by one, but a MULTI's only as a batch.
  const onBatch = subscriber((context) => {
    const batch = context as { batchMode?: unknown; batchSize?: unknown }
    if (batch.batchMode === "MULTI") add("multi+exec (commands inside)", Number(batch.batchSize) + 2)
  })
  ioredis.subscribe(onCommand)
  nodeRedis.subscribe(onCommand)
  nodeRedisBatch.subscribe(onBatch)
  try {
    await f()
    await settle()
  } finally {
    ioredis.unsubscribe(onCommand)
    nodeRedis.unsubscribe(onCommand)
    nodeRedisBatch.unsubscribe(onBatch)
  }
  return counts
}

/**
 * Runs `cases` for `rounds` rounds after one warm-up round, as `harness.measure` does, timing each run by both
 * clocks; then runs each case once more, untimed, counting its Redis commands.
 */
export const measureAll = async (
  cases: ReadonlyArray<PeerCase<any>>,
  options: { readonly rounds?: number } = {}
): Promise<Array<Measured>> => {
  const n = options.rounds ?? defaultRounds
  const wall = cases.map(() => [] as Array<number>)
  const cpu = cases.map(() => [] as Array<number>)
  const totals = cases.map(() => ({ ops: 0, calls: 0, keys: 0 }))
  for (let round = -1; round < n; round++) {
    const order = cases.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      const c = cases[i]!
      const state = await c.setup?.()
      await settle()
      const calls = loads.calls
      const keys = loads.keys
      const cpuStart = process.cpuUsage()
      const wallStart = performance.now()
      const ops = await c.run(state)
      const wallSeconds = (performance.now() - wallStart) / 1000
      const used = process.cpuUsage(cpuStart)
      await c.teardown?.(state)
      if (round < 0) continue
      wall[i]!.push(ops / Math.max(wallSeconds, 1e-9))
      cpu[i]!.push(ops / Math.max((used.user + used.system) / 1e6, 1e-9))
      const total = totals[i]!
      total.ops += ops
      total.calls += loads.calls - calls
      total.keys += loads.keys - keys
    }
  }
  const commands: Array<Record<string, number>> = []
  for (const c of cases) {
    const state = await c.setup?.()
    await settle()
    let ops = 0
    const counts = await countCommands(async () => {
      ops = await c.run(state)
    })
    await c.teardown?.(state)
    commands.push(Object.fromEntries([...counts].map(([name, count]) => [name, count / ops])))
  }
  const result = (name: string, samples: Array<number>): Result => ({ name, opsPerSecond: median(samples), rounds: samples })
  return cases.map((c, i) => ({
    name: c.name,
    wall: result(c.name, wall[i]!),
    cpu: result(c.name, cpu[i]!),
    commands: commands[i]!,
    loaderCalls: totals[i]!.calls / Math.max(totals[i]!.ops, 1),
    keysLoaded: totals[i]!.keys / Math.max(totals[i]!.ops, 1)
  }))
}

/** Runs `task(0 … count-1)` on `workers` async workers that take the next index as they finish one. */
export const runWorkers = async (workers: number, count: number, task: (i: number) => Promise<unknown>) => {
  let next = 0
  const worker = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(workers, count) }, worker))
}
