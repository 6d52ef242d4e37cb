/**
 * docs/grafana-dashboard.json against the metrics the library records: every metric a panel queries is one of
 * `CacheMetrics.metricNames` (or the task store's `task_store_queries`), so renaming a metric breaks this test
 * rather than a dashboard in production; histograms are queried through their buckets; the required panels,
 * the data source input and the `cache` variable are there.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import * as CacheMetrics from "../src/CacheMetrics.js"

interface Target {
  readonly expr?: string
  readonly datasource?: { readonly uid?: string }
}

interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly datasource?: { readonly type?: string; readonly uid?: string }
  readonly gridPos?: { readonly h: number; readonly w: number; readonly x: number; readonly y: number }
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
}

interface Dashboard {
  readonly schemaVersion: number
  readonly __inputs: ReadonlyArray<{ readonly name: string; readonly type: string; readonly pluginId: string }>
  readonly panels: ReadonlyArray<Panel>
  readonly templating: {
    readonly list: ReadonlyArray<{
      readonly name: string
      readonly type: string
      readonly query: string | { readonly query: string }
    }>
  }
}

const dashboard: Dashboard = JSON.parse(
  readFileSync(new URL("../docs/grafana-dashboard.json", import.meta.url), "utf8")
)

/** Every panel, those inside rows included. */
const allPanels = (panels: ReadonlyArray<Panel>): ReadonlyArray<Panel> =>
  panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])])

const panels = allPanels(dashboard.panels)
const exprs = panels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr ?? "" }))
)

/** PromQL words that are not metric names: keywords and operators written as words. */
const keywords = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset"
])

/**
 * The metric names a PromQL expression selects: what is left once strings, label matchers, ranges, grouping
 * label lists, offsets, variables and numbers are taken out, without the function and aggregation names (the
 * words followed by a parenthesis) and the keywords.
 */
const metricsIn = (expr: string): ReadonlyArray<string> => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "\"\"")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\boffset\s+-?\w+/g, " ")
    .replace(/\$\{?\w+\}?/g, " ")
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, " ")
  return [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .filter((match) => !/^\s*\(/.test(stripped.slice(match.index + match[0].length)))
    .map((match) => match[0])
    .filter((word) => !keywords.has(word))
}

/** A series name without the suffix a histogram (or summary) adds to its family's name. */
const familyOf = (series: string) => series.replace(/_(?:bucket|sum|count)$/, "")

const known = new Set<string>([...Object.values(CacheMetrics.metricNames), "task_store_queries"])
const histograms = new Set<string>([
  CacheMetrics.metricNames.loadDuration,
  CacheMetrics.metricNames.tierDuration,
  CacheMetrics.metricNames.busLag
])

describe("docs/grafana-dashboard.json", () => {
  it("reads metric names out of PromQL", () => {
    expect(metricsIn(
      `histogram_quantile(0.99, sum by (cache, le) (rate(a_ms_bucket{cache=~"$cache", x="y{z}"}[$__rate_interval])))`
    )).toStrictEqual(["a_ms_bucket"])
    expect(metricsIn(`sum(rate(hits[5m])) by (tier) / (sum(rate(hits[5m])) by (tier) + on(tier) misses offset 1h)`))
      .toStrictEqual(["hits", "hits", "misses"])
    expect(metricsIn("max by (cache) (breaker_open)")).toStrictEqual(["breaker_open"])
  })

  it("queries only metrics the library records, each panel at least one, histograms through their buckets", () => {
    expect(exprs.length).toBeGreaterThan(0)
    const used = new Set<string>()
    for (const { expr, panel } of exprs) {
      const metrics = metricsIn(expr)
      expect(metrics.length, `${panel}: ${expr}`).toBeGreaterThan(0)
      for (const series of metrics) {
        expect(known.has(familyOf(series)), `${panel}: ${series} is not one of CacheMetrics.metricNames`).toBe(true)
        if (series.endsWith("_bucket")) expect(histograms.has(familyOf(series)), `${panel}: ${series}`).toBe(true)
        used.add(familyOf(series))
      }
      if (expr.includes("histogram_quantile")) {
        expect(metrics.every((series) => series.endsWith("_bucket")), `${panel}: ${expr}`).toBe(true)
        expect(expr, `${panel}: quantiles need the le label`).toMatch(/by \([^)]*\ble\b[^)]*\)/)
      }
      for (const range of expr.matchAll(/\[([^\]]*)\]/g)) expect(range[1], `${panel}: ${expr}`).toBe("$__rate_interval")
    }
    for (const metric of ["cache_hits", "cache_misses", "cache_load_duration_ms", "cache_tier_duration_ms"]) {
      expect(used.has(metric), metric).toBe(true)
    }
  })

  it("has the required panels", () => {
    const titles = panels.map((panel) => panel.title)
    for (const title of ["Hit ratio per tier", "Load latency", "Stale serves", "Breaker state", "Bus lag"]) {
      expect(titles).toContain(title)
    }
    const byTitle = (title: string) => panels.find((panel) => panel.title === title)!
    const exprsOf = (title: string) => (byTitle(title).targets ?? []).map((target) => target.expr ?? "").join("\n")
    expect(exprsOf("Hit ratio per tier")).toMatch(/cache_hits[^]*cache_misses/)
    expect(exprsOf("Load latency")).toContain("cache_load_duration_ms_bucket")
    for (const q of ["0.5", "0.95", "0.99"]) expect(exprsOf("Load latency")).toContain(`histogram_quantile(${q},`)
    expect(exprsOf("Stale serves")).toContain("cache_stale_served")
    expect(exprsOf("Stale serves")).toContain("cache_fail_safe_activations")
    expect(exprsOf("Breaker state")).toContain("cache_breaker_open")
    expect(["state-timeline", "stat"]).toContain(byTitle("Breaker state").type)
    expect(exprsOf("Bus lag")).toContain("cache_bus_lag_ms_bucket")
    expect(new Set(panels.map((panel) => panel.id)).size).toBe(panels.length)
    for (const panel of panels) expect(panel.gridPos, panel.title).toBeDefined()
  })

  it("is importable: schema 39, a Prometheus data source input used by every panel, the cache variable", () => {
    expect(dashboard.schemaVersion).toBe(39)
    expect(dashboard.__inputs).toContainEqual(
      expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })
    )
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe("${DS_PROMETHEUS}")
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).toBe("${DS_PROMETHEUS}")
    }
    const cache = dashboard.templating.list.find((variable) => variable.name === "cache")
    expect(cache?.type).toBe("query")
    const query = typeof cache?.query === "string" ? cache.query : cache?.query.query
    expect(query).toBe("label_values(cache_hits, cache)")
  })
})
