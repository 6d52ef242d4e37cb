/**
 * Markdown helpers for BENCHMARKS.md.
 */
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { median } from "./harness.js"

/**
 * Whether the bench runs compiled (`npm run bench` compiles `src` and `bench` with tsc into `.bench-tmp`, so the
 * library is measured as its users run it: tsx keeps function names with a helper call per function, which
 * measured 30 % on the miss path) or from the sources through tsx.
 */
export const compiled = import.meta.url.endsWith(".js")

/** The repository's root: the nearest directory above this file with a `package.json` (compiled or not). */
export const root: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, "package.json")) || dir.endsWith(".bench-tmp")) dir = dirname(dir)
  return dir
})()

/** The arguments that run another bench module `file` (a sibling `.ts`, or `.js` when compiled) in a child `node`. */
export const nodeArgs = (file: string): Array<string> => {
  const path = fileURLToPath(new URL(`./${file}${compiled ? ".js" : ".ts"}`, import.meta.url))
  return compiled ? ["--expose-gc", path] : ["--expose-gc", "--import", "tsx", path]
}

/**
 * Runs bench module `file` with `flag` in `n` fresh child processes, one after another, and parses what each
 * printed as JSON. For figures that move more from one process to the next than between rounds of one
 * process (V8's compilation choices, where the heap put the data): rounds of one process share its luck,
 * several processes sample it.
 */
export const inFreshProcesses = <T>(file: string, flag: string, n: number): Array<T> =>
  Array.from({ length: n }, () =>
    JSON.parse(
      execFileSync(process.execPath, [...nodeArgs(file), flag], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
        maxBuffer: 64 * 1024 * 1024
      })
    ) as T)

/** The installed version of a dependency, read from its package.json (some packages do not export that file). */
export const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")) as {
    version: string
  }).version

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

export const ratio = (x: number): string => `${x.toFixed(2)}×`

/** Ratios measured once per process: their median, and their range in parentheses. */
export const ratioSpread = (xs: ReadonlyArray<number>): string =>
  `${ratio(median(xs))} (${ratio(Math.min(...xs))}–${ratio(Math.max(...xs))})`

export const machine = (): string => {
  const cpus = os.cpus()
  return `${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${
    (os.totalmem() / 2 ** 30).toFixed(0)
  } GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`
}
