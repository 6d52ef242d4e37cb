/**
 * Every example runs to completion on its own (and exits: no open handles) and prints what it claims. The HTTP
 * server (examples/http-server.ts) has its own file: test/HttpServer.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import { deadUrl } from "./support/otlpCollector.js"
import { databaseUrl } from "./support/postgres.js"
import { redisUrl } from "./support/redis.js"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The environment of an example: no DATABASE_URL / REDIS_URL (embedded defaults) unless `extra` sets them. */
const environment = (extra: Record<string, string> = {}) => {
  const { DATABASE_URL: _d, REDIS_URL: _r, ...rest } = process.env
  return { ...rest, ...extra }
}

/**
 * Runs an example to its end. `signal` is the test's: when the test times out or is cancelled, the example's
 * process is killed with it (and after 90 s in any case).
 */
const run = (file: string, env: Record<string, string> = {}, signal?: AbortSignal, args: ReadonlyArray<string> = []) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", `examples/${file}`, ...args], {
    cwd: root,
    timeout: 90_000,
    killSignal: "SIGKILL",
    encoding: "utf8",
    env: environment(env),
    ...(signal === undefined ? {} : { signal })
  })

// Each example is a process of its own (tsx, and PGlite for some): on two busy cores one can take tens of seconds.
describe("examples", () => {
  it.concurrent("lru.ts evicts the least recently used entry", async ({ signal }) => {
    const { stdout } = await run("lru.ts", {}, signal)
    expect(stdout).toContain("user 2: <miss 2>")
    expect(stdout).toContain("user 1: Ada")
    expect(stdout).toContain("evictions 1")
  }, 90_000)

  it.concurrent("ttl.ts sweeps the expired session and exits", async ({ signal }) => {
    const { stdout } = await run("ttl.ts", {}, signal)
    expect(stdout).toContain("after 350 ms: 1 session left, s-1 is gone")
  }, 90_000)

  it.concurrent("singleflight.ts runs one load for 100 callers", async ({ signal }) => {
    const { stdout } = await run("singleflight.ts", {}, signal)
    expect(stdout).toContain("loads run: 1; joined: 99")
  }, 90_000)

  it.concurrent("metrics.ts prints stats and registry lines", async ({ signal }) => {
    const { stdout } = await run("metrics.ts", {}, signal)
    expect(stdout).toMatch(/hit ratio \d+\.\d %/)
    expect(stdout).toContain(`cache_evictions{cache="squares",tier="lru"}`)
  }, 90_000)

  it.concurrent("write-through.ts keeps the cache in step with the store", async ({ signal }) => {
    const { stdout } = await run("write-through.ts", {}, signal)
    expect(stdout).toContain(`saved:  "bonjour"`)
    expect(stdout).toContain(`the cache still says "bonjour"`)
    expect(stdout).toContain("delete: the cache no longer has it")
  }, 90_000)

  it.concurrent("multi-level.ts batches 1,000 cold reads into one load", async ({ signal }) => {
    const { stdout } = await run("multi-level.ts", {}, signal)
    expect(stdout).toContain("1 loader call for 1000 keys")
    expect(stdout).toContain("L1 answered 100, L2 900")
  }, 90_000)

  it.concurrent("loading-cache.ts serves stale while refreshing, fail-safe while the source is down", async ({ signal }) => {
    const { stdout } = await run("loading-cache.ts", {}, signal)
    expect(stdout).toContain("after its time-to-live: 100 at once")
    expect(stdout).toContain("a moment later: 120")
    expect(stdout).toContain("sku-404 read 3 times: absent, source calls: 1")
    expect(stdout).toContain("source down: answers 120, 120, 120, 120, 120 (fail-safe), source calls meanwhile: 0")
  }, 90_000)

  it.concurrent("tags.ts invalidates one category's products on both instances, and only those", async ({ signal }) => {
    const { stdout } = await run("tags.ts", {}, signal)
    expect(stdout).toContain("B: Runner (Shoes), Walker (Shoes), Beret (Hats) (from the shared L2), store reads so far: 3")
    expect(stdout).toContain("after renaming c1, A: Runner (Footwear), Walker (Footwear), Beret (Hats)")
    expect(stdout).toContain("after renaming c1, B: Runner (Footwear), Walker (Footwear), Beret (Hats), store reads: 2")
  }, 90_000)

  it.concurrent("opentelemetry.ts --collector sends the caches' spans and metrics to its stand-in collector", async ({ signal }) => {
    const { stdout } = await run("opentelemetry.ts", {}, signal, ["--collector"])
    expect(stdout).toContain(`read "product p1" and "product p2 (from L2)", wrote p3`)
    expect(stdout).toMatch(/collector: \d+ spans from service "opentelemetry-example": .*example\.request/)
    expect(stdout).toMatch(/spans from service .*cache\.load/)
    expect(stdout).toContain(`collector: cache_hits{cache="example-products-l1",tier="lru"} 10`)
    expect(stdout).toContain(`collector: cache_misses{cache="example-products",tier="multilevel"} 1`)
  }, 90_000)

  it.concurrent("opentelemetry.ts with no collector listening completes and says the export failed", async ({ signal }) => {
    const url = await Effect.runPromise(deadUrl)
    const { stdout } = await run("opentelemetry.ts", { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_TIMEOUT: "500" }, signal)
    expect(stdout).toContain(`exporting to ${url}`)
    expect(stdout).toContain(`read "product p1" and "product p2 (from L2)", wrote p3`)
    expect(stdout).toContain(`the spans export to ${url}/v1/traces failed, spans are dropped`)
    expect(stdout).toContain("done: spans and metrics flushed, or dropped")
  }, 90_000)

  it.concurrent("cached-store.ts caches its own entity on two instances, embedded", async ({ signal }) => {
    const { stdout } = await run("cached-store.ts", {}, signal)
    expect(stdout).toContain("embedded Postgres, in-memory L2 and bus")
    expect(stdout).toContain("B reads 30")
    expect(stdout).toContain("after A's price cut, B reads 25")
    expect(stdout).toContain("after B's delete, A reads: not found")
  }, 90_000)

  it.concurrent("demo.ts (npm start) runs on embedded defaults and reports the comparison", async ({ signal }) => {
    const { stdout } = await run("demo.ts", { DEMO_TASKS: "300", DEMO_REQUESTS: "2000" }, signal)
    expect(stdout).toContain("embedded Postgres (PGlite), L2 in memory")
    expect(stdout).toMatch(/reads answered by L1 +\d+ \(\d+\.\d %\)/)
    // L1 holds a sixth of the tasks: L2 answers some of the rest.
    expect(Number(stdout.match(/reads answered by L2 +(\d+)/)?.[1])).toBeGreaterThan(0)
    expect(stdout).toMatch(/\d+ req\/s: latency p99/)
    expect(stdout).toContain("What the figures say:")
    expect(stdout).toMatch(/store queries +[\d,]+ +2,000/)
    expect(stdout).toMatch(/speed-up \d+\.\d×, [\d,]+ store queries saved/)
  }, 90_000)

  it.concurrent("demo.ts runs on real Postgres and Redis when DATABASE_URL and REDIS_URL are set", async ({ signal }) => {
    const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`
    const schema = `test_demo_${suffix}`
    try {
      const { stdout } = await run("demo.ts", {
        DEMO_TASKS: "300",
        DEMO_REQUESTS: "2000",
        DATABASE_URL: databaseUrl,
        REDIS_URL: redisUrl,
        TASK_STORE_SCHEMA: schema,
        TASK_CACHE_NAMESPACE: `test:demo:${suffix}`
      }, signal)
      expect(stdout).toContain("Postgres at DATABASE_URL, L2 in Redis at REDIS_URL")
      expect(stdout).toMatch(/speed-up \d+\.\d×/)
    } finally {
      await promisify(execFile)("psql", [databaseUrl, "-qc", `DROP SCHEMA IF EXISTS "${schema}" CASCADE`])
      await promisify(execFile)("sh", ["-c", `redis-cli -u ${redisUrl} --scan --pattern 'test%3Ademo%3A${suffix}:*' | xargs -r redis-cli -u ${redisUrl} del`])
    }
  }, 90_000)
})
