/**
 * `OpenTelemetry.layer` end to end: a program using a multi-level cache runs under the layer, the layer's scope
 * closes, and what reached an OTLP/HTTP collector stand-in (test/support/otlpCollector.ts) is decoded from the
 * JSON the exporters send and checked: the spans with their names and attributes, the resource, the metrics
 * with their labels and data points, the headers. A collector that fails or is not there changes nothing for
 * the program, and closing stays bounded. Real time only for the exporters' own batching: the spans go out in
 * the flush at scope close, the metrics at a 100 ms interval and in that flush.
 */
import { describe, expect, it } from "@effect/vitest"
import { diag, DiagLogLevel } from "@opentelemetry/api"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { inspect } from "node:util"
import * as CacheTracing from "../src/CacheTracing.js"
import * as LruCache from "../src/LruCache.js"
import * as MultiLevelCache from "../src/MultiLevelCache.js"
import * as OpenTelemetry from "../src/OpenTelemetry.js"
import { captureLogs } from "./support/logs.js"
import { type Collector, type DataPoint, deadUrl, type Span, startCollector } from "./support/otlpCollector.js"
import { waitFor } from "./support/wait.js"

const names = CacheTracing.spanNames
const attributes = CacheTracing.attributeNames
const secret = "s3cr3t-api-key-0f9a"

/** How many times each workload's loader ran. */
const loaderCalls = new Map<string, number>()

/**
 * The program under test: a two-tier cache over a loader. One miss that reaches L2 and the loader, 100 hits in
 * L1, one read answered by L2, one write through the cache. Returns what it read.
 */
const workload = (name: string) =>
  Effect.gen(function*() {
    const l1 = yield* LruCache.make<string, string>({ capacity: 10, name: `${name}-l1` })
    const l2 = yield* LruCache.make<string, string>({ capacity: 100, name: `${name}-l2` })
    const cache = yield* MultiLevelCache.make({
      name,
      tiers: [l1, l2],
      load: (keys: ReadonlyArray<string>) =>
        Effect.sync(() => {
          loaderCalls.set(name, (loaderCalls.get(name) ?? 0) + 1)
          return new Map(keys.map((key) => [key, key.toUpperCase()]))
        })
    })
    const a = yield* cache.get("a")
    for (let i = 0; i < 100; i++) yield* cache.get("a")
    yield* l2.set("b", "B (from L2)")
    const b = yield* cache.get("b")
    yield* cache.set("c", "C")
    const c = yield* cache.get("c")
    return `${a} ${b} ${c}`
  }).pipe(Effect.scoped, Effect.withSpan("test.program"))

const expected = "A B (from L2) C"

interface Run<A> {
  readonly exit: Exit.Exit<A, unknown>
  /** Everything logged (every Effect logger, every level) and everything OpenTelemetry's diag said. */
  readonly logs: ReadonlyArray<string>
  /** How long the whole run took, the layer's start and close included. */
  readonly millis: number
  readonly unhandled: ReadonlyArray<unknown>
}

/**
 * Runs `program` under `telemetry`, bounded: the layer's scope has closed (and flushed) when this returns.
 * Collects logs, OpenTelemetry's diagnostics and unhandled rejections meanwhile.
 */
const runUnder = <A, E>(program: Effect.Effect<A, E>, telemetry: Layer.Layer<never, unknown>) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const unhandled: Array<unknown> = []
    const onUnhandled = (reason: unknown) => void unhandled.push(reason)
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("unhandledRejection", onUnhandled)
        const record = (...args: Array<unknown>) => void logs.push(args.map((a) => inspect(a, { depth: 5 })).join(" "))
        diag.setLogger({ error: record, warn: record, info: record, debug: record, verbose: record }, DiagLogLevel.ALL)
      }),
      () =>
        Effect.sync(() => {
          process.off("unhandledRejection", onUnhandled)
          diag.disable()
        })
    )
    const started = Date.now()
    const exit = yield* program.pipe(
      Effect.provide(telemetry),
      Effect.provide(captureLogs(logs)),
      Effect.timeoutFail({ duration: "8 seconds", onTimeout: () => "the run did not end within 8 s" }),
      Effect.exit
    )
    const millis = Date.now() - started
    // Let a rejection left behind surface.
    yield* Effect.sleep("20 millis")
    return { exit, logs, millis, unhandled } satisfies Run<A>
  })

const options = (collector: { readonly url: string }, overrides: Partial<OpenTelemetry.Options> = {}) =>
  OpenTelemetry.layer({
    serviceName: "rms-cache-test",
    url: collector.url,
    headers: { "x-api-key": Redacted.make(secret) },
    metricsInterval: "100 millis",
    timeout: "1 second",
    resourceAttributes: { "deployment.environment": "test" },
    ...overrides
  })

/** The last exported data point of `metric` whose attributes include `labels` (metrics are cumulative). */
const lastPoint = (points: ReadonlyArray<DataPoint>, metric: string, labels: Record<string, string>) =>
  points.filter((p) => p.metric === metric && Object.entries(labels).every(([k, v]) => p.attributes[k] === v)).at(-1)

const cacheSpans = (collector: Collector, name: string): ReadonlyArray<Span> =>
  collector.spans().filter((span) => span.name.startsWith("cache.") && span.attributes[attributes.cache] === name)

const expectNoSecret = (texts: ReadonlyArray<string>) => {
  const leak = texts.find((text) => text.includes(secret))
  expect(leak, `the header value appears in: ${leak?.slice(0, 500)}`).toBeUndefined()
}

/** A span's `cache.keys`: a string attribute, the JSON array of the keys as strings. */
const keysOf = (span: Span): unknown => {
  const value = span.attributes[attributes.keys]
  expect(typeof value).toBe("string")
  return JSON.parse(value as string)
}

const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`

describe("OpenTelemetry.layer", () => {
  it.scopedLive("flushes the program's spans and every cache metric at scope close, with service.name and the headers", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      const name = unique("otel")
      const run = yield* runUnder(workload(name), options(collector))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      expect(run.unhandled).toStrictEqual([])

      // JSON bodies to both paths, each with the header.
      const paths = new Set(collector.received.map((r) => r.path))
      expect(paths).toStrictEqual(new Set(["/v1/traces", "/v1/metrics"]))
      for (const request of collector.received) {
        expect(request.contentType).toMatch(/^application\/json/)
        expect(request.headers["x-api-key"]).toBe(secret)
      }

      // The program's span, sent in the flush at scope close (the batch delay is 5 s; the run took less).
      const root = collector.spans().find((span) => span.name === "test.program")
      expect(root, `spans received: ${collector.spans().map((s) => s.name)}`).toBeDefined()
      expect(root!.resource["service.name"]).toBe("rms-cache-test")
      expect(root!.resource["deployment.environment"]).toBe("test")
      expect(run.millis).toBeLessThan(5_000)

      // Metrics: the L1's hits and misses, the multi-level cache's own, and the load-duration histogram.
      const points = collector.dataPoints()
      expect(points.every((p) => p.resource["service.name"] === "rms-cache-test")).toBe(true)
      const l1 = { cache: `${name}-l1`, tier: "lru" }
      const multi = { cache: name, tier: "multilevel" }
      expect(lastPoint(points, "cache_hits", l1)?.value).toBeGreaterThanOrEqual(101)
      expect(lastPoint(points, "cache_misses", l1)?.value).toBeGreaterThanOrEqual(2)
      expect(lastPoint(points, "cache_hits", multi)?.value).toBe(1)
      expect(lastPoint(points, "cache_misses", multi)?.value).toBe(1)
      // `cache_loads` counts the flights below L1 (the L2 hit's too); the loader ran once.
      expect(loaderCalls.get(name)).toBe(1)
      const loads = lastPoint(points, "cache_loads", multi)?.value
      expect(loads).toBeGreaterThanOrEqual(1)
      expect(lastPoint(points, "cache_hits", l1)?.kind).toBe("sum")
      const duration = lastPoint(points, "cache_load_duration_ms", multi)
      expect(duration?.kind).toBe("histogram")
      expect(duration?.count).toBe(loads)
      expect(duration?.attributes["time_unit"]).toBe("milliseconds")
      expect(lastPoint(points, "cache_size", l1)?.kind).toBe("gauge")

      expectNoSecret(run.logs)
    }))

  it.scopedLive("the cache spans: cache.load, cache.tier.read, cache.write, with cache.name, never on an L1 hit", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      const name = unique("otel-spans")
      const run = yield* runUnder(workload(name), options(collector))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))

      const spans = cacheSpans(collector, name)
      const seen = spans.map((span) => span.name)
      expect(seen, `cache spans received: ${seen}`).toContain(names.load)
      expect(seen).toContain(names.tierRead)
      expect(seen).toContain(names.write)
      const load = spans.find((span) => span.name === names.load)!
      expect(load.attributes[attributes.batchSize]).toBe(1)
      const tierReads = spans.filter((span) => span.name === names.tierRead)
      expect(tierReads.every((span) => span.attributes[attributes.tier] === "l2")).toBe(true)
      expect(spans.find((span) => span.name === names.write)!.attributes[attributes.operation]).toBe("set")
      // 100 L1 hits opened no span: a handful of cache spans in all (one load, two L2 reads, a write and its tiers).
      expect(spans.length).toBeLessThan(20)
      // In the program's trace, under its span.
      const root = collector.spans().find((span) => span.name === "test.program")!
      expect(spans.every((span) => span.traceId === root.traceId && span.parentSpanId !== undefined)).toBe(true)
      expect(spans.every((span) => span.resource["service.name"] === "rms-cache-test")).toBe(true)
    }))

  it.scopedLive("no cache.keys attribute unless the program runs under withKeys (or the keys layer)", () =>
    Effect.gen(function*() {
      // Without: no span carries keys.
      const plain = yield* startCollector
      const without = yield* runUnder(workload(unique("otel-nokeys")), options(plain))
      expect(without.exit).toStrictEqual(Exit.succeed(expected))
      expect(plain.spans().length).toBeGreaterThan(0)
      expect(plain.spans().filter((span) => attributes.keys in span.attributes)).toStrictEqual([])

      // With `withKeys`, and with the `keys` layer: the load's span names the key it loaded.
      for (const [label, program] of [
        ["withKeys", (name: string) => OpenTelemetry.withKeys(workload(name))],
        ["keys layer", (name: string) => Effect.provide(workload(name), OpenTelemetry.keys)]
      ] as const) {
        const collector = yield* startCollector
        const name = unique("otel-keys")
        const run = yield* runUnder(program(name), options(collector))
        expect(run.exit).toStrictEqual(Exit.succeed(expected))
        const load = cacheSpans(collector, name).find((span) => span.name === names.load)
        expect(load, `${label}: no ${names.load} span among ${collector.spans().map((s) => s.name)}`).toBeDefined()
        expect(keysOf(load!), label).toStrictEqual(["a"])
      }
    }))

  it.scopedLive("closing the scope flushes the metrics too: with an interval longer than the run, they still arrive", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      const name = unique("otel-close")
      const run = yield* runUnder(workload(name), options(collector, { metricsInterval: "1 minute" }))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      expect(collector.received.filter((r) => r.path === "/v1/metrics")).toHaveLength(1)
      expect(lastPoint(collector.dataPoints(), "cache_hits", { cache: `${name}-l1`, tier: "lru" })?.value)
        .toBeGreaterThanOrEqual(101)
    }))

  it.scopedLive("spans: false or metrics: false sends only the other", () =>
    Effect.gen(function*() {
      const spansOnly = yield* startCollector
      yield* runUnder(workload(unique("otel-s")), options(spansOnly, { metrics: false }))
      expect(new Set(spansOnly.received.map((r) => r.path))).toStrictEqual(new Set(["/v1/traces"]))
      const metricsOnly = yield* startCollector
      yield* runUnder(workload(unique("otel-m")), options(metricsOnly, { spans: false }))
      expect(new Set(metricsOnly.received.map((r) => r.path))).toStrictEqual(new Set(["/v1/metrics"]))
    }))
})

describe("OpenTelemetry.layer with a collector that fails", () => {
  it.scopedLive("a collector answering 500: the program's result unaffected, one warning per signal, no header value anywhere", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      collector.answer(500)
      const run = yield* runUnder(workload(unique("otel-500")), options(collector))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      expect(run.unhandled).toStrictEqual([])
      expect(run.millis).toBeLessThan(4_000)
      // It did try, with the header, and said so once per signal.
      expect(collector.received.some((r) => r.path === "/v1/traces")).toBe(true)
      expect(collector.received.every((r) => r.headers["x-api-key"] === secret)).toBe(true)
      // One warning per signal, not one per export: each of the six loggers prints it, the string and logfmt ones
      // in the same words (with its own fiber id: a second warning would be a second line).
      const warnings = (signal: "spans" | "metrics") => [
        ...new Set(run.logs.filter((line) =>
          line.startsWith("timestamp=") && line.includes("level=WARN") &&
          line.includes(`the ${signal} export to ${collector.url}/v1/${signal === "spans" ? "traces" : "metrics"} failed`)
        ))
      ]
      expect(warnings("spans")).toHaveLength(1)
      expect(warnings("metrics")).toHaveLength(1)
      expect(warnings("spans")[0]).toContain("Internal Server Error")
      expectNoSecret(run.logs)
    }))

  it.scopedLive("a collector that comes back: exports resume, and the layer says so once", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      collector.answer(500)
      const metricExports = () => collector.received.filter((r) => r.path === "/v1/metrics").length
      const program = Effect.gen(function*() {
        const result = yield* workload(unique("otel-back"))
        yield* waitFor(() => metricExports() > 0, 3_000)
        collector.answer(200)
        const before = metricExports()
        yield* waitFor(() => metricExports() > before + 1, 3_000)
        return result
      })
      const run = yield* runUnder(program, options(collector))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      const lines = (text: string) => new Set(run.logs.filter((line) => line.startsWith("timestamp=") && line.includes(text)))
      expect(lines(`the metrics export to ${collector.url}/v1/metrics failed`).size).toBe(1)
      expect(lines(`the metrics export to ${collector.url}/v1/metrics recovered`).size).toBe(1)
      expect([...lines("recovered")][0]).toContain("level=INFO")
    }))

  it.scopedLive("no collector listening: the program's result unaffected, closing bounded, no unhandled rejection", () =>
    Effect.gen(function*() {
      const url = yield* deadUrl
      const run = yield* runUnder(workload(unique("otel-dead")), options({ url }, { timeout: "500 millis" }))
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      expect(run.unhandled).toStrictEqual([])
      expect(run.millis).toBeLessThan(3_000)
      expect(run.logs.some((line) => line.includes(`the spans export to ${url}/v1/traces failed`))).toBe(true)
      expect(run.logs.some((line) => /ECONNREFUSED/.test(line))).toBe(true)
      expectNoSecret(run.logs)
    }))
})

describe("OpenTelemetry options", () => {
  const failure = (layer: Layer.Layer<never, unknown>) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      return error
    })

  it.scoped("options that cannot work fail the layer with IllegalArgumentException, quoting no URL or header value", () =>
    Effect.gen(function*() {
      const base = { serviceName: "svc" }
      const cases: ReadonlyArray<readonly [OpenTelemetry.Options, RegExp]> = [
        [{ ...base, url: "not a url" }, /url: not a valid URL/],
        [{ ...base, url: "ftp://collector:4318" }, /scheme must be http: or https:/],
        [{ ...base, url: `https://user:${secret}@collector:4318` }, /must not carry a user or password/],
        [{ ...base, url: `https://collector:4318/?key=${secret}` }, /must not have a query/],
        [{ ...base, headers: { "x-api-key": Redacted.make(`${secret}\r\nx-evil: 1`) } }, /value of header x-api-key holds a control character/],
        [{ ...base, headers: { [`bad name ${secret}`]: Redacted.make("v") } }, /name of header 1 is not an HTTP token/],
        [{ ...base, metricsInterval: 0 }, /metricsInterval must be a finite duration/],
        [{ ...base, timeout: "forever" as never }, /timeout must be a finite duration/],
        [{ serviceName: " " }, /serviceName must be a non-empty string/]
      ]
      for (const [bad, message] of cases) {
        const error = yield* failure(OpenTelemetry.layer(bad))
        expect(Cause.isIllegalArgumentException(error), inspect(error)).toBe(true)
        expect((error as Error).message).toMatch(message)
        expectNoSecret([(error as Error).message, inspect(error), String(error), JSON.stringify(error)])
      }
    }))

  it.scopedLive("layerConfig: OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS (redacted)", () =>
    Effect.gen(function*() {
      const collector = yield* startCollector
      const env = (entries: Record<string, string>) =>
        Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))
      const telemetry = OpenTelemetry.layerConfig.pipe(
        Layer.provide(env({
          OTEL_SERVICE_NAME: "from-env",
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_EXPORTER_OTLP_HEADERS: `x-api-key=${encodeURIComponent(secret)},x-tenant=t%2C1`,
          OTEL_EXPORTER_OTLP_TIMEOUT: "1000",
          OTEL_METRIC_EXPORT_INTERVAL: "100"
        }))
      )
      const run = yield* runUnder(workload(unique("otel-env")), telemetry)
      expect(run.exit).toStrictEqual(Exit.succeed(expected))
      expect(collector.spans().find((span) => span.name === "test.program")?.resource["service.name"]).toBe("from-env")
      expect(collector.received.length).toBeGreaterThan(0)
      for (const request of collector.received) {
        expect(request.headers["x-api-key"]).toBe(secret)
        expect(request.headers["x-tenant"]).toBe("t,1")
      }
      expectNoSecret(run.logs)

      // OTEL_TRACES_EXPORTER=none: metrics only.
      const metricsOnly = yield* startCollector
      yield* runUnder(
        workload(unique("otel-env-none")),
        OpenTelemetry.layerConfig.pipe(Layer.provide(env({
          OTEL_EXPORTER_OTLP_ENDPOINT: metricsOnly.url,
          OTEL_TRACES_EXPORTER: "none",
          OTEL_METRIC_EXPORT_INTERVAL: "100"
        })))
      )
      expect(new Set(metricsOnly.received.map((r) => r.path))).toStrictEqual(new Set(["/v1/metrics"]))

      // An endpoint or headers that cannot work: a ConfigError that says why, quoting neither.
      for (const [entries, message] of [
        [{ OTEL_EXPORTER_OTLP_ENDPOINT: `http://user:${secret}@collector` }, /OTEL_EXPORTER_OTLP_ENDPOINT.*must not carry a user or password/s],
        [{ OTEL_EXPORTER_OTLP_HEADERS: `x-api-key:${secret}` }, /OTEL_EXPORTER_OTLP_HEADERS.*header 1 is not name=value/s],
        [{ OTEL_EXPORTER_OTLP_HEADERS: `x-api-key=${secret}%zz` }, /malformed % escape/],
        [{ OTEL_EXPORTER_OTLP_TIMEOUT: "0" }, /OTEL_EXPORTER_OTLP_TIMEOUT/]
      ] as const) {
        const error = yield* failure(OpenTelemetry.layerConfig.pipe(Layer.provide(env(entries))))
        const text = [String(error), inspect(error), JSON.stringify(error)].join("\n")
        expect(text).toMatch(message)
        expectNoSecret([text])
      }
    }))
})
