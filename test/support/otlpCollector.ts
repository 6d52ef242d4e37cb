/**
 * An OpenTelemetry collector stand-in: a `node:http` server on a loopback port that takes OTLP/HTTP JSON exports
 * (`POST /v1/traces`, `POST /v1/metrics`, gzip or not), keeps each decoded body with its headers, and answers
 * `200 {}` (or the status it is told to). Views flatten the OTLP structure into spans and metric data points.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync } from "node:zlib"

/** One export as it arrived. */
export interface Received {
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly contentType: string | undefined
  /** The decoded JSON body (undefined when it was not JSON). */
  readonly body: unknown
}

/** OTLP's `AnyValue`, decoded: strings, numbers, booleans, arrays. */
export type Value = string | number | boolean | ReadonlyArray<Value> | undefined

/** A span as exported, flattened. */
export interface Span {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly attributes: Readonly<Record<string, Value>>
  readonly resource: Readonly<Record<string, Value>>
  readonly scope: string | undefined
}

/** One metric data point as exported, flattened. */
export interface DataPoint {
  readonly metric: string
  readonly kind: "sum" | "gauge" | "histogram" | "other"
  readonly attributes: Readonly<Record<string, Value>>
  readonly resource: Readonly<Record<string, Value>>
  /** A sum's or gauge's value. */
  readonly value?: number
  /** A histogram's count and sum. */
  readonly count?: number
  readonly sum?: number
}

export interface Collector {
  /** The base URL to give the exporter (`http://127.0.0.1:<port>`). */
  readonly url: string
  /** Every export received, in order. */
  readonly received: ReadonlyArray<Received>
  /** The status to answer from now on (200 by default). */
  answer(status: number): void
  /** The spans of every trace export received. */
  spans(): ReadonlyArray<Span>
  /** The data points of every metric export received, in order of arrival. */
  dataPoints(): ReadonlyArray<DataPoint>
}

type Json = Record<string, unknown>
const records = (value: unknown): ReadonlyArray<Json> => (Array.isArray(value) ? value as Array<Json> : [])

const decodeValue = (value: unknown): Value => {
  if (typeof value !== "object" || value === null) return undefined
  const v = value as Json
  if ("stringValue" in v) return String(v.stringValue)
  if ("boolValue" in v) return Boolean(v.boolValue)
  if ("intValue" in v) return Number(v.intValue)
  if ("doubleValue" in v) return Number(v.doubleValue)
  if ("arrayValue" in v) return records((v.arrayValue as Json | undefined)?.values).map(decodeValue)
  return undefined
}

/** OTLP's `KeyValue[]` as a record. */
export const decodeAttributes = (attributes: unknown): Record<string, Value> =>
  Object.fromEntries(records(attributes).map((kv) => [String(kv.key), decodeValue(kv.value)]))

const numberOf = (point: Json): number | undefined =>
  "asDouble" in point ? Number(point.asDouble) : "asInt" in point ? Number(point.asInt) : undefined

/** Starts the stand-in on 127.0.0.1, port 0; it is closed (open connections too) when the scope closes. */
export const startCollector: Effect.Effect<Collector, never, Scope.Scope> = Effect.gen(function*() {
  const received: Array<Received> = []
  let status = 200
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      let raw = Buffer.concat(chunks)
      if (req.headers["content-encoding"] === "gzip") raw = gunzipSync(raw)
      const contentType = req.headers["content-type"]
      let body: unknown
      if (contentType?.startsWith("application/json")) body = JSON.parse(raw.toString("utf8"))
      received.push({ path: req.url ?? "", headers: req.headers, contentType, body })
      const known = req.method === "POST" && (req.url === "/v1/traces" || req.url === "/v1/metrics")
      res.writeHead(known ? status : 404, { "content-type": "application/json" })
      res.end(status === 200 && known ? "{}" : JSON.stringify({ message: "the stand-in says no" }))
    })
  })
  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
    }),
    () =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
  const exportsTo = (path: string) => received.filter((r) => r.path === path)
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    answer: (next) => void (status = next),
    spans: () =>
      exportsTo("/v1/traces").flatMap((r) =>
        records((r.body as Json | undefined)?.resourceSpans).flatMap((rs) => {
          const resource = decodeAttributes((rs.resource as Json | undefined)?.attributes)
          return records(rs.scopeSpans).flatMap((ss) =>
            records(ss.spans).map((span): Span => ({
              name: String(span.name),
              traceId: String(span.traceId),
              spanId: String(span.spanId),
              parentSpanId: typeof span.parentSpanId === "string" && span.parentSpanId !== "" ? span.parentSpanId : undefined,
              attributes: decodeAttributes(span.attributes),
              resource,
              scope: (ss.scope as Json | undefined)?.name as string | undefined
            }))
          )
        })
      ),
    dataPoints: () =>
      exportsTo("/v1/metrics").flatMap((r) =>
        records((r.body as Json | undefined)?.resourceMetrics).flatMap((rm) => {
          const resource = decodeAttributes((rm.resource as Json | undefined)?.attributes)
          return records(rm.scopeMetrics).flatMap((sm) =>
            records(sm.metrics).flatMap((metric) => {
              const kind: DataPoint["kind"] = "sum" in metric
                ? "sum"
                : "gauge" in metric
                ? "gauge"
                : "histogram" in metric
                ? "histogram"
                : "other"
              const points = records((metric[kind] as Json | undefined)?.dataPoints)
              return points.map((point): DataPoint => {
                const common = { metric: String(metric.name), kind, attributes: decodeAttributes(point.attributes), resource }
                if (kind === "histogram") return { ...common, count: Number(point.count), sum: Number(point.sum) }
                const value = numberOf(point)
                return value === undefined ? common : { ...common, value }
              })
            })
          )
        })
      )
  } satisfies Collector
})

/** A loopback URL where nothing listens: a port that was free a moment ago. */
export const deadUrl: Effect.Effect<string> = Effect.async<string>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(`http://127.0.0.1:${port}`)))
  })
})
