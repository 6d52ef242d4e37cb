/**
 * Credentials are never printed. The password of Redis or Postgres, given in the URL or apart from it, must not
 * appear in anything the library logs (through every Effect logger), in its errors however they are printed or
 * serialised (`message`, `String`, `JSON.stringify`, `util.inspect`, `Cause.pretty`, the loggers), nor in its
 * metrics: not when the password is rotated under a running service, not when a connection is refused at
 * start, not when a URL is malformed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { inspect } from "node:util"
import * as Cache from "../src/Cache.js"
import * as InvalidationBus from "../src/InvalidationBus.js"
import * as RedisCache from "../src/RedisCache.js"
import * as RedisClient from "../src/RedisClient.js"
import * as TaskStore from "../src/TaskStore.js"
import { captureLogs } from "./support/logs.js"
import { freePort, privateRedisWith, rawRedis } from "./support/redis.js"
import { waitFor } from "./support/wait.js"

class Values extends Cache.Tag("test/secrets/Values")<Values, string, string, Cache.CacheError>() {}
class Bus extends Context.Tag("test/secrets/Bus")<Bus, InvalidationBus.InvalidationBus<string>>() {}

/** Every way the error `error` can be printed or serialised by a user of the library. */
const renderings = (error: unknown): Array<string> => {
  const cause = Cause.fail(error)
  return [
    String(error),
    error instanceof Error ? error.message : "",
    JSON.stringify(error) ?? "",
    JSON.stringify(Cause.squash(cause)) ?? "",
    inspect(error, { depth: Infinity, showHidden: true }),
    inspect(error, { depth: Infinity }),
    Cause.pretty(cause)
  ]
}

/** Logs `error` through the loggers of `captureLogs`, as an application handling it would. */
const logEverywhere = (error: unknown) =>
  Effect.zipRight(Effect.logError("failed", error), Effect.logError(Cause.fail(error)))

const metricsText = Effect.map(Metric.snapshot, (pairs) => inspect(pairs, { depth: Infinity }))

/** Expects that no text holds `secret`, nor its percent-encoded form, and says where it was found if it does. */
const expectNoSecret = (texts: ReadonlyArray<string>, secrets: ReadonlyArray<string>) => {
  for (const secret of secrets) {
    for (const form of new Set([secret, encodeURIComponent(secret)])) {
      const leak = texts.find((text) => text.includes(form))
      expect(leak, `the secret appears in: ${leak?.slice(0, 2000)}`).toBeUndefined()
    }
  }
}

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("secrets are never printed", () => {
  it.scopedLive("a rotated Redis password refused on re-authentication reaches no log, no error, no metric", () => {
    const lines: Array<string> = []
    const oldPassword = `old-Pw/${Math.random().toString(36).slice(2)}:@`
    const newPassword = `new-Pw#${Math.random().toString(36).slice(2)}%`
    return Effect.gen(function*() {
      const redis = yield* privateRedisWith({ requirepass: oldPassword })
      const url = Redacted.make(`redis://:${encodeURIComponent(oldPassword)}@127.0.0.1:${redis.port}`)
      const context = yield* Layer.build(
        Layer.mergeAll(
          RedisCache.layer(Values, { namespace: "secrets", schema: Schema.String }),
          Layer.scoped(Bus, InvalidationBus.make({ namespace: "secrets", decodeKey: Option.some }))
        ).pipe(Layer.provideMerge(RedisClient.layer({ url })))
      )
      const values = yield* Effect.provide(Values, context)
      yield* values.set("k", "v")
      expect(yield* values.get("k")).toBe("v")

      // The password is rotated and every client is made to reconnect: re-authentication is refused.
      const admin = yield* rawRedis(`redis://:${encodeURIComponent(oldPassword)}@127.0.0.1:${redis.port}`)
      yield* Effect.promise(() => admin.config("SET", "requirepass", newPassword))
      yield* Effect.promise(() => admin.client("KILL", "TYPE", "normal"))
      yield* waitFor(() => lines.some((line) => line.includes("WRONGPASS")), 5_000)

      const errors: Array<unknown> = []
      errors.push(yield* Effect.flip(values.get("k")))
      errors.push(yield* Effect.flip(values.set("k", "w")))
      // Starting again with the old password, from the URL and from REDIS_PASSWORD.
      errors.push(yield* Effect.flip(Effect.scoped(RedisClient.make({ url }))))
      errors.push(
        yield* Effect.flip(Layer.build(RedisClient.layerConfig).pipe(
          Effect.scoped,
          withEnv({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_PASSWORD: oldPassword })
        ))
      )
      expect(errors.map((e) => (e as { _tag?: string })._tag)).toStrictEqual([
        "CacheError",
        "CacheError",
        "RedisConnectionError",
        "RedisConnectionError"
      ])
      // The diagnosis is kept: where, and why.
      expect(String(errors[2])).toContain(`127.0.0.1:${redis.port}`)
      expect(String(errors[2])).toContain("WRONGPASS")
      yield* Effect.forEach(errors, logEverywhere, { discard: true })

      // Back to the old password: the running service reconnects by itself.
      yield* Effect.promise(() => admin.config("SET", "requirepass", oldPassword))
      yield* waitFor(() => Effect.map(Effect.either(values.get("k")), Either.isRight), 10_000)

      expect(lines.some((line) => line.includes("Redis connection error") && line.includes("WRONGPASS"))).toBe(true)
      expectNoSecret([...lines, ...errors.flatMap(renderings), yield* metricsText], [oldPassword, newPassword])
    }).pipe(Effect.provide(captureLogs(lines)))
  }, 30_000)

  it.effect("a malformed REDIS_URL or DATABASE_URL is a typed error naming the problem, not a crash", () =>
    Effect.gen(function*() {
      const password = "pw-Very$ecret-42"
      const redisExit = yield* Effect.exit(
        Layer.build(RedisClient.layerConfig).pipe(
          Effect.scoped,
          withEnv({ REDIS_URL: `redis://:${password}@127.0.0.1:notaport` })
        )
      )
      const redisError = yield* Effect.flip(redisExit)
      expect(ConfigError.isConfigError(redisError)).toBe(true)
      expect(String(redisError)).toContain("REDIS_URL")
      expect(String(redisError)).toContain("the port must be a number from 1 to 65535")

      const made = yield* Effect.flip(Effect.scoped(RedisClient.make({ url: Redacted.make(`redis://:${password}@127.0.0.1:notaport`) })))
      expect(made._tag).toBe("RedisConnectionError")
      expect(made.code).toBe("INVALID_URL")

      const pgError = yield* Effect.flip(
        Layer.build(TaskStore.layerPgConfig).pipe(
          Effect.scoped,
          withEnv({ DATABASE_URL: `postgres://root:${password}@127.0.0.1:notaport/test` })
        )
      )
      expect(ConfigError.isConfigError(pgError)).toBe(true)
      expect(String(pgError)).toContain("DATABASE_URL")
      expect(String(pgError)).toContain("the port must be a number from 1 to 65535")

      const pgMade = yield* Effect.flip(
        Layer.build(TaskStore.layerPg({ url: Redacted.make(`postgresql://root:${password}@bad host/test`) })).pipe(Effect.scoped)
      )
      expect(pgMade._tag).toBe("StoreError")
      expect(pgMade.message).toContain("a host is not a valid host name or address")

      expectNoSecret([redisError, made, pgError, pgMade].flatMap(renderings), [password])
    }))

  /** Characters a password may hold, URL delimiters and non-ASCII included; no spaces (they are in every text). */
  const passwordCharacter = fc.constantFrom(
    ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$&'()*+,;=-._~@:/?#[]%é🔑"
  )
  const urlShape = fc.record({
    scheme: fc.constantFrom("redis", "rediss", "http", "redis:", ""),
    user: fc.constantFrom(undefined, "", "app"),
    host: fc.constantFrom("127.0.0.1", "localhost", "[::1]", "bad host", ""),
    port: fc.constantFrom("closed", "notaport", "99999", "", "-1"),
    db: fc.constantFrom("", "/0", "/3", "/abc"),
    tail: fc.constantFrom("", "?family=4", "#x"),
    encoded: fc.boolean(),
    inUrl: fc.boolean()
  })

  it.live.prop(
    "for random passwords and URL shapes, no output of the library contains the password",
    [fc.stringOf(passwordCharacter, { minLength: 10, maxLength: 20 }), urlShape],
    ([password, shape]) => {
      const lines: Array<string> = []
      return Effect.gen(function*() {
        const closed = yield* freePort // nothing listens there: every connection is refused at once
        const port = shape.port === "closed" ? `:${closed}` : shape.port === "" ? "" : `:${shape.port}`
        const secret = shape.encoded ? encodeURIComponent(password) : password
        const auth = shape.inUrl ? `${shape.user ?? ""}:${secret}@` : shape.user ? `${shape.user}@` : ""
        const prefix = shape.scheme === "" ? "" : `${shape.scheme}://`
        const redisUrl = `${prefix}${auth}${shape.host}${port}${shape.db}${shape.tail}`
        const pgUrl = `${prefix.replace(/^redis(s)?/, "postgres")}${auth}${shape.host}${port}/test${shape.tail}`
        const env = { REDIS_URL: redisUrl, DATABASE_URL: pgUrl, ...(shape.inUrl ? {} : { REDIS_PASSWORD: password }) }

        const exits: Array<Exit.Exit<unknown, unknown>> = [
          yield* Effect.exit(Layer.build(RedisClient.layerConfig).pipe(Effect.scoped, withEnv(env))),
          yield* Effect.exit(
            Effect.scoped(RedisClient.make({
              url: Redacted.make(redisUrl),
              ...(shape.inUrl ? {} : { password: Redacted.make(password) })
            }))
          ),
          yield* Effect.exit(Layer.build(TaskStore.layerPgConfig).pipe(Effect.scoped, withEnv(env)))
        ]
        const errors: Array<unknown> = []
        for (const exit of exits) {
          // A refusal or a connection failure, always typed: never a defect, and never a success on a port that is
          // closed or invalid. Without a port the URL may name the default one, where the real servers listen.
          if (shape.port !== "") expect(Exit.isFailure(exit)).toBe(true)
          if (Exit.isFailure(exit)) {
            const failure = Cause.failureOption(exit.cause)
            expect(failure._tag, Cause.pretty(exit.cause)).toBe("Some")
            if (failure._tag === "Some") errors.push(failure.value)
          }
        }
        yield* Effect.forEach(errors, logEverywhere, { discard: true })
        expectNoSecret([...lines, ...errors.flatMap(renderings), yield* metricsText], [password])
      }).pipe(Effect.provide(captureLogs(lines)))
    },
    { timeout: 60_000, fastCheck: { numRuns: 60 } }
  )
})
