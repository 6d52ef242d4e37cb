/**
 * `Prometheus.render` of each Effect metric type, with the exact text expected for small cases (grouping,
 * sorting, escaping, sanitizing, the mixed-type family), each text also read back by an independent parser
 * (parse-prometheus-text-format); and `Prometheus.text` of a program holding every kind of cache: every metric
 * the README's "### Metrics" section names is a family of the scrape, of the right type.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricHook from "effect/MetricHook"
import * as MetricKey from "effect/MetricKey"
import * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import { readFileSync } from "node:fs"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as LoadingCache from "../src/LoadingCache.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as Prometheus from "../src/Prometheus.js"
import * as Scrape from "./support/prometheusText.js"
import { settle } from "./support/turns.js"

/** A metric and its state, outside any registry. */
const pair = MetricPair.unsafeMake

/** Lines of text, each ending with a newline. */
const lines = (...text: ReadonlyArray<string>) => text.map((line) => `${line}\n`).join("")

describe("Prometheus.render", () => {
  it("renders nothing for no metrics", () => {
    expect(Prometheus.render([])).toBe("")
  })

  it("renders counters (bigint too), one family per name, its series sorted by labels", () => {
    const requests = MetricKey.counter("http_requests", { description: "Requests served." })
    const text = Prometheus.render([
      pair(requests.pipe(MetricKey.tagged("route", "/b")), MetricState.counter(2)),
      pair(MetricKey.counter("big", { bigint: true }), MetricState.counter(BigInt(2) ** BigInt(70))),
      pair(requests.pipe(MetricKey.tagged("route", "/a")), MetricState.counter(5))
    ])
    expect(text).toBe(lines(
      "# HELP big big",
      "# TYPE big counter",
      "big 1180591620717411303424",
      "# HELP http_requests Requests served.",
      "# TYPE http_requests counter",
      `http_requests{route="/a"} 5`,
      `http_requests{route="/b"} 2`
    ))
    const parsed = Scrape.parse(text)
    expect(parsed.map((family) => [family.name, family.type, family.help])).toStrictEqual([
      ["big", "COUNTER", "big"],
      ["http_requests", "COUNTER", "Requests served."]
    ])
    expect(parsed[1]!.metrics).toStrictEqual([
      { labels: { route: "/a" }, value: "5" },
      { labels: { route: "/b" }, value: "2" }
    ])
  })

  it("renders gauges: fractions, negatives, bigints, NaN and infinities", () => {
    const text = Prometheus.render([
      pair(MetricKey.gauge("temperature").pipe(MetricKey.tagged("room", "b")), MetricState.gauge(-3)),
      pair(MetricKey.gauge("temperature").pipe(MetricKey.tagged("room", "a")), MetricState.gauge(21.5)),
      pair(MetricKey.gauge("bytes", { bigint: true }), MetricState.gauge(BigInt("9007199254740993"))),
      pair(MetricKey.gauge("ratio").pipe(MetricKey.tagged("of", "nothing")), MetricState.gauge(Number.NaN)),
      pair(MetricKey.gauge("ratio").pipe(MetricKey.tagged("of", "up")), MetricState.gauge(Number.POSITIVE_INFINITY)),
      pair(MetricKey.gauge("ratio").pipe(MetricKey.tagged("of", "down")), MetricState.gauge(Number.NEGATIVE_INFINITY))
    ])
    expect(text).toBe(lines(
      "# HELP bytes bytes",
      "# TYPE bytes gauge",
      "bytes 9007199254740993",
      "# HELP ratio ratio",
      "# TYPE ratio gauge",
      `ratio{of="down"} -Inf`,
      `ratio{of="nothing"} NaN`,
      `ratio{of="up"} +Inf`,
      "# HELP temperature temperature",
      "# TYPE temperature gauge",
      `temperature{room="a"} 21.5`,
      `temperature{room="b"} -3`
    ))
    expect(Scrape.parse(text).map((family) => family.type)).toStrictEqual(["GAUGE", "GAUGE", "GAUGE"])
  })

  it("renders a histogram's buckets as recorded (cumulative, ending with +Inf), its sum and count", () => {
    const key = MetricKey.histogram("latency_ms", MetricBoundaries.fromIterable([1, 5]), "Latency.").pipe(
      MetricKey.tagged("op", "get")
    )
    const hook = MetricHook.histogram(key)
    for (const millis of [0.5, 3, 3, 7]) hook.update(millis)
    const text = Prometheus.render([pair(key, hook.get())])
    expect(text).toBe(lines(
      "# HELP latency_ms Latency.",
      "# TYPE latency_ms histogram",
      `latency_ms_bucket{op="get",le="1"} 1`,
      `latency_ms_bucket{op="get",le="5"} 3`,
      `latency_ms_bucket{op="get",le="+Inf"} 4`,
      `latency_ms_sum{op="get"} 13.5`,
      `latency_ms_count{op="get"} 4`
    ))
    expect(Scrape.parse(text)[0]!.type).toBe("HISTOGRAM")
    expect(Scrape.histogramSeries(text, "latency_ms")).toStrictEqual([
      { labels: { op: "get" }, buckets: [["1", 1], ["5", 3], ["+Inf", 4]], sum: 13.5, count: 4 }
    ])
  })

  it("adds the +Inf bucket to a histogram state without one, and leaves out a label named le", () => {
    const key = MetricKey.histogram("size", MetricBoundaries.fromIterable([10])).pipe(MetricKey.tagged("le", "mine"))
    const state = MetricState.histogram({ buckets: [[10, 1]], count: 2, min: 4, max: 20, sum: 24 })
    expect(Prometheus.render([pair(key, state)])).toBe(lines(
      "# HELP size size",
      "# TYPE size histogram",
      `size_bucket{le="10"} 1`,
      `size_bucket{le="+Inf"} 2`,
      "size_sum 24",
      "size_count 2"
    ))
  })

  it("renders a summary's quantiles (NaN without observations), sum and count", () => {
    const key = MetricKey.summary({
      name: "rpc_ms",
      maxAge: "1 minute",
      maxSize: 100,
      error: 0.01,
      quantiles: [0.5, 0.99],
      description: "RPC time."
    }).pipe(MetricKey.tagged("service", "pricing"))
    const state = MetricState.summary({
      error: 0.01,
      quantiles: [[0.5, Option.some(2)], [0.99, Option.none()]],
      count: 3,
      min: 1,
      max: 3,
      sum: 6
    })
    const text = Prometheus.render([pair(key, state)])
    expect(text).toBe(lines(
      "# HELP rpc_ms RPC time.",
      "# TYPE rpc_ms summary",
      `rpc_ms{service="pricing",quantile="0.5"} 2`,
      `rpc_ms{service="pricing",quantile="0.99"} NaN`,
      `rpc_ms_sum{service="pricing"} 6`,
      `rpc_ms_count{service="pricing"} 3`
    ))
    expect(Scrape.parse(text)[0]!.type).toBe("SUMMARY")
  })

  it("renders a frequency as a counter, one sample per occurrence with the occurrence in the key label", () => {
    const key = MetricKey.frequency("status", { description: "Statuses answered." }).pipe(
      MetricKey.tagged("route", "/a")
    )
    const text = Prometheus.render([pair(key, MetricState.frequency(new Map([["500", 1], ["200", 7]])))])
    expect(text).toBe(lines(
      "# HELP status Statuses answered.",
      "# TYPE status counter",
      `status{route="/a",key="200"} 7`,
      `status{route="/a",key="500"} 1`
    ))
    expect(Scrape.parse(text)[0]!.metrics).toStrictEqual([
      { labels: { route: "/a", key: "200" }, value: "7" },
      { labels: { route: "/a", key: "500" }, value: "1" }
    ])
  })

  it("escapes label values and help text, and sanitizes names and label names", () => {
    const value = `C:\\dir "quoted"\nnext`
    const key = MetricKey.counter("http.server-requests", { description: "Requests\\responses\nper route." }).pipe(
      MetricKey.tagged("path.name", value),
      MetricKey.tagged("x:y", "colon"),
      MetricKey.tagged("9lives", "digit")
    )
    const text = Prometheus.render([
      pair(key, MetricState.counter(1)),
      pair(MetricKey.gauge("2xx"), MetricState.gauge(4))
    ])
    expect(text).toBe(lines(
      "# HELP _2xx 2xx",
      "# TYPE _2xx gauge",
      "_2xx 4",
      "# HELP http_server_requests Requests\\\\responses\\nper route.",
      "# TYPE http_server_requests counter",
      `http_server_requests{path_name="C:\\\\dir \\"quoted\\"\\nnext",x_y="colon",_9lives="digit"} 1`
    ))
    const [, requests] = Scrape.parse(text)
    expect(requests!.help).toBe("Requests\\responses\nper route.")
    expect(requests!.metrics[0]!.labels).toStrictEqual({ path_name: value, x_y: "colon", _9lives: "digit" })
  })

  it("keeps the first type of a family whose name comes with two, and the first of a repeated series", () => {
    const text = Prometheus.render([
      pair(MetricKey.counter("jobs").pipe(MetricKey.tagged("queue", "b")), MetricState.counter(1)),
      pair(MetricKey.gauge("jobs").pipe(MetricKey.tagged("queue", "a")), MetricState.gauge(5)),
      pair(MetricKey.counter("jobs").pipe(MetricKey.tagged("queue", "a")), MetricState.counter(2)),
      // Same name, type and labels, other boundaries: two Effect metrics, one Prometheus series.
      pair(
        MetricKey.histogram("wait", MetricBoundaries.fromIterable([1])),
        MetricState.histogram({ buckets: [[1, 1], [Number.POSITIVE_INFINITY, 1]], count: 1, min: 1, max: 1, sum: 1 })
      ),
      pair(
        MetricKey.histogram("wait", MetricBoundaries.fromIterable([2])),
        MetricState.histogram({ buckets: [[2, 0], [Number.POSITIVE_INFINITY, 9]], count: 9, min: 3, max: 3, sum: 27 })
      )
    ])
    expect(text).toBe(lines(
      "# HELP jobs jobs",
      "# TYPE jobs counter",
      `jobs{queue="a"} 2`,
      `jobs{queue="b"} 1`,
      "# HELP wait wait",
      "# TYPE wait histogram",
      `wait_bucket{le="1"} 1`,
      `wait_bucket{le="+Inf"} 1`,
      "wait_sum 1",
      "wait_count 1"
    ))
    expect([...Scrape.families(text).keys()]).toStrictEqual(["jobs", "wait"])
    // The other order: the gauge comes first and stays.
    expect(Prometheus.render([
      pair(MetricKey.gauge("jobs"), MetricState.gauge(5)),
      pair(MetricKey.counter("jobs").pipe(MetricKey.tagged("queue", "a")), MetricState.counter(2))
    ])).toBe(lines("# HELP jobs jobs", "# TYPE jobs gauge", "jobs 5"))
  })

  it("states the content type of the 0.0.4 text format", () => {
    expect(Prometheus.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
  })
})

/** The `cache_*` / `task_store_*` names backquoted in the README's "### Metrics" section. */
const documentedMetrics = (): ReadonlyArray<string> => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
  const section = /^### Metrics\n([^]*?)(?=^#{1,3} )/m.exec(readme)?.[1]
  expect(section, "README.md has a ### Metrics section").toBeDefined()
  return [...new Set([...section!.matchAll(/`((?:cache|task_store)_[a-z0-9_]+)`/g)].map((match) => match[1]!))]
}

/** The Prometheus type a documented metric must have: its unit says histogram, and the gauges are known. */
const expectedType = (name: string) =>
  name.endsWith("_ms") ? "HISTOGRAM" : ["cache_size", "cache_breaker_open"].includes(name) ? "GAUGE" : "COUNTER"

describe("Prometheus.text", () => {
  it.scoped("lists every metric the README documents, read back by the parser with its type", () =>
    Effect.gen(function*() {
      const name = `prom-${Math.random().toString(36).slice(2, 8)}`

      const lru = yield* LruCache.make<string, number>({ capacity: 2, name: `${name}-lru` })
      yield* lru.set("a", 1)
      yield* lru.get("a")
      yield* Effect.either(lru.get("b"))

      // Two tiers, the second behind a timeout and a breaker.
      const source = (keys: ReadonlyArray<string>) =>
        Effect.succeed(new Map(keys.filter((key) => key !== "absent").map((key) => [key, key.length])))
      const multi = yield* MultiLevelCache.make<string, number, never, never>({
        name: `${name}-multi`,
        tiers: [
          yield* LruCache.make<string, number>({ capacity: 10, name: `${name}-multi-l1` }),
          {
            cache: yield* LruCache.make<string, number>({ capacity: 10, name: `${name}-multi-l2` }),
            timeout: "1 second",
            breaker: {}
          }
        ],
        load: source
      })
      yield* multi.get("abc")
      yield* multi.get("abc")
      yield* Effect.either(multi.get("absent"))

      // A loading cache with freshness options, on a bus over an in-process hub that another instance hears.
      const hub = yield* InvalidationBus.makeMemoryHub<string>({ namespace: `${name}-bus` })
      const bus = yield* hub.connect
      const other = yield* hub.connect
      const loading = yield* LoadingCache.make<string, number>({
        name: `${name}-loading`,
        tiers: [yield* LruCache.make<string, LoadingCache.Entry<number>>({ capacity: 10, name: `${name}-loading-l1` })],
        load: source,
        invalidations: bus,
        timeToLive: "1 minute",
        grace: "1 hour",
        staleWhileRevalidate: true,
        softTimeout: "100 millis",
        hardTimeout: "2 seconds",
        notFoundTimeToLive: "10 seconds"
      })
      yield* loading.get("abcd")
      yield* loading.getOption("absent")
      yield* loading.getOption("absent")
      yield* loading.set("abcd", 5)
      yield* hub.gap
      yield* settle
      expect(yield* other.stats).toMatchObject({ received: 1, invalidatedKeys: 1, gaps: 1 })

      const text = yield* Prometheus.text
      expect(text.endsWith("\n")).toBe(true)
      // `families` throws when a family comes twice: each is one block of samples under one HELP and TYPE.
      const families = Scrape.families(text)
      const names = [...families.keys()]
      expect(names).toStrictEqual([...names].sort())
      for (const family of families.values()) expect(family.help, family.name).not.toBe("")

      // task_store_queries is counted by the TaskStore (Postgres) and registered at its first query: the scrape
      // of the HTTP example (test/HttpServer.test.ts), whose store has run queries, has it.
      const documented = documentedMetrics().filter((metric) => metric !== "task_store_queries")
      expect(documented).toContain("cache_hits")
      expect(documented).toContain("cache_load_duration_ms")
      // Every one, at zero before its first event too (a hub in process never fails to publish).
      for (const metric of documented) {
        expect(families.get(metric)?.type, `${metric} in the scrape`).toBe(expectedType(metric))
      }
      // The freshness counters, which the section refers to ("listed above").
      const freshness = [
        CacheMetrics.metricNames.staleServed,
        CacheMetrics.metricNames.refreshesStarted,
        CacheMetrics.metricNames.refreshesCompleted,
        CacheMetrics.metricNames.refreshesDiscarded,
        CacheMetrics.metricNames.failSafeActivations,
        CacheMetrics.metricNames.softTimeouts,
        CacheMetrics.metricNames.hardTimeouts,
        CacheMetrics.metricNames.negativeHits
      ]
      for (const metric of freshness) expect(families.get(metric)?.type, metric).toBe("COUNTER")

      // The values are the caches' own.
      const lruLabels = { cache: `${name}-lru`, tier: "lru" }
      expect(Scrape.samplesWith(families.get("cache_hits"), lruLabels).map((s) => s.value)).toStrictEqual(["1"])
      expect(Scrape.samplesWith(families.get("cache_misses"), lruLabels).map((s) => s.value)).toStrictEqual(["1"])
      expect(Scrape.samplesWith(families.get("cache_size"), lruLabels).map((s) => s.value)).toStrictEqual(["1"])
      const negative = { cache: `${name}-loading`, tier: "multilevel" }
      expect(Scrape.samplesWith(families.get("cache_negative_hits"), negative).map((s) => s.value)).toStrictEqual([
        "1"
      ])
      const published = { cache: `${name}-bus`, tier: "bus" }
      expect(Number(Scrape.samplesWith(families.get("cache_bus_published"), published)[0]?.value)).toBeGreaterThan(0)

      const loads = Scrape.histogramSeries(text, "cache_load_duration_ms").find((series) =>
        series.labels.cache === `${name}-multi`
      )
      expect(loads?.labels).toStrictEqual({ cache: `${name}-multi`, tier: "multilevel", time_unit: "milliseconds" })
      expect(loads!.count).toBe(2) // "abc" and "absent": one load each
      expect(loads!.buckets.map(([le]) => le)).toStrictEqual(
        CacheMetrics.loadDurationBoundaries.values.map((le) => (le === Number.POSITIVE_INFINITY ? "+Inf" : String(le)))
      )
      expect(loads!.buckets.at(-1)).toStrictEqual(["+Inf", 2])
      const counts = loads!.buckets.map(([, count]) => count)
      expect(counts).toStrictEqual([...counts].sort((a, b) => a - b)) // cumulative
    }))
})
