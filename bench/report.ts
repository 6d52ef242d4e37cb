/**
 * Markdown helpers for BENCHMARKS.md.
 */
import { readFileSync } from "node:fs"
import * as os from "node:os"

/** The installed version of a dependency, read from its package.json (some packages do not export that file). */
export const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")) as {
    version: string
  }).version

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

export const ratio = (x: number): string => `${x.toFixed(2)}×`

export const machine = (): string => {
  const cpus = os.cpus()
  return `${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${
    (os.totalmem() / 2 ** 30).toFixed(0)
  } GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`
}
