/**
 * The OTLP/HTTP export layer behind `OpenTelemetry`: options checked into settings, the two exporters built
 * and watched (a failed export is logged once per outage), and both handed to `NodeSdk.layer`.
 *
 * No finalizer of ours: NodeSdk's flush both when the scope closes (@effect/opentelemetry 0.64: the tracer
 * provider's `forceFlush()` then `shutdown()`; the metric reader's `shutdown()`, which collects and exports once
 * more), each bounded by `shutdownTimeout`, which is `timeout` here.
 *
 * @internal
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import {
  type AggregationOption,
  type AggregationTemporality,
  type InstrumentType,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type { Options } from "../OpenTelemetry.js"

export const defaultUrl = "http://127.0.0.1:4318"
const defaultMetricsInterval = 10_000
const defaultTimeout = 5_000
/** What OpenTelemetry's SDKs call a service that did not name itself. */
const unknownService = "unknown_service:node"

/** The options once checked: milliseconds, full endpoint URLs, header values still redacted. */
interface Settings {
  readonly serviceName: string
  readonly tracesUrl: string
  readonly metricsUrl: string
  readonly headers: ReadonlyArray<readonly [string, Redacted.Redacted<string>]>
  readonly metricsIntervalMillis: number
  readonly timeoutMillis: number
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly spans: boolean
  readonly metrics: boolean
}

// ---------------------------------------------------------------------------------------------------------
// Checks. Their reasons never quote a URL or a header value: either may hold a credential.
// ---------------------------------------------------------------------------------------------------------

/** Why `url` cannot be a collector's base URL, or its normalised form (a path that ends with `/`). */
export const checkUrl = (url: string): Either.Either<URL, string> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return Either.left("not a valid URL")
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return Either.left(`the scheme must be http: or https:, not ${parsed.protocol}`)
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return Either.left("it must not carry a user or password: send credentials in headers")
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    return Either.left("it must not have a query or a fragment: it is the collector's base URL")
  }
  if (!parsed.pathname.endsWith("/")) parsed.pathname += "/"
  return Either.right(parsed)
}

/** An HTTP header name (RFC 9110 `token`). */
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** What Node accepts in a header value: no control character but tab (so no CR, LF or NUL). */
const headerValue = /^[\t\x20-\x7e\x80-\xff]*$/

/** What is wrong with a header, if anything. A name that is not a token is not quoted: it may be a mistyped secret. */
const checkHeader = (name: string, value: string, position: number): string | undefined =>
  !headerName.test(name)
    ? `the name of header ${position} is not an HTTP token`
    : !headerValue.test(value)
    ? `the value of header ${name} holds a control character or a character beyond Latin-1`
    : undefined

const positiveMillis = (input: Duration.DurationInput | undefined, fallback: number, option: string) => {
  if (input === undefined) return Either.right(fallback)
  const millis = Option.map(Duration.decodeUnknown(input), Duration.toMillis)
  return Option.isSome(millis) && millis.value >= 1 && Number.isFinite(millis.value)
    ? Either.right(Math.round(millis.value))
    : Either.left(`${option} must be a finite duration of at least 1 millisecond, got ${JSON.stringify(String(input))}`)
}

const settings = (options: Options): Either.Either<Settings, Cause.IllegalArgumentException> => {
  const fail = (reason: string) => Either.left(new Cause.IllegalArgumentException(`OpenTelemetry.layer: ${reason}`))
  if (typeof options.serviceName !== "string" || options.serviceName.trim() === "") {
    return fail("serviceName must be a non-empty string")
  }
  const base = checkUrl(options.url ?? defaultUrl)
  if (Either.isLeft(base)) return fail(`url: ${base.left}`)
  const headers = Object.entries(options.headers ?? {})
  for (const [index, [name, value]] of headers.entries()) {
    if (!Redacted.isRedacted(value)) return fail(`the value of header ${index + 1} must be Redacted`)
    const problem = checkHeader(name, Redacted.value(value), index + 1)
    if (problem !== undefined) return fail(problem)
  }
  for (const name of Object.keys(options.resourceAttributes ?? {})) {
    if (name.trim() === "") return fail("resourceAttributes: an attribute name is empty")
  }
  const interval = positiveMillis(options.metricsInterval, defaultMetricsInterval, "metricsInterval")
  if (Either.isLeft(interval)) return fail(interval.left)
  const timeout = positiveMillis(options.timeout, defaultTimeout, "timeout")
  if (Either.isLeft(timeout)) return fail(timeout.left)
  return Either.right({
    serviceName: options.serviceName,
    tracesUrl: new URL("v1/traces", base.right).href,
    metricsUrl: new URL("v1/metrics", base.right).href,
    headers,
    metricsIntervalMillis: interval.right,
    timeoutMillis: timeout.right,
    resourceAttributes: options.resourceAttributes ?? {},
    spans: options.spans !== false,
    metrics: options.metrics !== false
  })
}

// ---------------------------------------------------------------------------------------------------------
// Exporters that say when they start and stop failing.
// ---------------------------------------------------------------------------------------------------------

type ExportResult = Parameters<Parameters<SpanExporter["export"]>[1]>[0]
/** `ExportResultCode.SUCCESS` of @opentelemetry/core (not a dependency of ours; the enum is stable). */
const exportSucceeded = 0

/** What an export error says: its message, or the codes of the attempts it aggregates (IPv4 and IPv6). */
const describe = (error: unknown): string => {
  if (error instanceof AggregateError && error.errors.length > 0) return error.errors.map(describe).join("; ")
  if (error instanceof Error) {
    const code = "code" in error && error.code !== undefined ? String(error.code) : ""
    return error.message !== "" ? error.message : code !== "" ? code : error.name
  }
  return error === undefined ? "no reason given" : String(error)
}

/**
 * The first failed export after a success (or the first of all) is logged as a warning, and the first success
 * after failures at info: one line per outage, not one per export. Header values are cut out of the reason,
 * in case a collector echoes them in its answer.
 */
const reporter = (
  runtime: Runtime.Runtime<never>,
  signal: "spans" | "metrics",
  url: string,
  secrets: ReadonlyArray<string>
) => {
  let failing = false
  const scrub = (text: string) =>
    secrets.reduce((out, secret) => (secret === "" ? out : out.split(secret).join("<redacted>")), text)
  return (result: ExportResult): void => {
    const failed = result.code !== exportSucceeded
    if (failed === failing) return
    failing = failed
    Runtime.runSync(runtime)(
      failed
        ? Effect.logWarning(
          `OpenTelemetry: the ${signal} export to ${url} failed, ${signal} are dropped until it recovers: ${
            scrub(describe(result.error))
          }`
        )
        : Effect.logInfo(`OpenTelemetry: the ${signal} export to ${url} recovered`)
    )
  }
}

class ReportingSpanExporter implements SpanExporter {
  constructor(private readonly exporter: SpanExporter, private readonly report: (result: ExportResult) => void) {}
  export(spans: Array<ReadableSpan>, done: (result: ExportResult) => void): void {
    this.exporter.export(spans, (result) => {
      this.report(result)
      done(result)
    })
  }
  shutdown(): Promise<void> {
    return this.exporter.shutdown()
  }
  forceFlush(): Promise<void> {
    return this.exporter.forceFlush?.() ?? Promise.resolve()
  }
}

class ReportingMetricExporter implements PushMetricExporter {
  constructor(private readonly exporter: OTLPMetricExporter, private readonly report: (result: ExportResult) => void) {}
  export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    this.exporter.export(metrics, (result) => {
      this.report(result)
      done(result)
    })
  }
  forceFlush(): Promise<void> {
    return this.exporter.forceFlush()
  }
  shutdown(): Promise<void> {
    return this.exporter.shutdown()
  }
  selectAggregationTemporality(type: InstrumentType): AggregationTemporality {
    return this.exporter.selectAggregationTemporality(type)
  }
  selectAggregation(type: InstrumentType): AggregationOption {
    return this.exporter.selectAggregation(type)
  }
}

// ---------------------------------------------------------------------------------------------------------
// The layer.
// ---------------------------------------------------------------------------------------------------------

export const layer = (options: Options): Layer.Layer<never, Cause.IllegalArgumentException> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const checked = yield* settings(options)
    if (!checked.spans && !checked.metrics) return Layer.empty
    const runtime = yield* Effect.runtime<never>()
    const secrets = checked.headers.map(([, value]) => Redacted.value(value))
    // A function, so that the values are read at each request and never sit in the exporters' configuration.
    const headers = () =>
      Promise.resolve(Object.fromEntries(checked.headers.map(([name, value]) => [name, Redacted.value(value)])))
    const common = { headers, timeoutMillis: checked.timeoutMillis }
    return NodeSdk.layer(() => ({
      resource: { serviceName: checked.serviceName, attributes: { ...checked.resourceAttributes } },
      // NodeSdk bounds each flush at close by this; an export is bounded by the same `timeout`, retries included.
      shutdownTimeout: checked.timeoutMillis,
      ...(checked.spans
        ? {
          spanProcessor: new BatchSpanProcessor(
            new ReportingSpanExporter(
              new OTLPTraceExporter({ ...common, url: checked.tracesUrl }),
              reporter(runtime, "spans", checked.tracesUrl, secrets)
            )
          )
        }
        : {}),
      ...(checked.metrics
        ? {
          metricReader: new PeriodicExportingMetricReader({
            exporter: new ReportingMetricExporter(
              new OTLPMetricExporter({ ...common, url: checked.metricsUrl }),
              reporter(runtime, "metrics", checked.metricsUrl, secrets)
            ),
            exportIntervalMillis: checked.metricsIntervalMillis,
            // The reader refuses a timeout longer than its interval.
            exportTimeoutMillis: Math.min(checked.timeoutMillis, checked.metricsIntervalMillis)
          })
        }
        : {})
    })).pipe(Layer.discard)
  }))

// ---------------------------------------------------------------------------------------------------------
// Configuration from the standard OTEL_* variables.
// ---------------------------------------------------------------------------------------------------------

/** `name=value` pairs separated by commas, values percent-encoded (the OTLP exporter specification's format). */
export const parseHeaders = (
  text: string
): Either.Either<Record<string, Redacted.Redacted<string>>, string> => {
  const headers: Record<string, Redacted.Redacted<string>> = {}
  const entries = text.split(",")
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!
    if (entry.trim() === "") continue
    const equals = entry.indexOf("=")
    if (equals <= 0) return Either.left(`header ${i + 1} is not name=value`)
    const name = entry.slice(0, equals).trim()
    let value: string
    try {
      value = decodeURIComponent(entry.slice(equals + 1).trim())
    } catch {
      return Either.left(`the value of header ${i + 1} has a malformed % escape`)
    }
    const problem = checkHeader(name, value, i + 1)
    if (problem !== undefined) return Either.left(problem)
    headers[name] = Redacted.make(value)
  }
  return Either.right(headers)
}

const invalid = (name: string) => (reason: string) => ConfigError.InvalidData([name], reason)

/** A whole number of milliseconds, if set. */
const millis = (name: string) =>
  Config.option(Config.integer(name).pipe(
    Config.validate({ message: "expected a whole number of milliseconds of at least 1", validation: (n) => n >= 1 })
  ))

/** `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: `otlp` (the default) or `none`; this layer sends nothing else. */
const exporterSwitch = (name: string) =>
  Config.map(Config.withDefault(Config.literal("otlp", "none")(name), "otlp"), (value) => value === "otlp")

export const config: Config.Config<Options> = Config.all({
  serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault(unknownService)),
  url: Config.string("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(
    Config.mapOrFail((url) =>
      Either.match(checkUrl(url), {
        onLeft: (reason) =>
          Either.left(invalid("OTEL_EXPORTER_OTLP_ENDPOINT")(`not a collector's base URL: ${reason}`)),
        onRight: () => Either.right(url)
      })
    ),
    Config.withDefault(defaultUrl)
  ),
  headers: Config.redacted("OTEL_EXPORTER_OTLP_HEADERS").pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(parseHeaders(Redacted.value(text)), invalid("OTEL_EXPORTER_OTLP_HEADERS"))
    ),
    Config.withDefault({})
  ),
  timeout: millis("OTEL_EXPORTER_OTLP_TIMEOUT"),
  metricsInterval: millis("OTEL_METRIC_EXPORT_INTERVAL"),
  spans: exporterSwitch("OTEL_TRACES_EXPORTER"),
  metrics: exporterSwitch("OTEL_METRICS_EXPORTER")
}).pipe(
  Config.map(({ metricsInterval, timeout, ...rest }): Options => ({
    ...rest,
    ...Option.match(timeout, { onNone: () => ({}), onSome: (ms) => ({ timeout: Duration.millis(ms) }) }),
    ...Option.match(metricsInterval, {
      onNone: () => ({}),
      onSome: (ms) => ({ metricsInterval: Duration.millis(ms) })
    })
  }))
)
