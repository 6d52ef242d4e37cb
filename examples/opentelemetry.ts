/**
 * The caches' spans and metrics sent to an OpenTelemetry collector over OTLP/HTTP, by a layer added once.
 *
 *   npx tsx examples/opentelemetry.ts               # to OTEL_EXPORTER_OTLP_ENDPOINT, or http://127.0.0.1:4318
 *   npx tsx examples/opentelemetry.ts --collector   # to a stand-in collector in this process, which says what it got
 *
 * The first form reads the standard variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`…). With no collector there, the program's answers
 * are the same: the layer logs a warning that the export failed and the telemetry is dropped.
 */
import { Console, Effect } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { LruCache, MultiLevelCache } from "../src/index.js"
import * as OpenTelemetry from "../src/OpenTelemetry.js"

/** A request handler's work: one cold read (L2, then the loader), hits in L1, a read from L2, a write. */
const program = Effect.gen(function*() {
  const l1 = yield* LruCache.make<string, string>({ capacity: 100, name: "example-products-l1" })
  const l2 = yield* LruCache.make<string, string>({ capacity: 10_000, name: "example-products-l2" })
  const products = yield* MultiLevelCache.make({
    name: "example-products",
    tiers: [l1, l2],
    load: (ids: ReadonlyArray<string>) => Effect.succeed(new Map(ids.map((id) => [id, `product ${id}`])))
  })
  const first = yield* products.get("p1")
  for (let i = 0; i < 10; i++) yield* products.get("p1")
  yield* l2.set("p2", "product p2 (from L2)")
  const second = yield* products.get("p2")
  yield* products.set("p3", "product p3")
  yield* Console.log(`read "${first}" and "${second}", wrote p3`)
}).pipe(Effect.scoped, Effect.withSpan("example.request"))

/** The parts of OTLP's JSON this example reads. */
interface Attribute {
  readonly key: string
  readonly value: { readonly stringValue?: string }
}
interface TraceExport {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: ReadonlyArray<Attribute> }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<{ readonly name: string }> }>
  }>
}
interface MetricExport {
  readonly resourceMetrics: ReadonlyArray<{
    readonly scopeMetrics: ReadonlyArray<{
      readonly metrics: ReadonlyArray<{
        readonly name: string
        readonly sum?: {
          readonly dataPoints: ReadonlyArray<{
            readonly attributes: ReadonlyArray<Attribute>
            readonly asDouble?: number
            readonly asInt?: number | string
          }>
        }
      }>
    }>
  }>
}

/** A minimal collector: takes OTLP/HTTP JSON exports, answers 200 `{}`, keeps what it got. */
const standInCollector = Effect.gen(function*() {
  const traces: Array<TraceExport> = []
  const metrics: Array<MetricExport> = []
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      if (req.url === "/v1/traces") traces.push(body)
      if (req.url === "/v1/metrics") metrics.push(body)
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
    }),
    () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)).closeAllConnections())
  )
  return { url: `http://127.0.0.1:${port}`, traces, metrics }
})

const label = (attributes: ReadonlyArray<Attribute>, key: string) =>
  attributes.find((attribute) => attribute.key === key)?.value.stringValue

/** What the stand-in received: span names, the service, and the caches' hit and miss counts. */
const report = (traces: ReadonlyArray<TraceExport>, metrics: ReadonlyArray<MetricExport>) =>
  Effect.gen(function*() {
    const resourceSpans = traces.flatMap((t) => t.resourceSpans)
    const spans = resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))
    const service = label(resourceSpans[0]?.resource.attributes ?? [], "service.name")
    const names = [...new Set(spans.map((span) => span.name))].sort()
    yield* Console.log(`collector: ${spans.length} spans from service "${service}": ${names.join(", ")}`)
    // Metrics are cumulative: the last export (the flush at scope close) holds the totals.
    const last = metrics.at(-1)?.resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics)) ?? []
    for (const metric of last.filter((m) => m.name === "cache_hits" || m.name === "cache_misses")) {
      for (const point of metric.sum?.dataPoints ?? []) {
        const cache = label(point.attributes, "cache") ?? ""
        if (!cache.startsWith("example-products")) continue
        const tier = label(point.attributes, "tier")
        yield* Console.log(`collector: ${metric.name}{cache="${cache}",tier="${tier}"} ${point.asDouble ?? point.asInt}`)
      }
    }
  })

const withStandIn = Effect.gen(function*() {
  const collector = yield* standInCollector
  yield* Console.log(`stand-in collector at ${collector.url}`)
  // The layer's scope is this `provide`: when it ends, the spans and the metrics are flushed to the collector.
  yield* program.pipe(
    Effect.provide(OpenTelemetry.layer({ serviceName: "opentelemetry-example", url: collector.url }))
  )
  yield* report(collector.traces, collector.metrics)
}).pipe(Effect.scoped)

const withEnvironment = Effect.gen(function*() {
  const { url } = yield* OpenTelemetry.config
  yield* Console.log(`exporting to ${url ?? OpenTelemetry.defaultUrl}`)
  yield* program.pipe(Effect.provide(OpenTelemetry.layerConfig))
  yield* Console.log("done: spans and metrics flushed, or dropped with a warning above if the collector did not take them")
})

const main = process.argv.includes("--collector") ? withStandIn : withEnvironment

Effect.runPromise(main)
