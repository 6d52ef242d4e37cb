/**
 * Freshness at expiry: one hot key read at a steady rate across many time-to-live windows, by a loader that
 * takes real time, through `LoadingCache` without early refresh, with early refresh (XFetch, β = 1) and with
 * stale-while-revalidate, and through bentocache with and without its grace period (`timeout: 0`, its
 * "serve stale, refresh in the background" setting). What it measures, per case: how many loads one
 * time-to-live window costs, how many reads waited on a load, and the latency of the reads around each expiry.
 *
 * `runFreshness()` returns the markdown section for BENCHMARKS.md (`bench/run.ts` appends it); run alone, it
 * prints it:
 *
 *   npx tsc -p tsconfig.bench.json && node --expose-gc .bench-tmp/bench/freshness.js
 *
 * (`FRESHNESS_ROUNDS=n` for more rounds than 2.) The measuring runs in a child process of its own
 * (`freshness.js --child <output file>`), so that no earlier section's heap or timers weigh on the latencies.
 */
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisDriver } from "bentocache/drivers/redis"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { deletePrefix, plainRedis, sleep } from "./peers-libraries.js"
import { machine, nodeArgs, table, versionOf } from "./report.js"
import { redisUrl } from "./services.js"

/** The workload's sizes, shared with the report. */
export const sizes = {
  /** Time-to-live of every value. */
  ttlMillis: 400,
  /** How long one load takes: a `setTimeout` of this many milliseconds. */
  loadMillis: 20,
  /** Readers of the hot key, each reading, then pausing, in a loop. */
  readers: 8,
  /** Each reader's pause between two reads (staggered start), so ~1 read per millisecond in all. */
  pauseMillis: 8,
  /** How long one timed run reads: 5 time-to-live windows. */
  runMillis: 2_000,
  /** The warm-up round's runs: one expiry each. */
  warmupMillis: 450,
  /** A read starting within this of an expiry is "around expiry". */
  aroundMillis: 50,
  /** A read slower than this is counted as slow, whatever made it slow. */
  slowMillis: 5,
  /** The grace period of the stale-while-revalidate cases (ours and bentocache's). */
  graceMillis: 60_000,
  rounds: Number(process.env.FRESHNESS_ROUNDS ?? 2)
} as const

// ---------------------------------------------------------------------------------------------------------
// Recording

/**
 * One run's record: every load (when it started and when its value existed) and every read (when it started,
 * how long it took, which load's value it got). Values are load numbers, so a read knows its load.
 */
class Recorder {
  readonly loadStart: Array<number> = []
  readonly loadEnd: Array<number> = []
  readonly readStart: Array<number> = []
  readonly readMillis: Array<number> = []
  readonly readValue: Array<number> = []

  /** The loader every library calls: the next load number, after `loadMillis` on a timer. */
  readonly load = async (): Promise<number> => {
    const g = this.loadStart.length
    this.loadStart.push(performance.now())
    this.loadEnd.push(Infinity)
    await sleep(sizes.loadMillis)
    this.loadEnd[g] = performance.now()
    return g
  }

  read(start: number, value: number): void {
    this.readMillis.push(performance.now() - start)
    this.readStart.push(start)
    this.readValue.push(value)
  }
}

/** What one run measured, the raw material of a row (summed or pooled over rounds). */
interface RunFigures {
  readonly reads: number
  readonly seconds: number
  /** Loads after the first, and the time between the first load's start and the last's. */
  readonly intervals: number
  readonly intervalMillis: number
  /** Expiries passed during the run (loads' values whose time-to-live ended while it read). */
  readonly expiries: number
  /** Reads that started before the load whose value they got had finished: they waited on it. */
  readonly waited: number
  readonly slow: number
  /** The longest read among those that waited on a load (ms; 0 when none did). */
  readonly longestWait: number
  /** Latencies (ms) of the reads that started within `aroundMillis` of an expiry. */
  readonly around: Array<number>
  /** Latencies (ms) of every read. */
  readonly all: Array<number>
  /** For each load after the first, when it started, less the expiry of the value it replaces (ms). */
  readonly leads: Array<number>
  /** Ours only: background refreshes started and stale answers. */
  readonly refreshes?: number
  readonly staleServed?: number
}

const figuresOf = (rec: Recorder, from: number, until: number): RunFigures => {
  const { aroundMillis, slowMillis, ttlMillis } = sizes
  const expiries = rec.loadEnd.map((end) => end + ttlMillis)
  let waited = 0
  let slow = 0
  let longestWait = 0
  const around: Array<number> = []
  for (let i = 0; i < rec.readStart.length; i++) {
    const start = rec.readStart[i]!
    const millis = rec.readMillis[i]!
    if (start < rec.loadEnd[rec.readValue[i]!]!) {
      waited++
      longestWait = Math.max(longestWait, millis)
    }
    if (millis > slowMillis) slow++
    if (expiries.some((e) => Math.abs(start - e) <= aroundMillis)) around.push(millis)
  }
  const loads = rec.loadStart.length
  const leads = rec.loadStart.slice(1).map((start, g) => start - expiries[g]!)
  return {
    reads: rec.readStart.length,
    seconds: (until - from) / 1000,
    intervals: loads - 1,
    intervalMillis: rec.loadStart[loads - 1]! - rec.loadStart[0]!,
    expiries: expiries.filter((e) => e >= from && e < until).length,
    waited,
    slow,
    longestWait,
    around,
    all: [...rec.readMillis],
    leads
  }
}

// ---------------------------------------------------------------------------------------------------------
// The cases

type Style = "fibers" | "runPromise per call" | "async/await"

interface Subject {
  /** Reads the hot key through each reader until `deadline`; resolves when every reader is done. */
  readonly readAll: (rec: Recorder, key: string, deadline: number) => Promise<void>
  /** One read, before the clock starts: the first load. */
  readonly warm: (key: string) => Promise<number>
  readonly stats?: () => Promise<{ readonly refreshesStarted: number; readonly staleServed: number }>
  readonly close: () => Promise<void>
}

interface FreshnessCase {
  readonly name: string
  readonly table: "ours" | "versus"
  readonly style: Style
  readonly build: (rec: Recorder, tag: string) => Promise<Subject>
}

/** Every reader starts `pauseMillis / readers` after the previous one, so the reads spread evenly. */
const stagger = (i: number) => (i * sizes.pauseMillis) / sizes.readers

const promiseReaders = (get: (key: string) => Promise<number>) =>
async (rec: Recorder, key: string, deadline: number): Promise<void> => {
  await Promise.all(Array.from({ length: sizes.readers }, async (_, i) => {
    await sleep(stagger(i))
    while (performance.now() < deadline) {
      const start = performance.now()
      rec.read(start, await get(key))
      await sleep(sizes.pauseMillis)
    }
  }))
}

/** The process's Redis connection for our L2 cases, built once, as an application keeps it. */
let redisRuntime: ManagedRuntime.ManagedRuntime<RedisClient.RedisClient, RedisClient.RedisConnectionError> | undefined
const runtimeOf = () => (redisRuntime ??= ManagedRuntime.make(RedisClient.layer({ url: redisUrl })))

/** The Redis prefix of this child's keys (set by the parent): everything under it is deleted at the end. */
let runPrefix = "freshness"

/**
 * Ours: `LoadingCache.make` over an `LruCache` L1 (and, with `l2`, a `RedisCache` L2 of `entrySchema(Schema.Number)`
 * behind a timeout and a breaker, as `TaskRepository` configures its L2), a `lookup` that calls the loader.
 */
const ours = (
  freshness: Omit<LoadingCache.FreshnessOptions<string, number>, "timeToLive">,
  style: "fibers" | "runPromise per call",
  l2: boolean
) =>
async (rec: Recorder, tag: string): Promise<Subject> => {
  const name = `${runPrefix}-${tag}`
  const scope = Effect.runSync(Scope.make())
  const build = Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 1_000, name: `${name}-l1` })
    const tiers: Array<LoadingCache.Options<string, number, never, never>["tiers"][number]> = [l1]
    if (l2) {
      const cache = yield* RedisCache.make<string, LoadingCache.Entry<number>, LoadingCache.EntryEncoded<number>>({
        namespace: name,
        schema: LoadingCache.entrySchema(Schema.Number),
        name: `${name}-l2`
      })
      tiers.push({ cache, timeout: "250 millis", breaker: { failures: 5, cooldown: "5 seconds" } })
    }
    return yield* LoadingCache.make<string, number>({
      name,
      tiers,
      lookup: () => Effect.map(Effect.promise(rec.load), Option.some),
      timeToLive: Duration.millis(sizes.ttlMillis),
      ...freshness
    })
  })
  const run = <A, E>(effect: Effect.Effect<A, E, RedisClient.RedisClient>): Promise<A> =>
    l2 ? runtimeOf().runPromise(effect) : Effect.runPromise(effect as Effect.Effect<A, E>)
  const cache = await run(Scope.extend(build, scope))
  const get = (key: string) => Effect.orDie(cache.get(key))
  const fiberReaders = (key: string, deadline: number) =>
    Effect.forEach(
      Array.from({ length: sizes.readers }, (_, i) => i),
      (i) =>
        Effect.gen(function*() {
          yield* Effect.sleep(Duration.millis(stagger(i)))
          while (performance.now() < deadline) {
            const start = performance.now()
            rec.read(start, yield* get(key))
            yield* Effect.sleep(Duration.millis(sizes.pauseMillis))
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
  return {
    readAll: style === "fibers"
      ? (_rec, key, deadline) => run(fiberReaders(key, deadline))
      : promiseReaders((key) => run(get(key))),
    warm: (key) => run(get(key)),
    stats: () => run(cache.freshness),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/**
 * bentocache: `bentostore().useL1Layer(memoryDriver(…)).useL2Layer(redisDriver(…))` as in the side-by-side
 * benchmark, `getOrSet({ key, factory })`; with `grace`, `timeout: 0` (its default, spelled out): a stale value
 * is answered at once and the factory runs in the background.
 */
const bento = (grace: boolean) => async (rec: Recorder, tag: string): Promise<Subject> => {
  const cache = new BentoCache({
    default: "multitier",
    prefix: `${runPrefix}-${tag}`,
    ttl: sizes.ttlMillis,
    grace: grace ? sizes.graceMillis : false,
    timeout: 0,
    stores: {
      multitier: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 1_000 }))
        .useL2Layer(redisDriver({ connection: { host: "127.0.0.1", port: 6379 } }))
    }
  })
  const get = (key: string) => cache.getOrSet({ key, factory: () => rec.load() })
  return { readAll: promiseReaders(get), warm: get, close: () => cache.disconnectAll() }
}

const swr = { grace: Duration.millis(sizes.graceMillis), staleWhileRevalidate: true } as const

export const cases: ReadonlyArray<FreshnessCase> = [
  { name: "time-to-live only", table: "ours", style: "fibers", build: ours({}, "fibers", false) },
  { name: "time-to-live only", table: "ours", style: "runPromise per call", build: ours({}, "runPromise per call", false) },
  { name: "`earlyRefresh: true` (β = 1)", table: "ours", style: "fibers", build: ours({ earlyRefresh: true }, "fibers", false) },
  {
    name: "`earlyRefresh: true` (β = 1)",
    table: "ours",
    style: "runPromise per call",
    build: ours({ earlyRefresh: true }, "runPromise per call", false)
  },
  { name: "`grace` + `staleWhileRevalidate`", table: "ours", style: "fibers", build: ours(swr, "fibers", false) },
  {
    name: "`grace` + `staleWhileRevalidate`",
    table: "ours",
    style: "runPromise per call",
    build: ours(swr, "runPromise per call", false)
  },
  { name: "@rms/cache, time-to-live only", table: "versus", style: "runPromise per call", build: ours({}, "runPromise per call", true) },
  { name: "@rms/cache, `grace` + `staleWhileRevalidate`", table: "versus", style: "fibers", build: ours(swr, "fibers", true) },
  {
    name: "@rms/cache, `grace` + `staleWhileRevalidate`",
    table: "versus",
    style: "runPromise per call",
    build: ours(swr, "runPromise per call", true)
  },
  { name: "bentocache, no grace (`grace: false`)", table: "versus", style: "async/await", build: bento(false) },
  { name: "bentocache, `grace` + `timeout: 0`", table: "versus", style: "async/await", build: bento(true) }
]

/** One run of one case: a fresh cache, one warm-up read (the first load), then the readers for `millis`. */
const runOnce = async (c: FreshnessCase, tag: string, millis: number): Promise<RunFigures> => {
  const rec = new Recorder()
  const subject = await c.build(rec, tag)
  try {
    const key = "hot"
    globalThis.gc?.()
    await subject.warm(key)
    const from = performance.now()
    const until = from + millis
    await subject.readAll(rec, key, until)
    // Background refreshes still running land before the cache closes.
    await sleep(sizes.loadMillis * 2)
    const stats = await subject.stats?.()
    const figures = figuresOf(rec, from, until)
    return stats === undefined ? figures : { ...figures, refreshes: stats.refreshesStarted, staleServed: stats.staleServed }
  } finally {
    await subject.close()
  }
}

/** What the child writes: per case, its runs' figures. */
type Output = ReadonlyArray<{ readonly name: string; readonly table: string; readonly style: Style; readonly runs: ReadonlyArray<RunFigures> }>

const progress = (line: string) => console.error(line)

/** The child: one warm-up round of short runs, then `rounds` rounds, alternating the order of the cases. */
const measureAll = async (): Promise<Output> => {
  const runs = cases.map(() => [] as Array<RunFigures>)
  for (let round = -1; round < sizes.rounds; round++) {
    const order = cases.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      const figures = await runOnce(cases[i]!, `c${i}r${round + 1}`, round < 0 ? sizes.warmupMillis : sizes.runMillis)
      if (round >= 0) runs[i]!.push(figures)
    }
    progress(`freshness: round ${round < 0 ? "warm-up" : round + 1} done`)
  }
  return cases.map((c, i) => ({ name: c.name, table: c.table, style: c.style, runs: runs[i]! }))
}

// ---------------------------------------------------------------------------------------------------------
// Report

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!

const ms = (x: number): string => Number.isNaN(x) ? "—" : x < 1 ? `${(x * 1000).toFixed(0)} µs` : `${x.toFixed(1)} ms`

const signedMs = (x: number): string => Number.isNaN(x) ? "—" : `${x < 0 ? "−" : "+"}${ms(Math.abs(x))}`

const sorted = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

/** The figures of a row, pooled over its runs. */
const pooled = (c: Output[number]) => {
  const sum = (f: (r: RunFigures) => number) => c.runs.reduce((s, r) => s + f(r), 0)
  return {
    reads: sum((r) => r.reads),
    expiries: sum((r) => r.expiries),
    waited: sum((r) => r.waited),
    slow: sum((r) => r.slow),
    longestWait: Math.max(...c.runs.map((r) => r.longestWait)),
    // Loads per window: the time-to-live over the mean time between two loads (no rounding to whole loads).
    loadsPerWindow: sizes.ttlMillis / (sum((r) => r.intervalMillis) / sum((r) => r.intervals)),
    loads: sum((r) => r.intervals),
    refreshes: c.runs.every((r) => r.refreshes !== undefined) ? sum((r) => r.refreshes!) : undefined,
    around: sorted(c.runs.flatMap((r) => r.around)),
    all: sorted(c.runs.flatMap((r) => r.all)),
    leads: sorted(c.runs.flatMap((r) => r.leads))
  }
}

const rowOf = (c: Output[number]): Array<string> => {
  const p = pooled(c)
  const waits = p.waited === 0
    ? "**0**"
    : `**${p.waited.toLocaleString("en-US")}** (${(p.waited / Math.max(1, p.expiries)).toFixed(1)} per expiry, the longest ${
      ms(p.longestWait)
    })`
  return [
    c.name,
    c.style,
    p.loadsPerWindow.toFixed(2),
    signedMs(percentile(p.leads, 0.5)),
    waits,
    `${p.slow} of ${p.reads.toLocaleString("en-US")}`,
    `${ms(percentile(p.around, 0.5))} / ${ms(percentile(p.around, 0.99))} / ${ms(p.around.at(-1) ?? NaN)}`,
    `${ms(percentile(p.all, 0.99))} / ${ms(p.all.at(-1) ?? NaN)}`
  ]
}

const header = [
  "case",
  "called from",
  "loads per time-to-live window",
  "next load starts (median, from the expiry it replaces)",
  "reads that waited on a load",
  `reads > ${sizes.slowMillis} ms`,
  `reads within ±${sizes.aroundMillis} ms of an expiry: p50 / p99 / max`,
  "all reads: p99 / max"
]

export const report = (output: Output): string => {
  const { aroundMillis, graceMillis, loadMillis, pauseMillis, readers, rounds, runMillis, slowMillis, ttlMillis } = sizes
  const ours = output.filter((c) => c.table === "ours")
  const versus = output.filter((c) => c.table === "versus")
  const expiries = pooled(output[0]!).expiries
  // Our rows with early refresh or stale-while-revalidate: the target is no read waiting on a load.
  const fresh = output.filter((c) => c.name.includes("earlyRefresh") || (c.name.includes("staleWhileRevalidate") && !c.name.startsWith("bento")))
  const waiting = fresh.filter((c) => pooled(c).waited > 0)
  const verdict = waiting.length === 0
    ? `No read of ours waited on a load with early refresh or stale-while-revalidate (${fresh.length} rows): the target (0) is met.`
    : `**Reads of ours waited on a load with ${waiting.map((c) => `${c.name} (${c.style}): ${pooled(c).waited}`).join("; ")}: the target (0) is missed.**`
  // Every load of those rows should be a background refresh: `refreshesStarted` of `cache.freshness` counts them.
  const mismatched = fresh.filter((c) => {
    const p = pooled(c)
    return p.refreshes !== undefined && p.refreshes !== p.loads
  })
  const refreshes = mismatched.length === 0
    ? "Each load after the first in those rows was a background refresh (the `refreshesStarted` counter of `cache.freshness` equals the loads)."
    : `**Background refreshes and loads differ: ${
      mismatched.map((c) => `${c.name} (${c.style}): ${pooled(c).refreshes} refreshes for ${pooled(c).loads} loads`).join("; ")
    }.**`
  const early = ours.filter((c) => c.name.includes("earlyRefresh")).map((c) => pooled(c))
  // XFetch's expected lead at one read a millisecond (a Gumbel mean), less the load itself.
  const shortening = loadMillis * (Math.log(loadMillis) + 0.5772 - 1)
  const bentoWaits = output.filter((c) => c.name.startsWith("bentocache, `grace`")).map((c) => pooled(c).waited).join(", ") || "—"
  const earlyLeads = early.map((p) => `${(-percentile(p.leads, 0.5)).toFixed(0)} ms`).join(" and ")
  return `## Freshness at expiry: early refresh and stale-while-revalidate

One hot key, read by ${readers} readers, each reading it then pausing ${pauseMillis} ms, in a loop (starts staggered: about one
read a millisecond in all), for ${runMillis / 1000} s per run, that is ${runMillis / ttlMillis} time-to-live windows of ${ttlMillis} ms. The loader takes ${loadMillis} ms
of real time (a \`setTimeout\`) and answers the number of the load, so every read knows which load its value came
from. A read **waited on a load** when it started before the load whose value it got had finished: it was
answered by the load rather than by an entry (a stale entry answered at once does not count, however slow).
An expiry is a load's end plus the time-to-live; "next load starts" is when the following load started, from
that expiry (negative: before it). **Loads per window** is the time-to-live over the mean time between two
loads: 1.00 is one load per window; a load at each expiry comes out a little under (each value lives its
time-to-live plus the ${loadMillis} ms of the load that follows). The latencies pool the reads that started within ±${aroundMillis} ms
of an expiry (${expiries} expiries per row over the rounds), and all reads; the reads over ${slowMillis} ms, whatever
made them slow (a collection pause of a busy 2-core machine as well), are counted beside. Each run builds a
fresh cache and reads it once before the clock starts (the first load); ${rounds} rounds follow a warm-up round
of short runs, with the cases in reverse order every other round, all in one child process; counts and
latencies are pooled over the rounds. Reproduce alone with
\`npx tsc -p tsconfig.bench.json && node --expose-gc .bench-tmp/bench/freshness.js\` (\`FRESHNESS_ROUNDS=n\` for more rounds).

**@rms/cache, \`LruCache\` L1 only.** \`LoadingCache.make\` with a \`lookup\` and \`timeToLive: ${ttlMillis} ms\`: alone, with
\`earlyRefresh: true\` (XFetch, β = 1: a read of a fresh entry refreshes it in the background when
\`now − δ·β·ln(rand) ≥ expiry\`, δ the measured load time), and with \`grace\` (${graceMillis / 1000} s) + \`staleWhileRevalidate: true\`.
*fibers*: the readers are fibers of one \`Effect.runPromise\`, each a loop of \`yield* cache.get(key)\` and \`Effect.sleep\`;
*runPromise per call*: async loops awaiting \`Effect.runPromise(cache.get(key))\` and a \`setTimeout\`. Target: no read
waits on a load with early refresh or stale-while-revalidate.

${table(header, ours.map(rowOf))}

**Against bentocache ${versionOf("bentocache")}, L1 in memory and L2 in Redis**, both built as in the side-by-side section, with
this time-to-live: ours with a \`RedisCache\` L2 of \`LoadingCache.entrySchema(Schema.Number)\` behind a 250 ms timeout and
a breaker; bentocache with \`bentostore().useL1Layer(memoryDriver(…)).useL2Layer(redisDriver(…))\` and
\`getOrSet({ key, factory })\`, once without grace (its stampede protection: one factory runs, the other readers
wait for it) and once with \`grace\` (${graceMillis / 1000} s) and \`timeout: 0\`: the soft timeout of zero its documentation
gives for "return the graced value at once and run the factory in the background" (its default, spelled out).
The same readers; bentocache is called from async functions, ours both ways.

${table(header, versus.map(rowOf))}

${verdict} ${refreshes}

What the rows show. Without early refresh or grace, every reader that comes during the load at expiry waits
for it (about one per reader, for the whole ${loadMillis} ms), ours and bentocache's alike. With stale-while-revalidate
the read that finds the entry stale answers with it and starts the refresh, and the others keep getting the
stale value until the refresh lands. What remains of the expiry in our rows is that one read per expiry paying
for starting the refresh (the fiber, the batch, the call of the loader: a path that runs once a window and so
stays cold in the JIT): with one such read per ${Math.round(2 * aroundMillis)} ms around each expiry, it is the p99 there. bentocache's stale
reads each pay about a millisecond while its factory runs (with \`timeout: 0\` a reader that finds the key
locked gives up on the lock through a timer), and a read whose lock attempt spans the end of the load gets the
new value instead, which counts it as waiting, for less than that millisecond (${bentoWaits} such reads here). Early
refresh keeps every read on a fresh entry, at the price of loads: XFetch fires when \`−δ·β·ln(rand)\` exceeds
the time left, so at r reads a millisecond the first read to draw it comes on average δ·(ln(r·δ) + 0.58) before
expiry, ≈ ${(shortening + loadMillis).toFixed(0)} ms here with δ = ${loadMillis} ms (measured, median of
each row: ${earlyLeads || "—"}, a few expiries each, so it moves from run to run), and each window is shortened by that less the load's own ${loadMillis} ms, ≈ ${shortening.toFixed(0)} ms: ${
    ((shortening / (ttlMillis - shortening)) * 100).toFixed(0)
  } % more loads than windows with δ
at ${((loadMillis / ttlMillis) * 100).toFixed(0)} % of the time-to-live. The extra loads shrink as the time-to-live grows against the load time, and grow
only logarithmically with the read rate.
`
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

/** Runs the measuring child and returns the markdown section. */
export const runFreshness = async (): Promise<string> => {
  const run = `freshness-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const directory = mkdtempSync(join(tmpdir(), "freshness-"))
  const file = join(directory, "freshness.json")
  const start = performance.now()
  try {
    await new Promise<void>((resolve, reject) => {
      const proc = spawn(process.execPath, [...nodeArgs("freshness"), "--child", run, file], {
        stdio: ["ignore", process.stderr, "inherit"]
      })
      proc.on("error", reject)
      proc.on("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`freshness child exited with ${code ?? signal}`))))
    })
    progress(`freshness: done in ${((performance.now() - start) / 1000).toFixed(0)} s`)
    return report(JSON.parse(readFileSync(file, "utf8")) as Output)
  } finally {
    rmSync(directory, { recursive: true, force: true })
    const redis = await plainRedis()
    try {
      await deletePrefix(redis, run)
    } finally {
      await redis.quit()
    }
  }
}

const child = async (prefix: string, target: string): Promise<void> => {
  runPrefix = prefix
  try {
    writeFileSync(target, JSON.stringify(await measureAll()))
  } finally {
    await redisRuntime?.dispose()
    const redis = await plainRedis()
    try {
      await deletePrefix(redis, prefix)
    } finally {
      await redis.quit()
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2)
  if (args[0] === "--child") {
    await child(args[1]!, args[2]!)
    // bentocache's and ioredis's handles may keep the loop alive a while: the figures are written.
    process.exit(0)
  } else {
    const markdown = await runFreshness()
    console.log(`# Freshness benchmark

Machine: ${machine()}.

${markdown}`)
  }
}
