/**
 * `npm run bench`: runs every benchmark side by side with its competitors and rewrites BENCHMARKS.md.
 * `BENCH_ROUNDS` sets the number of rounds (default 7); each figure is the median over rounds.
 */
import { writeFileSync } from "node:fs"
import { runEffectHit } from "./effect.js"
import { formatNanos, formatOps, type Result, ratioPerRound, rounds } from "./harness.js"
import { runLru, runLruMemory } from "./lru.js"
import { machine, ratio, table, versionOf } from "./report.js"

const sections: Array<string> = []
const log = (line: string) => console.log(line)

log("LRU structure …")
const lru = runLru()
const ours = "@rms/cache LruMap"
sections.push(`## LRU structure: \`LruMap\` against lru-cache ${versionOf("lru-cache")} and mnemonist ${
  versionOf("mnemonist")
} \`LRUCache\`

Capacity 1e5 over a space of 1e6 keys. *get-hit*: the cache holds 1e5 keys drawn from the space, and each get
asks for one of them uniformly at random (so nearly every hit moves an entry to the front). *set-with-eviction*:
2e6 sets of keys never seen, each evicting the least recent entry. *Zipf mix*: 2e6 gets of Zipf-distributed keys
(s = 0.99) on an empty cache, with a set after every miss. Integer keys are the ids themselves, string keys are
\`key:<id>\`. Target: ≥ 1.00× the faster competitor on each of the three workloads.

${
  table(
    ["workload", "LruMap", "lru-cache", "mnemonist", "LruMap ÷ faster competitor"],
    lru.map(({ results, workload }) => {
      const by = (name: string) => results.find((r) => r.name.startsWith(name))!
      const versus = ratioPerRound(by(ours), [by("lru-cache"), by("mnemonist")])
      const ops = (name: string) => formatOps(by(name).opsPerSecond)
      return [workload, ops(ours), ops("lru-cache"), ops("mnemonist"), `**${ratio(versus)}**`]
    })
  )
}
`)

log("LRU memory …")
const memory = runLruMemory()
sections.push(`## LRU memory

Heap plus array buffers per entry of a full LRU (1e5 integer keys, small-integer values), each measured in a
fresh child process; median of three.

${table(["structure", "bytes per entry"], memory.map((m) => [m.name, m.bytesPerEntry.toFixed(1)]))}
`)

log("LruCache.get in a fiber …")
const effectHit = runEffectHit()
const [ourGet, effectGet] = effectHit.versusEffect as [Result, Result]
const [metricsOn, metricsOff] = effectHit.metrics as [Result, Result]
sections.push(`## \`LruCache.get\` hit inside a fiber

One fiber reads 5e5 keys, uniformly from 1e4 held keys, with \`yield*\` in an \`Effect.gen\` loop (the loop is the
same for every case). effect ${versionOf("effect")}'s \`Cache\` is built with the same capacity and an infinite
time-to-live, and filled through its lookup. Target: ≥ 4× faster than effect's \`Cache.get\`.

${
  table(["case", "time per get", "speed-up"], [
    ["@rms/cache `LruCache.get`", formatNanos(ourGet.opsPerSecond), `**${ratio(ratioPerRound(ourGet, [effectGet]))}**`],
    ["effect `Cache.get`", formatNanos(effectGet.opsPerSecond), "1.00×"]
  ])
}

## Metrics on the hit path

The same \`LruCache.get\` loop with metrics on (the default) and with \`metrics: false\`. Target: ≤ 25 % slower on.

${
  table(["case", "time per get"], [
    ["metrics on", formatNanos(metricsOn.opsPerSecond)],
    ["metrics off", formatNanos(metricsOff.opsPerSecond)]
  ])
}

Metrics on cost **${((ratioPerRound(metricsOff, [metricsOn]) - 1) * 100).toFixed(1)} %** per hit (median over
rounds of the time ratio, on ÷ off).
`)

const document = `# Benchmarks

Written by \`npm run bench\` (${new Date().toISOString().slice(0, 10)}). Throughputs are medians of ${rounds} rounds
after one warm-up round. Within a round the cases of a table run back to back in one process (in reverse order
every other round), and each ratio is the median over rounds of that round's ratio, which cancels the slow drifts
of a shared 2-core machine. Reproduce with \`npm ci && npm run bench\` (\`BENCH_ROUNDS=n\` for more rounds).

Machine: ${machine()}.

${sections.join("\n")}`

writeFileSync(new URL("../BENCHMARKS.md", import.meta.url), document)
log("wrote BENCHMARKS.md")
