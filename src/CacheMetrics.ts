/**
 * Effect `Metric`s for caches, tagged by cache name and tier, and a stats snapshot read back from them.
 *
 * Every tier records through a `CacheMetrics` recorder built once per cache. The recorder resolves each
 * metric's registry hook at construction (the tags are part of the `MetricKey`), so recording on the hot path
 * is one cached hook update, not a tagged lookup per call. The values land in Effect's global metric registry
 * under the names below, where any exporter (`Metric.snapshot`, Prometheus, OpenTelemetry) finds them.
 *
 * Labels set on a fiber with `Effect.tagMetrics` are not added to these metrics: resolving them costs a
 * registry lookup per call, more than the cache lookup they would describe.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import type * as MetricState from "effect/MetricState"

/**
 * What a cache's metrics are tagged with.
 *
 * @since 0.1.0
 * @category models
 */
export interface Labels {
  /** The cache's name, such as `"tasks"`. */
  readonly cache: string
  /** The tier, such as `"lru"`, `"ttl"` or `"redis"`. */
  readonly tier: string
}

/**
 * A snapshot of one cache's counters.
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheStats {
  /** Reads answered by this cache. */
  readonly hits: number
  /** Reads it could not answer (including expired entries). */
  readonly misses: number
  /** `hits / (hits + misses)`, or 0 before the first read. */
  readonly hitRatio: number
  /** Entries written. */
  readonly sets: number
  /** Entries pushed out to make room (capacity), not counting expirations. */
  readonly evictions: number
  /** Entries removed because their time-to-live passed. */
  readonly expirations: number
  /** Entries removed by `invalidate` / `invalidateAll`. */
  readonly invalidations: number
  /** Loads that ran (each singleflight execution counts once). */
  readonly loads: number
  /** Loads that failed (they count in `loads` too). */
  readonly loadFailures: number
  /** Calls that joined a load already in flight instead of starting their own. */
  readonly sharedLoads: number
  /** Stored values that did not decode with the tier's schema (each treated as a miss and deleted). */
  readonly decodeFailures: number
  /** Backend calls that failed or timed out; for a multi-level cache, tier calls that failed and fell through. */
  readonly errors: number
  /** Tier calls not made at all because the tier's circuit breaker was open. */
  readonly skips: number
  /** The entries the tier held at its last write or removal. */
  readonly size: number
}

/**
 * Records one cache's events into its tagged metrics.
 *
 * The `unsafe*` methods update synchronously; call them from inside the tier's own `Effect.sync` or
 * `Effect.suspend`, never at Effect construction time.
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheMetrics {
  /** The cache and tier its metrics are tagged with. */
  readonly labels: Labels
  /** Whether this recorder writes anything (false for `CacheMetrics.disabled`). */
  readonly enabled: boolean
  /** Reads answered (default 1). */
  unsafeHit(count?: number): void
  /** Reads not answered (default 1). */
  unsafeMiss(count?: number): void
  /** Entries written (default 1). */
  unsafeSet(count?: number): void
  /** Entries pushed out to make room (default 1). */
  unsafeEviction(count?: number): void
  /** Entries removed because they expired (default 1). */
  unsafeExpiration(count?: number): void
  /** Entries invalidated (default 1). */
  unsafeInvalidation(count?: number): void
  /** A load finished successfully after `millis`. */
  unsafeLoad(millis: number): void
  /** A load failed after `millis`. */
  unsafeLoadFailure(millis: number): void
  /** A caller joined a load already in flight. */
  unsafeShared(count?: number): void
  /** A stored value did not decode. */
  unsafeDecodeFailure(count?: number): void
  /** A backend call failed or timed out. */
  unsafeError(count?: number): void
  /** A tier call was not made: the breaker was open. */
  unsafeSkip(count?: number): void
  /** The tier now holds `size` entries. */
  unsafeSize(size: number): void
  /** The current values of this cache's metrics. */
  readonly stats: Effect.Effect<CacheStats>
}

/** Counter names, exported for exporters and dashboards. */
const names = {
  hits: "cache_hits",
  misses: "cache_misses",
  sets: "cache_sets",
  evictions: "cache_evictions",
  expirations: "cache_expirations",
  invalidations: "cache_invalidations",
  loads: "cache_loads",
  loadFailures: "cache_load_failures",
  sharedLoads: "cache_singleflight_shared",
  decodeFailures: "cache_decode_failures",
  errors: "cache_errors",
  skips: "cache_skips",
  size: "cache_size",
  loadDuration: "cache_load_duration_ms"
} as const

/**
 * The metric names used by every cache, tagged with `cache` and `tier` (and `time_unit` for the histogram).
 *
 * @since 0.1.0
 * @category metrics
 */
export const metricNames: typeof names = names

/**
 * Bucket boundaries of `cache_load_duration_ms`: 0.25 ms to about 33 s, doubling.
 *
 * @since 0.1.0
 * @category metrics
 */
export const loadDurationBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 0.25,
  factor: 2,
  count: 18
})

type CounterMetric = Metric.Metric.Counter<number>
type GaugeMetric = Metric.Metric.Gauge<number>
type HistogramMetric = Metric.Metric<
  MetricKeyType.MetricKeyType.Histogram,
  number,
  MetricState.MetricState.Histogram
>

const tag = <Type extends MetricKeyType.MetricKeyType<any, any>>(
  key: MetricKey.MetricKey<Type>,
  labels: Labels
): MetricKey.MetricKey<Type> => key.pipe(MetricKey.tagged("cache", labels.cache), MetricKey.tagged("tier", labels.tier))

/**
 * The counter `name` (one of `metricNames`) for one cache, as an ordinary Effect `Metric`: the same registry
 * entry the recorder writes to.
 *
 * @since 0.1.0
 * @category metrics
 */
export const counter = (name: string, labels: Labels): CounterMetric =>
  Metric.fromMetricKey(tag(MetricKey.counter(name), labels))

/**
 * The `cache_size` gauge of one cache.
 *
 * @since 0.1.0
 * @category metrics
 */
export const sizeGauge = (labels: Labels): GaugeMetric => Metric.fromMetricKey(tag(MetricKey.gauge(names.size), labels))

/**
 * The `cache_load_duration_ms` histogram of one cache.
 *
 * @since 0.1.0
 * @category metrics
 */
export const loadDuration = (labels: Labels): HistogramMetric =>
  Metric.fromMetricKey(
    tag(MetricKey.histogram(names.loadDuration, loadDurationBoundaries), labels).pipe(
      MetricKey.tagged("time_unit", "milliseconds")
    )
  )

/** Empty extra labels: the metric's own hook, resolved once and cached by `Metric.fromMetricKey`. */
const none: ReadonlyArray<never> = []

class Recorder implements CacheMetrics {
  readonly enabled = true
  private readonly hits: CounterMetric
  private readonly misses: CounterMetric
  private readonly sets: CounterMetric
  private readonly evictions: CounterMetric
  private readonly expirations: CounterMetric
  private readonly invalidations: CounterMetric
  private readonly loads: CounterMetric
  private readonly loadFailures: CounterMetric
  private readonly shared: CounterMetric
  private readonly decodeFailures: CounterMetric
  private readonly errors: CounterMetric
  private readonly skips: CounterMetric
  private readonly size: GaugeMetric
  private readonly duration: HistogramMetric

  constructor(readonly labels: Labels) {
    this.hits = counter(names.hits, labels)
    this.misses = counter(names.misses, labels)
    this.sets = counter(names.sets, labels)
    this.evictions = counter(names.evictions, labels)
    this.expirations = counter(names.expirations, labels)
    this.invalidations = counter(names.invalidations, labels)
    this.loads = counter(names.loads, labels)
    this.loadFailures = counter(names.loadFailures, labels)
    this.shared = counter(names.sharedLoads, labels)
    this.decodeFailures = counter(names.decodeFailures, labels)
    this.errors = counter(names.errors, labels)
    this.skips = counter(names.skips, labels)
    this.size = sizeGauge(labels)
    this.duration = loadDuration(labels)
    // Register every metric now, so an exporter lists the cache (at zero) before its first event.
    for (const metric of [this.hits, this.misses, this.sets, this.evictions, this.expirations, this.invalidations]) {
      metric.register()
    }
    for (const metric of [this.loads, this.loadFailures, this.shared, this.decodeFailures, this.errors, this.skips]) {
      metric.register()
    }
    this.size.register()
    this.duration.register()
  }

  unsafeHit(count = 1): void {
    this.hits.unsafeUpdate(count, none)
  }
  unsafeMiss(count = 1): void {
    this.misses.unsafeUpdate(count, none)
  }
  unsafeSet(count = 1): void {
    this.sets.unsafeUpdate(count, none)
  }
  unsafeEviction(count = 1): void {
    this.evictions.unsafeUpdate(count, none)
  }
  unsafeExpiration(count = 1): void {
    this.expirations.unsafeUpdate(count, none)
  }
  unsafeInvalidation(count = 1): void {
    this.invalidations.unsafeUpdate(count, none)
  }
  unsafeLoad(millis: number): void {
    this.loads.unsafeUpdate(1, none)
    this.duration.unsafeUpdate(millis, none)
  }
  unsafeLoadFailure(millis: number): void {
    this.loads.unsafeUpdate(1, none)
    this.loadFailures.unsafeUpdate(1, none)
    this.duration.unsafeUpdate(millis, none)
  }
  unsafeShared(count = 1): void {
    this.shared.unsafeUpdate(count, none)
  }
  unsafeDecodeFailure(count = 1): void {
    this.decodeFailures.unsafeUpdate(count, none)
  }
  unsafeError(count = 1): void {
    this.errors.unsafeUpdate(count, none)
  }
  unsafeSkip(count = 1): void {
    this.skips.unsafeUpdate(count, none)
  }
  unsafeSize(size: number): void {
    this.size.unsafeUpdate(size, none)
  }

  get stats(): Effect.Effect<CacheStats> {
    return Effect.sync(() => {
      const hits = this.hits.unsafeValue(none).count
      const misses = this.misses.unsafeValue(none).count
      return {
        hits,
        misses,
        hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
        sets: this.sets.unsafeValue(none).count,
        evictions: this.evictions.unsafeValue(none).count,
        expirations: this.expirations.unsafeValue(none).count,
        invalidations: this.invalidations.unsafeValue(none).count,
        loads: this.loads.unsafeValue(none).count,
        loadFailures: this.loadFailures.unsafeValue(none).count,
        sharedLoads: this.shared.unsafeValue(none).count,
        decodeFailures: this.decodeFailures.unsafeValue(none).count,
        errors: this.errors.unsafeValue(none).count,
        skips: this.skips.unsafeValue(none).count,
        size: this.size.unsafeValue(none).value
      }
    })
  }
}

const emptyStats: CacheStats = {
  hits: 0,
  misses: 0,
  hitRatio: 0,
  sets: 0,
  evictions: 0,
  expirations: 0,
  invalidations: 0,
  loads: 0,
  loadFailures: 0,
  sharedLoads: 0,
  decodeFailures: 0,
  errors: 0,
  skips: 0,
  size: 0
}

const noop = (): void => {}

/**
 * Builds the recorder for one cache and registers its metrics. Recorders for the same labels share the same
 * registry entries, so the counters of two caches given one name add up (the `cache_size` gauge, though, holds
 * whichever cache wrote it last: give caches distinct names).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (labels: Labels): CacheMetrics => new Recorder(labels)

/**
 * A recorder that records nothing, for caches built with `metrics: false`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const disabled = (labels: Labels): CacheMetrics => ({
  labels,
  enabled: false,
  unsafeHit: noop,
  unsafeMiss: noop,
  unsafeSet: noop,
  unsafeEviction: noop,
  unsafeExpiration: noop,
  unsafeInvalidation: noop,
  unsafeLoad: noop,
  unsafeLoadFailure: noop,
  unsafeShared: noop,
  unsafeDecodeFailure: noop,
  unsafeError: noop,
  unsafeSkip: noop,
  unsafeSize: noop,
  stats: Effect.succeed(emptyStats)
})

/**
 * The stats snapshot of the cache with these labels, read from the global metric registry.
 *
 * @since 0.1.0
 * @category getters
 */
export const stats = (labels: Labels): Effect.Effect<CacheStats> => Effect.suspend(() => make(labels).stats)
