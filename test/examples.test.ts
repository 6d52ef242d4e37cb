/**
 * Every example runs to completion on its own (and exits: no open handles) and prints what it claims.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const root = fileURLToPath(new URL("..", import.meta.url))
const run = (file: string) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", `examples/${file}`], {
    cwd: root,
    timeout: 60_000,
    encoding: "utf8"
  })

describe("examples", () => {
  it.concurrent("lru.ts evicts the least recently used entry", async () => {
    const { stdout } = await run("lru.ts")
    expect(stdout).toContain("user 2: <miss 2>")
    expect(stdout).toContain("user 1: Ada")
    expect(stdout).toContain("evictions 1")
  })

  it.concurrent("ttl.ts sweeps the expired session and exits", async () => {
    const { stdout } = await run("ttl.ts")
    expect(stdout).toContain("after 350 ms: 1 session left, s-1 is gone")
  })

  it.concurrent("singleflight.ts runs one load for 100 callers", async () => {
    const { stdout } = await run("singleflight.ts")
    expect(stdout).toContain("loads run: 1; joined: 99")
  })

  it.concurrent("metrics.ts prints stats and registry lines", async () => {
    const { stdout } = await run("metrics.ts")
    expect(stdout).toMatch(/hit ratio \d+\.\d %/)
    expect(stdout).toContain(`cache_evictions{cache="squares",tier="lru"}`)
  })

  it.concurrent("demo.ts (npm start) reports its workload", async () => {
    const { stdout } = await run("demo.ts")
    expect(stdout).toMatch(/L1 hit ratio +\d+\.\d %/)
    expect(stdout).toMatch(/store reads +\d+/)
  })
})
