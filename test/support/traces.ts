/**
 * Readers for the cache traces in ../shared/traces (see its README for the formats).
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { gunzipSync } from "node:zlib"

/**
 * The traces folder: `RMS_TRACES_DIR` if set, else `../shared/traces` beside the repository, else the shared
 * folder of the development machines (a clone elsewhere, such as CI's, still finds it there).
 */
export const tracesDir = ((): string => {
  const candidates = [
    process.env.RMS_TRACES_DIR,
    fileURLToPath(new URL("../../../shared/traces/", import.meta.url)),
    "/work/shared/traces/"
  ].filter((dir): dir is string => dir !== undefined && dir !== "")
  const found = candidates.find((dir) => existsSync(join(dir, "oltp.arc.gz")))
  if (found === undefined) {
    throw new Error(`cache traces not found; set RMS_TRACES_DIR (looked in ${candidates.join(", ")})`)
  }
  return found.endsWith("/") ? found : `${found}/`
})()

/** Every key of an ARC-format trace (`start count ignore reqno` expands to `start … start+count-1`). */
export const readArcTrace = (file: string): Int32Array => {
  const text = gunzipSync(readFileSync(tracesDir + file)).toString("latin1")
  const keys: Array<number> = []
  for (const line of text.split("\n")) {
    if (line.length === 0) continue
    const [start, count] = line.split(" ")
    const first = Number(start)
    const n = Number(count)
    for (let i = 0; i < n; i++) keys.push(first + i)
  }
  return Int32Array.from(keys)
}

/** Every key of a LIRS-format trace (one integer per line, `*` marks the end). */
export const readLirsTrace = (file: string): Int32Array => {
  const text = gunzipSync(readFileSync(tracesDir + file)).toString("latin1")
  const keys: Array<number> = []
  for (const line of text.split("\n")) {
    const trimmed = line.trim()
    if (trimmed === "*") break
    if (trimmed.length > 0) keys.push(Number(trimmed))
  }
  return Int32Array.from(keys)
}
