/**
 * Markdown helpers for BENCHMARKS.md.
 */
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"

const require = createRequire(import.meta.url)

/** The installed version of a dependency, read from its package.json. */
export const versionOf = (name: string): string => {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")) as { version: string }).version
  } catch {
    return "?"
  }
}

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
