/**
 * Typed access to `parse-prometheus-text-format` (a parser of the Prometheus text format not written here, so
 * that tests do not check our text with our own reading of it). The package ships no types: its output is
 * described here, and it is loaded once through `require` (it is CommonJS).
 *
 * The parser folds the samples of a labelled histogram into one object of buckets and drops their labels (its
 * README shows histograms without labels only); `histogramSeries` works around that by having it read the
 * family's `_bucket` / `_sum` / `_count` lines as untyped samples, each with all its labels, and grouping them.
 */
import { createRequire } from "node:module"

/** One sample (or, for histograms and summaries, one series) as the parser gives it; values are text. */
export interface ParsedSample {
  readonly labels?: Readonly<Record<string, string>>
  readonly value?: string
  readonly buckets?: Readonly<Record<string, string>>
  readonly quantiles?: Readonly<Record<string, string>>
  readonly count?: string
  readonly sum?: string
}

/** One metric family as the parser gives it. */
export interface ParsedFamily {
  readonly name: string
  readonly help: string
  readonly type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED"
  readonly metrics: ReadonlyArray<ParsedSample>
}

const parsePrometheusTextFormat: (text: string) => Array<ParsedFamily> = createRequire(import.meta.url)(
  "parse-prometheus-text-format"
)

/** The families of `text`, in order; throws `InvalidLineError` on a line the format does not allow. */
export const parse = (text: string): ReadonlyArray<ParsedFamily> => parsePrometheusTextFormat(text)

/** The families of `text` by name; throws when a name comes twice (a family split apart, or two types). */
export const families = (text: string): ReadonlyMap<string, ParsedFamily> => {
  const byName = new Map<string, ParsedFamily>()
  for (const family of parse(text)) {
    if (byName.has(family.name)) throw new Error(`the family ${family.name} appears twice`)
    byName.set(family.name, family)
  }
  return byName
}

/** One series of a histogram: its labels (without `le`), its cumulative buckets in the text's order, sum, count. */
export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>
  readonly buckets: ReadonlyArray<readonly [le: string, count: number]>
  readonly sum: number
  readonly count: number
}

/** The series of the histogram `name` in `text`, in the text's order. */
export const histogramSeries = (text: string, name: string): ReadonlyArray<HistogramSeries> => {
  const suffixes = ["_bucket", "_sum", "_count"] as const
  const lines = text.split("\n").filter((line) =>
    suffixes.some((suffix) => line.startsWith(`${name}${suffix}{`) || line.startsWith(`${name}${suffix} `))
  )
  const series = new Map<
    string,
    { labels: Record<string, string>; buckets: Array<[string, number]>; sum: number; count: number }
  >()
  for (const family of parse(`${lines.join("\n")}\n`)) {
    for (const sample of family.metrics) {
      const { le, ...labels } = sample.labels ?? {}
      const id = JSON.stringify(Object.entries(labels))
      const entry = series.get(id) ?? { labels, buckets: [], sum: Number.NaN, count: Number.NaN }
      series.set(id, entry)
      const value = Number(sample.value)
      if (family.name === `${name}_bucket` && le !== undefined) entry.buckets.push([le, value])
      else if (family.name === `${name}_sum`) entry.sum = value
      else if (family.name === `${name}_count`) entry.count = value
    }
  }
  return [...series.values()]
}

/** The samples of a counter or gauge family whose labels include `labels`. */
export const samplesWith = (
  family: ParsedFamily | undefined,
  labels: Readonly<Record<string, string>>
): ReadonlyArray<ParsedSample> =>
  (family?.metrics ?? []).filter((sample) =>
    Object.entries(labels).every(([name, value]) => sample.labels?.[name] === value)
  )
