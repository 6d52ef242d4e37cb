/**
 * The HTTP example service (`npm run serve`, examples/http-server.ts) against ordinary, careless and hostile
 * clients: it serves its routes; bodies are bounded (413 at the limit, at once when the declared length is over
 * it, with the memory of the server staying flat); only UTF-8 JSON is taken (415 / 400); a malformed path, deep
 * nesting or a huge invalid value gets a short 400; slow clients are cut off; a defect is a logged JSON 500; its
 * `/metrics` scrape, read by a parser not written here (parse-prometheus-text-format), has the caches' and the
 * store's metric families with their labels; and it stops on SIGTERM.
 *
 * One server is spawned for the file (PORT=0, embedded PGlite, L2 in memory, short timeouts) and the tests run
 * in order against it; the last one stops it. Raw `net` sockets are used where a client must misbehave in ways
 * `fetch` will not (a declared length it never sends, a slow header, an endless chunked body).
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Effect, Logger, ParseResult, Schema } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { connect as netConnect, type Socket } from "node:net"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Http from "../examples/support/http.js"
import * as CacheMetrics from "../src/CacheMetrics.js"
import * as Prometheus from "../src/Prometheus.js"
import * as Scrape from "./support/prometheusText.js"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The short timeouts the server runs with here, so that cutting off a slow client takes seconds, not minutes. */
const headersTimeoutMs = 1_000
const requestTimeoutMs = 2_000
/** The default body limit (1 MiB), which the server runs with here. */
const maxBodyBytes = 1_048_576

/** The environment of the server: no DATABASE_URL / REDIS_URL (embedded defaults). */
const environment = (extra: Record<string, string>) => {
  const { DATABASE_URL: _d, REDIS_URL: _r, ...rest } = process.env
  return { ...rest, ...extra }
}

let server: ChildProcess
let address = ""
let port = 0
let output = ""

beforeAll(async () => {
  server = spawn(process.execPath, ["--import", "tsx", "examples/http-server.ts"], {
    cwd: root,
    env: environment({
      PORT: "0",
      HTTP_HEADERS_TIMEOUT_MS: String(headersTimeoutMs),
      HTTP_REQUEST_TIMEOUT_MS: String(requestTimeoutMs)
    }),
    stdio: ["ignore", "pipe", "pipe"]
  })
  server.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address in: ${output}`)), 60_000)
    server.once("exit", () => reject(new Error(`the server exited: ${output}`)))
    server.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      const found = output.match(/Listening on (http:\/\/\S+)/)
      if (found) {
        clearTimeout(timer)
        resolve(found[1]!)
      }
    })
  })
  port = Number(new URL(address).port)
}, 90_000)

afterAll(async () => {
  if (server !== undefined && server.exitCode === null && server.signalCode === null) {
    server.kill("SIGKILL")
    await within(new Promise((resolve) => server.once("exit", resolve)), 5_000)
  }
})

/** `promise`, or "timeout" after `ms`. */
const within = <A>(promise: Promise<A>, ms: number): Promise<A | "timeout"> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)))
  ]).finally(() => clearTimeout(timer))
}

const call = async (method: string, path: string, body?: string | Uint8Array, contentType = "application/json") => {
  const response = await fetch(`${address}${path}`, {
    method,
    ...(body === undefined ? {} : { body, headers: contentType === "" ? {} : { "content-type": contentType } })
  })
  const text = await response.text()
  return { status: response.status, text, json: () => JSON.parse(text) }
}

interface Connection {
  readonly socket: Socket
  /** Everything the server sent so far (latin1, as bytes). */
  readonly received: () => string
  /** Resolves with ms since the connection opened once the server's response head has arrived. */
  readonly answered: Promise<number>
  /** Resolves with ms since the connection opened once the connection is closed (by either side). */
  readonly closed: Promise<number>
}

/** A raw connection to the server, recording what it answers and when it closes. */
const connect = async (): Promise<Connection> => {
  const socket = netConnect({ host: "127.0.0.1", port })
  // A write after the server stopped reading fails (EPIPE, ECONNRESET): expected here, and seen through `closed`.
  socket.on("error", () => {})
  await new Promise((resolve) => socket.once("connect", resolve))
  const openedAt = performance.now()
  let received = ""
  const answered = new Promise<number>((resolve) =>
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1")
      if (received.includes("\r\n\r\n")) resolve(performance.now() - openedAt)
    })
  )
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now() - openedAt)))
  return { socket, received: () => received, answered, closed }
}

/** Resolves when `socket` can take more, or is gone. */
const drained = (socket: Socket) =>
  new Promise<void>((resolve) => {
    const done = () => {
      socket.off("drain", done)
      socket.off("close", done)
      resolve()
    }
    socket.once("drain", done)
    socket.once("close", done)
  })

/** A field of /proc/<pid>/status, in bytes. */
const procStatus = (pid: number, field: "VmHWM" | "VmRSS") => {
  const found = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return Number(found![1]) * 1024
}

/** Resets the peak RSS (VmHWM) of `pid` to its current RSS; false where the kernel does not allow it. */
const resetPeak = (pid: number) => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5")
    return true
  } catch {
    return false
  }
}

const MB = 1024 * 1024

describe("examples/http-server.ts", () => {
  it("serves tasks, rejects bad input clearly, exports metrics", async () => {
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

    // The scrape, read by a parser not written here.
    const scrape = await fetch(`${address}/metrics`)
    expect(scrape.status).toBe(200)
    expect(scrape.headers.get("content-type")).toBe(Prometheus.contentType)
    const text = await scrape.text()
    const families = Scrape.families(text)
    expect(families.get("cache_hits")?.type).toBe("COUNTER")
    expect(Scrape.samplesWith(families.get("cache_hits"), { cache: "tasks-l1", tier: "lru" })).toHaveLength(1)
    expect(Number(Scrape.samplesWith(families.get("cache_misses"), { cache: "tasks-l1", tier: "lru" })[0]?.value))
      .toBeGreaterThan(0)
    expect(families.get("cache_size")?.type).toBe("GAUGE")
    // The store's statements by operation (each registered at its first statement): the PUT saved, the two
    // DELETEs deleted, the misses loaded in batches.
    const queries = families.get("task_store_queries")
    expect(queries?.type).toBe("COUNTER")
    const byOperation = new Map(queries!.metrics.map((sample) => [sample.labels?.operation, Number(sample.value)]))
    for (const operation of byOperation.keys()) expect(["get", "getMany", "save", "delete"]).toContain(operation)
    expect(byOperation.get("save")).toBeGreaterThanOrEqual(1)
    expect(byOperation.get("delete")).toBeGreaterThanOrEqual(2)
    expect(byOperation.get("getMany")).toBeGreaterThanOrEqual(1)
    // The loads' histogram: every bucket of its boundaries, cumulative, +Inf holding the count.
    expect(families.get("cache_load_duration_ms")?.type).toBe("HISTOGRAM")
    const loads = Scrape.histogramSeries(text, "cache_load_duration_ms").find((series) =>
      series.labels.cache === "tasks" && series.labels.tier === "multilevel"
    )
    expect(loads?.labels).toStrictEqual({ cache: "tasks", tier: "multilevel", time_unit: "milliseconds" })
    expect(loads!.count).toBeGreaterThanOrEqual(1)
    expect(loads!.buckets).toHaveLength(CacheMetrics.loadDurationBoundaries.values.length)
    expect(loads!.buckets.at(-1)).toStrictEqual(["+Inf", loads!.count])
    const counts = loads!.buckets.map(([, count]) => count)
    expect(counts).toStrictEqual([...counts].sort((a, b) => a - b))
    // Per tier: the L2 reads the misses made, and the store's loads, timed.
    const tiers = Scrape.histogramSeries(text, "cache_tier_duration_ms").filter((series) => series.labels.cache === "tasks")
    const l2Misses = tiers.find((series) => series.labels.tier === "l2" && series.labels.operation === "read" && series.labels.outcome === "miss")
    expect(l2Misses!.count).toBeGreaterThanOrEqual(1)
    const storeLoads = tiers.find((series) => series.labels.tier === "loader" && series.labels.outcome === "ok")
    expect(storeLoads!.count).toBeGreaterThanOrEqual(1)
    expect(families.get("cache_breaker_open")?.type).toBe("GAUGE")
  })

  describe("content type and encoding", () => {
    const body = JSON.stringify({ title: "typed", status: "todo" })

    it("refuses a body that is not declared application/json with 415, and stores nothing", async () => {
      const plain = await call("PUT", "/tasks/typed", body, "text/plain")
      expect(plain.status).toBe(415)
      expect(plain.json().error).toContain("application/json")
      // A byte body: fetch sends no content type at all.
      const none = await call("PUT", "/tasks/typed", new TextEncoder().encode(body), "")
      expect(none.status).toBe(415)
      const latin1 = await call("PUT", "/tasks/typed", body, "application/json; charset=iso-8859-1")
      expect(latin1.status).toBe(415)
      expect((await call("GET", "/tasks/typed")).status).toBe(404)
    })

    it("takes application/json in any case, with parameters", async () => {
      const saved = await call("PUT", "/tasks/typed", body, "Application/JSON ; Charset=UTF-8")
      expect(saved.status).toBe(200)
      expect(saved.json()).toMatchObject({ id: "typed", title: "typed" })
      expect((await call("PUT", "/tasks/typed", body, "application/json")).status).toBe(200)
    })

    it("refuses a body that is not valid UTF-8 with 400 instead of storing U+FFFD", async () => {
      const bytes = Buffer.concat([
        Buffer.from(`{"title":"caf`),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(`","status":"todo"}`)
      ])
      const invalid = await call("PUT", "/tasks/latin", new Uint8Array(bytes))
      expect(invalid.status).toBe(400)
      expect(invalid.json().error).toContain("UTF-8")
      expect((await call("GET", "/tasks/latin")).status).toBe(404)
    })

    it("answers a malformed percent escape in the path with 400 and the reason", async () => {
      const malformed = await call("GET", "/tasks/%E0%A4%A")
      expect(malformed.status).toBe(400)
      expect(malformed.json().error).toMatch(/percent-encoding/)
      expect(malformed.json().error).toContain("%E0%A4%A")
      expect((await call("DELETE", "/tasks/%FF")).status).toBe(400) // not UTF-8 once decoded
    })
  })

  describe("hostile bodies", () => {
    it("refuses JSON nested deeper than the limit with 400, not an empty 500", async () => {
      const brackets = `${"[".repeat(5_000)}${"]".repeat(5_000)}`
      const deep = await call("PUT", "/tasks/deep", `{"title": ${brackets}, "status": "todo"}`)
      expect(deep.status).toBe(400)
      expect(deep.json().error).toContain(`nested deeper than ${Http.maxJsonDepth}`)
      expect((await call("GET", "/tasks/deep")).status).toBe(404)
    })

    it("echoes a bounded part of a huge invalid value: a short 400 that names the path and the problem", async () => {
      const title = ` ${"x".repeat(1_000_000)} `
      const huge = await call("PUT", "/tasks/huge", JSON.stringify({ title, status: "todo" }))
      expect(huge.status).toBe(400)
      expect(huge.text.length).toBeLessThan(4_096)
      const { error, issues } = huge.json()
      expect(error).toBe("invalid request")
      expect(issues).toHaveLength(1)
      expect(issues[0].path).toBe("title")
      expect(issues[0].message).toContain("leading or trailing whitespace")
      expect(issues[0].message.endsWith("…")).toBe(true)
    })

    it("refuses a declared Content-Length over the limit with 413 at once, and closes the connection", async () => {
      const connection = await connect()
      try {
        connection.socket.write(
          "PUT /tasks/declared HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
            `Content-Length: ${1024 * MB}\r\n\r\n{}`
        )
        const answeredAfter = await within(Promise.race([connection.answered, connection.closed]), 5_000)
        expect(answeredAfter).not.toBe("timeout")
        // Well inside the request timeout: refused on the header, not left to time out.
        expect(answeredAfter).toBeLessThan(requestTimeoutMs)
        expect(connection.received()).toMatch(/^HTTP\/1\.1 413 /)
        expect(connection.received()).toMatch(/\r\nconnection: close\r\n/i)
        const closedAfter = await within(connection.closed, 3_000)
        expect(closedAfter).not.toBe("timeout")
        console.log(
          `declared 1 GiB: 413 after ${Number(answeredAfter).toFixed(0)} ms, closed after ${
            Number(closedAfter).toFixed(0)
          } ms`
        )
      } finally {
        connection.socket.destroy()
      }
    })

    it("cuts a streamed body off at the limit with 413, its memory bounded", { timeout: 90_000 }, async () => {
      const pid = server.pid!
      const peakReset = resetPeak(pid)
      const peakBefore = procStatus(pid, "VmHWM")
      const total = 400 * MB
      const filler = Buffer.alloc(64 * 1024, "a")
      // One chunk of the chunked encoding, sent again and again: the test holds 64 KiB, not 400 MB.
      const frame = Buffer.concat([Buffer.from(`${filler.length.toString(16)}\r\n`), filler, Buffer.from("\r\n")])
      const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`
      const connection = await connect()
      let sent = 0
      let answered = false
      void connection.answered.then(() => (answered = true))
      try {
        connection.socket.write(
          "PUT /tasks/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
            `Transfer-Encoding: chunked\r\n\r\n${chunk(`{"title":"`)}`
        )
        while (sent < total && !answered && !connection.socket.destroyed) {
          const more = connection.socket.write(frame)
          sent += filler.length
          if (!more) await drained(connection.socket)
        }
        if (sent >= total && !connection.socket.destroyed) {
          connection.socket.write(`${chunk(`","status":"todo"}`)}0\r\n\r\n`)
        }
        // Answered, or closed without an answer (then `received` is empty and the next line says so).
        const answeredAfter = await within(Promise.race([connection.answered, connection.closed]), 60_000)
        expect(connection.received()).toMatch(/^HTTP\/1\.1 413 /)
        expect(connection.received()).toMatch(/\r\nconnection: close\r\n/i)
        const closedAfter = await within(connection.closed, 5_000)
        expect(closedAfter).not.toBe("timeout")
        expect(sent).toBeLessThan(total)
        const growth = procStatus(pid, "VmHWM") - peakBefore
        console.log(
          `streamed body: 413 after ${Number(answeredAfter).toFixed(0)} ms and ${(sent / MB).toFixed(1)} MiB sent; ` +
            `server peak RSS ${(peakBefore / MB).toFixed(0)} → ${((peakBefore + growth) / MB).toFixed(0)} MiB ` +
            `(${growth >= 0 ? "+" : ""}${(growth / MB).toFixed(1)} MiB${peakReset ? "" : ", peak not reset"})`
        )
        expect(growth).toBeLessThan(64 * MB)
      } finally {
        connection.socket.destroy()
      }
    })

    it("takes a body just under the limit", async () => {
      const title = "y".repeat(maxBodyBytes - 100)
      const under = await call("PUT", "/tasks/under", JSON.stringify({ title, status: "todo" }))
      // Read whole and validated: refused for its title, not for its size.
      expect(under.status).toBe(400)
      expect(under.json().issues).toStrictEqual([{ path: "title", message: "a title must be at most 500 characters" }])
    })
  })

  describe("slow clients", () => {
    it("cuts off a client that sends its headers slowly", async () => {
      const connection = await connect()
      connection.socket.write("PUT /tasks/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
      // A byte every 200 ms, never the blank line that ends the headers.
      const trickle = setInterval(() => connection.socket.destroyed || connection.socket.write("x"), 200)
      try {
        const closedAfter = await within(connection.closed, 10_000)
        expect(closedAfter).not.toBe("timeout")
        expect(closedAfter).toBeLessThan(5_000)
        expect(connection.received()).toMatch(/^(HTTP\/1\.1 408 [^]*)?$/)
        const answer = JSON.stringify(connection.received().split("\r\n")[0])
        console.log(`slow headers: cut off after ${Number(closedAfter).toFixed(0)} ms (${answer})`)
      } finally {
        clearInterval(trickle)
        connection.socket.destroy()
      }
    })

    it("cuts off a client that sends its body slowly", async () => {
      const connection = await connect()
      connection.socket.write(
        "PUT /tasks/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" +
          `{"title":`
      )
      // A byte of whitespace every 200 ms: never the 100 bytes declared.
      const trickle = setInterval(() => connection.socket.destroyed || connection.socket.write(" "), 200)
      try {
        const closedAfter = await within(connection.closed, 10_000)
        expect(closedAfter).not.toBe("timeout")
        expect(closedAfter).toBeLessThan(5_000)
        expect(connection.received()).toMatch(/^(HTTP\/1\.1 408 [^]*)?$/)
        const answer = JSON.stringify(connection.received().split("\r\n")[0])
        console.log(`slow body: cut off after ${Number(closedAfter).toFixed(0)} ms (${answer})`)
      } finally {
        clearInterval(trickle)
        connection.socket.destroy()
      }
    })

    it("still serves after the hostile clients", async () => {
      const saved = await call("PUT", "/tasks/after", JSON.stringify({ title: "still here", status: "done" }))
      expect(saved.status).toBe(200)
      expect((await call("GET", "/tasks/after")).json()).toMatchObject({ title: "still here", status: "done" })
    })
  })

  it("stops on SIGTERM", async () => {
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      server.once("exit", (code, signal) => resolve([code, signal]))
    )
    server.kill("SIGTERM")
    const exit = await within(exited, 10_000)
    expect(exit).not.toBe("timeout")
    const [code, signal] = exit as [number | null, NodeJS.Signals | null]
    expect(code === 0 || signal === "SIGTERM" || code === 130 || code === 143).toBe(true)
  })
})

describe("examples/support/http.ts", () => {
  const limits = Http.HttpLimits.of({ maxBodyBytes, headersTimeoutMs, requestTimeoutMs })
  const request = (path: string) => HttpServerRequest.fromWeb(new Request(`http://127.0.0.1${path}`))
  const bodyOf = (response: HttpServerResponse.HttpServerResponse) =>
    Effect.promise(() => HttpServerResponse.toWeb(response).text())

  it.effect("turns a defect in a handler into a logged JSON 500", () =>
    Effect.gen(function*() {
      const logs: Array<{ readonly level: string; readonly text: string }> = []
      const recording = Logger.make(({ cause, logLevel, message }) =>
        logs.push({ level: logLevel.label, text: `${String(message)} ${Cause.pretty(cause)}` })
      )
      const response = yield* Http.harden(Effect.die(new Error("boom in a handler"))).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request("/tasks/x")),
        Effect.provideService(Http.HttpLimits, limits),
        Effect.provide(Logger.replace(Logger.defaultLogger, recording))
      )
      expect(response.status).toBe(500)
      expect(JSON.parse(yield* bodyOf(response))).toStrictEqual({ error: "internal server error" })
      expect(logs).toHaveLength(1)
      expect(logs[0]!.level).toBe("ERROR")
      expect(logs[0]!.text).toContain("boom in a handler")
    }))

  it.effect("answers a validation error whose formatting overflows the stack with a 400, not a throw", () =>
    Effect.gen(function*() {
      // Built bottom-up (no recursion here): what the depth limit keeps out of a body, reaching the formatter.
      let nested: unknown = []
      for (let i = 0; i < 20_000; i++) nested = [nested]
      const error = yield* Effect.flip(
        Schema.decodeUnknown(Schema.Struct({ title: Schema.String }))({ title: nested })
      )
      expect(() => ParseResult.ArrayFormatter.formatErrorSync(error)).toThrow(RangeError)
      const response = yield* Http.invalidRequest(error)
      expect(response.status).toBe(400)
      const body = JSON.parse(yield* bodyOf(response))
      expect(body.error).toBe("invalid request")
      expect(body.issues).toHaveLength(1)
    }))

  it.effect("caps the number of issues echoed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Schema.decodeUnknown(Schema.Array(Schema.String), { errors: "all" })(Array.from({ length: 500 }, (_, i) => i))
      )
      const response = yield* Http.invalidRequest(error)
      const text = yield* bodyOf(response)
      const body = JSON.parse(text)
      expect(body.issues).toHaveLength(Http.maxIssues)
      expect(body.issues[0]).toStrictEqual({ path: "0", message: "Expected string, actual 0" })
      expect(body.omittedIssues).toBe(500 - Http.maxIssues)
      expect(text.length).toBeLessThan(4_096)
    }))

  it("reads its limits from the environment, with defaults", () => {
    const read = (env: Record<string, string>) =>
      Effect.runSyncExit(
        Effect.withConfigProvider(Http.limitsConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))
      )
    const defaults = read({})
    expect(defaults._tag === "Success" && defaults.value).toStrictEqual({
      maxBodyBytes: 1_048_576,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000
    })
    expect(read({ HTTP_MAX_BODY_BYTES: "2048" })).toMatchObject({ _tag: "Success", value: { maxBodyBytes: 2048 } })
    expect(read({ HTTP_MAX_BODY_BYTES: "0" })._tag).toBe("Failure")
    // Node refuses a headers timeout longer than the request timeout: said here, at start-up.
    expect(read({ HTTP_HEADERS_TIMEOUT_MS: "5000", HTTP_REQUEST_TIMEOUT_MS: "1000" })._tag).toBe("Failure")
  })
})
