/**
 * Sends the caches' spans and metrics to an OpenTelemetry collector over OTLP/HTTP (JSON).
 *
 * Its own entry, `@rms/cache/OpenTelemetry`, not re-exported from `@rms/cache`: it loads the OpenTelemetry SDK
 * (`@effect/opentelemetry`, `@opentelemetry/*`, optional peer dependencies), which a user of the caches alone
 * does not install.
 *
 * What goes out: every metric of Effect's metric registry (so every `cache_*` metric of `CacheMetrics`, with
 * its `cache` and `tier` labels, and the application's own), at each `metricsInterval` and once more when the
 * layer's scope closes; and every span the program opens (`Effect.withSpan`, `Effect.fn`), among them the
 * caches' (`CacheTracing.spanNames`: loads, writes, farther tiers, the bus; never a read of the nearest tier).
 * Keys are in no span unless the program runs under `withKeys` or `keys`.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as CacheTracing from "./CacheTracing.js"
import * as internal from "./internal/openTelemetry.js"

/**
 * What `layer` sends where.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The `service.name` resource attribute every span and metric carries. */
  readonly serviceName: string
  /**
   * The collector's base URL, `http:` or `https:`, without credentials; `v1/traces` and `v1/metrics` are
   * appended to its path. Default: `http://127.0.0.1:4318`.
   */
  readonly url?: string
  /** Headers sent with every export, such as an API key. Redacted: the layer never prints their values. */
  readonly headers?: Readonly<Record<string, Redacted.Redacted<string>>>
  /** How often the metrics are exported (they are once more when the scope closes). Default: 10 seconds. */
  readonly metricsInterval?: Duration.DurationInput
  /**
   * The longest one export may take, retries included (a collector that is down is retried with a backoff
   * until then), and the longest closing the scope waits for each final flush. Default: 5 seconds.
   */
  readonly timeout?: Duration.DurationInput
  /** More resource attributes, such as `deployment.environment` (`service.name` is `serviceName`'s). */
  readonly resourceAttributes?: Readonly<Record<string, string>>
  /** Whether to export spans. Default: true. */
  readonly spans?: boolean
  /** Whether to export metrics. Default: true. */
  readonly metrics?: boolean
}

/**
 * The collector's default base URL: an OpenTelemetry Collector's OTLP/HTTP receiver on this host.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultUrl: string = internal.defaultUrl

/**
 * A layer that installs an OpenTelemetry tracer and a metric reader for the program it is provided to, built
 * on `NodeSdk.layer` of `@effect/opentelemetry`: spans go through a `BatchSpanProcessor` to an
 * `OTLPTraceExporter`, metrics through a `PeriodicExportingMetricReader` to an `OTLPMetricExporter`. Closing
 * its scope flushes both (each flush bounded by `timeout`).
 *
 * A collector that fails or cannot be reached never fails the program: what could not be sent is dropped, and
 * a warning is logged when exports start failing (and an info line when they recover), once per outage. The
 * exporters also honour the standard `OTEL_EXPORTER_OTLP_*` variables for what is not given here (such as
 * `OTEL_EXPORTER_OTLP_COMPRESSION`), and the resource takes `OTEL_RESOURCE_ATTRIBUTES` in.
 *
 * The layer fails with `IllegalArgumentException` for options that cannot work: an empty `serviceName`, a
 * `url` that is not an `http:` / `https:` URL or that carries a user, password, query or fragment, a header
 * name that is not an HTTP token or a value with a control character, a `metricsInterval` or `timeout` that is
 * not a positive duration. Its message says which, never quoting a URL or a header value. Build it once and
 * keep it in a constant.
 *
 * @example
 * ```ts
 * import { Config, Effect, Layer } from "effect"
 * import * as OpenTelemetry from "@rms/cache/OpenTelemetry"
 *
 * const Telemetry = Layer.unwrapEffect(Effect.map(Config.redacted("OTLP_API_KEY"), (apiKey) =>
 *   OpenTelemetry.layer({
 *     serviceName: "tasks-api",
 *     url: "http://otel-collector:4318",
 *     headers: { "x-api-key": apiKey }
 *   })))
 *
 * main.pipe(Effect.provide(Telemetry))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options: Options) => Layer.Layer<never, Cause.IllegalArgumentException> = internal.layer

/**
 * The options from the standard environment variables: `OTEL_SERVICE_NAME` (default `unknown_service:node`, as
 * the OpenTelemetry SDKs say), `OTEL_EXPORTER_OTLP_ENDPOINT` (the base URL; default `defaultUrl`),
 * `OTEL_EXPORTER_OTLP_HEADERS` (redacted; `name=value` pairs separated by commas, values percent-encoded),
 * `OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds; default 5 s and 10 s), and
 * `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` (`otlp`, the default, or `none`). An endpoint or headers
 * that cannot work are a `ConfigError` that says why without quoting them.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = internal.config

/**
 * `layer` configured from the environment (see `config`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<never, ConfigError.ConfigError | Cause.IllegalArgumentException> = Layer
  .unwrapEffect(Effect.map(internal.config, internal.layer))

/**
 * Runs `effect` with keys recorded in the cache spans it opens (attribute `cache.keys`, at most 32 per span).
 * Off by default: keys may be personal data. The same as `CacheTracing.withKeys`.
 *
 * @since 0.1.0
 * @category spans
 */
export const withKeys: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = CacheTracing.withKeys

/**
 * A layer that records keys in every cache span of the program it is provided to. The same as
 * `CacheTracing.keys`.
 *
 * @since 0.1.0
 * @category spans
 */
export const keys: Layer.Layer<never> = CacheTracing.keys
