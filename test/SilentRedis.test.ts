/**
 * A Redis connection whose peer stops answering without closing it (a partition, a load balancer that forgot
 * the flow: no RST, no FIN) is noticed within a bounded time, on the command connection and the subscriber
 * alike, and treated as a gap: the L1 is emptied, the connection opened again and the channel subscribed
 * again. The instances talk to the shared Redis through a TCP proxy that severs the connections open at a
 * moment and forwards the new ones.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LruCache from "../src/LruCache.js"
import * as RedisClient from "../src/RedisClient.js"
import { TaskId, TaskInput } from "../src/Task.js"
import * as TaskRepository from "../src/TaskRepository.js"
import * as TaskStore from "../src/TaskStore.js"
import { tcpProxy } from "./support/outage.js"
import { dropSchemaOnClose, sqlLayer, uniqueSchema } from "./support/postgres.js"
import { cleanNamespaceOnClose, redisUrl, uniqueNamespace } from "./support/redis.js"
import { waitFor } from "./support/wait.js"

const heartbeatInterval = "300 millis"
const commandTimeout = "300 millis"
/** Detection (a beat plus an unanswered PING) and the reconnection, with a wide margin for a busy machine. */
const bound = 6_000

const settingsFor = (schema: string, namespace: string): TaskRepository.Settings => ({
  l1Capacity: 100,
  l1TimeToLive: Duration.minutes(5), // far longer than the test: a stale L1 entry would stay
  l2TimeToLive: Duration.minutes(10),
  l2Timeout: Duration.millis(250),
  l2BreakerFailures: 3,
  l2BreakerCooldown: Duration.millis(500),
  l2TombstoneTimeToLive: Duration.seconds(30),
  maxValueBytes: 1_048_576,
  namespace,
  schema
})

/** One instance of the repository whose Redis connections (commands and subscriber) go to `url`. */
const instance = (url: string, settings: TaskRepository.Settings) =>
  Effect.map(
    Layer.build(
      Layer.scoped(TaskRepository.TaskRepository, TaskRepository.make({
        l2Timeout: settings.l2Timeout,
        l2BreakerFailures: settings.l2BreakerFailures,
        l2BreakerCooldown: settings.l2BreakerCooldown
      })).pipe(
        Layer.provideMerge(Layer.mergeAll(
          TaskStore.layer({ schema: settings.schema }),
          LruCache.layer(TaskRepository.TaskL1, { capacity: settings.l1Capacity, timeToLive: settings.l1TimeToLive }),
          TaskRepository.l2Redis(settings)
        )),
        Layer.provide(Layer.merge(sqlLayer, RedisClient.layer({ url, heartbeatInterval, commandTimeout })))
      )
    ),
    (context) => ({
      repo: <A, E>(f: (repo: TaskRepository.Service) => Effect.Effect<A, E>) =>
        Effect.flatMap(TaskRepository.TaskRepository, f).pipe(Effect.provide(context)),
      bus: Effect.flatMap(TaskRepository.TaskInvalidations, (bus) => bus.stats).pipe(Effect.provide(context))
    })
  )

/** A schema and a namespace of their own, removed with the scope. */
const fresh = (label: string) =>
  Effect.gen(function*() {
    const schema = uniqueSchema(label)
    const namespace = uniqueNamespace(label)
    yield* Layer.build(Layer.merge(dropSchemaOnClose(schema).pipe(Layer.provide(sqlLayer)), cleanNamespaceOnClose(namespace)))
    return settingsFor(schema, namespace)
  })

/** Polls `read` on the real clock until it gives `expected`; the elapsed milliseconds, or a failure at `bound`. */
const readsWithin = <E>(read: Effect.Effect<number, E>, expected: number) =>
  Effect.gen(function*() {
    const started = Date.now()
    let last = -1
    while (Date.now() - started < bound) {
      last = yield* read
      if (last === expected) return Date.now() - started
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.dieMessage(`still reading version ${last} after ${bound} ms, expected ${expected}`)
  })

const proxyToRedis = Effect.suspend(() => {
  const target = new URL(redisUrl)
  return tcpProxy({ host: target.hostname, port: Number(target.port || 6379) })
})

const id = TaskId.make("silent")
const input = (title: string) => new TaskInput({ id, title, status: "todo" })

describe("a Redis connection that stops answering", () => {
  it.scopedLive("on a reader (commands and subscriber): noticed, L1 emptied, resubscribed", () =>
    Effect.gen(function*() {
      const settings = yield* fresh("silent_reader")
      const proxy = yield* proxyToRedis
      const writer = yield* instance(redisUrl, settings)
      const reader = yield* instance(`redis://127.0.0.1:${proxy.port}`, settings)

      yield* writer.repo((r) => r.save(input("one")))
      yield* waitFor(() => Effect.map(reader.bus, (stats) => stats.received === 1), bound) // that save's own invalidation
      const first = yield* reader.repo((r) => r.get(id)) // now in the reader's L1
      const gapsBefore = (yield* reader.bus).gaps

      yield* proxy.sever // the reader's connections now lead nowhere, and say nothing
      const second = yield* writer.repo((r) => r.save(input("two")))
      expect(second.version).toBe(first.version + 1)
      const took = yield* readsWithin(reader.repo((r) => Effect.map(r.get(id), (t) => t.version)), second.version)
      console.log(`[silent reader] the newer version was read ${took} ms after the connections were severed`)
      expect((yield* reader.bus).gaps).toBeGreaterThan(gapsBefore)

      // The subscription works again: the next write reaches the reader through the bus.
      yield* Effect.sleep("1 second") // resubscribed, and its second gap has emptied the L1 already
      yield* reader.repo((r) => r.get(id)) // in the reader's L1 again
      const third = yield* writer.repo((r) => r.save(input("three")))
      yield* readsWithin(reader.repo((r) => Effect.map(r.get(id), (t) => t.version)), third.version)
    }), 30_000)

  it.scopedLive("on a writer: its writes and invalidations reach the others once it has reconnected", () =>
    Effect.gen(function*() {
      const settings = yield* fresh("silent_writer")
      const proxy = yield* proxyToRedis
      const writer = yield* instance(`redis://127.0.0.1:${proxy.port}`, settings)
      const reader = yield* instance(redisUrl, settings)
      const first = yield* writer.repo((r) => r.save(input("one")))
      yield* readsWithin(reader.repo((r) => Effect.map(r.get(id), (t) => t.version)), first.version) // in its L1

      yield* proxy.sever // the writer's connections now lead nowhere, and say nothing
      const second = yield* writer.repo((r) => r.save(input("two"))) // Postgres has it; Redis and the bus did not
      // The writer keeps serving traffic that reaches its L2 (reads of ids its L1 does not have), as a live
      // service does: its first L2 call that succeeds again starts the repair of what its writes missed.
      const traffic = yield* writer.repo((r) => r.getMany([TaskId.make("elsewhere")])).pipe(
        Effect.zipRight(Effect.sleep("50 millis")),
        Effect.forever,
        Effect.forkScoped
      )
      const took = yield* readsWithin(reader.repo((r) => Effect.map(r.get(id), (t) => t.version)), second.version)
      console.log(`[silent writer] the other instance read the newer version ${took} ms after the save`)
      yield* traffic.interruptAsFork(traffic.id())
    }), 30_000)
})
