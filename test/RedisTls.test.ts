/**
 * `RedisClient` over TLS (`rediss://`), against real TLS-only `redis-server` processes on loopback: one node that
 * asks for a password, and a 3-master Redis Cluster whose client connections, cluster bus and replication all run
 * over TLS. A CA and a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) are made with `openssl` in
 * a temporary directory, removed afterwards; every server is stopped by pid when the file's scope closes, also
 * when a test fails.
 *
 * The library is exercised by test/support/tls-program.ts in a child process, not in this one: Node verifies the
 * server's certificate against its default CAs, and a self-signed CA can only be added to them with
 * `NODE_EXTRA_CA_CERTS`, which Node reads once, when a process starts. With it, the program's caches, versioned
 * writes (a Lua script) and invalidation buses (pub/sub, sharded on the cluster) must all work over TLS, on
 * connections that are encrypted and verified. Without it, the certificate is not trusted: opening the client must
 * fail with a typed `RedisConnectionError` within the connect timeout. Neither run may ever print the password.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { probeNode, redisServer, type TestCluster, testCluster, type TestTls, tlsServerArgs } from "./support/cluster.js"
import { freePort } from "./support/redis.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const password = "s3cret"
/** The program's connect timeout: the untrusted run must give up within it. */
const connectTimeoutMillis = 1_500

/** Runs `openssl` with `args` in `cwd`, bounded. */
const openssl = (cwd: string, ...args: Array<string>) =>
  Effect.async<void, Error>((resume) => {
    const child = execFile("openssl", args, { cwd, timeout: 10_000, killSignal: "SIGKILL" }, (error, _stdout, stderr) =>
      resume(error === null ? Effect.void : Effect.fail(new Error(`openssl ${args[0]} failed: ${stderr}`))))
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** A CA, and a server certificate for 127.0.0.1 that it signed, in `dir` (EC P-256 keys: quick to make). */
const certificates = (dir: string) =>
  Effect.gen(function*() {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    yield* openssl(dir, "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=rms-cache test CA")
    yield* openssl(dir, "req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    // `clientAuth` too: the cluster nodes present it to each other on the cluster bus, where Redis always checks
    // the peer's certificate (`--tls-auth-clients no` is for clients only).
    writeFileSync(
      join(dir, "server.ext"),
      "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth, clientAuth\n"
    )
    yield* openssl(
      dir, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", "server.pem", "-days", "2", "-extfile", "server.ext"
    )
    return { cert: join(dir, "server.pem"), key: join(dir, "server.key"), ca: join(dir, "ca.pem") } satisfies TestTls
  })

/** A TLS-only `redis-server` that asks for `password`, ready (answers a verified, authenticated `PING`); stopped by pid with the scope. */
const tlsServer = (tls: TestTls) =>
  Effect.gen(function*() {
    const port = yield* freePort
    yield* redisServer([
      ...tlsServerArgs(tls, port),
      "--bind", "127.0.0.1",
      "--save", "",
      "--appendonly", "no",
      "--requirepass", password
    ])
    const probe = { tls: { ca: readFileSync(tls.ca) }, password }
    for (let i = 0; i < 250; i++) {
      if ((yield* probeNode(port, probe, "PING")) === "PONG") return port
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`the TLS redis-server on ${port} did not start`)
  })

interface Servers {
  readonly tls: TestTls
  readonly single: number
  readonly cluster: TestCluster
}

// One set of servers for the file: started in `beforeAll`, stopped (by pid, with the temporary directory) in
// `afterAll`, whether the tests passed or not.
let servers: Servers | undefined
const scope = Effect.runSync(Scope.make())
beforeAll(() =>
  Effect.runPromise(
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "rms-tls-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const tls = yield* certificates(dir)
      const [single, cluster] = yield* Effect.all([tlsServer(tls), testCluster({ masters: 3, tls })], { concurrency: 2 })
      servers = { tls, single, cluster }
    }).pipe(Scope.extend(scope))
  ), 30_000)
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)), 15_000)

const the = () => {
  if (servers === undefined) throw new Error("the TLS servers are not up")
  return servers
}

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly millis: number
}

/**
 * Runs test/support/tls-program.ts against the servers, trusting the test CA (`NODE_EXTRA_CA_CERTS`) or not. The
 * child is killed by pid when the test is interrupted (fails, times out), and after 20 s in any case.
 */
const runProgram = (trustCa: boolean) =>
  Effect.async<Run>((resume) => {
    const { NODE_EXTRA_CA_CERTS: _ca, REDIS_URL: _url, REDIS_PASSWORD: _password, REDIS_CLUSTER_NODES: _nodes, ...rest } = process.env
    const { cluster, single, tls } = the()
    const started = Date.now()
    const child = execFile(process.execPath, ["--import", "tsx", "test/support/tls-program.ts"], {
      cwd: root,
      timeout: 20_000,
      killSignal: "SIGKILL",
      encoding: "utf8",
      env: {
        ...rest,
        ...(trustCa ? { NODE_EXTRA_CA_CERTS: tls.ca } : {}),
        TLS_URL: `rediss://:${password}@127.0.0.1:${single}`,
        TLS_CLUSTER_NODES: cluster.nodes.map((node) => `rediss://127.0.0.1:${node.port}`).join(","),
        TLS_CONNECT_TIMEOUT_MS: String(connectTimeoutMillis)
      }
    }, (error, stdout, stderr) =>
      resume(Effect.succeed({
        code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
        stdout,
        stderr,
        millis: Date.now() - started
      })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** The program's output, for a failure message. */
const shown = (run: Run) => `exit ${run.code} after ${run.millis} ms\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`

describe("RedisClient over TLS (rediss://)", () => {
  it.scopedLive("with the CA trusted: a cache, versioned writes and the bus work on one node and on a cluster, on verified TLS connections", () =>
    Effect.gen(function*() {
      const run = yield* runProgram(true)
      const out = run.stdout
      expect(run.code, shown(run)).toBe(0)
      expect(out, shown(run)).toContain("TLS-PROGRAM-DONE")
      expect(out).not.toContain("refused")

      // One node, password in the URL.
      expect(out).toContain("single mode=single")
      expect(out).toContain("single tls encrypted=true authorized=true connections=1")
      expect(out).toContain("single get=alpha getMany=a:alpha,b:beta")
      expect(out).toContain("single bus heard=single-key-1,single-key-2 publishFailures=0")

      // The cluster: every master reached over TLS, the script, sharded pub/sub.
      expect(out).toContain("cluster mode=cluster")
      expect(out).toContain("cluster getMany=100/100 exact=true masters=3 owners=3")
      expect(out).toContain("cluster versioned=2:newer")
      expect(out).toContain("cluster bus heard=cluster-key-1,cluster-key-2 publishFailures=0")
      expect(out).toMatch(/cluster tls encrypted=true authorized=true connections=[3-9]/)

      expect(run.stdout + run.stderr).not.toContain(password)
      console.log(`TLS program, CA trusted: ${run.millis} ms`)
    }), 25_000)

  it.scopedLive("without the CA: a typed RedisConnectionError (certificate not trusted) within the connect timeout, no password", () =>
    Effect.gen(function*() {
      const run = yield* runProgram(false)
      const out = run.stdout
      expect(run.code, shown(run)).toBe(0)
      expect(out, shown(run)).toContain("TLS-PROGRAM-DONE")
      expect(out).not.toContain(" tls encrypted=")

      const single = out.match(/^single refused tag=(\S+) code=(\S+) elapsed=(\d+) message=(.*)$/m)
      expect(single, shown(run)).not.toBeNull()
      expect(single![1]).toBe("RedisConnectionError")
      expect(single![2]).toBe("SELF_SIGNED_CERT_IN_CHAIN")
      expect(single![4]).toMatch(/self[- ]signed certificate/i)
      expect(Number(single![3])).toBeLessThanOrEqual(connectTimeoutMillis + 500)

      // A cluster client cannot say why: ioredis (5.11) asks each seed for its slots on a copy of the node's
      // connection whose errors it drops, and reports only "Failed to refresh slots cache." (its last node error
      // being "Connection is closed."). Typed and bounded all the same.
      const cluster = out.match(/^cluster refused tag=(\S+) code=(\S+) elapsed=(\d+) message=(.*)$/m)
      expect(cluster, shown(run)).not.toBeNull()
      expect(cluster![1]).toBe("RedisConnectionError")
      expect(cluster![4]).toContain("Failed to refresh slots cache")
      expect(Number(cluster![3])).toBeLessThanOrEqual(connectTimeoutMillis + 500)

      expect(run.stdout + run.stderr).not.toContain(password)
      console.log(`TLS program, CA not trusted: ${run.millis} ms; single: ${single![0]}; cluster: ${cluster![0]}`)
    }), 25_000)
})
