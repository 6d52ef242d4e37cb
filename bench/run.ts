/**
 * `npm run bench`: runs every benchmark side by side with its competitors and rewrites BENCHMARKS.md.
 * `BENCH_ROUNDS` sets the number of rounds (default 7); each figure is the median over rounds.
 */
import { writeFileSync } from "node:fs"
import { runEffectHit } from "./effect.js"
import { formatNanos, formatOps, rounds } from "./harness.js"
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
      const by = (name: string) => results.find((r) => r.name.startsWith(name))!.opsPerSecond
      const best = Math.max(by("lru-cache"), by("mnemonist"))
      return [workload, formatOps(by(ours)), formatOps(by("lru-cache")), formatOps(by("mnemonist")), `**${
        ratio(by(ours) / best)
      }**`]
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
const ourGet = effectHit.versusEffect[0]!.opsPerSecond
const effectGet = effectHit.versusEffect[1]!.opsPerSecond
const metricsOn = effectHit.metrics[0]!.opsPerSecond
const metricsOff = effectHit.metrics[1]!.opsPerSecond
sections.push(`## \`LruCache.get\` hit inside a fiber

One fiber reads 5e5 keys, uniformly from 1e4 held keys, with \`yield*\` in an \`Effect.gen\` loop (the loop is the
same for every case). effect ${versionOf("effect")}'s \`Cache\` is built with the same capacity and an infinite
time-to-live, and filled through its lookup. Target: ≥ 4× faster than effect's \`Cache.get\`.

${
  table(["case", "time per get", "speed-up"], [
    ["@rms/cache `LruCache.get`", formatNanos(ourGet), `**${ratio(ourGet / effectGet)}**`],
    ["effect `Cache.get`", formatNanos(effectGet), "1.00×"]
  ])
}

## Metrics on the hit path

The same \`LruCache.get\` loop with metrics on (the default) and with \`metrics: false\`. Target: ≤ 25 % slower on.

${
  table(["case", "time per get"], [["metrics on", formatNanos(metricsOn)], ["metrics off", formatNanos(metricsOff)]])
}

Metrics on cost **${((metricsOff / metricsOn - 1) * 100).toFixed(1)} %** per hit.
`)

const document = `# Benchmarks

Written by \`npm run bench\` (${new Date().toISOString().slice(0, 10)}). Every figure is the median of ${rounds}
rounds after one warm-up round; within a round the cases of a table run one after another in the same process,
so noise falls on all of them alike. Reproduce with \`npm ci && npm run bench\` (\`BENCH_ROUNDS=n\` for more rounds).

Machine: ${machine()}.

${sections.join("\n")}`

writeFileSync(new URL("../BENCHMARKS.md", import.meta.url), document)
log("wrote BENCHMARKS.md")
