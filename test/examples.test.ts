/**
 * Every example runs to completion on its own (and exits: no open handles) and prints what it claims; the HTTP
 * server answers its routes and stops on SIGTERM.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { databaseUrl } from "./support/postgres.js"
import { redisUrl } from "./support/redis.js"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The environment of an example: no DATABASE_URL / REDIS_URL (embedded defaults) unless `extra` sets them. */
const environment = (extra: Record<string, string> = {}) => {
  const { DATABASE_URL: _d, REDIS_URL: _r, ...rest } = process.env
  return { ...rest, ...extra }
}

const run = (file: string, env: Record<string, string> = {}) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", `examples/${file}`], {
    cwd: root,
    timeout: 90_000,
    encoding: "utf8",
    env: environment(env)
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

  it.concurrent("write-through.ts keeps the cache in step with the store", async () => {
    const { stdout } = await run("write-through.ts")
    expect(stdout).toContain(`saved:  "bonjour"`)
    expect(stdout).toContain(`the cache still says "bonjour"`)
    expect(stdout).toContain("delete: the cache no longer has it")
  })

  it.concurrent("multi-level.ts batches 1,000 cold reads into one load", async () => {
    const { stdout } = await run("multi-level.ts")
    expect(stdout).toContain("1 loader call for 1000 keys")
    expect(stdout).toContain("L1 answered 100, L2 900")
  })

  it.concurrent("demo.ts (npm start) runs on embedded defaults and reports the comparison", async () => {
    const { stdout } = await run("demo.ts", { DEMO_TASKS: "300", DEMO_REQUESTS: "2000" })
    expect(stdout).toContain("embedded Postgres (PGlite), L2 in memory")
    expect(stdout).toMatch(/reads answered by L1 +\d+ \(\d+\.\d %\)/)
    expect(stdout).toMatch(/store queries +[\d,]+ +2,000/)
    expect(stdout).toMatch(/speed-up \d+\.\d×, [\d,]+ store queries saved/)
  })

  it.concurrent("demo.ts runs on real Postgres and Redis when DATABASE_URL and REDIS_URL are set", async () => {
    const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`
    const schema = `test_demo_${suffix}`
    const { stdout } = await run("demo.ts", {
      DEMO_TASKS: "300",
      DEMO_REQUESTS: "2000",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      TASK_STORE_SCHEMA: schema,
      TASK_CACHE_NAMESPACE: `test:demo:${suffix}`
    })
    try {
      expect(stdout).toContain("Postgres at DATABASE_URL, L2 in Redis at REDIS_URL")
      expect(stdout).toMatch(/speed-up \d+\.\d×/)
    } finally {
      await promisify(execFile)("psql", [databaseUrl, "-qc", `DROP SCHEMA IF EXISTS "${schema}" CASCADE`])
      await promisify(execFile)("sh", ["-c", `redis-cli -u ${redisUrl} --scan --pattern 'test%3Ademo%3A${suffix}:*' | xargs -r redis-cli -u ${redisUrl} del`])
    }
  })

  it.concurrent("http-server.ts serves tasks, rejects bad input clearly, exports metrics, stops on SIGTERM", async () => {
    const server = spawn(process.execPath, ["--import", "tsx", "examples/http-server.ts"], {
      cwd: root,
      env: environment({ PORT: "0" }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    try {
      let output = ""
      const address = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no address in: ${output}`)), 60_000)
        server.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString()
          const found = output.match(/Listening on (http:\/\/\S+)/)
          if (found) {
            clearTimeout(timer)
            resolve(found[1]!)
          }
        })
      })
      const call = async (method: string, path: string, body?: string) => {
        const response = await fetch(`${address}${path}`, {
          method,
          ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } })
        })
        const text = await response.text()
        return { status: response.status, text, json: () => JSON.parse(text) }
      }
      const odd = encodeURIComponent("a task: ünï 🔑")

      const put = await call("PUT", `/tasks/${odd}`, JSON.stringify({ title: "write tests", status: "todo" }))
      expect(put.status).toBe(200)
      expect(put.json()).toMatchObject({ id: "a task: ünï 🔑", title: "write tests", version: 1 })
      const get = await call("GET", `/tasks/${odd}`)
      expect(get.status).toBe(200)
      expect(get.json()).toStrictEqual(put.json())

      expect((await call("GET", "/tasks/nope")).status).toBe(404)
      const tooLong = await call("GET", `/tasks/${"x".repeat(10_000)}`)
      expect(tooLong.status).toBe(400)
      expect(tooLong.text).toContain("at most 200 characters")
      const notJson = await call("PUT", "/tasks/x", "{not json")
      expect(notJson.status).toBe(400)
      expect(notJson.text).toContain("not valid JSON")
      const wrongShape = await call("PUT", "/tasks/x", JSON.stringify({ title: " padded ", status: "later" }))
      expect(wrongShape.status).toBe(400)
      expect(wrongShape.json().issues.map((i: { path: string }) => i.path).sort()).toStrictEqual(["status", "title"])
      expect((await call("GET", "/tasks/x")).status).toBe(404) // nothing was stored

      expect((await call("DELETE", `/tasks/${odd}`)).status).toBe(204)
      expect((await call("GET", `/tasks/${odd}`)).status).toBe(404)
      expect((await call("DELETE", `/tasks/${odd}`)).status).toBe(404)

      const metrics = await call("GET", "/metrics")
      expect(metrics.status).toBe(200)
      expect(metrics.text).toContain("# TYPE cache_hits counter")
      expect(metrics.text).toMatch(/cache_hits\{cache="tasks-l1",tier="lru"\} \d+/)
      expect(metrics.text).toMatch(/cache_load_duration_ms_bucket\{cache="tasks",tier="multilevel",time_unit="milliseconds",le="\+Inf"\} \d+/)
    } finally {
      server.kill("SIGTERM")
    }
    const [code, signal] = await Promise.race([
      once(server, "exit"),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("server did not stop")), 10_000))
    ])
    expect(code === 0 || signal === "SIGTERM" || code === 130 || code === 143).toBe(true)
  })
})
