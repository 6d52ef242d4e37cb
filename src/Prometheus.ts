/**
 * Effect's metric registry in the Prometheus text exposition format (version 0.0.4), for a `GET /metrics`
 * route of your own HTTP server: every metric of the program, the caches' included.
 *
 * Why Effect's registry rather than the OpenTelemetry Prometheus exporter: that exporter needs the OpenTelemetry
 * SDK (a `MeterProvider`, and the @effect/opentelemetry bridge to reach Effect's metrics) and serves from an HTTP
 * server of its own, a second port (9464 by default); this module depends on effect only, answers on the route
 * you give it, and reads the same registry the caches write, synchronously, at the moment of the scrape.
 * Histograms keep the buckets exactly as Effect recorded them (its boundaries, its cumulative counts), summaries
 * stay Prometheus summaries (the bridge turns them into gauges), and names stay as recorded (no `_total` or unit
 * suffix added): `cache_hits` and `cache_load_duration_ms_bucket` are what a dashboard queries.
 *
 * The text:
 * - one `# HELP` (the metric's description, or its Effect name when it has none) and one `# TYPE` line per
 *   family, then every sample of the family; families sorted by name, series by their labels;
 * - counters and gauges (bigint ones too) as one sample each; histograms as cumulative `_bucket` samples with
 *   `le` (always ending with `le="+Inf"`), `_sum` and `_count`; summaries as samples with `quantile` (`NaN` for
 *   a quantile without observations), `_sum` and `_count`; frequencies as counters, one sample per occurrence
 *   with the occurrence in a label named `key`;
 * - names sanitized to `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names to `[a-zA-Z_][a-zA-Z0-9_]*` (anything else
 *   becomes `_`); label values escaped (`\`, `"`, newline), help text too (`\`, newline);
 * - a metric's own label named `le` (histogram), `quantile` (summary) or `key` (frequency) is left out: the
 *   type writes that label itself.
 *
 * Prometheus refuses a family whose samples have two types, and a series given twice: when two Effect metrics
 * share a (sanitized) name with different types, the family keeps the type of the first one met in the pairs'
 * order (for `text`, the registry's: in practice the earliest registered) and the other's samples are left out;
 * of two metrics with the same name, type and labels (say, two histograms with different boundaries), the first
 * is kept.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as MetricPair from "effect/MetricPair"
import * as Internal from "./internal/prometheus.js"

/**
 * Every metric of Effect's global registry (`Metric.snapshot`), rendered.
 *
 * @since 0.1.0
 * @category rendering
 */
export const text: Effect.Effect<string> = Internal.text

/**
 * Renders metric pairs (a snapshot, or a registry of your own) as the module describes; pure.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render: (pairs: Iterable<MetricPair.MetricPair.Untyped>) => string = Internal.render

/**
 * The `Content-Type` of the text: the Prometheus text format, version 0.0.4, in UTF-8.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType: "text/plain; version=0.0.4; charset=utf-8" = Internal.contentType
