/**
 * Effect's metric registry in the Prometheus text exposition format (version 0.0.4): counters, gauges and
 * histograms, one `# TYPE` line per metric name. For production, @effect/opentelemetry's Prometheus exporter
 * does the same job; this keeps the example free of the OpenTelemetry SDK.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"

const metricName = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/^[^a-zA-Z_:]/, "_$&")
const labelValue = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
const labels = (pairs: ReadonlyArray<readonly [string, string]>) =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${metricName(k)}="${labelValue(v)}"`).join(",")}}`
const number = (n: number | bigint) =>
  typeof n === "bigint" ? n.toString() : Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN"

const render = (pair: MetricPair.MetricPair.Untyped): { type: string; lines: Array<string> } | undefined => {
  const name = metricName(pair.metricKey.name)
  const tags = pair.metricKey.tags.map((t) => [t.key, t.value] as const)
  const state = pair.metricState
  if (MetricState.isCounterState(state)) {
    return { type: "counter", lines: [`${name}${labels(tags)} ${number(state.count)}`] }
  }
  if (MetricState.isGaugeState(state)) {
    return { type: "gauge", lines: [`${name}${labels(tags)} ${number(state.value)}`] }
  }
  if (MetricState.isHistogramState(state)) {
    const lines = state.buckets.map(([le, count]) =>
      `${name}_bucket${labels([...tags, ["le", number(le)]])} ${count}`
    )
    if (!state.buckets.some(([le]) => le === Number.POSITIVE_INFINITY)) {
      lines.push(`${name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
    }
    lines.push(`${name}_sum${labels(tags)} ${number(state.sum)}`, `${name}_count${labels(tags)} ${state.count}`)
    return { type: "histogram", lines }
  }
  return undefined // frequencies and summaries: not used by this library
}

/** Every metric of the registry, rendered. */
export const prometheusText: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) => {
  const byName = new Map<string, { type: string; lines: Array<string> }>()
  for (const pair of pairs) {
    const rendered = render(pair)
    if (rendered === undefined) continue
    const name = metricName(pair.metricKey.name)
    const entry = byName.get(name) ?? { type: rendered.type, lines: [] }
    entry.lines.push(...rendered.lines)
    byName.set(name, entry)
  }
  return [...byName].map(([name, { lines, type }]) => `# TYPE ${name} ${type}\n${lines.join("\n")}`).join("\n") + "\n"
})
