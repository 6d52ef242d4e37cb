/**
 * Effect metric pairs in the Prometheus text exposition format 0.0.4: families grouped and sorted, names and
 * label names sanitized, label values and help text escaped.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

type Type = "counter" | "gauge" | "histogram" | "summary"

type Label = readonly [name: string, value: string]

/** One metric family: its samples by the label set of their series (without `le`, `quantile` or `key`). */
interface Family {
  readonly name: string
  readonly type: Type
  /** The Effect name of its first metric (before sanitizing): the help text of a family without description. */
  readonly origin: string
  help: string | undefined
  readonly series: Map<string, ReadonlyArray<string>>
}

/** `[a-zA-Z_:][a-zA-Z0-9_:]*`: anything else becomes `_`, and a leading digit gets a `_` in front. */
const metricName = (name: string): string =>
  name === "" ? "_" : name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/^[0-9]/, "_$&")

/** `[a-zA-Z_][a-zA-Z0-9_]*`, as `metricName` but without the colon. */
const labelName = (name: string): string =>
  name === "" ? "_" : name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/^[0-9]/, "_$&")

/** Code-unit order: the same on every machine, whatever its locale. */
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatNumber = (n: number | bigint): string =>
  typeof n === "bigint"
    ? n.toString()
    : Number.isNaN(n)
    ? "NaN"
    : n === Number.POSITIVE_INFINITY
    ? "+Inf"
    : n === Number.NEGATIVE_INFINITY
    ? "-Inf"
    : String(n)

const formatLabels = (labels: ReadonlyArray<Label>): string =>
  labels.length === 0 ? "" : `{${labels.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(",")}}`

/**
 * The series' own labels, sanitized, in the key's order: the first of two that sanitize to one name is kept,
 * and a label the type writes itself (`le`, `quantile`, `key`) is left to it.
 */
const seriesLabels = (pair: MetricPair.MetricPair.Untyped, reserved: string | undefined): Array<Label> => {
  const labels: Array<Label> = []
  const seen = new Set<string>()
  for (const tag of pair.metricKey.tags) {
    const name = labelName(tag.key)
    if (name === reserved || seen.has(name)) continue
    seen.add(name)
    labels.push([name, tag.value])
  }
  return labels
}

/** The type of a pair and its sample lines, or undefined for a state this format has no type for. */
const samples = (
  name: string,
  pair: MetricPair.MetricPair.Untyped
): { readonly type: Type; readonly labels: string; readonly lines: ReadonlyArray<string> } | undefined => {
  const state = pair.metricState
  if (MetricState.isCounterState(state)) {
    const labels = formatLabels(seriesLabels(pair, undefined))
    return { type: "counter", labels, lines: [`${name}${labels} ${formatNumber(state.count)}`] }
  }
  if (MetricState.isGaugeState(state)) {
    const labels = formatLabels(seriesLabels(pair, undefined))
    return { type: "gauge", labels, lines: [`${name}${labels} ${formatNumber(state.value)}`] }
  }
  if (MetricState.isHistogramState(state)) {
    const own = seriesLabels(pair, "le")
    const labels = formatLabels(own)
    // Effect's buckets are already cumulative and end with +Inf (its boundaries always include it): they are
    // written as recorded; a +Inf bucket is added only for a state built without one.
    const lines = state.buckets.map(([le, count]) =>
      `${name}_bucket${formatLabels([...own, ["le", formatNumber(le)]])} ${formatNumber(count)}`
    )
    if (!state.buckets.some(([le]) => le === Number.POSITIVE_INFINITY)) {
      lines.push(`${name}_bucket${formatLabels([...own, ["le", "+Inf"]])} ${formatNumber(state.count)}`)
    }
    lines.push(`${name}_sum${labels} ${formatNumber(state.sum)}`, `${name}_count${labels} ${formatNumber(state.count)}`)
    return { type: "histogram", labels, lines }
  }
  if (MetricState.isSummaryState(state)) {
    const own = seriesLabels(pair, "quantile")
    const labels = formatLabels(own)
    const lines = state.quantiles.map(([quantile, value]) =>
      `${name}${formatLabels([...own, ["quantile", formatNumber(quantile)]])} ${
        formatNumber(Option.getOrElse(value, () => Number.NaN))
      }`
    )
    lines.push(`${name}_sum${labels} ${formatNumber(state.sum)}`, `${name}_count${labels} ${formatNumber(state.count)}`)
    return { type: "summary", labels, lines }
  }
  if (MetricState.isFrequencyState(state)) {
    const own = seriesLabels(pair, "key")
    const keys = [...state.occurrences.keys()].sort(compare)
    const lines = keys.map((key) =>
      `${name}${formatLabels([...own, ["key", key]])} ${formatNumber(state.occurrences.get(key)!)}`
    )
    return { type: "counter", labels: formatLabels(own), lines }
  }
  return undefined
}

export const render = (pairs: Iterable<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  for (const pair of pairs) {
    const name = metricName(pair.metricKey.name)
    const rendered = samples(name, pair)
    if (rendered === undefined) continue
    let family = families.get(name)
    if (family === undefined) {
      family = { name, type: rendered.type, origin: pair.metricKey.name, help: undefined, series: new Map() }
      families.set(name, family)
    }
    // Prometheus refuses a family of mixed types, and a series given twice: the first one met stays.
    if (family.type !== rendered.type || family.series.has(rendered.labels)) continue
    family.series.set(rendered.labels, rendered.lines)
    if (family.help === undefined && Option.isSome(pair.metricKey.description)) {
      family.help = pair.metricKey.description.value
    }
  }
  let text = ""
  for (const family of [...families.values()].sort((a, b) => compare(a.name, b.name))) {
    text += `# HELP ${family.name} ${escapeHelp(family.help ?? family.origin)}\n# TYPE ${family.name} ${family.type}\n`
    for (const labels of [...family.series.keys()].sort(compare)) {
      for (const line of family.series.get(labels)!) text += `${line}\n`
    }
  }
  return text
}

export const text: Effect.Effect<string> = Effect.map(Metric.snapshot, render)
