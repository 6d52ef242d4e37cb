/**
 * An invalidation bus between instances of one process: each `connect` is an instance's end, and what one
 * publishes reaches the others after a delay that the test chooses (Effect's `Clock`, so `TestClock` drives it,
 * and `Random`, so `TestRandom` can reorder deliveries).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { InvalidationBus, MemoryHub, MemoryHubOptions } from "../InvalidationBus.js"
import { Endpoint, listenerRuntime } from "./busEndpoint.js"
import { LocalLedger } from "./tags.js"

/** Builds a hub; its instances are connected with `connect`. */
export const make = <K>(options: MemoryHubOptions = {}): Effect.Effect<MemoryHub<K>> =>
  Effect.sync(() => {
    const namespace = options.namespace ?? "memory"
    const delay: Effect.Effect<Duration.DurationInput> = options.delay === undefined
      ? Effect.succeed(Duration.zero)
      : Effect.isEffect(options.delay)
      ? options.delay
      : Effect.succeed(options.delay)
    /** The instances connected now, each with the runner of its own scope. */
    const instances = new Set<{ readonly endpoint: Endpoint<K, K>; readonly run: <A, E>(effect: Effect.Effect<A, E>) => unknown }>()
    let next = 0
    // The hub's tag ledger: one for all its instances, as Redis is for the instances of a service.
    const ledger = new LocalLedger()

    const connect: Effect.Effect<InvalidationBus<K>, never, Scope.Scope> = Effect.gen(function*() {
      const run = yield* listenerRuntime
      const endpoint: Endpoint<K, K> = new Endpoint<K, K>(
        `memory-${++next}`,
        namespace,
        run,
        (message) =>
          Effect.sync(() => {
            for (const other of instances) {
              if (other.endpoint === endpoint) continue
              // Delivered in the receiver's scope: an instance that closes stops receiving.
              const receive = Effect.sync(() => other.endpoint.receive(message))
              other.run(Effect.flatMap(delay, (d) => (Duration.toMillis(d) <= 0 ? receive : Effect.zipRight(Effect.sleep(d), receive))))
            }
          }),
        (key) => key,
        Infinity,
        yield* Effect.clock
      )
      const instance = { endpoint, run }
      yield* Effect.acquireRelease(
        Effect.sync(() => void instances.add(instance)),
        () => Effect.sync(() => void instances.delete(instance))
      )
      return {
        instanceId: endpoint.instanceId,
        channel: `${namespace}:invalidations`,
        publish: (keys, publishOptions) => endpoint.publish(keys, publishOptions),
        publishAll: endpoint.publishAll,
        invalidateTags: (tags, floor) =>
          Effect.suspend(() => {
            const at = ledger.unsafeInvalidate(tags, floor)
            return Effect.as(endpoint.publishTags(tags.map((tag) => [tag, at] as const)), at)
          }),
        tagPositions: (tags) => ledger.tagPositions(tags),
        listen: (listener) => endpoint.listen(listener),
        stats: endpoint.stats
      }
    })

    return {
      connect,
      gap: Effect.sync(() => {
        for (const { endpoint } of instances) endpoint.gap()
      })
    }
  })
